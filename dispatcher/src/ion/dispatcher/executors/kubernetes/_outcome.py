"""How an attempt stands, read from its Job and its pod as the API server reports them.

Each container of the pod is a phase: `prepare`, `worker` (the module), `commit`. The first one
that ended badly, or cannot start, names the phase and the cause: its exit code, the reason
the kubelet gave (`OOMKilled`, `ErrImageNeverPull`), the handler's own words from the
termination message, the Job's deadline, an eviction.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from ion.core.ports.executor import JobPhase, JobState
from ion.dispatcher.executors.kubernetes._manifest import COMMIT, PREPARE, WORKER

PHASES = {PREPARE: JobPhase.PREPARE, WORKER: JobPhase.MODULE, COMMIT: JobPhase.COMMIT}

CANNOT_START = frozenset({"ErrImageNeverPull", "InvalidImageName"})
"""Waiting reasons that will not resolve by themselves."""
MAY_NOT_START = frozenset(
    {
        "ErrImagePull",
        "ImagePullBackOff",
        "CreateContainerConfigError",
        "CreateContainerError",
        "RunContainerError",
        "CrashLoopBackOff",
    }
)
"""Waiting reasons that fail the job once they last longer than the pending timeout."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Outcome:
    """An attempt's state as its Job and pod show it."""

    state: JobState
    phase: JobPhase | None = None
    exit_code: int | None = None
    timed_out: bool = False
    reason: str = ""
    commit: dict[str, Any] = field(default_factory=dict)
    """The commit step's own report (its termination message), once it has ended."""
    stop: bool = False
    """The Job still runs and must be deleted to end it (stuck, or past the module's deadline)."""
    waiting_since: datetime | None = None


def when(text: str | None) -> datetime | None:
    """The time of a Kubernetes timestamp (`2026-12-01T20:00:00Z`), None if absent."""
    if not text:
        return None
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def _statuses(pod: dict[str, Any]) -> dict[str, dict[str, Any]]:
    status = pod.get("status") or {}
    found: dict[str, dict[str, Any]] = {}
    for entry in (status.get("initContainerStatuses") or []) + (
        status.get("containerStatuses") or []
    ):
        found[entry.get("name", "")] = entry
    return found


def worker_ran(pod: dict[str, Any] | None) -> tuple[datetime, datetime, int] | None:
    """When the module's container ran (start, end) and its exit code, once it has ended."""
    terminated = (_statuses(pod or {}).get(WORKER, {}).get("state") or {}).get("terminated")
    if not terminated:
        return None
    start, end = when(terminated.get("startedAt")), when(terminated.get("finishedAt"))
    if start is None or end is None:
        return None
    return start, end, int(terminated.get("exitCode", 1))


def _condition(job: dict[str, Any], kind: str) -> dict[str, Any] | None:
    for condition in (job.get("status") or {}).get("conditions") or []:
        if condition.get("type") == kind and condition.get("status") == "True":
            return dict(condition)
    return None


def _handler_report(message: str) -> dict[str, Any]:
    try:
        report = json.loads(message)
    except ValueError:
        return {}
    return report if isinstance(report, dict) else {}


def _ended(name: str, terminated: dict[str, Any]) -> Outcome:
    code = int(terminated.get("exitCode", 1))
    why = terminated.get("reason", "")
    message = (terminated.get("message") or "").strip()
    phase = PHASES[name]
    if name == COMMIT:
        report = _handler_report(message)
        if code == 0 and report.get("state", "SUCCEEDED") == "SUCCEEDED":
            return Outcome(state=JobState.SUCCEEDED, exit_code=0, commit=report)
        reason = report.get("reason") or _exit_text("the commit step", code, why, message)
        return Outcome(
            state=JobState.FAILED, phase=phase, exit_code=0, reason=reason, commit=report
        )
    if name == PREPARE:
        report = _handler_report(message)
        reason = report.get("reason") or _exit_text("the prepare step", code, why, message)
        return Outcome(state=JobState.FAILED, phase=phase, reason=reason)
    if why == "OOMKilled":
        cause = f"module was killed: out of memory (exit code {code})"
    else:
        cause = f"module exited with code {code}"
    return Outcome(state=JobState.FAILED, phase=phase, exit_code=code, reason=cause)


