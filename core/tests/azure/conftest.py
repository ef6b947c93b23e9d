"""Session fixtures that run the Azure emulators: Azurite (blob) and cosmosdb-server (Cosmos).

Each starts once per session on a free loopback port and is stopped by PID at the end. Without
the emulators (tools/emulators/install.sh not run) the tests skip, unless ION_REQUIRE_EMULATORS=1
(set by CI), where a missing emulator is an error.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

# tests/fakes lives at the repository root, which is not on sys.path under `pytest` alone.
_REPO_ROOT = Path(__file__).resolve().parents[3]
if str(_REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(_REPO_ROOT))

from tests.fakes import azure_emulators  # noqa: E402


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
