"""Every bus body that cannot become a valid event is a PoisonMessageError with reason and field.

The corpus (`ion.core.testing.poison`) has hundreds of generated bad bodies, each with the
reason it must be dead-lettered with; the dispatcher dead-letters on exactly this exception, so
anything else raised here would loop a message until its delivery count runs out. The rules
are the ones of `ion.core.identifiers`, shared with root-event creation and every entry point.
"""

from __future__ import annotations

import json
import random
import re
from pathlib import Path
from typing import Any

import pytest

from ion.core import errors, identifiers
from ion.core.events import (
    Event,
    child_event_id,
    insight_id,
    new_root_event,
)
from ion.core.modules import check_event_type
from ion.core.testing.poison import BAD_ID_VALUES, bad_bodies, good_bodies, good_event

GOLDEN = Path(__file__).parent / "golden"
CAMEL_CASE = re.compile(r"[A-Z][a-z]+(?:[A-Z][a-z0-9]*)*")


def _poison(raw: bytes | str) -> errors.PoisonMessageError:
    try:
        Event.from_json(raw)
    except errors.PoisonMessageError as err:
        return err
    raise AssertionError(f"parsed: {raw[:200]!r}")


# --- the corpus ------------------------------------------------------------------------------


def test_the_corpus_has_at_least_500_distinct_bad_bodies_of_every_kind() -> None:
    corpus = bad_bodies()
    assert len(corpus) >= 500
    assert len({b.body for b in corpus}) == len(corpus)
    kinds = {b.label.split("/")[0] for b in corpus}
    for kind in ("body", "utf8", "surrogate", "nul", "depth", "number", "size", "type", "data"):
        assert kind in kinds
    for field in ("eventId", "correlationId", "parentEventId", "name", "documentType"):
        assert f"context.{field}" in kinds


def test_every_bad_body_is_poison_with_its_reason_and_a_field() -> None:
    wrong: list[str] = []
    for bad in bad_bodies():
        try:
            Event.from_json(bad.body)
        except errors.PoisonMessageError as err:
            if err.reason != bad.reason or not err.field or not str(err):
                wrong.append(f"{bad.label}: {err.reason} at {err.field!r} ({err})")
            elif not CAMEL_CASE.fullmatch(err.reason) or err.rule != err.reason:
                wrong.append(f"{bad.label}: reason {err.reason!r} is not a CamelCase word")
            elif len(str(err)) > 1000:
                wrong.append(f"{bad.label}: description of {len(str(err))} characters")
        except Exception as err:
            wrong.append(f"{bad.label}: raised {type(err).__name__}: {err}")
        else:
            wrong.append(f"{bad.label}: parsed")
    assert not wrong, "\n".join(wrong)


def test_bad_bodies_given_as_text_are_poison_too() -> None:
    for bad in bad_bodies():
        try:
            text = bad.body.decode()
        except UnicodeDecodeError:
            continue
        assert _poison(text).reason


def test_text_holding_a_raw_lone_surrogate_is_invalid_text() -> None:
    body = json.dumps(good_event("t"), ensure_ascii=False)
    raw = body.replace('"k"', '"k\ud800"')
    err = _poison(raw)
    assert (err.reason, err.field) == ("InvalidText", "body")


@pytest.mark.parametrize("raw", [None, 42, ["a"], {"context": {}}, object()])
def test_a_body_of_the_wrong_python_type_is_poison(raw: Any) -> None:
    err = _poison(raw)
    assert err.reason == "WrongType" and err.field == "body"


def test_unsafe_ids_name_their_field() -> None:
    for name in ("eventId", "correlationId", "parentEventId", "name", "documentType"):
        body = good_event("t")
        body["context"][name] = "../../etc/passwd"
        err = _poison(json.dumps(body))
        assert (err.reason, err.field) == ("InvalidId", f"context.{name}")
        assert "../../etc/passwd" in str(err)


def test_random_mutations_only_ever_raise_poison_and_accepted_events_round_trip() -> None:
    rng = random.Random(2018)
    seeds = [json.dumps(good_event("t", seed=i)).encode() for i in range(5)]
    seeds += [b for _, b in good_bodies()[:10]]
    alphabet = b'{}[]":,\\u0-9aeftnrlsx.\x00\xff\xed\xa0\x80 /'
    accepted = 0
    for _ in range(3000):
        raw = bytearray(rng.choice(seeds))
        for _ in range(rng.randint(1, 4)):
            at = rng.randrange(len(raw))
            op = rng.random()
            if op < 0.4:
                raw[at] = rng.choice(alphabet)
            elif op < 0.7:
                del raw[at]
            else:
                raw[at:at] = bytes(rng.choice(alphabet) for _ in range(rng.randint(1, 3)))
        try:
            event = Event.from_json(bytes(raw))
        except errors.PoisonMessageError as err:
            assert err.reason and err.field
            continue
        accepted += 1
        identifiers.check_id(event.event_id, field="eventId")
        identifiers.check_id(event.correlation_id, field="correlationId")
        assert Event.from_json(event.to_json()) == event
    assert 0 < accepted < 3000


# --- good bodies -------------------------------------------------------------------------------


@pytest.mark.parametrize(("label", "raw"), good_bodies())
def test_good_bodies_at_the_edges_of_the_rules_parse_and_round_trip(label: str, raw: bytes) -> None:
    event = Event.from_json(raw)
    assert Event.from_json(event.to_json()) == event
    assert Event.from_json(raw.decode()) == event


@pytest.mark.parametrize(
    "name", ["bus_event.json", "bus_event_with_data.json", "2018_frontapi_response.json"]
)
def test_golden_2018_bodies_still_parse(name: str) -> None:
    event = Event.from_json((GOLDEN / name).read_bytes())
    assert event.event_id and event.correlation_id


