"""Apply and delete on the real embedded platform: updates keep queued events, deletes drain,
a forced delete cancels and keeps every event as a dead letter, secret env is never shown."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest

from ion.core.config import IonSettings
from ion.core.testing import eventually
from ion.management import app
from ion.management.testing import CertificateSet
from ion.proto import module_pb2, module_pb2_grpc, trace_pb2, trace_pb2_grpc
from ion.proto.v1 import events_pb2, events_pb2_grpc

# Sleeps SLEEP seconds, then appends its MARK (an env value) to the file `runs`.
SLEEPER = """
import os, pathlib, time
time.sleep(float(os.environ.get("SLEEP", "0")))
with open(os.environ["RUNS"], "a") as f:
    f.write(os.environ.get("MARK", "-") + "\\n")
"""


@dataclass
class Server:
    modules: Any
    events: Any
    dead: Any
    trace: Any
    home: Path
    work: Path

    def request(self, name: str = "slow", **overrides: Any) -> module_pb2.ModuleCreateRequest:
        fields: dict[str, Any] = {
            "modulename": name,
            "eventsubscriptions": "job.start",
            "command": [sys.executable, str(self.work / "sleeper.py")],
            "working_dir": str(self.work),
            "env": {"SLEEP": "0", "RUNS": str(self.work / "runs"), "MARK": "v1"},
            "max_in_flight": 1,
            "retrycount": 0,
        }
        fields.update(overrides)
        return module_pb2.ModuleCreateRequest(**fields)

    async def raise_events(self, count: int) -> list[str]:
        ids = []
        for _ in range(count):
            reply = await self.events.Publish(
                events_pb2.PublishEventRequest(event_type="job.start"), timeout=10
            )
            ids.append(reply.event.correlation_id)
        return ids

    async def statuses(self, correlation_id: str, module: str = "slow") -> list[str]:
        reply = await self.trace.GetFlow(
            trace_pb2.GetFlowRequest(correlationID=correlation_id), timeout=10
        )
        return [
            run.status
            for root in reply.flow.roots
            for run in root.triggered
            if run.module == module
        ]

    def runs(self) -> list[str]:
        path = self.work / "runs"
        return path.read_text().split() if path.exists() else []


@pytest.fixture
async def server(tmp_path: Path, certs: CertificateSet) -> AsyncIterator[Server]:
    home = tmp_path / "home"
    settings = IonSettings(home=home).with_overrides(
        management={"port": 0, "front_api_port": 0},
        bus={"receive_wait_seconds": 0.2, "lock_duration_seconds": 3},
    )
    work = tmp_path / "work"
    work.mkdir()
    (work / "sleeper.py").write_text(SLEEPER)
    ready: asyncio.Future[app.Endpoints] = asyncio.get_running_loop().create_future()
    stop = asyncio.Event()
    task = asyncio.create_task(
        app.run(settings, stop=stop, tls=certs.pki.server, on_ready=ready.set_result)
    )
    try:
        endpoints = await asyncio.wait_for(asyncio.shield(ready), 20)
        target = f"localhost:{endpoints.grpc_port}"
        async with grpc.aio.secure_channel(target, certs.channel_credentials()) as channel:
            yield Server(
                modules=module_pb2_grpc.ModuleServiceStub(channel),
                events=events_pb2_grpc.EventServiceStub(channel),
                dead=events_pb2_grpc.DeadLetterServiceStub(channel),
                trace=trace_pb2_grpc.TraceServiceStub(channel),
                home=home,
                work=work,
            )
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)


async def _error(call: Any) -> Any:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call
    return caught.value


async def test_apply_creates_then_is_unchanged_then_updates_in_place_keeping_queued_events(
    server: Server,
) -> None:
    first = await server.modules.Apply(
        module_pb2.ModuleApplyRequest(module=server.request()), timeout=10
    )
    assert first.action == "created" and first.name.startswith("slow-")
    again = await server.modules.Apply(
        module_pb2.ModuleApplyRequest(module=server.request()), timeout=10
    )
    assert (again.action, again.name, list(again.changed)) == ("unchanged", first.name, [])

    # Slow jobs one at a time, so events queue; the update must keep them all.
    slow = server.request(env={"SLEEP": "0.6", "RUNS": str(server.work / "runs"), "MARK": "v1"})
    assert (
        await server.modules.Apply(module_pb2.ModuleApplyRequest(module=slow), timeout=10)
    ).action == "configured"
    flows = await server.raise_events(3)
    await eventually(lambda: len(server.runs()) >= 1 or None, timeout=10)
    newer = server.request(env={"SLEEP": "0", "RUNS": str(server.work / "runs"), "MARK": "v2"})
    dry = await server.modules.Apply(
        module_pb2.ModuleApplyRequest(module=newer, dry_run=True), timeout=10
    )
    assert (dry.action, list(dry.changed)) == ("configured", ["env"])
    updated = await server.modules.Apply(module_pb2.ModuleApplyRequest(module=newer), timeout=10)
    assert (updated.action, updated.name, list(updated.changed)) == (
        "configured",
        first.name,
        ["env"],
    )

    async def all_succeeded() -> bool | None:
        statuses = [await server.statuses(c) for c in flows]
        return all(s == ["SUCCEEDED"] for s in statuses) or None

    await eventually(all_succeeded, timeout=20)
    runs = server.runs()
    # A v1 job running at the update finishes on the old spec, possibly after a v2 job: runs
    # are written as jobs end, so only the first and the presence of v2 are certain.
    assert len(runs) == 3 and runs[0] == "v1" and "v2" in runs, runs
    got = await server.modules.Get(module_pb2.ModuleGetRequest(name=first.name), timeout=10)
    assert got.module.env["MARK"] == "v2" and got.status == "RUNNING"


async def test_apply_refuses_a_new_subscription_naming_the_field(server: Server) -> None:
    await server.modules.Apply(module_pb2.ModuleApplyRequest(module=server.request()), timeout=10)
    err = await _error(
        server.modules.Apply(
            module_pb2.ModuleApplyRequest(module=server.request(eventsubscriptions="job.other")),
            timeout=10,
        )
    )
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "eventsubscriptions" in err.details() and "delete it first" in err.details()


async def test_delete_refuses_while_events_are_queued_and_force_keeps_them_as_dead_letters(
    server: Server,
) -> None:
    env = {"SLEEP": "30", "RUNS": str(server.work / "runs")}
    created = await server.modules.Create(server.request(env=env), timeout=10)
    flows = await server.raise_events(3)
    await eventually(
        lambda: any((server.home / "jobs").glob("slow-*")) or None, timeout=10
    )  # the first job runs; two wait

    refused = await _error(
        server.modules.Delete(module_pb2.ModuleDeleteRequest(name=created.name), timeout=10)
    )
    assert refused.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "2 queued event(s)" in refused.details() and "--force" in refused.details()
    with pytest.raises(grpc.aio.AioRpcError) as streamed:
        async for _ in server.modules.DeleteStream(
            module_pb2.ModuleDeleteRequest(name=created.name), timeout=10
        ):
            pass
    assert streamed.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "2 queued event(s)" in (streamed.value.details() or "")
    still = await server.modules.Get(module_pb2.ModuleGetRequest(name=created.name), timeout=10)
    assert still.status == "RUNNING"

    started = asyncio.get_running_loop().time()
    done = await server.modules.Delete(
        module_pb2.ModuleDeleteRequest(name=created.name, force=True), timeout=20
    )
    assert asyncio.get_running_loop().time() - started < 8  # the 30 s job is cancelled
    assert (done.queued, done.running, done.cancelled, done.dead_lettered) == (2, 1, 3, 3)
    assert "kept as dead letters" in done.message
    # No flow shows RUNNING or PENDING: every run of the module is CANCELLED.
    for correlation_id in flows:
        assert await server.statuses(correlation_id) == ["CANCELLED"]
    assert server.runs() == []  # nothing ran to the end
    history = await server.modules.Get(module_pb2.ModuleGetRequest(name=created.name), timeout=10)
    assert (history.status, history.cancelled) == ("DELETED", 3)
    assert "3 cancelled" in history.statusMessage
    await eventually(lambda: not any((server.home / "jobs").glob("slow-*")) or None, timeout=10)

    letters = await server.dead.List(
        events_pb2.ListDeadLettersRequest(module=created.name), timeout=10
    )
    assert len(letters.dead_letters) == 3
    assert {d.message.dead_letter_reason for d in letters.dead_letters} == {"ModuleDeleted"}
    assert {d.event.correlation_id for d in letters.dead_letters} == set(flows)
    everything = await server.dead.List(events_pb2.ListDeadLettersRequest(), timeout=10)
    assert len(everything.dead_letters) == 3  # a deleted module's letters are listed too

    # Replayed to a module of the same name once one exists again: it runs there.
    refused = await _error(
        server.dead.Replay(
            events_pb2.ReplayDeadLetterRequest(
                module=created.name, message_id=letters.dead_letters[0].message.message_id
            ),
            timeout=10,
        )
    )
    assert refused.code() == grpc.StatusCode.INVALID_ARGUMENT and "no live module" in (
        refused.details()
    )
    again = await server.modules.Create(server.request(), timeout=10)
    replayed = await server.dead.Replay(
        events_pb2.ReplayDeadLetterRequest(
            module=created.name, message_id=letters.dead_letters[0].message.message_id
        ),
        timeout=10,
    )
    assert replayed.module == again.name
    replayed_flow = letters.dead_letters[0].event.correlation_id

    async def replayed_ran() -> bool | None:
        return (await server.statuses(replayed_flow)) == ["SUCCEEDED"] or None

    await eventually(replayed_ran, timeout=15)
    left = await server.dead.List(
        events_pb2.ListDeadLettersRequest(module=created.name), timeout=10
    )
    assert len(left.dead_letters) == 2


async def test_delete_drains_a_running_job_with_progress_then_deletes(server: Server) -> None:
    env = {"SLEEP": "2.5", "RUNS": str(server.work / "runs")}
    created = await server.modules.Create(server.request(env=env), timeout=10)
    (flow,) = await server.raise_events(1)
    await eventually(lambda: any((server.home / "jobs").glob("slow-*")) or None, timeout=10)
    dry = await server.modules.Delete(
        module_pb2.ModuleDeleteRequest(name=created.name, dry_run=True), timeout=10
    )
    assert (dry.queued, dry.running, dry.done) == (0, 1, True)
    replies = [
        r
        async for r in server.modules.DeleteStream(
            module_pb2.ModuleDeleteRequest(name=created.name, timeout_seconds=20), timeout=30
        )
    ]
    progress = [r.message for r in replies if not r.done]
    assert any("waiting for 1 running job(s)" in line for line in progress), progress
    last = replies[-1]
    assert last.done and (last.drained, last.cancelled, last.dead_lettered) == (1, 0, 0)
    assert server.runs() == ["-"]  # the job ran to its end
    assert await server.statuses(flow) == ["SUCCEEDED"]
    got = await server.modules.Get(module_pb2.ModuleGetRequest(name=created.name), timeout=10)
    assert got.status == "DELETED"
    again = await server.modules.Delete(
        module_pb2.ModuleDeleteRequest(name=created.name), timeout=10
    )
    assert again.already_deleted


async def test_delete_that_times_out_keeps_the_module_running(server: Server) -> None:
    env = {"SLEEP": "30", "RUNS": str(server.work / "runs")}
    created = await server.modules.Create(server.request(env=env), timeout=10)
    await server.raise_events(1)
    await eventually(lambda: any((server.home / "jobs").glob("slow-*")) or None, timeout=10)
    refused = await _error(
        server.modules.Delete(
            module_pb2.ModuleDeleteRequest(name=created.name, timeout_seconds=0.5), timeout=10
        )
    )
    assert refused.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "still running after 0.5s" in refused.details() and "--force" in refused.details()
    got = await server.modules.Get(module_pb2.ModuleGetRequest(name=created.name), timeout=10)
    assert got.status == "RUNNING"
    await server.modules.Delete(
        module_pb2.ModuleDeleteRequest(name=created.name, force=True), timeout=20
    )


async def test_secret_env_is_stored_but_never_shown(server: Server) -> None:
    created = await server.modules.Create(
        server.request(secret_env={"TOKEN": "s3cret"}), timeout=10
    )
    got = await server.modules.Get(module_pb2.ModuleGetRequest(name=created.name), timeout=10)
    assert got.module.env["TOKEN"] == "***" and got.module.env["MARK"] == "v1"
    listed = await server.modules.List(module_pb2.ModuleListRequest(), timeout=10)
    assert "s3cret" not in str(listed) and "s3cret" not in str(got)
    err = await _error(
        server.modules.Create(server.request(name="both", secret_env={"MARK": "x"}), timeout=10)
    )
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT and "secret" in err.details()
