"""The example pipeline's spans, exported over OTLP to a real Jaeger and read back from its API.

Two flows (two `ion-management pipeline run` processes, as `make demo` runs it) send their
spans to Jaeger v1.76.0 on loopback. For each flow the test checks, against the flow's own tree
(`-o json`): one trace holds every span of the flow and no other flow's; the root event's
`raise` span is the root; every module run on every event has a `receive` span whose parent is
the `publish` span that published the event (or `raise`), an `attempt` under it, and `prepare`,
`run` and `commit` under the attempt (`publish` under commit); each carries the module, event
type, event id, correlation id and attempt. The flow's JSON log lines carry its trace id, and
a line logged in an attempt carries that attempt's span id.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from tests.e2e_support import correlation_id, management_server
from tests.observability.jaeger import Jaeger, jaeger_binary, running_jaeger

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "media-classifiers" / "pipeline.yaml"
SERVICE = "ion-management"


def _run_flow(jaeger: Jaeger, home: Path) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Run the example pipeline once; return its flow (`-o json`) and its JSON log lines."""
    env = {
        **os.environ,
        "ION_HOME": str(home),
        "ION_BUS__RECEIVE_WAIT_SECONDS": "0.2",
        "ION_TELEMETRY__LOG_FORMAT": "json",
        "OTEL_EXPORTER_OTLP_ENDPOINT": jaeger.otlp_endpoint,
        "OTEL_TRACES_SAMPLER": "parentbased_always_on",
    }
    env.pop("OTEL_SERVICE_NAME", None)
    env.pop("ION_TELEMETRY__TRACES", None)
    done = subprocess.run(
        [
            str(Path(sys.executable).parent / "ion-management"),
            "pipeline",
            "run",
            str(EXAMPLE),
            "-d",
            "count=3",
            "-o",
            "json",
            "--log-level",
            "INFO",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    lines = [json.loads(line) for line in done.stderr.splitlines() if line.startswith("{")]
    return json.loads(done.stdout), lines


def _runs(flow: dict[str, Any]) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """Every (event, module run on it) of the flow tree."""
    out: list[tuple[dict[str, Any], dict[str, Any]]] = []

    def walk(event: dict[str, Any]) -> None:
        for run in event["triggered"]:
            out.append((event, run))
            for child in run["children"]:
                walk(child)

    for root in flow["roots"]:
        walk(root)
    return out


def _tags(span: dict[str, Any]) -> dict[str, Any]:
    return {t["key"]: t["value"] for t in span["tags"]}


def _parent(span: dict[str, Any]) -> str | None:
    refs = [r for r in span.get("references") or [] if r["refType"] == "CHILD_OF"]
    return refs[0]["spanID"] if refs else None


def _flow_trace(jaeger: Jaeger, correlation_id: str, expected_spans: int) -> dict[str, Any]:
    """The one trace holding the flow's spans, once all of them have arrived."""
    deadline = time.monotonic() + 30
    while True:
        found = [
            t
            for t in jaeger.traces(SERVICE)
            if any(_tags(s).get("ion.correlation_id") == correlation_id for s in t["spans"])
        ]
        if len(found) == 1 and len(found[0]["spans"]) >= expected_spans:
            return found[0]
        if time.monotonic() > deadline:
            sizes = [len(t["spans"]) for t in found]
            raise AssertionError(
                f"flow {correlation_id}: {len(found)} trace(s) of {sizes} span(s), "
                f"expected one of {expected_spans}"
            )
        time.sleep(0.3)


def _check_flow(trace: dict[str, Any], flow: dict[str, Any]) -> None:
    spans = {s["spanID"]: s for s in trace["spans"]}
    tags = {sid: _tags(s) for sid, s in spans.items()}
    names = Counter(s["operationName"] for s in spans.values())
    runs = _runs(flow)
    attempts = sum(len(run["attempts"]) for _, run in runs)
    assert names == {
        "raise": 1,
        "receive": attempts,
        "attempt": attempts,
        "prepare": attempts,
        "run": attempts,
        "commit": attempts,
        "publish": attempts,
    }, names
    assert {trace["processes"][s["processID"]]["serviceName"] for s in spans.values()} == {SERVICE}
    cid = flow["correlation_id"]
    assert all(t["ion.correlation_id"] == cid for t in tags.values())

    def one(name: str, **want: Any) -> str:
        found = [
            sid
            for sid, s in spans.items()
            if s["operationName"] == name and all(tags[sid].get(k) == v for k, v in want.items())
        ]
        assert len(found) == 1, f"{len(found)} {name} span(s) with {want}"
        return found[0]

    def children(sid: str) -> dict[str, str]:
        kids = {s["operationName"]: k for k, s in spans.items() if _parent(s) == sid}
        return kids

    (root,) = flow["roots"]
    raise_id = one("raise", **{"ion.event.id": root["event_id"]})
    assert _parent(spans[raise_id]) is None, "the root event's raise span is the trace's root"
    assert tags[raise_id]["ion.event.type"] == root["event_type"]
    for event, run in runs:
        for attempt in run["attempts"]:
            ids = {
                "ion.module": run["module"],
                "ion.event.id": event["event_id"],
                "ion.attempt": attempt["attempt"],
            }
            receive = one("receive", **ids)
            if event is root:
                assert _parent(spans[receive]) == raise_id
            else:  # under the publish span of the run that raised the event
                publisher = one(
                    "publish",
                    **{
                        "ion.module": event["published_by"],
                        "ion.event.id": event["parent_event_id"],
                    },
                )
                assert _parent(spans[receive]) == publisher
            assert tags[receive]["ion.event.type"] == event["event_type"]
            assert set(children(receive)) == {"attempt"}
            attempt_span = children(receive)["attempt"]
            assert tags[attempt_span]["ion.job.id"] == attempt["id"]
            assert tags[attempt_span]["ion.outcome"] == "succeeded"
            steps = children(attempt_span)
            assert set(steps) == {"prepare", "run", "commit"}
            for step in ("prepare", "run", "commit"):
                got = tags[steps[step]]
                assert got["ion.module"] == run["module"]
                assert got["ion.event.id"] == event["event_id"]
                assert got["ion.event.type"] == event["event_type"]
            assert tags[steps["run"]]["ion.attempt"] == attempt["attempt"]
            assert set(children(steps["commit"])) == {"publish"}
            publish = children(steps["commit"])["publish"]
            assert tags[publish]["ion.events"] == len(run["children"])


def test_each_flow_is_one_trace_in_jaeger_with_the_expected_span_tree(tmp_path: Path) -> None:
    binary = jaeger_binary()
    with running_jaeger(binary, tmp_path) as jaeger:
        flows = [_run_flow(jaeger, tmp_path / f"home-{i}") for i in (1, 2)]
        traces = []
        for flow, lines in flows:
            assert flow["succeeded"], flow
            expected = 1 + 6 * sum(len(run["attempts"]) for _, run in _runs(flow))
            trace = _flow_trace(jaeger, flow["correlation_id"], expected)
            _check_flow(trace, flow)
            traces.append(trace)

            # JSON logs: every line logged inside the flow carries its trace id; a line logged
            # in an attempt carries that attempt's span.
            mine = [line for line in lines if line.get("correlation_id") == flow["correlation_id"]]
            assert mine, "no JSON log line names the flow"
            assert {line.get("trace_id") for line in mine} == {trace["traceID"]}
            attempt_spans = {s["spanID"] for s in trace["spans"] if s["operationName"] == "attempt"}
            succeeded = [line for line in mine if line["message"].startswith("job succeeded")]
            assert len(succeeded) == len(attempt_spans)
            assert {line["span_id"] for line in succeeded} == attempt_spans
            assert all(line["service"] == SERVICE for line in mine)
        assert traces[0]["traceID"] != traces[1]["traceID"]


def test_a_management_call_is_a_server_span_and_the_root_event_it_raises_starts_under_it(
    tmp_path: Path,
) -> None:
    binary = jaeger_binary()
    with running_jaeger(binary, tmp_path) as jaeger:
        env = {
            "OTEL_EXPORTER_OTLP_ENDPOINT": jaeger.otlp_endpoint,
            "OTEL_SERVICE_NAME": "ion-mgmt-test",
        }
        with management_server(tmp_path, env) as management:
            raised = management.ion("event", "create", "--type", "nobody.listens", "--data", "k=v")
            cid = correlation_id(raised)
        # The server flushed its spans when it stopped (SIGTERM).
        deadline = time.monotonic() + 30
        while True:
            found = [
                t
                for t in jaeger.traces("ion-mgmt-test")
                if any(_tags(s).get("ion.correlation_id") == cid for s in t["spans"])
            ]
            if found or time.monotonic() > deadline:
                break
            time.sleep(0.3)
        assert len(found) == 1, f"{len(found)} traces hold the raised event"
        spans = {s["spanID"]: s for s in found[0]["spans"]}
        (raise_span,) = [s for s in spans.values() if s["operationName"] == "raise"]
        rpc = spans[_parent(raise_span) or ""]
        assert rpc["operationName"] == "ion.v1.EventService/Publish"
        assert _parent(rpc) is None
        tags = _tags(rpc)
        assert tags["rpc.system"] == "grpc" and tags["rpc.grpc.status_code"] == "OK"
        assert tags["span.kind"] == "server"
        assert _tags(raise_span)["ion.event.type"] == "nobody.listens"
        # Calls that raise nothing are spans of their own too; health checks are not.
        names = {s["operationName"] for t in jaeger.traces("ion-mgmt-test") for s in t["spans"]}
        assert any(n.startswith("ModuleService/") or ".ModuleService/" in n for n in names), names
        assert not any("grpc.health" in n for n in names), names
