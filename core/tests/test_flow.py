"""`build_flow`: the tree, each run's status, and when a flow is settled and has succeeded.

`settled` decides when `wait_settled` (and every test that waits on a flow) stops, and
`succeeded` what `pipeline run` exits with, so each case here pins both.
"""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from rich.console import Console

from ion.core import errors
from ion.core.documents import FlowDocument, parse_document
from ion.core.events import (
    ROOT_PUBLISHER,
    Context,
    DocumentType,
    EventMeta,
    Insight,
    ModuleLogs,
    pairs,
)
from ion.core.flow import Flow, build_flow, load_flow
from ion.core.flowindex import FlowStatus
from ion.core.flowtree import flow_tree
from ion.core.records import AttemptState, JobAttempt, RunStatus

CORR = "corr-1"
T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


def event(
    event_id: str,
    event_type: str,
    *,
    parent: str = ROOT_PUBLISHER,
    by: str = ROOT_PUBLISHER,
    files: tuple[str, ...] = (),
) -> EventMeta:
    return EventMeta(
        id=event_id,
        context=Context(
            name=by, event_id=event_id, correlation_id=CORR, parent_event_id=parent
        ).as_document(DocumentType.EVENT_META),
        type=event_type,
        files=list(files),
        data=pairs({"k": "v"}),
    )


def attempt(
    module: str,
    event_id: str,
    n: int,
    state: AttemptState,
    *,
    event_type: str = "",
    parent: str = ROOT_PUBLISHER,
    reason: str = "",
    outputs: tuple[str, ...] = (),
    started: float | None = 0.0,
    finished: float | None = 1.0,
) -> JobAttempt:
    return JobAttempt(
        id=f"{module}-{event_id}-{n}",
        module=module,
        event_id=event_id,
        correlation_id=CORR,
        parent_event_id=parent,
        event_type=event_type,
        attempt=n,
        state=state,
        started_at=None if started is None else T0 + timedelta(seconds=started),
        finished_at=None if finished is None else T0 + timedelta(seconds=finished),
        reason=reason,
        outputs=list(outputs),
    )


def succeeded(module: str, event_id: str, n: int = 1, **kw: object) -> JobAttempt:
    return attempt(module, event_id, n, AttemptState.SUCCEEDED, **kw)  # type: ignore[arg-type]


def flow_of(
    documents: list[FlowDocument],
    attempts: list[JobAttempt],
    subscribers: dict[str, list[str]] | None = None,
) -> Flow:
    return build_flow(CORR, documents, attempts, subscribers or {})


def statuses(flow: Flow) -> list[tuple[str, RunStatus]]:
    return [(r.module, r.status) for r in flow.runs()]


SUBS = {"image.new": ["resize"], "image.small": ["tag"]}


# -- one run, each status ------------------------------------------------------------------------


def test_a_subscriber_that_has_not_started_is_pending_and_the_flow_is_not_settled() -> None:
    flow = flow_of([event("e1", "image.new")], [], SUBS)
    assert statuses(flow) == [("resize", RunStatus.PENDING)]
    assert flow.runs()[0].attempts == []
    assert (flow.settled, flow.succeeded) == (False, False)


def test_a_running_attempt_is_running_and_the_flow_is_not_settled() -> None:
    running = attempt("resize", "e1", 1, AttemptState.RUNNING, finished=None)
    flow = flow_of([event("e1", "image.new")], [running], SUBS)
    assert statuses(flow) == [("resize", RunStatus.RUNNING)]
    assert flow.runs()[0].duration_seconds is None
    assert (flow.settled, flow.succeeded) == (False, False)


def test_a_failed_attempt_with_a_retry_to_come_is_retrying_and_the_flow_is_not_settled() -> None:
    failed = attempt("resize", "e1", 1, AttemptState.FAILED, reason="exited with code 3")
    flow = flow_of([event("e1", "image.new")], [failed], SUBS)
    assert statuses(flow) == [("resize", RunStatus.RETRYING)]
    assert flow.runs()[0].reason == "exited with code 3"
    assert (flow.settled, flow.succeeded) == (False, False)


