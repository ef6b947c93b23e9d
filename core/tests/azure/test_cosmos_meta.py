"""CosmosMetadataStore passes the MetadataStore contract on cosmosdb-server (and real Azure).

Beyond the contract: queries page with continuation tokens, a rewrite keeps a document's place
in its flow, items carry the 2018 shape plus `correlationId` in their partition, attempts list
across partitions, concurrent replaces of one module let exactly one win, and from_url reads only
the environment (TLS verification may be off only for loopback).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import ssl
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from azure.core.exceptions import ResourceNotFoundError
from azure.cosmos.aio import CosmosClient

from ion.core import errors
from ion.core.backends import open_meta
from ion.core.backends.azure.cosmos import CosmosMetadataStore
from ion.core.events import Context, DocumentType, EventMeta, Insight, pairs
from ion.core.modules import ModuleSpec
from ion.core.ports.meta import MetadataStore
from ion.core.records import AttemptState, JobAttempt, ModuleRecord, RunStatus
from ion.core.testing.meta_contract import MetadataStoreContract

LIVE_ENDPOINT = "ION_TEST_COSMOS_ENDPOINT"
LIVE_KEY = "ION_TEST_COSMOS_KEY"


def _meta(corr: str, event: str) -> EventMeta:
    ctx = Context(name="m", event_id=event, correlation_id=corr, parent_event_id="frontapi")
    return EventMeta(id=event, context=ctx.as_document(DocumentType.EVENT_META), type="t")


def _module(name: str) -> ModuleRecord:
    spec = ModuleSpec(name="resize", subscribes_to="image.new", command=["true"])
    return ModuleRecord(id=name, spec=spec, created_at=datetime.now(UTC))


class CosmosSpecifics:
    """Tests of what only the Cosmos backend promises; subclasses provide the fixtures."""

    @pytest.fixture
    async def paged(
        self, cosmos_endpoint: str, cosmos_key: str, database: str
    ) -> AsyncIterator[CosmosMetadataStore]:
        """A store whose queries return 2 items per page, so listings cross pages."""
        store = CosmosMetadataStore(cosmos_endpoint, database, cosmos_key, page_size=2)
        yield store
        await store.aclose()

    async def test_listings_iterate_every_page_in_order(self, paged: CosmosMetadataStore) -> None:
        corr = str(uuid.uuid4())
        events = [f"e{i}" for i in range(7)]
        for event in events:
            await paged.upsert_event_meta(_meta(corr, event))
            await paged.upsert_attempt(
                JobAttempt(id=f"a-{event}", module="m", event_id=event, correlation_id=corr)
            )
        assert [d.id for d in await paged.list_documents(corr)] == events
        attempts = await paged.list_attempts(correlation_id=corr)
        assert [a.id for a in attempts] == [f"a-{e}" for e in events]

    async def test_a_rewrite_keeps_the_document_in_its_place(self, meta: MetadataStore) -> None:
        corr = str(uuid.uuid4())
        first, second = _meta(corr, "first"), _meta(corr, "second")
        await meta.upsert_event_meta(first)
        await meta.upsert_event_meta(second)
        await meta.upsert_event_meta(first.model_copy(update={"type": "rewritten"}))
        docs = await meta.list_documents(corr)
        assert all(isinstance(d, EventMeta) for d in docs)
        assert [(d.id, d.type) for d in docs if isinstance(d, EventMeta)] == [
            ("first", "rewritten"),
            ("second", "t"),
        ]

    async def test_items_keep_the_2018_shape_plus_the_partition_key(
        self, meta: MetadataStore, cosmos_client: CosmosClient, database: str
    ) -> None:
        corr = str(uuid.uuid4())
        ctx = Context(name="m", event_id="e", correlation_id=corr, parent_event_id="p")
        await meta.upsert_insight(
            Insight(id="i", context=ctx.as_document(DocumentType.INSIGHT), data=pairs({"k": "v"}))
        )
        container = cosmos_client.get_database_client(database).get_container_client("documents")
        items = [
            i
            async for i in container.query_items(
                "SELECT * FROM c WHERE c.correlationId = @c",
                parameters=[{"name": "@c", "value": corr}],
                partition_key=corr,
            )
        ]
        assert len(items) == 1
        item = items[0]
        assert item["correlationId"] == corr
        assert item["context"]["correlationId"] == corr
        assert item["context"]["documentType"] == "insight"
        assert item["data"] == [{"key": "k", "value": "v"}]
        assert isinstance(item["_ionSeq"], int)
        # What the store returns is exactly the 2018 document.
        assert [d.to_document() for d in await meta.list_documents(corr)] == [
            {
                "id": "i",
                "context": {
                    "name": "m",
                    "eventId": "e",
                    "correlationId": corr,
                    "parentEventId": "p",
                    "documentType": "insight",
                },
                "data": [{"key": "k", "value": "v"}],
            }
        ]

    async def test_attempts_list_across_flows_with_filters(self, meta: MetadataStore) -> None:
        module = f"mod-{uuid.uuid4().hex[:8]}"
        flows = [str(uuid.uuid4()) for _ in range(3)]
        for i, corr in enumerate(flows):
            attempt = JobAttempt(
                id=f"{module}-{i}", module=module, event_id="e", correlation_id=corr
            )
            if i == 1:
                attempt = attempt.evolve(state=AttemptState.FAILED)
            await meta.upsert_attempt(attempt)
        everything = await meta.list_attempts(module=module)
        assert [a.id for a in everything] == [f"{module}-{i}" for i in range(3)]
        failed = await meta.list_attempts(
            module=module, states=frozenset({AttemptState.FAILED, AttemptState.DEAD_LETTERED})
        )
        assert [a.id for a in failed] == [f"{module}-1"]
        assert await meta.list_attempts(module=module, states=frozenset()) == []

    async def test_concurrent_replaces_of_one_module_let_exactly_one_win(
        self, meta: MetadataStore
    ) -> None:
        stored = await meta.create_module(_module(f"race-{uuid.uuid4().hex[:6]}"))
        results = await asyncio.gather(
            *(
                meta.replace_module(stored.model_copy(update={"provider": f"p{i}"}))
                for i in range(5)
            ),
            return_exceptions=True,
        )
        winners = [r for r in results if isinstance(r, ModuleRecord)]
        assert len(winners) == 1
        assert all(isinstance(r, errors.ConflictError) for r in results if r not in winners)
        assert (await meta.get_module(stored.id)).provider == winners[0].provider

    async def test_concurrent_writers_of_one_flow_lose_no_run(self, meta: MetadataStore) -> None:
        # Each write replaces the flow's summary under if-match and retries on a conflict.
        corr = str(uuid.uuid4())
        await meta.upsert_event_meta(_meta(corr, "root"))
        await asyncio.gather(
            *(
                meta.upsert_attempt(
                    JobAttempt(
                        id=f"m{i}-a1",
                        module=f"m{i}",
                        event_id="root",
                        correlation_id=corr,
                        state=AttemptState.SUCCEEDED,
                    )
                )
                for i in range(6)
            )
        )
        summary = await meta.get_flow_summary(corr)
        assert summary.runs == {RunStatus.SUCCEEDED: 6}
        assert summary.modules == [f"m{i}" for i in range(6)]

    async def test_replacing_a_missing_module_is_a_conflict(self, meta: MetadataStore) -> None:
        ghost = _module("ghost-1").model_copy(update={"etag": "some-etag"})
        with pytest.raises(errors.ConflictError):
            await meta.replace_module(ghost)

    async def test_ids_cosmos_cannot_store_are_validation_errors(self, meta: MetadataStore) -> None:
        with pytest.raises(errors.ValidationError):
            await meta.upsert_event_meta(_meta(str(uuid.uuid4()), "a/b"))


class TestCosmosMetadataStoreOnTestServer(MetadataStoreContract, CosmosSpecifics):
    @pytest.fixture
    def cosmos_endpoint(self, cosmos_server: Any) -> str:
        return str(cosmos_server.endpoint)

    @pytest.fixture
    def cosmos_key(self, cosmos_server: Any) -> str:
        return str(cosmos_server.key)

    @pytest.fixture
    async def cosmos_client(
        self, cosmos_endpoint: str, cosmos_key: str
    ) -> AsyncIterator[CosmosClient]:
        async with CosmosClient(
            cosmos_endpoint, credential=cosmos_key, connection_verify=False
        ) as client:
            yield client

    @pytest.fixture
    async def database(self, cosmos_client: CosmosClient) -> AsyncIterator[str]:
        name = f"t-{uuid.uuid4().hex[:12]}"
        yield name
        # The server is in memory and per session; dropping the database keeps it small.
        with contextlib.suppress(ResourceNotFoundError):  # never opened
            await cosmos_client.delete_database(name)

    @pytest.fixture
    async def meta(
        self, cosmos_endpoint: str, cosmos_key: str, database: str
    ) -> AsyncIterator[MetadataStore]:
        store = CosmosMetadataStore(cosmos_endpoint, database, cosmos_key, verify_tls=False)
        yield store
        await store.aclose()

    def test_the_test_server_speaks_tls_with_a_certificate_our_ca_signed(
        self, cosmos_server: Any
    ) -> None:
        # azure-cosmos never verifies 127.0.0.1, so check the handshake with the stdlib.
        context = ssl.create_default_context(cafile=str(cosmos_server.ca_cert))
        with (
            socket.create_connection((cosmos_server.host, cosmos_server.port), timeout=5) as raw,
            context.wrap_socket(raw, server_hostname=cosmos_server.host) as tls,
        ):
            assert tls.version() in ("TLSv1.2", "TLSv1.3")

    async def test_open_meta_reads_the_endpoint_and_key_from_the_environment(
        self,
        cosmos_endpoint: str,
        cosmos_key: str,
        database: str,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        monkeypatch.setenv("ION_AZURE_COSMOS_ENDPOINT", cosmos_endpoint)
        monkeypatch.setenv("ION_AZURE_COSMOS_KEY", cosmos_key)
        monkeypatch.setenv("ION_AZURE_COSMOS_VERIFY_TLS", "0")
        store = open_meta(f"cosmos://localaccount/{database}")
        try:
            assert isinstance(store, CosmosMetadataStore)
            assert cosmos_key not in repr(store)
            await store.upsert_event_meta(_meta("c1", "e1"))
            assert (await store.get_event_meta("c1", "e1")).id == "e1"
        finally:
            await store.aclose()


@pytest.mark.live
class TestCosmosMetadataStoreLive(MetadataStoreContract, CosmosSpecifics):
    """The same tests on a real account, when ION_TEST_COSMOS_ENDPOINT and _KEY are set."""

    @pytest.fixture
    def cosmos_endpoint(self) -> str:
        value = os.environ.get(LIVE_ENDPOINT, "")
        if not value or not os.environ.get(LIVE_KEY):
            pytest.skip(f"set {LIVE_ENDPOINT} and {LIVE_KEY} to run against a real Cosmos DB")
        return value

    @pytest.fixture
    def cosmos_key(self, cosmos_endpoint: str) -> str:
        return os.environ[LIVE_KEY]

    @pytest.fixture
    async def cosmos_client(
        self, cosmos_endpoint: str, cosmos_key: str
    ) -> AsyncIterator[CosmosClient]:
        async with CosmosClient(cosmos_endpoint, credential=cosmos_key) as client:
            yield client

    @pytest.fixture
    async def database(self, cosmos_client: CosmosClient) -> AsyncIterator[str]:
        name = f"ion-test-{uuid.uuid4().hex[:12]}"
        yield name
        with contextlib.suppress(ResourceNotFoundError):  # never opened
            await cosmos_client.delete_database(name)

    @pytest.fixture
    async def meta(
        self, cosmos_endpoint: str, cosmos_key: str, database: str
    ) -> AsyncIterator[MetadataStore]:
        store = CosmosMetadataStore(cosmos_endpoint, database, cosmos_key)
        yield store
        await store.aclose()


class TestFromUrl:
    """URL and environment handling; no service is contacted."""

    @pytest.mark.parametrize("url", ["cosmos://acct", "cosmos:///db", "cosmos://acct/a/b"])
    def test_malformed_urls_are_config_errors(self, url: str) -> None:
        with pytest.raises(errors.ConfigError, match="cosmos://"):
            CosmosMetadataStore.from_url(url, environ={})

    def test_tls_verification_can_be_turned_off_only_for_loopback(self) -> None:
        env = {
            "ION_AZURE_COSMOS_ENDPOINT": "https://acct.documents.azure.com:443/",
            "ION_AZURE_COSMOS_KEY": "a2V5",
            "ION_AZURE_COSMOS_VERIFY_TLS": "0",
        }
        with pytest.raises(errors.ConfigError, match="ION_AZURE_COSMOS_VERIFY_TLS"):
            CosmosMetadataStore.from_url("cosmos://acct/db", environ=env)

    def test_an_unreadable_ca_file_is_a_config_error_naming_it(self, tmp_path: Path) -> None:
        env = {
            "ION_AZURE_COSMOS_ENDPOINT": "https://10.1.2.3:8081/",
            "ION_AZURE_COSMOS_KEY": "a2V5",
            "ION_AZURE_CA_FILE": str(tmp_path / "missing.pem"),
        }
        with pytest.raises(errors.ConfigError, match=r"ION_AZURE_CA_FILE=.*missing\.pem"):
            CosmosMetadataStore.from_url("cosmos://acct/db", environ=env)

    def test_a_key_without_an_endpoint_is_a_config_error(self) -> None:
        with pytest.raises(errors.ConfigError, match="ION_AZURE_COSMOS_ENDPOINT"):
            CosmosMetadataStore.from_url("cosmos://acct/db", environ={"ION_AZURE_COSMOS_KEY": "k"})

    async def test_without_variables_it_uses_the_account_endpoint(self) -> None:
        store = CosmosMetadataStore.from_url("cosmos://acct/db", environ={})
        try:
            assert "https://acct.documents.azure.com:443/" in repr(store)
        finally:
            await store.aclose()
