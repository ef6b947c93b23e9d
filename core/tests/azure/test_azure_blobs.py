"""AzureBlobStore passes the BlobStore contract on Azurite (and on real Azure when configured).

Beyond the contract: SAS URLs are plain-HTTP downloadable and read-only, transfers run in
parallel blocks/ranges, MD5 is stored and checked, a blob replaced mid-download is re-read, a
staged upload stays invisible until commit, and from_url reads only the environment. The small
files' fast path: proxies read from the environment once, disk work shared between thread hops,
and still no partial file, a plain file mode, and a failed check that writes nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import socket
import tracemalloc
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from azure.core.exceptions import ResourceNotFoundError
from azure.storage.blob import ContentSettings
from azure.storage.blob.aio import BlobClient, BlobServiceClient
from yarl import URL

from ion.core import errors
from ion.core.backends import open_blobs
from ion.core.backends.azure import _blob_transfer
from ion.core.backends.azure import blobs as azure_blobs
from ion.core.backends.azure.blobs import AzureBlobStore
from ion.core.ports.blobs import BlobStore
from ion.core.testing.blobs_contract import BlobStoreContract

MiB = 1024 * 1024
LIVE_VARIABLE = "ION_TEST_AZURE_STORAGE_CONNECTION_STRING"
PROXY_VARIABLES = [
    variable
    for scheme in ("http", "https", "all", "no")
    for variable in (f"{scheme}_proxy", f"{scheme.upper()}_PROXY")
]


def _write_random(path: Path, size: int) -> str:
    """Write `size` random bytes in 1 MiB pieces; return their MD5."""
    digest = hashlib.md5(usedforsecurity=False)
    with path.open("wb") as out:
        left = size
        while left:
            piece = os.urandom(min(MiB, left))
            digest.update(piece)
            out.write(piece)
            left -= len(piece)
    return digest.hexdigest()


def _md5_of(path: Path) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with path.open("rb") as f:
        while piece := f.read(MiB):
            digest.update(piece)
    return digest.hexdigest()


class _PeakCounter:
    """Counts how many calls of a wrapped coroutine method run at once (the calls stay real)."""

    def __init__(self) -> None:
        self.running = 0
        self.peak = 0
        self.calls = 0

    def wrap(self, method: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
        async def counted(*args: Any, **kwargs: Any) -> Any:
            self.running += 1
            self.calls += 1
            self.peak = max(self.peak, self.running)
            try:
                return await method(*args, **kwargs)
            finally:
                self.running -= 1

        return counted


class AzureBlobSpecifics:
    """Tests of what only the Azure backend promises; subclasses provide the fixtures."""

    @pytest.fixture
    async def service(self, connection_string: str) -> AsyncIterator[BlobServiceClient]:
        async with BlobServiceClient.from_connection_string(connection_string) as service:
            yield service

    @pytest.fixture
    async def small_chunks(
        self, connection_string: str, container: str
    ) -> AsyncIterator[AzureBlobStore]:
        """A store with 256 KiB blocks and ranges, so a few MiB already means many transfers."""
        store = AzureBlobStore.from_connection_string(
            connection_string, container, chunk_size=256 * 1024, max_concurrency=4
        )
        yield store
        await store.aclose()

    async def test_sas_url_is_downloadable_with_plain_http_and_read_only(
        self, blobs: BlobStore, tmp_path: Path
    ) -> None:
        src = tmp_path / "report.html"
        src.write_bytes(b"<p>hello</p>")
        await blobs.put_file("flows/c1/report.html", src)
        url = await blobs.url_for("flows/c1/report.html", expires_in=timedelta(minutes=10))
        base = url.split("?", 1)[0]
        assert "sp=r" in url
        async with aiohttp.ClientSession() as http:
            async with http.get(url) as response:
                assert response.status == 200
                assert await response.read() == b"<p>hello</p>"
                assert response.headers["Content-Type"] == "text/html"
            async with http.get(base) as response:
                assert response.status in (401, 403, 404, 409)  # no anonymous access
            async with http.put(
                url, data=b"overwritten", headers={"x-ms-blob-type": "BlockBlob"}
            ) as response:
                assert response.status == 403
            async with http.delete(url) as response:
                assert response.status == 403
        assert (await blobs.stat("flows/c1/report.html")).size == len(b"<p>hello</p>")

    async def test_url_for_refuses_a_lifetime_that_is_not_positive(self, blobs: BlobStore) -> None:
        with pytest.raises(errors.ValidationError):
            await blobs.url_for("k", expires_in=timedelta(0))

    async def test_parallel_transfer_of_a_multi_mib_file(
        self,
        small_chunks: AzureBlobStore,
        service: BlobServiceClient,
        container: str,
        tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        src = tmp_path / "big.bin"
        size = 6 * MiB + 12345
        md5 = _write_random(src, size)
        staged, ranges = _PeakCounter(), _PeakCounter()
        monkeypatch.setattr(BlobClient, "stage_block", staged.wrap(BlobClient.stage_block))
        monkeypatch.setattr(BlobClient, "download_blob", ranges.wrap(BlobClient.download_blob))

        info = await small_chunks.put_file("big/file.bin", src)
        assert (info.size, info.md5) == (size, md5)
        blocks, _ = await service.get_blob_client(container, "big/file.bin").get_block_list()
        assert len(blocks) == staged.calls == -(-size // (256 * 1024))
        assert staged.peak > 1

        dst = tmp_path / "out" / "big.bin"
        got = await small_chunks.get_file("big/file.bin", dst)
        assert (got.size, got.md5) == (size, md5)
        assert _md5_of(dst) == md5
        assert ranges.peak > 1
        assert [p.name for p in tmp_path.joinpath("out").iterdir()] == ["big.bin"]

    async def test_transfers_never_hold_the_whole_file_in_memory(
        self, small_chunks: AzureBlobStore, tmp_path: Path
    ) -> None:
        src = tmp_path / "big.bin"
        size = 12 * MiB
        md5 = _write_random(src, size)
        tracemalloc.start()
        try:
            await small_chunks.put_file("mem/big", src)
            upload_peak = tracemalloc.get_traced_memory()[1]
            tracemalloc.reset_peak()
            info = await small_chunks.get_file("mem/big", tmp_path / "out.bin")
            download_peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert info.md5 == md5
        # 4 blocks of 256 KiB in flight (plus SDK and socket copies): a few MiB, never 12.
        assert upload_peak < size / 2, f"upload peaked at {upload_peak / MiB:.1f} MiB"
        assert download_peak < size / 2, f"download peaked at {download_peak / MiB:.1f} MiB"

    async def test_stream_upload_is_invisible_until_committed(
        self, small_chunks: AzureBlobStore
    ) -> None:
        seen_during_upload: list[int] = []

        async def chunks() -> AsyncIterator[bytes]:
            for i in range(40):  # 40 x 64 KiB = 10 blocks of 256 KiB
                yield bytes([i]) * 64 * 1024
                if i == 20:
                    seen_during_upload.append(len(await small_chunks.list("s/")))

        info = await small_chunks.put_stream("s/streamed", chunks())
        assert seen_during_upload == [0]
        assert info.size == 40 * 64 * 1024
        data = b"".join([c async for c in small_chunks.get_stream("s/streamed", chunk_size=MiB)])
        assert data == b"".join(bytes([i]) * 64 * 1024 for i in range(40))

    async def test_md5_is_stored_and_a_mismatch_is_refused(
        self,
        blobs: BlobStore,
        small_chunks: AzureBlobStore,
        service: BlobServiceClient,
        container: str,
        tmp_path: Path,
    ) -> None:
        src = tmp_path / "f"
        md5 = _write_random(src, 2 * MiB + 1)
        await blobs.put_file("m/f", src)
        assert (await blobs.stat("m/f")).md5 == md5
        assert [b.md5 for b in await blobs.list("m/")] == [md5]
        # Corrupt the stored checksum: the download must refuse and leave nothing behind.
        await service.get_blob_client(container, "m/f").set_http_headers(
            ContentSettings(content_md5=bytearray(16))
        )
        dst = tmp_path / "dl" / "f"
        with pytest.raises(errors.TransientError, match="MD5"):
            await blobs.get_file("m/f", dst)
        assert not dst.exists()
        assert not any((tmp_path / "dl").glob("*"))  # no temporary file left either
        with pytest.raises(errors.TransientError, match="MD5"):
            async for _ in blobs.get_stream("m/f"):
                pass
        # The same through ranged, parallel reads (256 KiB ranges).
        with pytest.raises(errors.TransientError, match="MD5"):
            await small_chunks.get_file("m/f", dst)
        assert not any((tmp_path / "dl").glob("*"))
        with pytest.raises(errors.TransientError, match="MD5"):
            async for _ in small_chunks.get_stream("m/f"):
                pass

    async def test_a_blob_replaced_during_download_is_read_again_whole(
        self,
        small_chunks: AzureBlobStore,
        tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        old, new = tmp_path / "old", tmp_path / "new"
        _write_random(old, MiB)
        new_md5 = _write_random(new, MiB + 7)
        await small_chunks.put_file("r/x", old)
        original_range = _blob_transfer.read_range
        replaced: list[bool] = []

        async def replace_then_read(*args: Any, **kwargs: Any) -> bytes:
            if not replaced:
                replaced.append(True)
                await small_chunks.put_file("r/x", new)
            return await original_range(*args, **kwargs)

        monkeypatch.setattr(_blob_transfer, "read_range", replace_then_read)
        dst = tmp_path / "dst"
        info = await small_chunks.get_file("r/x", dst)
        assert replaced == [True]
        assert _md5_of(dst) == new_md5 == info.md5

    @pytest.mark.parametrize("size", [1, MiB, MiB + 1, 4 * MiB, 4 * MiB + 1])
    async def test_sizes_around_the_block_boundaries(
        self, blobs: BlobStore, tmp_path: Path, size: int
    ) -> None:
        src = tmp_path / "src"
        md5 = _write_random(src, size)
        info = await blobs.put_file(f"sizes/{size}", src)
        assert (info.size, info.md5) == (size, md5)
        got = await blobs.get_file(f"sizes/{size}", tmp_path / "dst")
        assert (got.size, _md5_of(tmp_path / "dst")) == (size, md5)

    @pytest.mark.parametrize("key", ["", "/", "a/../b", "./a", "a\\b"])
    async def test_keys_that_are_not_plain_are_refused(self, blobs: BlobStore, key: str) -> None:
        with pytest.raises(errors.ValidationError):
            await blobs.stat(key)

    async def test_keys_are_normalised_like_the_filesystem_store(
        self, blobs: BlobStore, tmp_path: Path
    ) -> None:
        src = tmp_path / "f"
        src.write_bytes(b"x")
        info = await blobs.put_file("/n//a/b", src)
        assert info.key == "n/a/b"
        assert (await blobs.stat("n/a/b")).size == 1

    async def test_small_downloads_are_whole_plain_files(
        self, blobs: BlobStore, tmp_path: Path
    ) -> None:
        """Many small blobs at once: each lands whole, in new directories, with the umask's mode."""
        sources = []
        for i in range(40):
            src = tmp_path / "src" / f"{i:02d}"
            src.parent.mkdir(exist_ok=True)
            src.write_bytes(os.urandom(i * 97))
            sources.append((f"small/{i % 4}/{i:02d}", src))
        await blobs.put_files(sources)
        gets = [(key, tmp_path / "dst" / key) for key, _ in sources]
        infos = await blobs.get_files(gets)
        umask = os.umask(0)
        os.umask(umask)
        for (key, dst), (_, src), info in zip(gets, sources, infos, strict=True):
            assert dst.read_bytes() == src.read_bytes()
            assert (info.key, info.size, info.md5) == (key, src.stat().st_size, _md5_of(src))
            assert dst.stat().st_mode & 0o777 == 0o666 & ~umask
        assert sorted(p.name for p in (tmp_path / "dst").rglob("*") if p.is_file()) == sorted(
            f"{i:02d}" for i in range(40)
        )

    async def test_a_small_blob_failing_its_check_in_a_batch_writes_nothing(
        self, blobs: BlobStore, service: BlobServiceClient, container: str, tmp_path: Path
    ) -> None:
        items = []
        for i in range(20):
            src = tmp_path / f"s{i:02d}"
            src.write_bytes(b"%d" % i * 100)
            items.append((f"chk/{i:02d}", src))
        await blobs.put_files(items)
        await service.get_blob_client(container, "chk/07").set_http_headers(
            ContentSettings(content_md5=bytearray(16))
        )
        with pytest.raises(errors.TransientError, match="MD5"):
            await blobs.get_files([(key, tmp_path / "dl" / key) for key, _ in items])
        assert not (tmp_path / "dl" / "chk" / "07").exists()
        for path in (tmp_path / "dl").rglob("*"):
            assert not path.name.endswith(".part")
            if path.is_file():
                assert path.read_bytes() == (tmp_path / f"s{path.name}").read_bytes()

    async def test_concurrent_operations_share_one_store(
        self, blobs: BlobStore, tmp_path: Path
    ) -> None:
        src = tmp_path / "f"
        src.write_bytes(b"y" * 1000)
        await asyncio.gather(*(blobs.put_file(f"many/{i:03d}", src) for i in range(50)))
        listed = await blobs.list("many/")
        assert [b.key for b in listed] == [f"many/{i:03d}" for i in range(50)]