def _exit_text(step: str, code: int, why: str, message: str) -> str:
    text = f"{step} exited with code {code}"
    if why and why not in ("Error", "Completed"):
        text += f" ({why})"
    if message:
        text += f": {message[-500:]}"
    return text


def read_outcome(
    job: dict[str, Any] | None,
    pod: dict[str, Any] | None,
    *,
    now: datetime,
    module_deadline: timedelta,
    pending_timeout: timedelta,
    waiting_since: datetime | None = None,
) -> Outcome:
    """Return how the attempt stands.

    `waiting_since` is when a container was first seen unable to start (the caller keeps it
    between calls and gets the new value back in the outcome).
    """
    statuses = _statuses(pod) if pod else {}
    for name in (PREPARE, WORKER, COMMIT):
        terminated = (statuses.get(name, {}).get("state") or {}).get("terminated")
        if terminated is None:
            continue
        if name == COMMIT or int(terminated.get("exitCode", 1)) != 0:
            return _ended(name, terminated)

    if pod is not None:
        pod_status = pod.get("status") or {}
        if pod_status.get("phase") == "Failed":
            return Outcome(
                state=JobState.FAILED,
                phase=_current_phase(statuses),
                reason=_pod_failure(pod_status),
            )
        for name in (PREPARE, WORKER, COMMIT):
            state = statuses.get(name, {}).get("state") or {}
            waiting = state.get("waiting") or {}
            why = waiting.get("reason", "")
            if why in CANNOT_START or why in MAY_NOT_START:
                since = waiting_since or now
                if why in CANNOT_START or now - since >= pending_timeout:
                    return Outcome(
                        state=JobState.FAILED,
                        phase=PHASES[name],
                        reason=f"the {name} container cannot start: {why}: "
                        f"{waiting.get('message', '').strip() or 'no message'}",
                        stop=True,
                    )
                return Outcome(state=JobState.RUNNING, waiting_since=since)
            running = state.get("running")
            if name == WORKER and running:
                started = when(running.get("startedAt"))
                if started is not None and now - started > module_deadline:
                    return Outcome(
                        state=JobState.FAILED,
                        phase=JobPhase.MODULE,
                        timed_out=True,
                        reason="module ran longer than its max execution time of "
                        f"{module_deadline.total_seconds():g}s and was stopped",
                        stop=True,
                    )

    if job is not None:
        failed = _condition(job, "Failed") or _condition(job, "FailureTarget")
        if failed is not None:
            deadline = failed.get("reason") == "DeadlineExceeded"
            what = (
                "the Job ran past its deadline (activeDeadlineSeconds "
                f"{(job.get('spec') or {}).get('activeDeadlineSeconds')}) and was stopped"
                if deadline
                else f"the Job failed: {failed.get('reason', '')}: {failed.get('message', '')}"
            )
            return Outcome(
                state=JobState.FAILED,
                phase=_current_phase(statuses),
                timed_out=deadline,
                reason=what,
            )
    return Outcome(state=JobState.RUNNING)


def _current_phase(statuses: dict[str, dict[str, Any]]) -> JobPhase:
    for name in (PREPARE, WORKER, COMMIT):
        terminated = (statuses.get(name, {}).get("state") or {}).get("terminated")
        if terminated is None or int(terminated.get("exitCode", 1)) != 0:
            return PHASES[name]
    return JobPhase.COMMIT


def _pod_failure(status: dict[str, Any]) -> str:
    why = status.get("reason", "")
    message = status.get("message", "")
    if why == "Evicted":
        return f"the job's pod was evicted: {message}"
    if why == "DeadlineExceeded":
        return f"the job's pod ran past its deadline: {message}"
    return f"the job's pod failed: {why or 'no reason given'}: {message or 'no message'}"
