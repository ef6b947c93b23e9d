"""The example pipeline end to end: a real multi-module flow on real processes and backends.

The same test body runs once per backend set; only the settings (URLs and the credential
variables the Azure backends read from the environment) differ. The embedded set needs nothing;
the Azure set runs Blob on Azurite, metadata on the Cosmos SQL-API server and the bus on the
wire-level Service Bus fake.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from ion.core import EventMeta, RunStatus
from ion.core.config import IonSettings, load_settings
from ion.core.flow import Flow, FlowEvent
from ion.core.modules import PipelineSpec
from ion.management.control import ControlPlane
from ion.management.pipeline import run_pipeline

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "media-classifiers" / "pipeline.yaml"

pytestmark = pytest.mark.slow


@pytest.fixture(params=["embedded", "azure"])
def settings(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> IonSettings:
    env = {"ION_HOME": str(tmp_path / "home"), "ION_BUS__RECEIVE_WAIT_SECONDS": "0.2"}
    if request.param == "azure":
        azurite = request.getfixturevalue("azurite")
        cosmos = request.getfixturevalue("cosmos_server")
        servicebus = request.getfixturevalue("servicebus_fake")
        credentials = {
            "ION_AZURE_STORAGE_CONNECTION_STRING": azurite.connection_string,
            "ION_AZURE_COSMOS_ENDPOINT": cosmos.endpoint,
            "ION_AZURE_COSMOS_KEY": cosmos.key,
            "ION_AZURE_COSMOS_VERIFY_TLS": "0",
            "ION_AZURE_SERVICEBUS_CONNECTION_STRING": servicebus.connection_string,
            "ION_AZURE_SERVICEBUS_ADMIN_CONNECTION_STRING": servicebus.admin_connection_string,
            "ION_AZURE_SERVICEBUS_ADMIN_VERIFY_TLS": "0",
        }
        for key, value in credentials.items():
            monkeypatch.setenv(key, value)
        tag = uuid.uuid4().hex[:8]
        env |= {
            "ION_BLOBS__URL": f"azblob://devstoreaccount1/ion-{tag}",
            "ION_META__URL": f"cosmos://localhost/ion-{tag}",
            "ION_BUS__URL": f"servicebus://{_endpoint(servicebus.connection_string)}",
            "ION_BUS__LOCK_DURATION_SECONDS": "10",
        }
    return load_settings(environ=env)


def _endpoint(connection_string: str) -> str:
    """host:port of a connection string's `Endpoint=sb://host:port/`."""
    fields = dict(p.split("=", 1) for p in connection_string.split(";") if "=" in p)
    return fields["Endpoint"].removeprefix("sb://").rstrip("/")


def _shape(event: FlowEvent) -> dict[str, object]:
    return {
        event.event_type: {run.module: [_shape(c) for c in run.children] for run in event.triggered}
    }


async def test_example_pipeline_runs_end_to_end(settings: IonSettings) -> None:
    pipeline = PipelineSpec.load(EXAMPLE)
    flow: Flow = await run_pipeline(pipeline, settings, timeout=120)
    assert flow.succeeded, flow.model_dump_json(indent=2)
    assert flow.root is not None
    assert _shape(flow.root) == {
        "media.submitted": {
            "ingest": [
                {
                    "media.ingested": {
                        "thumbnailer": [{"media.thumbnailed": {}}],
                        "digit-classifier": [
                            {
                                "digits.classified": {
                                    "stats-reporter": [
                                        {
                                            "report.ready": {
                                                "html-report": [{"report.published": {}}]
                                            }
                                        }
                                    ]
                                }
                            }
                        ],
                    }
                }
            ]
        }
    }
    runs = {r.module: r for r in flow.runs()}
    assert all(len(r.attempts) == 1 for r in runs.values())
    insights = {p.key: p.value for p in runs["digit-classifier"].insights}
    assert float(insights["heldout_accuracy"]) > 0.9
    # every output the tree lists is really in the blob store, and each event has one document
    async with ControlPlane(settings) as platform:
        for run in runs.values():
            assert run.outputs
            for key in run.outputs:
                assert (await platform.blobs.stat(key)).size > 0
        docs = await platform.meta.list_documents(flow.correlation_id)
    event_docs = [d for d in docs if isinstance(d, EventMeta)]
    assert len(event_docs) == len({d.id for d in event_docs}) == 1 + len(runs)
    # the fan-out: both level-2 modules received the same files from ingest
    ingested = flow.root.triggered[0].children[0]
    assert {r.module for r in ingested.triggered} == {"thumbnailer", "digit-classifier"}


def _run_cli(
    tmp_path: Path, *extra: str, pipeline: Path = EXAMPLE
) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "ION_HOME": str(tmp_path / "home"), "ION_BUS__RECEIVE_WAIT_SECONDS": "0.2"}
    return subprocess.run(
        [
            str(Path(sys.executable).parent / "ion-management"),
            "pipeline",
            "run",
            str(pipeline),
            *extra,
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )


def test_pipeline_command_prints_the_tree_and_exits_zero(tmp_path: Path) -> None:
    result = _run_cli(tmp_path, "--data", "count=4")
    assert result.returncode == 0, result.stderr
    for module in ("ingest", "thumbnailer", "digit-classifier", "stats-reporter", "html-report"):
        assert module in result.stdout
    assert "SUCCEEDED" in result.stdout and "outputs:" in result.stderr


def test_pipeline_command_exits_non_zero_when_a_module_fails(tmp_path: Path) -> None:
    result = _run_cli(tmp_path, "--data", "count=-3", "-o", "json")
    assert result.returncode == 1
    assert "did not succeed" in result.stderr
    assert "Traceback" not in result.stderr
    # -o json is the flow model's JSON: the shape `ion trace flow -o json` prints too
    flow = Flow.model_validate_json(result.stdout)
    assert flow.settled and not flow.succeeded
    assert [r.status for r in flow.runs()] == [RunStatus.DEAD_LETTERED]


def test_pipeline_command_fails_when_no_module_handles_the_root_event(tmp_path: Path) -> None:
    pipeline = tmp_path / "pipeline.yaml"
    pipeline.write_text(
        "name: nobody-listens\n"
        "root_event: thing.new\n"
        "modules:\n"
        "  - {name: other, subscribes_to: other.thing, command: [python, -c, pass]}\n"
    )
    result = _run_cli(tmp_path, pipeline=pipeline)
    assert result.returncode == 1, result.stderr
    assert "no subscribers" in result.stdout
    assert "no module subscribes to thing.new" in result.stderr


def test_one_trace_spans_the_whole_flow_across_the_bus(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "ION_HOME": str(tmp_path / "home"),
        "ION_BUS__RECEIVE_WAIT_SECONDS": "0.2",
        "ION_TELEMETRY__TRACES": "console",
    }
    result = subprocess.run(
        [
            str(Path(sys.executable).parent / "ion-management"),
            "pipeline",
            "run",
            str(EXAMPLE),
            "-d",
            "count=3",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    names = re.findall(r'^    "name": "(\w+)"', result.stderr, flags=re.MULTILINE)
    assert sorted(set(names)) == [
        "attempt",
        "commit",
        "prepare",
        "publish",
        "raise",
        "receive",
        "run",
    ]
    assert names.count("attempt") == names.count("receive") == 5
    assert names.count("raise") == 1
    trace_ids = set(re.findall(r'"trace_id": "(0x[0-9a-f]+)"', result.stderr))
    assert len(trace_ids) == 1, "the trace context did not travel with the events"