def test_a_recorded_attempt_not_yet_started_is_pending_first_and_retrying_later() -> None:
    first = attempt("resize", "e1", 1, AttemptState.PENDING, started=None, finished=None)
    assert RunStatus.of([first]) == RunStatus.PENDING
    failed = attempt("resize", "e1", 1, AttemptState.FAILED)
    second = attempt("resize", "e1", 2, AttemptState.PENDING, started=None, finished=None)
    assert RunStatus.of([failed, second]) == RunStatus.RETRYING


def test_a_dead_lettered_run_settles_the_flow_without_success() -> None:
    attempts = [
        attempt("resize", "e1", 2, AttemptState.DEAD_LETTERED, reason="second", finished=9.0),
        attempt("resize", "e1", 1, AttemptState.FAILED, reason="first", finished=2.0),
    ]
    flow = flow_of([event("e1", "image.new")], attempts, SUBS)
    [run] = flow.runs()
    assert run.status == RunStatus.DEAD_LETTERED
    assert [a.attempt for a in run.attempts] == [1, 2]  # oldest first, whatever the store order
    assert run.reason == "second"  # the last attempt's
    assert (flow.settled, flow.succeeded) == (True, False)


def test_a_success_after_a_failure_is_one_run_with_both_attempts() -> None:
    attempts = [
        attempt("resize", "e1", 1, AttemptState.FAILED, reason="flaky", started=0.0, finished=1.0),
        succeeded("resize", "e1", 2, started=3.0, finished=4.5, outputs=(f"{CORR}/e1/resize/a",)),
    ]
    logs = [
        ModuleLogs(
            id=f"module:resize-event:e1-attempt:{n}",
            context=Context(name="resize", event_id="e1", correlation_id=CORR).as_document(
                DocumentType.MODULE_LOGS
            ),
            desc="",
            logs=f"logs/{n}.log",
            succeeded=n == 2,
        )
        for n in (1, 2)
    ]
    flow = flow_of([event("e1", "image.new"), *logs], attempts, SUBS)
    [run] = flow.runs()
    assert run.status == RunStatus.SUCCEEDED
    assert [(a.attempt, a.state) for a in run.attempts] == [
        (1, AttemptState.FAILED),
        (2, AttemptState.SUCCEEDED),
    ]
    assert run.duration_seconds == 4.5  # first start to last finish
    assert run.outputs == [f"{CORR}/e1/resize/a"]
    assert run.logs == ["logs/1.log", "logs/2.log"]
    assert run.reason == ""
    assert (flow.settled, flow.succeeded) == (True, True)


# -- the shape of the tree -----------------------------------------------------------------------


def test_children_hang_under_the_run_that_raised_them_with_its_insights() -> None:
    docs: list[FlowDocument] = [
        event("e1", "image.new"),
        event("e2", "image.small", parent="e1", by="resize", files=("small.png",)),
        Insight(
            id="i1",
            context=Context(name="resize", event_id="e1", correlation_id=CORR).as_document(
                DocumentType.INSIGHT
            ),
            data=pairs({"faces": "3"}),
        ),
    ]
    attempts = [succeeded("resize", "e1"), succeeded("tag", "e2", parent="e1")]
    flow = flow_of(docs, attempts, SUBS)
    [root] = flow.roots
    [resize] = root.triggered
    assert [(p.key, p.value) for p in resize.insights] == [("faces", "3")]
    [child] = resize.children
    assert (child.event_id, child.published_by, child.files) == ("e2", "resize", ["small.png"])
    assert [r.module for r in child.triggered] == ["tag"]
    assert (flow.settled, flow.succeeded) == (True, True)


def test_fan_out_one_event_two_modules_each_its_own_run_and_children() -> None:
    subs = {"media.ingested": ["thumbnailer", "classifier"], "digits.classified": ["stats"]}
    docs: list[FlowDocument] = [
        event("e1", "media.ingested"),
        event("t1", "media.thumbnailed", parent="e1", by="thumbnailer"),
        event("c1", "digits.classified", parent="e1", by="classifier"),
    ]
    attempts = [
        succeeded("thumbnailer", "e1"),
        succeeded("classifier", "e1"),
        attempt("stats", "c1", 1, AttemptState.RUNNING, parent="e1", finished=None),
    ]
    flow = flow_of(docs, attempts, subs)
    [root] = flow.roots
    runs = {r.module: r for r in root.triggered}
    assert list(runs) == ["thumbnailer", "classifier"]
    assert [c.event_id for c in runs["thumbnailer"].children] == ["t1"]
    assert [c.event_id for c in runs["classifier"].children] == ["c1"]
    # one branch still running keeps the whole flow unsettled
    assert (flow.settled, flow.succeeded) == (False, False)

    done = [*attempts[:2], succeeded("stats", "c1", parent="e1")]
    flow = flow_of(docs, done, subs)
    assert statuses(flow) == [
        ("thumbnailer", RunStatus.SUCCEEDED),
        ("classifier", RunStatus.SUCCEEDED),
        ("stats", RunStatus.SUCCEEDED),
    ]
    assert (flow.settled, flow.succeeded) == (True, True)


