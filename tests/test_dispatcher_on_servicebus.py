"""The dispatcher's success, retry, dead-letter, renewal and adoption paths over Service Bus.

The bus is Ion's Service Bus backend talking AMQP 1.0 and the management REST API to the
wire-level fake in tests/fakes/servicebus (the unmodified Azure SDK on the client side); blobs
and metadata are embedded. The same sentences the SQLite bus is tested for must hold here.
"""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from ion.core.backends import open_blobs, open_meta
from ion.core.backends.azure.servicebus import (
    ENV_ADMIN_CONNECTION_STRING,
    ENV_ADMIN_VERIFY_TLS,
    ENV_CONNECTION_STRING,
    ServiceBusEventBus,
    ServiceBusOptions,
)
from ion.core.config import IonSettings, load_settings
from ion.core.modules import ModuleSpec
from ion.core.ports.bus import SubscriptionOptions
from ion.core.records import AttemptState, ModuleRecord
from ion.core.testing import eventually
from ion.management.control import ControlPlane
from tests.fakes.servicebus import FakeServiceBus

pytestmark = pytest.mark.slow

WRITE_EVENT = """
(BASE / "out/data/result.txt").write_text("done")
(BASE / "out/events/done.json").write_text(json.dumps([
    {"key": "eventType", "value": "thing.done"}, {"key": "files", "value": "result.txt"}]))
"""
HEADER = (
    "import json, os, sys, time, pathlib\nBASE = pathlib.Path(os.environ['HANDLER_BASE_DIR'])\n"
)


@pytest.fixture
def fake() -> Iterator[FakeServiceBus]:
    with FakeServiceBus() as bus:
        yield bus
        assert not bus.errors, f"the fake Service Bus raised: {bus.errors!r}"


@pytest.fixture
def settings(tmp_path: Path) -> IonSettings:
    return load_settings(
        environ={
            "ION_HOME": str(tmp_path / "home"),
            "ION_BUS__LOCK_DURATION_SECONDS": "1.5",
            "ION_BUS__RECEIVE_WAIT_SECONDS": "0.3",
            "ION_DISPATCHER__SHUTDOWN_GRACE_SECONDS": "5",
        }
    )


@pytest.fixture
async def platform(
    fake: FakeServiceBus, settings: IonSettings, tmp_path: Path
) -> AsyncIterator[ControlPlane]:
    bus = ServiceBusEventBus.from_url(
        f"servicebus://{fake.host}:{fake.port}",
        environ={
            ENV_CONNECTION_STRING: fake.connection_string,
            ENV_ADMIN_CONNECTION_STRING: fake.admin_connection_string,
            ENV_ADMIN_VERIFY_TLS: "0",
        },
        options=ServiceBusOptions(operation_timeout=timedelta(seconds=20)),
    )
    async with ControlPlane(
        settings,
        working_dir=tmp_path,
        bus=bus,
        blobs=open_blobs(settings.blobs_url),
        meta=open_meta(settings.meta_url),
    ) as p:
        await p.bus.ensure_subscription("thing.done", "watcher", SubscriptionOptions())
        yield p


def module(tmp_path: Path, name: str, body: str, **spec: object) -> ModuleRecord:
    path = tmp_path / f"{name}.py"
    path.write_text(HEADER + body)
    return ModuleRecord(
        id=name,
        spec=ModuleSpec(
            name=name,
            subscribes_to="thing.new",
            publishes=["thing.done"],
            command=[sys.executable, str(path)],
            **spec,  # type: ignore[arg-type]  # test passes spec fields through
        ),
        created_at=datetime.now(UTC),
    )


async def test_a_job_succeeds_and_publishes_its_child_once(
    platform: ControlPlane, tmp_path: Path
) -> None:
    await platform.start_module(module(tmp_path, "maker", WRITE_EVENT))
    root = await platform.raise_event("thing.new")
    flow = await platform.wait_settled(root.correlation_id, timeout=60)
    assert flow.succeeded
    children = await platform.bus.peek("thing.done", "watcher", max_messages=10)
    assert len(children) == 1


async def test_a_failing_module_is_retried_then_dead_lettered_with_its_output(
    platform: ControlPlane, tmp_path: Path
) -> None:
    body = "print('no model file', file=sys.stderr)\nsys.exit(3)\n"
    await platform.start_module(
        module(tmp_path, "flaky", body, retry_count=1, retry_backoff_seconds=0.2)
    )
    root = await platform.raise_event("thing.new")
    flow = await platform.wait_settled(root.correlation_id, timeout=60)
    assert flow.settled and not flow.succeeded
    attempts = await platform.meta.list_attempts(correlation_id=root.correlation_id)
    assert [(a.attempt, a.state) for a in attempts] == [
        (1, AttemptState.FAILED),
        (2, AttemptState.DEAD_LETTERED),
    ]
    [dead] = await platform.dead_letters("flaky")
    assert dead.dead_letter_reason == "ModuleFailed"
    assert "exited with code 3" in dead.dead_letter_description
    assert "no model file" in dead.dead_letter_description


async def test_a_job_longer_than_the_lock_keeps_it_by_renewal_and_runs_once(
    platform: ControlPlane, tmp_path: Path
) -> None:
    runs = tmp_path / "runs"
    body = f"open({str(runs)!r}, 'a').write('x')\ntime.sleep(4)\n" + WRITE_EVENT
    await platform.start_module(module(tmp_path, "slow", body))
    root = await platform.raise_event("thing.new")
    flow = await platform.wait_settled(root.correlation_id, timeout=60)
    assert flow.succeeded
    assert runs.read_text() == "x"
    assert platform.dispatchers("slow")[0].stats.adopted == 0, "the lock lapsed"


async def test_a_redelivery_after_a_lost_lock_adopts_the_running_job(
    platform: ControlPlane, tmp_path: Path
) -> None:
    runs, release = tmp_path / "runs", tmp_path / "release"
    body = (
        f"open({str(runs)!r}, 'a').write('x')\n"
        f"while not os.path.exists({str(release)!r}): time.sleep(0.02)\n" + WRITE_EVENT
    )
    record = module(tmp_path, "held", body)
    dispatcher_renews = platform.bus.renew_lock

    async def lose(message: object) -> datetime:
        from ion.core import errors

        raise errors.LockLostError("lock lost (injected)")

    platform.bus.renew_lock = lose  # type: ignore[method-assign]  # inject a lost lock
    await platform.start_module(record)
    root = await platform.raise_event("thing.new")
    held = platform.dispatchers("held")[0]

    async def adopted() -> bool:
        return held.stats.adopted >= 1

    await eventually(adopted, timeout=30)
    platform.bus.renew_lock = dispatcher_renews  # type: ignore[method-assign]
    release.touch()
    flow = await platform.wait_settled(root.correlation_id, timeout=60)
    assert flow.succeeded
    assert runs.read_text() == "x"
    children = await platform.bus.peek("thing.done", "watcher", max_messages=10)
    assert len(children) == 1
