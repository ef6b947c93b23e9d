"""The failure paths' metrics, read from the process's Prometheus registry around real runs:
a failing module's attempts, retry and dead letter; poison messages by reason; a receive that
fails; the in-flight gauge back at zero."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from prometheus_client import REGISTRY

from dispatcher.tests.harness import Harness
from ion.core import errors, naming
from ion.core.modules import ModuleSpec
from ion.core.ports.bus import OutgoingMessage
from ion.core.records import ModuleRecord
from ion.core.testing import eventually

ScriptMaker = Callable[[str, str], list[str]]


def _value(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


class _Delta:
    """Sample values now, to compare with later ones."""

    def __init__(self, *samples: tuple[str, dict[str, str]]) -> None:
        self._before = {(n, tuple(sorted(ls.items()))): _value(n, **ls) for n, ls in samples}

    def __call__(self, name: str, **labels: str) -> float:
        return _value(name, **labels) - self._before[(name, tuple(sorted(labels.items())))]


def _record(spec: ModuleSpec) -> ModuleRecord:
    return ModuleRecord(id=spec.name, spec=spec, created_at=datetime.now(UTC))


async def test_a_failing_module_counts_two_failed_attempts_one_retry_and_one_dead_letter(
    platform: Harness, script: ScriptMaker
) -> None:
    m = {"module": "metrics-flaky"}
    delta = _Delta(
        ("ion_jobs_finished_total", {**m, "executor": "local", "outcome": "failed"}),
        ("ion_jobs_finished_total", {**m, "executor": "local", "outcome": "succeeded"}),
        ("ion_jobs_started_total", {**m, "executor": "local"}),
        ("ion_jobs_retried_total", m),
        ("ion_jobs_dead_lettered_total", {**m, "reason": "ModuleFailed"}),
        ("ion_events_received_total", m),
        ("ion_job_duration_seconds_count", {**m, "executor": "local", "outcome": "failed"}),
    )
    spec = ModuleSpec(
        name="metrics-flaky",
        subscribes_to="metrics.new",
        command=script("fails", "sys.exit(3)\n"),
        retry_count=1,
        retry_backoff_seconds=0.1,
    )
    await platform.start_module(_record(spec))
    root = await platform.raise_event("metrics.new", data={"k": "v"})
    flow = await platform.wait_settled(root.correlation_id, timeout=30)
    assert flow.settled and not flow.succeeded
    labels = {**m, "executor": "local"}
    assert delta("ion_jobs_started_total", **labels) == 2
    assert delta("ion_jobs_finished_total", **labels, outcome="failed") == 2
    assert delta("ion_jobs_finished_total", **labels, outcome="succeeded") == 0
    assert delta("ion_job_duration_seconds_count", **labels, outcome="failed") == 2
    assert delta("ion_jobs_retried_total", **m) == 1
    assert delta("ion_events_received_total", **m) == 2  # the first delivery and the retry

    async def dead_lettered() -> bool:
        return delta("ion_jobs_dead_lettered_total", **m, reason="ModuleFailed") == 1

    await eventually(dead_lettered, timeout=10)
    assert _value("ion_jobs_in_flight", **m) == 0


async def test_poison_messages_and_a_failed_receive_are_counted(
    platform: Harness, script: ScriptMaker, monkeypatch: Any
) -> None:
    m = {"module": "metrics-poison"}
    delta = _Delta(
        ("ion_poison_messages_total", {**m, "reason": "NotJson"}),
        ("ion_poison_messages_total", {**m, "reason": "MissingContext"}),
        ("ion_bus_receive_errors_total", m),
    )
    receive = platform.bus.receive
    failures = {"left": 1}

    async def flaky_receive(*args: Any, **kwargs: Any) -> Any:
        mine = args[1:2] == (naming.subscription_name("metrics.poison", "metrics-poison"),)
        if mine and failures["left"]:
            failures["left"] -= 1
            raise errors.TransientError("the bus is away for a moment")
        return await receive(*args, **kwargs)

    monkeypatch.setattr(platform.bus, "receive", flaky_receive)
    spec = ModuleSpec(
        name="metrics-poison", subscribes_to="metrics.poison", command=script("ok", "pass\n")
    )
    await platform.start_module(_record(spec))
    await platform.bus.publish(
        "metrics.poison",
        [
            OutgoingMessage(body=b"not json", message_id="mp1"),
            OutgoingMessage(body=b'{"type": "metrics.poison"}', message_id="mp2"),
        ],
    )

    async def counted() -> bool:
        return (
            delta("ion_poison_messages_total", **m, reason="NotJson") == 1
            and delta("ion_poison_messages_total", **m, reason="MissingContext") == 1
        )

    await eventually(counted, timeout=15)
    assert delta("ion_bus_receive_errors_total", **m) == 1