def test_one_failed_branch_of_a_fan_out_fails_the_flow() -> None:
    subs = {"image.new": ["a", "b"]}
    attempts = [succeeded("a", "e1"), attempt("b", "e1", 1, AttemptState.DEAD_LETTERED)]
    flow = flow_of([event("e1", "image.new")], attempts, subs)
    assert (flow.settled, flow.succeeded) == (True, False)


def test_a_module_that_ran_but_no_longer_subscribes_still_shows_its_run() -> None:
    flow = flow_of([event("e1", "image.new")], [succeeded("old", "e1")], SUBS)
    assert statuses(flow) == [("resize", RunStatus.PENDING), ("old", RunStatus.SUCCEEDED)]
    assert not flow.settled


# -- events nobody handles -----------------------------------------------------------------------


def test_a_root_event_nobody_subscribes_to_settles_but_does_not_succeed() -> None:
    flow = flow_of([event("e1", "nobody.listens")], [], SUBS)
    [root] = flow.roots
    assert root.triggered == [] and not root.handled
    assert flow.runs() == []
    assert flow.settled  # nothing will ever happen
    assert not flow.succeeded  # ... but no work was done: not a success


def test_a_child_event_nobody_subscribes_to_ends_its_branch_and_the_flow_succeeds() -> None:
    docs: list[FlowDocument] = [
        event("e1", "image.new"),
        event("e2", "image.unused", parent="e1", by="resize"),
    ]
    flow = flow_of(docs, [succeeded("resize", "e1")], SUBS)
    [child] = flow.roots[0].triggered[0].children
    assert not child.handled
    assert (flow.settled, flow.succeeded) == (True, True)


def test_an_empty_flow_is_neither_settled_nor_succeeded() -> None:
    flow = flow_of([], [], SUBS)
    assert flow.roots == [] and flow.root is None
    assert (flow.settled, flow.succeeded) == (False, False)


# -- gaps: missing documents ---------------------------------------------------------------------


def test_a_child_whose_parent_has_no_document_is_its_own_branch_and_the_flow_fails() -> None:
    docs: list[FlowDocument] = [event("e2", "image.small", parent="gone", by="resize")]
    flow = flow_of(docs, [succeeded("tag", "e2", parent="gone")], SUBS)
    [root] = flow.roots
    assert root.event_id == "e2" and not root.raised_from_outside
    assert statuses(flow) == [("tag", RunStatus.SUCCEEDED)]
    # every run is done, but part of the flow is unaccounted for: settled, not a success
    assert (flow.settled, flow.succeeded) == (True, False)


def test_a_child_whose_parent_has_no_document_still_holds_the_flow_while_it_runs() -> None:
    docs: list[FlowDocument] = [event("e2", "image.small", parent="gone", by="resize")]
    running = attempt("tag", "e2", 1, AttemptState.RUNNING, parent="gone", finished=None)
    flow = flow_of(docs, [running], SUBS)
    assert (flow.settled, flow.succeeded) == (False, False)


def test_an_event_known_only_from_its_attempts_is_shown_and_keeps_the_flow_unsettled() -> None:
    # e1's eventMeta is missing, but resize is running on it and already raised e2
    docs: list[FlowDocument] = [event("e2", "image.small", parent="e1", by="resize")]
    attempts = [
        attempt("resize", "e1", 1, AttemptState.RUNNING, event_type="image.new", finished=None),
        succeeded("tag", "e2", parent="e1"),
    ]
    flow = flow_of(docs, attempts, SUBS)
    [ghost] = flow.roots
    assert (ghost.event_id, ghost.event_type, ghost.missing_document) == ("e1", "image.new", True)
    [resize] = ghost.triggered
    assert resize.status == RunStatus.RUNNING
    assert [c.event_id for c in resize.children] == ["e2"]  # the child found its place
    assert (flow.settled, flow.succeeded) == (False, False)

    attempts[0] = succeeded("resize", "e1", event_type="image.new")
    flow = flow_of(docs, attempts, SUBS)
    assert (flow.settled, flow.succeeded) == (True, False)  # a document is missing


