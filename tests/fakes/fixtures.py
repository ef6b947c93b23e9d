"""Pytest fixtures that run the Azure emulators and the Service Bus fake, shared by test trees.

A conftest imports the ones it needs (`from tests.fakes.fixtures import azurite`). Without the
emulators installed (tools/emulators/install.sh) their tests skip, unless
ION_REQUIRE_EMULATORS=1 (CI), where a missing emulator is an error.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from tests.fakes import azure_emulators
from tests.fakes.servicebus import FakeServiceBus


def require_emulators() -> None:
    """Skip (or fail, when ION_REQUIRE_EMULATORS=1) if the emulators are not installed."""
    reason = azure_emulators.missing_emulators()
    if reason is None:
        return
    if os.environ.get("ION_REQUIRE_EMULATORS") == "1":
        pytest.fail(f"ION_REQUIRE_EMULATORS=1 but {reason}", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def azurite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[azure_emulators.Azurite]:
    """Azurite's blob service, in memory, for the whole session."""
    require_emulators()
    with azure_emulators.running_azurite(tmp_path_factory.mktemp("azurite")) as running:
        yield running


@pytest.fixture(scope="session")
def cosmos_server(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[azure_emulators.CosmosServer]:
    """cosmosdb-server behind TLS with keep-alive, for the whole session."""
    require_emulators()
    with azure_emulators.running_cosmos(tmp_path_factory.mktemp("cosmos")) as running:
        yield running


@pytest.fixture(scope="session")
def servicebus_fake() -> Iterator[FakeServiceBus]:
    """The wire-level Service Bus fake (AMQP + management REST) for the whole session."""
    with FakeServiceBus() as bus:
        yield bus
        assert not bus.errors, f"the fake Service Bus raised: {bus.errors!r}"