def test_the_2018_trace_contexts_are_valid_event_contexts() -> None:
    for doc in json.loads((GOLDEN / "2018_trace_flow.json").read_text()):
        body = {"context": {**doc["context"], "documentType": "eventMeta"}, "type": "t"}
        Event.from_json(json.dumps(body))


def test_ids_ion_derives_pass_the_id_rule() -> None:
    root = new_root_event("media.submitted", correlation_id="dev")
    child = child_event_id(root.event_id, "digit-classifier", "event-1.json")
    for value in (root.event_id, root.correlation_id, child, insight_id(child, "m")):
        assert identifiers.check_id(value, field="id") == value
    body = json.loads(root.to_json())
    body["context"].update(eventId=child, parentEventId=root.event_id, name="digit-classifier")
    assert Event.from_json(json.dumps(body)).event_id == child
    assert Event.from_json(root.to_json()) == root


# --- the rules themselves ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [
        "dev",
        "DEV",
        "My.Flow_2018-v1",
        "4e5e565b-d5dc-4fa0-8ce3-98b4790f286f",
        "F64086A5-E213-409A-9C50-2393121A94D0",
        "a" * 128,
    ],
)
def test_ids_2018_clients_send_are_accepted(value: str) -> None:
    assert identifiers.check_id(value, field="correlation_id") == value


@pytest.mark.parametrize(("label", "value"), BAD_ID_VALUES)
def test_unsafe_ids_are_refused_with_the_field(label: str, value: Any) -> None:
    with pytest.raises(errors.ValidationError) as caught:
        identifiers.check_id(value, field="correlation_id")
    assert caught.value.field == "correlation_id"
    assert caught.value.rule in ("InvalidId", "WrongType")


@pytest.mark.parametrize(
    "name", ["a.txt", "pic.png", "My Photo (1).JPG", "ünïcødé.txt", "a..b", ".hidden", "x" * 255]
)
def test_plain_file_names_are_accepted(name: str) -> None:
    assert identifiers.check_file_name(name) == name


@pytest.mark.parametrize(
    "name",
    [
        "",
        ".",
        "..",
        "../escape",
        "dir/a.txt",
        "/abs",
        "a\\b",
        "C:\\Users\\x.txt",
        "a\x00b",
        "a\nb",
        "a\x7f",
        "a\ud800",
        "x" * 256,
        "é" * 128,
        7,
    ],
)
def test_file_names_with_directories_or_control_characters_are_refused(name: Any) -> None:
    with pytest.raises(errors.ValidationError) as caught:
        identifiers.check_file_name(name)
    assert caught.value.field == "files"
    assert caught.value.rule in ("InvalidFileName", "WrongType")


def test_file_names_must_differ_and_be_bounded_in_number() -> None:
    with pytest.raises(errors.ValidationError, match="two files") as caught:
        identifiers.check_file_names(["a.txt", "b.txt", "a.txt"])
    assert caught.value.rule == "DuplicateFileName"
    with pytest.raises(errors.ValidationError) as caught:
        identifiers.check_file_names([f"f{i}" for i in range(identifiers.MAX_FILES + 1)])
    assert caught.value.rule == "TooLarge"


def test_event_type_rule_is_one_rule_for_specs_and_events() -> None:
    for good in ("media.submitted", "frontapi.new_link", "A-1_b.c", "t" * 120):
        assert check_event_type(good) == identifiers.check_event_type(good) == good
    for bad in ("", "a b", "-a", "t" * 121, "t\n", "a/b"):
        with pytest.raises(ValueError, match="not a valid event type"):
            check_event_type(bad)
        with pytest.raises(errors.ValidationError):
            identifiers.check_event_type(bad)


# --- root events -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "field", "rule"),
    [
        ({"event_type": "bad type"}, "event_type", "InvalidEventType"),
        ({"correlation_id": "../x"}, "correlation_id", "InvalidId"),
        ({"correlation_id": "c" * 129}, "correlation_id", "InvalidId"),
        ({"correlation_id": "a\x00"}, "correlation_id", "InvalidId"),
        ({"data": {"": "v"}}, "data", "InvalidKey"),
        ({"data": {"k\n": "v"}}, "data", "InvalidKey"),
        ({"data": {"k": "v\x00"}}, "data.k", "InvalidText"),
        ({"data": {"k": "\ud800"}}, "data.k", "InvalidText"),
        ({"data": {"k": "v" * (identifiers.MAX_VALUE_CHARS + 1)}}, "data.k", "TooLarge"),
        ({"data": {f"k{i}": "" for i in range(identifiers.MAX_PAIRS + 1)}}, "data", "TooLarge"),
        ({"data": {f"k{i}": "v" * 60_000 for i in range(5)}}, "data", "TooLarge"),
    ],
)
def test_new_root_event_refuses_what_the_bus_would_dead_letter(
    kwargs: dict[str, Any], field: str, rule: str
) -> None:
    kwargs = {"event_type": "media.submitted", **kwargs}
    with pytest.raises(errors.ValidationError) as caught:
        new_root_event(**kwargs)
    assert not isinstance(caught.value, errors.PoisonMessageError)
    assert (caught.value.field, caught.value.rule) == (field, rule)


def test_every_root_event_new_root_event_makes_parses_back() -> None:
    event = new_root_event(
        "media.submitted",
        correlation_id="dev",
        data={"note": "ünïcødé\nline", "big": "v" * identifiers.MAX_VALUE_CHARS},
    )
    assert Event.from_json(event.to_json()) == event
