"""Fixtures: a real management server on 127.0.0.1:0 with certificates made for this test run."""

from __future__ import annotations

import os

os.environ.setdefault("GRPC_VERBOSITY", "ERROR")

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest

from ion.core.config import IonSettings
from ion.management.certs import TlsFiles
from ion.management.testing import CertificateSet, StubServer, make_test_certificates, serve_stub


@pytest.fixture(scope="session")
def certs(tmp_path_factory: pytest.TempPathFactory) -> CertificateSet:
    return make_test_certificates(tmp_path_factory.mktemp("pki"))


@dataclass
class Running:
    """A running server, its stub platform and the run's certificates."""

    stub: StubServer
    certs: CertificateSet

    @property
    def port(self) -> int:
        return self.stub.port

    @property
    def target(self) -> str:
        return f"localhost:{self.stub.port}"

    def channel(self, client: TlsFiles | None = None) -> Any:
        return grpc.aio.secure_channel(self.target, self.certs.channel_credentials(client))


@pytest.fixture
def settings(tmp_path: Path) -> IonSettings:
    return IonSettings(home=tmp_path / "home")


@pytest.fixture
async def running(settings: IonSettings, certs: CertificateSet) -> AsyncIterator[Running]:
    async with serve_stub(settings, tls=certs.pki.server) as stub:
        yield Running(stub=stub, certs=certs)


@pytest.fixture
async def channel(running: Running) -> AsyncIterator[Any]:
    async with running.channel() as ch:
        yield ch
