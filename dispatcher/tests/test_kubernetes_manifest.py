"""The Job manifest and the outcome read from a Job's status, without a cluster."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from ion.core.events import new_root_event
from ion.core.modules import ModuleSpec, Resources
from ion.core.ports.executor import BackendRefs, JobPhase, JobRequest, JobState
from ion.dispatcher.executors.kubernetes import (
    PodSettings,
    job_manifest,
    label_value,
    read_outcome,
)

_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


def _request(**spec: Any) -> JobRequest:
    event = new_root_event("video.uploaded", data={"k": "v"})
    fields: dict[str, Any] = {
        "name": "transcoder",
        "subscribes_to": "video.uploaded",
        "publishes": ["video.transcoded"],
        "image": "registry.example/transcoder:1.2",
        "env": {"QUALITY": "high"},
        "max_execution_seconds": 30,
    }
    fields.update(spec)
    return JobRequest(
        job_id="transcoder-abc-a1",
        attempt=1,
        event=event,
        spec=ModuleSpec(**fields),
        backends=BackendRefs(bus_url="servicebus://ns", blobs_url="azblob://acct/c"),
        labels={"ion/messageid": event.event_id, "ion/deliverycount": "2"},
    )


POD = PodSettings(handler_image="localhost/ion-handler:dev", backends_secret="ion-backends")


def test_the_pod_has_2018s_containers_sharing_ionvolume_at_slash_ion() -> None:
    manifest = job_manifest(_request(), POD)
    pod = manifest["spec"]["template"]["spec"]
    assert [c["name"] for c in pod["initContainers"]] == ["prepare", "worker"]
    assert [c["name"] for c in pod["containers"]] == ["commit"]
    assert pod["volumes"] == [
        {"name": "ionvolume", "emptyDir": {}},
        {"name": "backends", "secret": {"secretName": "ion-backends"}},
    ]
    assert pod["initContainers"][0]["volumeMounts"][-1] == {
        "name": "backends",
        "mountPath": "/etc/ion/backends",
        "readOnly": True,
    }
    assert all(m["name"] != "backends" for m in pod["initContainers"][1]["volumeMounts"])
    for container in pod["initContainers"] + pod["containers"]:
        assert {"name": "ionvolume", "mountPath": "/ion"} in container["volumeMounts"]
    assert pod["initContainers"][0]["args"] == ["job", "prepare"]
    assert pod["containers"][0]["args"] == ["job", "commit"]
    assert pod["initContainers"][1]["image"] == "registry.example/transcoder:1.2"
    assert pod["restartPolicy"] == "Never"
    assert manifest["spec"]["backoffLimit"] == 0
    assert manifest["spec"]["activeDeadlineSeconds"] == 30 + 120
    assert manifest["metadata"]["name"] == "transcoder-abc-a1"


def test_credentials_come_from_the_secret_and_never_from_args_or_plain_env() -> None:
    pod = job_manifest(_request(), POD)["spec"]["template"]["spec"]
    for container in (pod["initContainers"][0], pod["containers"][0]):
        assert container["envFrom"] == [{"secretRef": {"name": "ion-backends"}}]
        names = {e["name"] for e in container["env"]}
        assert names >= {"ION_JOB_REQUEST", "ION_BUS__URL", "ION_BLOBS__URL"}
        assert not any("KEY" in n or "SECRET" in n or "CONNECTION" in n for n in names)
        request = json.loads(
            next(e["value"] for e in container["env"] if e["name"] == "ION_JOB_REQUEST")
        )
        assert request["job_id"] == "transcoder-abc-a1"
    worker = pod["initContainers"][1]
    assert {"name": "QUALITY", "value": "high"} in worker["env"]
    assert {"name": "HANDLER_BASE_DIR", "value": "/ion"} in worker["env"]
    assert "ION_JOB_REQUEST" not in {e["name"] for e in worker["env"]}


def test_labels_are_valid_and_full_ids_are_annotated() -> None:
    request = _request()
    manifest = job_manifest(request, POD)
    labels = manifest["metadata"]["labels"]
    for key in ("ion/eventid", "ion/messageid", "ion/deliverycount", "ion/modulename"):
        assert key in labels
    for key in ("name", "component", "managed-by", "part-of"):
        assert f"app.kubernetes.io/{key}" in labels
    assert all(_LABEL_VALUE.match(v) and len(v) <= 63 for v in labels.values())
    assert manifest["spec"]["template"]["metadata"]["labels"] == labels
    assert manifest["metadata"]["annotations"]["ion/eventid"] == request.event.event_id


@pytest.mark.parametrize(
    "raw",
    ["plain", "a" * 80, "../../etc", "ünïcode id", "-lead-and-trail-", "x.y_z-1", "", "---"],
)
def test_label_values_are_always_valid_and_distinct_when_shortened(raw: str) -> None:
    value = label_value(raw)
    assert _LABEL_VALUE.match(value) and len(value) <= 63
    if raw and raw == value:
        assert _LABEL_VALUE.match(raw)
    assert label_value("a" * 80) != label_value("a" * 81)


def test_resources_gpu_and_deadline_reach_the_module_container() -> None:
    request = _request(
        resources=Resources(cpu="500m", memory="1Gi", gpu=1), max_execution_seconds=3600
    )
    manifest = job_manifest(request, POD)
    worker = manifest["spec"]["template"]["spec"]["initContainers"][1]
    assert worker["resources"] == {
        "requests": {"cpu": "500m", "memory": "1Gi"},
        "limits": {"memory": "1Gi", "nvidia.com/gpu": "1"},
    }
    assert manifest["spec"]["activeDeadlineSeconds"] == 3600 + 120
    tolerations = manifest["spec"]["template"]["spec"]["tolerations"]
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in tolerations


def test_a_module_without_an_image_is_refused_with_what_to_do() -> None:
    request = _request(image="", command=["python", "x.py"])
    with pytest.raises(ValueError, match="set `image`"):
        job_manifest(request, POD)
    with_default = PodSettings(handler_image="h:1", default_module_image="localhost/tools:1")
    worker = job_manifest(request, with_default)["spec"]["template"]["spec"]["initContainers"][1]
    assert worker["image"] == "localhost/tools:1"
    assert worker["command"] == ["python", "x.py"] and "args" not in worker


# -- outcomes ---------------------------------------------------------------------------------


def _pod(*statuses: tuple[str, dict[str, Any]], phase: str = "Pending") -> dict[str, Any]:
    init = [{"name": n, "state": s} for n, s in statuses if n in ("prepare", "worker")]
    main = [{"name": n, "state": s} for n, s in statuses if n == "commit"]
    return {
        "metadata": {"name": "p", "uid": "u"},
        "status": {"phase": phase, "initContainerStatuses": init, "containerStatuses": main},
    }


def _outcome(pod: dict[str, Any] | None, job: dict[str, Any] | None = None, **kw: Any) -> Any:
    return read_outcome(
        job or {"status": {}},
        pod,
        now=kw.pop("now", NOW),
        module_deadline=timedelta(seconds=30),
        pending_timeout=timedelta(seconds=60),
        **kw,
    )


def _done(code: int, message: str = "", reason: str = "") -> dict[str, Any]:
    return {"terminated": {"exitCode": code, "message": message, "reason": reason}}


def test_a_succeeded_commit_reports_its_outputs() -> None:
    report = {"state": "SUCCEEDED", "outputs": ["a/b.txt"], "child_event_ids": ["e1"]}
    outcome = _outcome(
        _pod(("prepare", _done(0)), ("worker", _done(0)), ("commit", _done(0, json.dumps(report))))
    )
    assert outcome.state == JobState.SUCCEEDED
    assert outcome.commit["outputs"] == ["a/b.txt"]


def test_a_refused_commit_is_a_commit_failure_with_the_handlers_reason() -> None:
    report = {"state": "FAILED", "commit_refused": True, "reason": "commit refused: symlink"}
    outcome = _outcome(
        _pod(("prepare", _done(0)), ("worker", _done(0)), ("commit", _done(1, json.dumps(report))))
    )
    assert (outcome.state, outcome.phase) == (JobState.FAILED, JobPhase.COMMIT)
    assert outcome.reason == "commit refused: symlink"
    assert outcome.commit["commit_refused"] is True


def test_failures_name_their_phase_and_cause() -> None:
    prepare = _outcome(_pod(("prepare", _done(1, json.dumps({"reason": "parent file missing"})))))
    assert (prepare.phase, prepare.reason) == (JobPhase.PREPARE, "parent file missing")
    module = _outcome(_pod(("prepare", _done(0)), ("worker", _done(3))))
    assert (module.phase, module.exit_code) == (JobPhase.MODULE, 3)
    oom = _outcome(_pod(("prepare", _done(0)), ("worker", _done(137, reason="OOMKilled"))))
    assert "out of memory" in oom.reason


def test_an_image_that_cannot_be_had_fails_at_once_or_after_the_pending_timeout() -> None:
    never = {"waiting": {"reason": "ErrImageNeverPull", "message": "not present"}}
    outcome = _outcome(_pod(("prepare", _done(0)), ("worker", never)))
    assert (outcome.state, outcome.phase, outcome.stop) == (JobState.FAILED, JobPhase.MODULE, True)
    assert "ErrImageNeverPull" in outcome.reason
    backoff = {"waiting": {"reason": "ImagePullBackOff", "message": "pull failed"}}
    first = _outcome(_pod(("prepare", backoff)))
    assert first.state == JobState.RUNNING and first.waiting_since == NOW
    later = _outcome(_pod(("prepare", backoff)), now=NOW + timedelta(seconds=61), waiting_since=NOW)
    assert (later.state, later.phase, later.stop) == (JobState.FAILED, JobPhase.PREPARE, True)


def test_a_module_past_its_deadline_is_stopped_and_a_job_deadline_is_reported() -> None:
    started = (NOW - timedelta(seconds=31)).isoformat().replace("+00:00", "Z")
    running = {"running": {"startedAt": started}}
    outcome = _outcome(_pod(("prepare", _done(0)), ("worker", running), phase="Running"))
    assert (outcome.timed_out, outcome.stop, outcome.phase) == (True, True, JobPhase.MODULE)
    job = {
        "spec": {"activeDeadlineSeconds": 150},
        "status": {
            "conditions": [{"type": "Failed", "status": "True", "reason": "DeadlineExceeded"}]
        },
    }
    outcome = _outcome(None, job)
    assert outcome.timed_out and "deadline" in outcome.reason
    assert outcome.state == JobState.FAILED


def test_an_evicted_pod_fails_with_the_eviction_message() -> None:
    pod = _pod(("prepare", _done(0)), phase="Failed")
    pod["status"].update(reason="Evicted", message="The node was low on memory.")
    outcome = _outcome(pod)
    assert outcome.state == JobState.FAILED and "evicted" in outcome.reason
    assert outcome.phase == JobPhase.MODULE


def test_a_pending_pod_is_running() -> None:
    assert _outcome(_pod()).state == JobState.RUNNING
    assert _outcome(None).state == JobState.RUNNING


def test_extra_pod_labels_reach_the_job_pod_but_never_replace_ions_own() -> None:
    pod = PodSettings(
        handler_image="h:1",
        pod_labels={"azure.workload.identity/use": "true", "ion/modulename": "spoofed"},
    )
    manifest = job_manifest(_request(), pod)
    labels = manifest["spec"]["template"]["metadata"]["labels"]
    assert labels["azure.workload.identity/use"] == "true"
    assert labels["ion/modulename"] == "transcoder"
    assert "azure.workload.identity/use" not in manifest["metadata"]["labels"]
