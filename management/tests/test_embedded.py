"""The management process on the real embedded platform: modules run, flows settle, counts add up."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from ion.core.config import IonSettings
from ion.core.testing import eventually
from ion.management import app
from ion.management.testing import CertificateSet
from ion.proto import module_pb2, module_pb2_grpc, trace_pb2, trace_pb2_grpc
from ion.proto.v1 import events_pb2, events_pb2_grpc, types_pb2

WRITER = """
import json, os, pathlib
base = pathlib.Path(os.environ["HANDLER_BASE_DIR"])
meta = base / "in" / "eventmeta.json"
pairs = json.loads(meta.read_text()) if meta.exists() else []
(base / "out" / "data" / "echo.txt").write_text(json.dumps(pairs))
(base / "out" / "insights.json").write_text(json.dumps([{"key": "pairs", "value": str(len(pairs))}]))
(base / "out" / "events" / "next.json").write_text(json.dumps(
    [{"key": "eventType", "value": "echo.done"}, {"key": "files", "value": "echo.txt"}]))
"""


@pytest.fixture
async def endpoint(tmp_path: Path, certs: CertificateSet) -> AsyncIterator[str]:
    settings = IonSettings(home=tmp_path / "home").with_overrides(
        management={"port": 0, "front_api_port": 0},
        bus={"receive_wait_seconds": 0.2},
    )
    ready: asyncio.Future[app.Endpoints] = asyncio.get_running_loop().create_future()
    stop = asyncio.Event()
    task = asyncio.create_task(
        app.run(settings, stop=stop, tls=certs.pki.server, on_ready=ready.set_result)
    )
    try:
        endpoints = await asyncio.wait_for(asyncio.shield(ready), 20)
        yield f"localhost:{endpoints.grpc_port}"
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)


async def test_modules_run_a_flow_that_settles_with_counts_and_dead_letters(
    endpoint: str, certs: CertificateSet, tmp_path: Path
) -> None:
    script = tmp_path / "echo.py"
    script.write_text(WRITER)
    async with grpc.aio.secure_channel(endpoint, certs.channel_credentials()) as channel:
        modules = module_pb2_grpc.ModuleServiceStub(channel)
        events = events_pb2_grpc.EventServiceStub(channel)
        dead = events_pb2_grpc.DeadLetterServiceStub(channel)
        trace = trace_pb2_grpc.TraceServiceStub(channel)

        echo = await modules.Create(
            module_pb2.ModuleCreateRequest(
                modulename="echo",
                eventsubscriptions="echo.start",
                eventpublications="echo.done",
                command=[sys.executable, str(script)],
                working_dir=str(tmp_path),
            ),
            timeout=10,
        )
        failer = module_pb2.ModuleCreateRequest(
            modulename="failer",
            eventsubscriptions="echo.done",
            command=[
                sys.executable,
                "-c",
                f"open({str(tmp_path / 'failer-runs')!r}, 'a').write('x'); raise SystemExit(3)",
            ],
            retrycount=1,
        )
        failer.retry_backoff_seconds = 0.05
        failing = await modules.Create(failer, timeout=10)

        raised = await events.Publish(
            events_pb2.PublishEventRequest(
                event_type="echo.start", data=[types_pb2.KeyValue(key="k", value="v")]
            ),
            timeout=10,
        )
        reply = await trace.GetFlow(
            trace_pb2.GetFlowRequest(correlationID=raised.event.correlation_id, wait_seconds=60),
            timeout=70,
        )
        flow = reply.flow
        assert flow.settled and not flow.succeeded
        [echo_run] = flow.root.triggered
        assert echo_run.module == "echo" and echo_run.status == "SUCCEEDED"
        assert [(kv.key, kv.value) for kv in echo_run.insights] == [("pairs", "1")]
        [child] = echo_run.children
        assert child.event_type == "echo.done" and child.files == ["echo.txt"]
        [fail_run] = child.triggered
        assert fail_run.status == "DEAD_LETTERED" and len(fail_run.attempts) == 2
        assert "3" in fail_run.reason

        got = await modules.Get(module_pb2.ModuleGetRequest(name=echo.name), timeout=10)
        assert (got.succeeded, got.failed, got.dead_lettered) == (1, 0, 0)
        got = await modules.Get(module_pb2.ModuleGetRequest(name=failing.name), timeout=10)
        assert got.failed >= 1 and got.dead_lettered == 1 and got.dead_letter_queue == 1

        [letter] = (
            await dead.List(events_pb2.ListDeadLettersRequest(module="failer"), timeout=10)
        ).dead_letters
        assert letter.message.dead_letter_reason
        assert letter.event.correlation_id == raised.event.correlation_id
        await dead.Replay(
            events_pb2.ReplayDeadLetterRequest(
                module=failing.name, message_id=letter.message.message_id
            ),
            timeout=10,
        )

        async def replayed_and_dead_again() -> bool:
            got = await modules.Get(module_pb2.ModuleGetRequest(name=failing.name), timeout=10)
            return got.dead_lettered == 2 and got.dead_letter_queue == 1

        await eventually(replayed_and_dead_again, timeout=30)
        # The replay is a fresh round of attempts that really ran the module again.
        assert (tmp_path / "failer-runs").read_text() == "xxxx"
        reply = await trace.GetFlow(
            trace_pb2.GetFlowRequest(correlationID=raised.event.correlation_id), timeout=10
        )
        [fail_run] = reply.flow.root.triggered[0].children[0].triggered
        assert [a.attempt for a in fail_run.attempts] == [1, 2, 3, 4]

        await modules.Delete(module_pb2.ModuleDeleteRequest(name=failing.name), timeout=10)
        got = await modules.Get(module_pb2.ModuleGetRequest(name=failing.name), timeout=10)
        assert got.status == "DELETED" and got.dead_lettered == 2
        listed: Any = await modules.List(module_pb2.ModuleListRequest(), timeout=10)
        assert listed.names == [echo.name]