class TestAzureBlobStoreOnAzurite(BlobStoreContract, AzureBlobSpecifics):
    @pytest.fixture
    def connection_string(self, azurite: Any) -> str:
        return str(azurite.connection_string)

    @pytest.fixture
    async def container(self, connection_string: str) -> AsyncIterator[str]:
        name = f"t-{uuid.uuid4().hex[:16]}"
        yield name
        async with BlobServiceClient.from_connection_string(connection_string) as service:
            with contextlib.suppress(ResourceNotFoundError):  # never written to
                await service.delete_container(name)

    @pytest.fixture
    async def blobs(self, connection_string: str, container: str) -> AsyncIterator[BlobStore]:
        store = AzureBlobStore.from_connection_string(connection_string, container)
        yield store
        await store.aclose()

    async def test_open_blobs_reads_the_connection_string_from_the_environment(
        self,
        connection_string: str,
        container: str,
        monkeypatch: pytest.MonkeyPatch,
        tmp_path: Path,
    ) -> None:
        monkeypatch.setenv("ION_AZURE_STORAGE_CONNECTION_STRING", connection_string)
        store = open_blobs(f"azblob://devstoreaccount1/{container}")
        try:
            assert isinstance(store, AzureBlobStore)
            assert "AccountKey" not in repr(store)
            src = tmp_path / "f"
            src.write_bytes(b"via url")
            await store.put_file("x", src)
            assert (await store.stat("x")).size == 7
        finally:
            await store.aclose()

    async def test_transient_failures_are_retried(
        self, azurite: Any, container: str, tmp_path: Path
    ) -> None:
        """A proxy answers the first request with 503; the store's retry policy gets through."""
        failures = {"left": 1, "served": 0}
        upstream = f"http://{azurite.host}:{azurite.port}"
        hop = {"host", "content-length", "transfer-encoding", "connection"}
        async with aiohttp.ClientSession(auto_decompress=False) as session:

            async def proxy(request: web.Request) -> web.Response:
                if failures["left"]:
                    failures["left"] -= 1
                    failures["served"] += 1
                    return web.Response(status=503, text="ServerBusy")
                async with session.request(
                    request.method,
                    URL(upstream + request.raw_path, encoded=True),  # as signed: no re-quoting
                    headers={k: v for k, v in request.headers.items() if k.lower() not in hop},
                    data=await request.read(),
                    skip_auto_headers=["Content-Type"],  # a header added here breaks the signature
                ) as answer:
                    return web.Response(
                        status=answer.status,
                        body=await answer.read(),
                        headers={k: v for k, v in answer.headers.items() if k.lower() not in hop},
                    )

            app = web.Application()
            app.router.add_route("*", "/{tail:.*}", proxy)
            runner = web.AppRunner(app)
            await runner.setup()
            await web.TCPSite(runner, "127.0.0.1", 0).start()
            port = runner.addresses[0][1]
            connection_string = azurite.connection_string.replace(
                azurite.blob_endpoint, f"http://127.0.0.1:{port}/devstoreaccount1"
            )
            store = AzureBlobStore.from_connection_string(connection_string, container)
            try:
                src = tmp_path / "f"
                src.write_bytes(b"through a flaky proxy")
                await store.put_file("flaky/f", src)
                await store.get_file("flaky/f", tmp_path / "out")
            finally:
                await store.aclose()
                await runner.cleanup()
        assert failures["served"] == 1
        assert (tmp_path / "out").read_bytes() == b"through a flaky proxy"

    async def test_proxy_variables_are_read_when_the_store_is_made(
        self, azurite: Any, container: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """HTTP_PROXY is honoured, but looked up once per store, not on every request."""
        for name in PROXY_VARIABLES:
            monkeypatch.delenv(name, raising=False)
        relayed: list[str] = []
        hop = {"host", "content-length", "transfer-encoding", "connection", "proxy-connection"}
        async with aiohttp.ClientSession(auto_decompress=False) as session:

            async def forward(request: web.Request) -> web.Response:
                relayed.append(request.method)  # an absolute-form target: a proxied request
                async with session.request(
                    request.method,
                    URL(request.raw_path, encoded=True),
                    headers={k: v for k, v in request.headers.items() if k.lower() not in hop},
                    data=await request.read(),
                    skip_auto_headers=["Content-Type"],
                ) as answer:
                    return web.Response(
                        status=answer.status,
                        body=await answer.read(),
                        headers={k: v for k, v in answer.headers.items() if k.lower() not in hop},
                    )

            app = web.Application()
            app.router.add_route("*", "/{tail:.*}", forward)
            runner = web.AppRunner(app)
            await runner.setup()
            await web.TCPSite(runner, "127.0.0.1", 0).start()
            try:
                monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{runner.addresses[0][1]}")
                src = tmp_path / "f"
                src.write_bytes(b"through a forward proxy")
                async with AzureBlobStore.from_connection_string(
                    azurite.connection_string, container
                ) as store:
                    await store.put_file("proxied/f", src)
                    await store.get_file("proxied/f", tmp_path / "via-proxy")
                assert relayed
                assert (tmp_path / "via-proxy").read_bytes() == src.read_bytes()

                monkeypatch.delenv("HTTP_PROXY")
                store = AzureBlobStore.from_connection_string(azurite.connection_string, container)
                try:
                    # Set after the store was made: no request looks at it any more.
                    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")
                    before = len(relayed)
                    await store.get_file("proxied/f", tmp_path / "direct")
                    assert len(relayed) == before
                    assert (tmp_path / "direct").read_bytes() == src.read_bytes()
                finally:
                    await store.aclose()
            finally:
                await runner.cleanup()

    async def test_an_unreachable_service_is_a_transient_error(self, tmp_path: Path) -> None:
        with socket.socket() as probe:  # a port nothing listens on
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        connection_string = (
            "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey=a2V5;"
            f"BlobEndpoint=http://127.0.0.1:{port}/devstoreaccount1;"
        )
        store = AzureBlobStore.from_connection_string(connection_string, "unreachable", retries=0)
        try:
            with pytest.raises(errors.TransientError):
                await store.stat("k")
        finally:
            await store.aclose()


@pytest.mark.live
class TestAzureBlobStoreLive(BlobStoreContract, AzureBlobSpecifics):
    """The same tests on a real storage account, when ION_TEST_AZURE_STORAGE_CONNECTION_STRING is set."""

    @pytest.fixture
    def connection_string(self) -> str:
        value = os.environ.get(LIVE_VARIABLE, "")
        if not value:
            pytest.skip(f"set {LIVE_VARIABLE} to run against a real Azure storage account")
        return value

    @pytest.fixture
    async def container(self, connection_string: str) -> AsyncIterator[str]:
        name = f"ion-test-{uuid.uuid4().hex[:16]}"
        yield name
        async with BlobServiceClient.from_connection_string(connection_string) as service:
            with contextlib.suppress(ResourceNotFoundError):  # never written to
                await service.delete_container(name)

    @pytest.fixture
    async def blobs(self, connection_string: str, container: str) -> AsyncIterator[BlobStore]:
        store = AzureBlobStore.from_connection_string(connection_string, container)
        yield store
        await store.aclose()


class TestEnvironmentProxies:
    """The proxies a store takes from the environment, looked up once; no service is contacted."""

    @pytest.fixture(autouse=True)
    def _clean(self, monkeypatch: pytest.MonkeyPatch) -> None:
        for name in PROXY_VARIABLES:
            monkeypatch.delenv(name, raising=False)

    def test_none_without_variables(self) -> None:
        assert azure_blobs._env_proxies("https://acct.blob.core.windows.net") == {}

    def test_the_variables_name_the_proxies(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("HTTPS_PROXY", "http://proxy.example:3128")
        monkeypatch.setenv("HTTP_PROXY", "http://plain.example:3128")
        assert azure_blobs._env_proxies("https://acct.blob.core.windows.net") == {
            "https": "http://proxy.example:3128",
            "http": "http://plain.example:3128",
        }

    def test_no_proxy_covers_the_endpoint(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("HTTPS_PROXY", "http://proxy.example:3128")
        monkeypatch.setenv("NO_PROXY", ".core.windows.net")
        assert azure_blobs._env_proxies("https://acct.blob.core.windows.net") == {}
        assert azure_blobs._env_proxies("https://acct.privatelink.example") != {}


class TestDiskOffload:
    """The small files' disk work: calls queued together share one thread hop."""

    async def test_calls_queued_together_share_a_hop(self, monkeypatch: pytest.MonkeyPatch) -> None:
        hops: list[int] = []
        original = _blob_transfer._call_each

        def counted(fns: list[Callable[[], Any]]) -> list[tuple[bool, Any]]:
            hops.append(len(fns))
            return original(fns)

        monkeypatch.setattr(_blob_transfer, "_call_each", counted)
        offload = _blob_transfer.DiskOffload(max_share=64)
        results = await asyncio.gather(*(offload.call(lambda i=i: i * i) for i in range(50)))
        assert results == [i * i for i in range(50)]
        assert hops == [50]

    async def test_an_error_reaches_its_own_caller_only(self) -> None:
        offload = _blob_transfer.DiskOffload()

        def fail() -> int:
            raise OSError("disk full")

        outcomes = await asyncio.gather(
            offload.call(lambda: 1),
            offload.call(fail),
            offload.call(lambda: 3),
            return_exceptions=True,
        )
        assert outcomes[0] == 1 and outcomes[2] == 3
        assert isinstance(outcomes[1], OSError)

    async def test_a_call_cancelled_before_its_turn_does_not_run(self) -> None:
        offload = _blob_transfer.DiskOffload(runners=1, max_share=1)
        ran: list[str] = []
        first = asyncio.ensure_future(offload.call(lambda: ran.append("first")))
        second = asyncio.ensure_future(offload.call(lambda: ran.append("second")))
        await asyncio.sleep(0)
        second.cancel()
        await first
        with pytest.raises(asyncio.CancelledError):
            await second
        await asyncio.sleep(0.05)
        assert ran == ["first"]

    def test_temporary_files_are_hidden_beside_the_target_and_make_its_parents(
        self, tmp_path: Path
    ) -> None:
        target = tmp_path / "a" / "b" / ("n" * 200)
        tmp, fd = _blob_transfer.open_temporary(target)
        os.close(fd)
        os.unlink(tmp)
        assert os.path.dirname(tmp) == str(target.parent)
        assert os.path.basename(tmp).startswith(".") and tmp.endswith(".part")
        assert len(os.path.basename(tmp)) < 255
        md5 = _blob_transfer.save_checked(target, b"data", lambda md5: None)
        assert target.read_bytes() == b"data" and md5 == hashlib.md5(b"data").digest()
        assert [p.name for p in target.parent.iterdir()] == [target.name]


class TestFromUrl:
    """URL and environment handling; no service is contacted."""

    @pytest.mark.parametrize(
        "url",
        [
            "azblob://acct",
            "azblob:///container",
            "azblob://acct/a/b",
            "azblob://Bad_Account/container",
            "azblob://acct/Bad_Container",
            "azblob://acct/a--b",
        ],
    )
    def test_malformed_urls_are_config_errors(self, url: str) -> None:
        with pytest.raises(errors.ConfigError, match="azblob://"):
            AzureBlobStore.from_url(url, environ={})

    def test_an_account_mismatch_with_the_connection_string_is_a_config_error(self) -> None:
        env = {
            "ION_AZURE_STORAGE_CONNECTION_STRING": "DefaultEndpointsProtocol=https;"
            "AccountName=other;AccountKey=c2VjcmV0;EndpointSuffix=core.windows.net"
        }
        with pytest.raises(errors.ConfigError, match="other") as caught:
            AzureBlobStore.from_url("azblob://acct/container", environ=env)
        assert "c2VjcmV0" not in str(caught.value)

    def test_a_malformed_connection_string_is_a_config_error_that_hides_it(self) -> None:
        env = {"ION_AZURE_STORAGE_CONNECTION_STRING": "AccountKey=c2VjcmV0;nonsense"}
        with pytest.raises(errors.ConfigError) as caught:
            AzureBlobStore.from_url("azblob://acct/container", environ=env)
        assert "c2VjcmV0" not in str(caught.value)
        assert caught.value.__cause__ is None

    async def test_without_a_connection_string_it_uses_the_account_endpoint(self) -> None:
        store = AzureBlobStore.from_url("azblob://acct/container", environ={})
        try:
            assert "https://acct.blob.core.windows.net" in repr(store)
        finally:
            await store.aclose()
        env = {"ION_AZURE_STORAGE_ENDPOINT": "https://acct.privatelink.example/"}
        store = AzureBlobStore.from_url("azblob://acct/container", environ=env)
        try:
            assert "acct.privatelink.example" in repr(store)
        finally:
            await store.aclose()