def test_parents_that_point_at_each_other_do_not_loop() -> None:
    docs: list[FlowDocument] = [
        event("a", "image.new", parent="b", by="resize"),
        event("b", "image.new", parent="a", by="resize"),
    ]
    flow = flow_of(docs, [succeeded("resize", "a"), succeeded("resize", "b")], SUBS)
    assert sorted(e.event_id for e in flow.events()) == ["a", "b"]
    assert not flow.succeeded


def test_every_event_appears_exactly_once() -> None:
    docs: list[FlowDocument] = [
        event("e1", "image.new"),
        event("e2", "image.small", parent="e1", by="resize"),
        event("e3", "image.small", parent="e1", by="resize"),
        event("x", "image.small", parent="nowhere", by="resize"),
        event("r2", "image.new"),  # a second root raised into the same flow
    ]
    flow = flow_of(docs, [succeeded("resize", "e1")], SUBS)
    assert sorted(e.event_id for e in flow.events()) == ["e1", "e2", "e3", "r2", "x"]
    assert [r.event_id for r in flow.roots] == ["e1", "r2", "x"]


# -- documents -----------------------------------------------------------------------------------


def test_parse_document_returns_each_2018_type_as_its_model() -> None:
    meta = event("e1", "image.new", files=("a.png",))
    assert parse_document(meta.to_document()) == meta
    logs = ModuleLogs(
        id="l",
        context=Context(name="m", event_id="e1").as_document(DocumentType.MODULE_LOGS),
        desc="d",
        logs="x",
        succeeded=False,
    )
    assert parse_document(logs.to_document()) == logs


@pytest.mark.parametrize(
    ("body", "match"),
    [
        ({"id": "d", "context": {"documentType": "other"}}, "'d' has documentType 'other'"),
        ({"id": "d"}, "'d' has documentType None"),
        (
            {"id": "d", "context": {"documentType": "modulelogs"}},
            "stored modulelogs document 'd' is not valid: desc",
        ),
    ],
)
def test_parse_document_refuses_what_is_not_a_2018_document(
    body: dict[str, object], match: str
) -> None:
    with pytest.raises(errors.ValidationError, match=match):
        parse_document(body)


# -- the one renderer ----------------------------------------------------------------------------


def _drawn(flow: Flow) -> str:
    out = io.StringIO()
    Console(file=out, width=200, color_system=None).print(flow_tree(flow, show_logs=True))
    return out.getvalue()


def test_the_tree_shows_statuses_reasons_and_unhandled_events() -> None:
    docs: list[FlowDocument] = [
        event("e1", "image.new"),
        event("e2", "image.unused", parent="e1", by="resize"),
    ]
    attempts = [attempt("resize", "e1", 1, AttemptState.DEAD_LETTERED, reason="exited with 3")]
    text = _drawn(flow_of(docs, attempts, SUBS))
    assert "did not succeed" in text
    assert "resize  DEAD_LETTERED  attempts=1  1.00s" in text
    assert "reason: exited with 3" in text
    assert "image.unused" in text and "no subscribers" in text


def test_the_tree_of_an_unhandled_root_says_nobody_subscribes() -> None:
    text = _drawn(flow_of([event("e1", "nobody.listens")], [], SUBS))
    assert "nobody.listens" in text and "no subscribers" in text
    assert "did not succeed" in text


def test_a_2018_flow_with_documents_only_builds_its_tree_from_them() -> None:
    path = Path(__file__).parent / "golden" / "2018_trace_flow.json"
    docs = [parse_document(d) for d in json.loads(path.read_text())]
    flow = build_flow("0bff834f-4dfc-484a-80ed-4f2cfc149c23", docs, [], {})
    [root] = flow.roots  # the downloader's child hangs under the downloader's run
    [run] = root.triggered
    assert (run.module, run.status, run.attempts) == ("downloader", RunStatus.SUCCEEDED, [])
    assert run.insights and len(run.logs) == 1
    assert [c.files for c in run.children] == [["file.raw"]]
    assert (flow.settled, flow.succeeded) == (True, True)


