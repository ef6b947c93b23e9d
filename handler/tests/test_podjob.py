"""The pod-side job steps: the request from the environment and the outcome's size limit."""

from __future__ import annotations

import json

import pytest

from ion.core import errors
from ion.core.events import new_root_event
from ion.core.modules import ModuleSpec
from ion.core.ports.executor import JobRequest
from ion.handler.podjob import REQUEST_ENV, TERMINATION_LIMIT, fit_message, read_request


def test_the_request_is_read_from_the_environment() -> None:
    request = JobRequest(
        job_id="m-e-a1",
        attempt=1,
        event=new_root_event("a.b"),
        spec=ModuleSpec(name="m", subscribes_to="a.b", image="m:1"),
    )
    assert read_request({REQUEST_ENV: request.model_dump_json()}) == request


@pytest.mark.parametrize("raw", ["", "{not json", '{"job_id": "x"}'])
def test_a_missing_or_bad_request_is_a_config_error_saying_why(raw: str) -> None:
    with pytest.raises(errors.ConfigError, match=REQUEST_ENV):
        read_request({REQUEST_ENV: raw} if raw else {})


def test_a_long_outcome_is_cut_to_the_termination_message_limit_lists_first() -> None:
    small = {"state": "SUCCEEDED", "outputs": ["a"], "child_event_ids": ["e"]}
    assert json.loads(fit_message(small)) == small
    big = {
        "state": "SUCCEEDED",
        "outputs": [f"file-{i}.txt" for i in range(2000)],
        "child_event_ids": ["e1"],
        "reason": "",
    }
    cut = json.loads(fit_message(big))
    assert cut["truncated"] is True and cut["outputs"] == [] and cut["child_event_ids"] == ["e1"]
    huge = {"state": "FAILED", "reason": "x" * 10_000 + "the end", "outputs": []}
    text = fit_message(huge)
    assert len(text.encode()) <= TERMINATION_LIMIT
    assert json.loads(text)["reason"].endswith("the end")
