"""Derived names: job ids fit Kubernetes, subscription names fit Service Bus, both are stable."""

from __future__ import annotations

import re
import uuid

import pytest

from ion.core import naming

K8S_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
EVENT = "B9F9D945-3F0D-4650-9C11-58BD761E8A88"
LONG_MODULE = "a" * 40


@pytest.mark.parametrize(
    ("module", "event_id", "attempt"),
    [
        ("resize", "0ee82e62-fcb9-4f04-915d-be5bc324935c", 1),
        ("resize", EVENT, 3),
        (LONG_MODULE, "1426a36f-d930-41f3-89fd-b980f1feef58", 1),
        (LONG_MODULE, "ab39833a-74b1-48f2-b77c-cc9712198706.replay-12", 100),
        ("m", "Weird_ID with spaces/and:colons!", 2),
        ("m", "x" * 500, 7),
    ],
)
def test_job_ids_are_kubernetes_names(module: str, event_id: str, attempt: int) -> None:
    job = naming.job_id(module, event_id, attempt)
    assert len(job) <= 63
    assert job == job.lower()
    assert K8S_NAME.match(job), job
    assert job.endswith(f"-a{attempt}")


def test_job_ids_are_stable() -> None:
    assert naming.job_id("resize", EVENT, 1) == naming.job_id("resize", EVENT, 1)
    long_event = str(uuid.uuid4()) * 3
    assert naming.job_id(LONG_MODULE, long_event, 2) == naming.job_id(LONG_MODULE, long_event, 2)


def test_a_short_job_id_is_readable() -> None:
    assert naming.job_id("resize", "e1", 1) == "resize-e1-a1"
    assert naming.job_id("resize", EVENT, 1) == f"resize-{EVENT.lower()}-a1"


@pytest.mark.parametrize("module", ["resize", LONG_MODULE])
def test_job_ids_differ_per_attempt(module: str) -> None:
    event = str(uuid.uuid4())
    ids = {naming.job_id(module, event, attempt) for attempt in range(1, 101)}
    assert len(ids) == 100


def test_job_ids_differ_per_event_and_module_even_when_truncated() -> None:
    shared_prefix = "e" * 80
    a = naming.job_id(LONG_MODULE, shared_prefix + "-one", 1)
    b = naming.job_id(LONG_MODULE, shared_prefix + "-two", 1)
    assert a != b
    assert len(a) <= 63 and len(b) <= 63
    assert naming.job_id("resize", EVENT, 1) != naming.job_id("thumbs", EVENT, 1)


def test_subscription_names_follow_2018_and_fit_service_bus() -> None:
    assert naming.subscription_name("file_downloaded", "transcoder") == "file_downloaded_transcoder"
    assert naming.subscription_name("Frontapi.New_Link", "downloader") == (
        "frontapi.new_link_downloader"
    )


@pytest.mark.parametrize("event_type", ["e" * 120, "media.ingested." + "x" * 60])
def test_long_subscription_names_are_shortened_deterministically(event_type: str) -> None:
    name = naming.subscription_name(event_type, LONG_MODULE)
    assert len(name) <= 50
    assert name == naming.subscription_name(event_type, LONG_MODULE)
    assert name != naming.subscription_name(event_type, "other")
    assert name != naming.subscription_name(event_type + "2", LONG_MODULE)


def test_shorten_keeps_names_that_fit() -> None:
    assert naming.shorten("short", 50) == "short"
    assert naming.shorten("x" * 50, 50) == "x" * 50
    assert len(naming.shorten("x" * 51, 50)) == 50


def test_logs_key_names_the_flow_event_module_and_attempt() -> None:
    assert naming.logs_key("c", "e", "resize", 2) == "logs/c/e/resize-attempt-2.log"