def test_a_run_known_only_from_a_failed_modulelogs_is_dead_lettered() -> None:
    failed = ModuleLogs(
        id="l",
        context=Context(name="resize", event_id="e1", correlation_id=CORR).as_document(
            DocumentType.MODULE_LOGS
        ),
        desc="",
        logs="logs/1.log",
        succeeded=False,
    )
    flow = flow_of([event("e1", "image.new"), failed], [], {})
    assert statuses(flow) == [("resize", RunStatus.DEAD_LETTERED)]
    assert (flow.settled, flow.succeeded) == (True, False)


# -- reading a flow while it runs -----------------------------------------------------------------


async def test_a_run_that_ends_between_the_reads_never_settles_the_flow_early() -> None:
    """The documents are read before the run's commit, the attempts after its success record."""
    before = [event("e1", "image.new")]
    after = [*before, event("e2", "image.small", parent="e1", by="resize")]
    running = attempt("resize", "e1", 1, AttemptState.RUNNING, finished=None)
    done = attempt("resize", "e1", 1, AttemptState.SUCCEEDED)

    class Racing:
        """A store in which the run commits and succeeds right after each read of documents."""

        def __init__(self) -> None:
            self.documents_read = 0

        async def list_documents(self, correlation_id: str) -> list[FlowDocument]:
            self.documents_read += 1
            return before if self.documents_read == 1 else after

        async def list_attempts(self, *, correlation_id: str) -> list[JobAttempt]:
            return [running] if self.documents_read == 0 else [done]

        async def get_flow_summary(self, correlation_id: str) -> None:
            raise errors.NotFoundError("no summary")

    flow = await load_flow(Racing(), CORR, SUBS)  # type: ignore[arg-type]
    # e2 (raised by resize's commit) is in the tree, and its subscriber has not run yet.
    assert statuses(flow) == [("resize", RunStatus.SUCCEEDED), ("tag", RunStatus.PENDING)]
    assert (flow.settled, flow.succeeded) == (False, False)


# -- the flow's status: the one `ion flow list` shows ---------------------------------------------


def test_each_flow_status_from_its_tree() -> None:
    root = event("e1", "image.new")
    assert flow_of([root], [], SUBS).status == FlowStatus.RUNNING
    assert flow_of([root], [succeeded("resize", "e1")], SUBS).status == FlowStatus.SUCCEEDED
    dead = attempt("resize", "e1", 1, AttemptState.DEAD_LETTERED, reason="exit 1")
    assert flow_of([root], [dead], SUBS).status == FlowStatus.FAILED
    nobody = flow_of([event("e9", "nobody.listens")], [], SUBS)
    assert (nobody.settled, nobody.succeeded, nobody.status) == (
        True,
        False,
        FlowStatus.NO_SUBSCRIBER,
    )
    killed = attempt("resize", "e1", 1, AttemptState.CANCELLED, reason="module deleted")
    assert flow_of([root], [killed], SUBS).status == FlowStatus.CANCELLED
    assert flow_of([], [], SUBS).status == FlowStatus.RUNNING


def test_a_cancelled_flow_shows_every_unsettled_run_cancelled_and_is_settled() -> None:
    documents: list[FlowDocument] = [
        event("e1", "image.new"),
        event("e2", "image.small", parent="e1", by="resize"),
    ]
    running = attempt("resize", "e1", 1, AttemptState.RUNNING, finished=None)
    flow = build_flow(CORR, documents, [running], SUBS, cancelled=True)
    assert statuses(flow) == [("resize", RunStatus.CANCELLED), ("tag", RunStatus.CANCELLED)]
    assert flow.runs()[0].reason == "the flow was cancelled"
    assert (flow.settled, flow.succeeded, flow.status) == (True, False, FlowStatus.CANCELLED)
    # a run that had settled keeps its status
    done = build_flow(CORR, documents, [succeeded("resize", "e1")], SUBS, cancelled=True)
    assert statuses(done) == [("resize", RunStatus.SUCCEEDED), ("tag", RunStatus.CANCELLED)]
    assert "CANCELLED" in json.dumps(done.model_dump(mode="json"))
