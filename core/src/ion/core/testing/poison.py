"""A generated corpus of bus message bodies that can never become a valid event, and good ones.

`bad_bodies()` returns hundreds of distinct bodies, each with the dead-letter reason
`Event.from_json` must give it: not JSON, not UTF-8, lone surrogates, NUL characters, nesting
too deep, numbers too long, bodies too large, wrong value types, missing, empty, over-long and
unsafe ids (`..`, `/`, `\\`, control characters) in every context field, bad event types and bad
data pairs. `good_bodies()` returns bodies at the edges of the rules that must still parse.
Shipped so every layer (core, dispatcher, end-to-end) tests against the same corpus.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from ion.core import identifiers as ids

_NS = uuid.UUID("1d7e3c57-2f0b-4d0e-8f43-5a3c9b1e7a21")


@dataclass(frozen=True, slots=True)
class BadBody:
    """One poison body and the reason it must be dead-lettered with."""

    label: str
    body: bytes
    reason: str


def _uuid(*parts: object) -> str:
    return str(uuid.uuid5(_NS, "/".join(str(p) for p in parts)))


def good_event(event_type: str, *, seed: object = 0, data: bool = True) -> dict[str, Any]:
    """Return a valid event as a JSON-ready dict (ids derived from `seed`)."""
    body: dict[str, Any] = {
        "context": {
            "name": "frontapi",
            "eventId": _uuid("event", seed),
            "correlationId": _uuid("flow", seed),
            "parentEventId": "frontapi",
            "documentType": "eventMeta",
        },
        "type": event_type,
    }
    if data:
        body["data"] = [{"key": "k", "value": "v"}]
    return body


def _dump(body: Any, *, ascii_only: bool = True) -> bytes:
    text = json.dumps(body, ensure_ascii=ascii_only, separators=(",", ":"))
    return text.encode("utf-8", "surrogatepass")


def _nest(depth: int, *, inner: str = "0", kind: str = "[") -> str:
    if kind == "[":
        return "[" * depth + inner + "]" * depth
    return '{"a":' * depth + inner + "}" * depth


_OPTIONAL = ("name", "parentEventId", "documentType")


class _Drop:
    """Marks a field to remove in `_edit`."""


DROP: Any = _Drop()
_NO_PAIR: Any = _Drop()


def _pair(key: str, value: str) -> dict[str, str]:
    return {"key": key, "value": value}


def _edit(
    event_type: str,
    *,
    top: dict[Any, Any] | None = None,
    context: dict[str, Any] | None = None,
    pair: Any = _NO_PAIR,
    ascii_only: bool = True,
) -> bytes:
    """Return a good event's body with fields set (or removed, with DROP) and a pair appended."""
    body = good_event(event_type, seed="edited")
    for target, changes in ((body, top), (body["context"], context)):
        for key, value in (changes or {}).items():
            if value is DROP:
                target.pop(key, None)
            else:
                target[key] = value
    if pair is not _NO_PAIR:
        body["data"].append(pair)
    return _dump(body, ascii_only=ascii_only)


def _text_reason(value: Any, reason: str) -> str:
    """A NUL or lone surrogate reaches a string only escaped, and is refused as text first."""
    if isinstance(value, str) and any(c == "\x00" or "\ud800" <= c <= "\udfff" for c in value):
        return ids.INVALID_TEXT
    return reason


BAD_ID_VALUES: list[tuple[str, Any]] = [
    ("dotdot-slash", "../etc"),
    ("dotdot-slash-deep", "../../../../tmp/x"),
    ("dotdot-only", ".."),
    ("dot-only", "."),
    ("dotdot-inside", "a..b"),
    ("dotdot-end", "abc.."),
    ("slash", "a/b"),
    ("slash-leading", "/abs"),
    ("slash-trailing", "abc/"),
    ("backslash", "a\\b"),
    ("backslash-dotdot", "..\\..\\x"),
    ("url-encoded-dotdot", "%2e%2e%2fx"),
    ("nul", "a\x00b"),
    ("nul-only", "\x00"),
    ("nul-trailing", "abc\x00"),
    ("newline", "a\nb"),
    ("newline-trailing", "abc\n"),
    ("cr", "a\rb"),
    ("tab", "a\tb"),
    ("escape", "a\x1bb"),
    ("del", "a\x7fb"),
    ("c1-nel", "a\x85b"),
    ("line-separator", "a\u2028b"),
    ("space", "a b"),
    ("space-leading", " abc"),
    ("space-trailing", "abc "),
    ("dash-leading", "-abc"),
    ("underscore-leading", "_abc"),
    ("dot-leading", ".abc"),
    ("unicode-letter", "über"),
    ("emoji", "flow-\U0001f600"),
    ("lone-high-surrogate", "a\ud800b"),
    ("lone-low-surrogate", "\udc00"),
    ("colon", "c:x"),
    ("percent", "a%20b"),
    ("query", "a?b=c"),
    ("hash", "a#b"),
    ("quote", 'a"b'),
    ("too-long-129", "a" * 129),
    ("too-long-1000", "b" * 1000),
    ("too-long-uuids", "-".join([_uuid("long", i) for i in range(4)])),
    ("int", 12345),
    ("float", 1.5),
    ("true", True),
    ("list", ["a"]),
    ("object", {"id": "a"}),
]
"""Values no id field may hold (for optional fields, `null` is added separately)."""

BAD_EVENT_TYPES: list[tuple[str, Any]] = [
    ("space", "a b"),
    ("blank", " "),
    ("slash", "a/b"),
    ("dotdot-slash", "../t"),
    ("backslash", "a\\b"),
    ("dash-leading", "-t"),
    ("dot-leading", ".t"),
    ("newline-trailing", "t\n"),
    ("nul", "t\x00"),
    ("surrogate", "t\ud800"),
    ("unicode", "tÿpe"),
    ("too-long", "t" * 121),
    ("way-too-long", "t" * 5000),
    ("colon", "a:b"),
    ("int", 7),
    ("float", 7.5),
    ("true", True),
    ("list", ["t"]),
    ("object", {"t": 1}),
]


def bad_bodies(event_type: str = "poison.test") -> list[BadBody]:
    """Return the corpus: distinct bodies (first label kept), each with its expected reason.

    Every body carries a valid `type` of `event_type` unless the type is what is wrong, so a
    dispatcher subscribed to `event_type` sees it and must dead-letter it itself.
    """
    seen: set[bytes] = set()
    out: list[BadBody] = []
    for label, body, reason in _generate(event_type):
        if body not in seen:
            seen.add(body)
            out.append(BadBody(label, body, reason))
    return out


def _generate(event_type: str) -> Iterator[tuple[str, bytes, str]]:
    good = _dump(good_event(event_type, seed="base"))

    # --- the body as a whole ---------------------------------------------------------------
    for label, raw in [
        ("empty", b""),
        ("blank", b"   \n"),
        ("words", b"not json at all"),
        ("open-brace", b"{"),
        ("close-brace", b"}"),
        ("python-dict", b"{'context': {}, 'type': 't'}"),
        ("trailing-comma", b'{"type": "t",}'),
        ("bare-key", b"{type: 1}"),
        ("single-quotes", b"['a']"),
        ("comment", b'/* x */ {"type": "t"}'),
        ("nul-byte-only", b"\x00"),
        ("xml", b"<event/>"),
    ]:
        yield f"body/{label}", raw, ids.NOT_JSON
    for cut in range(1, len(good) - 1, 3):
        yield f"body/truncated-at-{cut}", good[:cut], ids.NOT_JSON
    for label, suffix in [
        ("garbage", b"x"),
        ("brace", b"}"),
        ("comma", b","),
        ("second-object", b"{}"),
        ("nul", b"\x00"),
    ]:
        yield f"body/trailing-{label}", good + suffix, ids.NOT_JSON
    yield "body/utf8-bom", b"\xef\xbb\xbf" + good, ids.NOT_JSON
    for codec in ("utf-16", "utf-32"):  # with a byte order mark: not UTF-8
        yield f"body/{codec}", good.decode().encode(codec), ids.INVALID_TEXT
    for codec in ("utf-16-le", "utf-16-be", "utf-32-le", "utf-32-be"):  # valid UTF-8, NULs
        yield f"body/{codec}", good.decode().encode(codec), ids.NOT_JSON
    for codec in ("latin-1", "cp1252"):
        body = _edit(event_type, pair=_pair("n", "ü"))
        yield f"body/{codec}", body.decode("unicode_escape").encode(codec), ids.INVALID_TEXT
    for label, byteseq in [
        ("ff", b"\xff"),
        ("fe", b"\xfe"),
        ("lone-continuation", b"\x80"),
        ("truncated-2-byte", b"\xc3"),
        ("bad-2-byte", b"\xc3\x28"),
        ("overlong-slash", b"\xc0\xaf"),
        ("overlong-dot", b"\xc0\xae"),
        ("overlong-3-byte", b"\xe0\x80\xaf"),
        ("cesu-surrogate-high", b"\xed\xa0\x80"),
        ("cesu-surrogate-low", b"\xed\xb0\x80"),
        ("5-byte", b"\xf8\x88\x80\x80\x80"),
        ("above-max", b"\xf4\x90\x80\x80"),
    ]:
        yield (
            f"utf8/{label}-in-value",
            good.replace(b'"v"', b'"v' + byteseq + b'"'),
            ids.INVALID_TEXT,
        )
        yield (
            f"utf8/{label}-in-event-id",
            good.replace(b'"eventId":"', b'"eventId":"' + byteseq),
            ids.INVALID_TEXT,
        )
    for label, raw_char in [
        ("nul", b"\x00"),
        ("soh", b"\x01"),
        ("newline", b"\n"),
        ("tab", b"\t"),
        ("unit-separator", b"\x1f"),
    ]:
        yield (
            f"raw-control/{label}-in-value",
            good.replace(b'"v"', b'"v' + raw_char + b'"'),
            ids.NOT_JSON,
        )
    for constant in ("NaN", "Infinity", "-Infinity"):
        body = good[:-1] + f',"extra":{constant}}}'.encode()
        yield f"json/constant-{constant}", body, ids.NOT_JSON
    for digits in (65, 100, 4300, 4301, 5000, 100_000):
        body = good[:-1] + b',"extra":' + b"9" * digits + b"}"
        yield f"number/int-{digits}-digits", body, ids.INVALID_NUMBER
        body = good[:-1] + b',"extra":-' + b"1" * digits + b"}"
        yield f"number/negative-int-{digits}-digits", body, ids.INVALID_NUMBER
    for digits in (65, 400):
        body = good[:-1] + b',"extra":0.' + b"1" * digits + b"}"
        yield f"number/float-{digits}-digits", body, ids.INVALID_NUMBER
    for label, value in [
        ("array", "[]"),
        ("array-of-one", "[1]"),
        ("string", '"event"'),
        ("int", "1"),
        ("float", "1.5"),
        ("true", "true"),
        ("false", "false"),
        ("null", "null"),
        ("wrapped-event", "[" + good.decode() + "]"),
    ]:
        yield f"body/top-level-{label}", value.encode(), "NotAnEvent"
    for depth in (17, 18, 32, 100, 500, 999, 1000, 1001, 3000, 10_000, 100_000):
        for kind in ("[", "{"):
            nested = _nest(depth, kind=kind)
            reason = ids.TOO_LARGE if len(nested) > ids.MAX_EVENT_BYTES else ids.TOO_DEEP
            yield f"depth/{kind}-{depth}-body", nested.encode(), reason
            if depth <= 10_000:
                body = good[:-1] + b',"extra":' + nested.encode() + b"}"
                yield f"depth/{kind}-{depth}-extra-field", body, ids.TOO_DEEP
    for depth in (16, 40, 2000):
        body = good.replace(b'"data":[', b'"data":[' + _nest(depth - 1).encode() + b",")
        yield f"depth/{depth}-in-data", body, ids.TOO_DEEP
        body = good.replace(b'"type":', b'"deep":' + _nest(depth).encode() + b',"type":')
        yield f"depth/{depth}-before-type", body, ids.TOO_DEEP
    too_big = ids.MAX_EVENT_BYTES + 1
    yield "size/padding-spaces", good + b" " * too_big, ids.TOO_LARGE
    yield "size/long-extra-string", good[:-1] + b',"x":"' + b"x" * too_big + b'"}', ids.TOO_LARGE
    yield "size/long-value", good.replace(b'"v"', b'"' + b"v" * too_big + b'"'), ids.TOO_LARGE
    yield (
        "size/long-event-id",
        good.replace(b'"eventId":"', b'"eventId":"' + b"e" * too_big),
        ids.TOO_LARGE,
    )
    yield "size/1MiB", b"[" * (1024 * 1024), ids.TOO_LARGE
    yield "size/invalid-utf8-and-too-big", b"\xff" * too_big, ids.TOO_LARGE
    for count in (ids.MAX_JSON_VALUES + 1, 20_000):
        body = good[:-1] + b',"x":[' + b",".join([b"0"] * count) + b"]}"
        yield f"size/{count}-values", body, ids.TOO_LARGE
    body = good[:-1] + b',"x":{' + b",".join(f'"k{i}":1'.encode() for i in range(12_000)) + b"}}"
    yield "size/12000-members", body, ids.TOO_LARGE
    for label, text in [
        ("high", "\ud800"),
        ("low", "\udfff"),
        ("reversed-pair", "\udc00\ud800"),
        ("high-then-text", "\ud83dx"),
        ("high-at-end", "abc\udbff"),
        ("nul", "\x00"),
        ("nul-inside", "a\x00b"),
        ("nul-trailing", "ab\x00"),
    ]:
        kind = "nul" if "\x00" in text else "surrogate"
        for where, edited in [
            ("extra-value", _edit(event_type, top={"x": text})),
            ("extra-key", _edit(event_type, top={text: 1})),
            ("value", _edit(event_type, pair={"key": "s", "value": text})),
            ("key", _edit(event_type, pair={"key": text, "value": "v"})),
            ("context-extra", _edit(event_type, context={"extra": text})),
        ]:
            yield f"{kind}/{label}-in-{where}", edited, ids.INVALID_TEXT

    # --- the context ----------------------------------------------------------------------------
    for label, value in [
        ("missing", DROP),
        ("null", None),
        ("string", "ctx"),
        ("empty-string", ""),
        ("list", []),
        ("list-of-context", [good_event(event_type)["context"]]),
        ("int", 1),
        ("true", True),
    ]:
        yield f"context/{label}", _edit(event_type, top={"context": value}), "MissingContext"
    yield "context/empty-object", _edit(event_type, top={"context": {}}), "MissingEventId"
    for name, reason in (("eventId", "MissingEventId"), ("correlationId", "MissingCorrelationId")):
        for label, value in [("missing", DROP), ("empty", ""), ("null", None)]:
            yield f"context.{name}/{label}", _edit(event_type, context={name: value}), reason
    for name in ("eventId", "correlationId", "parentEventId", "name", "documentType"):
        values = [*BAD_ID_VALUES]
        if name not in ("eventId", "correlationId"):
            values.append(("null", None))
        for label, value in values:
            expected = ids.WRONG_TYPE if not isinstance(value, str) else ids.INVALID_ID
            yield (
                f"context.{name}/{label}",
                _edit(event_type, context={name: value}),
                _text_reason(value, expected),
            )
            if isinstance(value, str) and _text_reason(value, "") == "":
                raw = _edit(event_type, context={name: value}, ascii_only=False)
                control = any(ord(c) < 0x20 for c in value)
                yield f"context.{name}/{label}-raw", raw, ids.NOT_JSON if control else expected

    # --- the type -------------------------------------------------------------------------------
    for label, value in [("missing", DROP), ("empty", ""), ("null", None)]:
        yield f"type/{label}", _edit(event_type, top={"type": value}), "MissingType"
    for label, value in BAD_EVENT_TYPES:
        expected = ids.WRONG_TYPE if not isinstance(value, str) else ids.INVALID_EVENT_TYPE
        yield f"type/{label}", _edit(event_type, top={"type": value}), _text_reason(value, expected)

    # --- the data -------------------------------------------------------------------------------
    not_arrays: list[tuple[str, Any]] = [
        ("object", {"k": "v"}),
        ("string", "k=v"),
        ("int", 3),
        ("true", True),
    ]
    for label, not_array in not_arrays:
        yield f"data/{label}", _edit(event_type, top={"data": not_array}), ids.WRONG_TYPE
    not_pairs: list[tuple[str, Any]] = [
        ("string", "k=v"),
        ("null", None),
        ("int", 1),
        ("list", ["k", "v"]),
        ("nested-list", [{"key": "k", "value": "v"}]),
    ]
    for label, not_pair in not_pairs:
        yield f"data.pair/{label}", _edit(event_type, pair=not_pair), ids.WRONG_TYPE
    ok = {"key": "ok", "value": "ok"}
    for label, item, reason in [
        ("empty-object", {}, "MissingField"),
        ("no-value", {"key": "k"}, "MissingField"),
        ("no-key", {"value": "v"}, "MissingField"),
        ("extra-field", {"key": "k", "value": "v", "x": "y"}, "UnknownField"),
        ("uppercase-fields", {"Key": "k", "Value": "v"}, "UnknownField"),
        ("key-null", {"key": None, "value": "v"}, ids.WRONG_TYPE),
        ("key-int", {"key": 1, "value": "v"}, ids.WRONG_TYPE),
        ("key-list", {"key": ["k"], "value": "v"}, ids.WRONG_TYPE),
        ("key-empty", {"key": "", "value": "v"}, ids.INVALID_KEY),
        ("key-newline", {"key": "a\nb", "value": "v"}, ids.INVALID_KEY),
        ("key-tab", {"key": "a\tb", "value": "v"}, ids.INVALID_KEY),
        ("key-del", {"key": "a\x7f", "value": "v"}, ids.INVALID_KEY),
        ("key-c1", {"key": "a\x9b", "value": "v"}, ids.INVALID_KEY),
        ("key-too-long", {"key": "k" * (ids.MAX_KEY_CHARS + 1), "value": "v"}, ids.TOO_LARGE),
        ("value-null", {"key": "k", "value": None}, ids.WRONG_TYPE),
        ("value-int", {"key": "k", "value": 1}, ids.WRONG_TYPE),
        ("value-float", {"key": "k", "value": 0.5}, ids.WRONG_TYPE),
        ("value-true", {"key": "k", "value": True}, ids.WRONG_TYPE),
        ("value-list", {"key": "k", "value": ["v"]}, ids.WRONG_TYPE),
        ("value-object", {"key": "k", "value": {"v": 1}}, ids.WRONG_TYPE),
        ("value-too-long", {"key": "k", "value": "v" * (ids.MAX_VALUE_CHARS + 1)}, ids.TOO_LARGE),
    ]:
        yield f"data.pair/{label}-first", _edit(event_type, top={"data": [item, ok]}), reason
        yield f"data.pair/{label}-last", _edit(event_type, top={"data": [ok, item]}), reason
    for count in (ids.MAX_PAIRS + 1, 2 * ids.MAX_PAIRS):
        many = [{"key": f"k{i}", "value": ""} for i in range(count)]
        yield f"data/{count}-pairs", _edit(event_type, top={"data": many}), ids.TOO_LARGE


def good_bodies(event_type: str = "poison.test") -> list[tuple[str, bytes]]:
    """Return valid bodies at the edges of the rules; each must parse."""
    ids_ok = [
        ("cli-default-dev", "dev"),
        ("uppercase-uuid", _uuid("up").upper()),
        ("dots-underscores-dashes", "My.Flow_2018-v1"),
        ("single-char", "x"),
        ("digit-first", "1abc"),
        ("max-length", "a" * ids.MAX_ID_CHARS),
        ("ends-with-dot", "abc."),
    ]
    out: list[tuple[str, bytes]] = [
        ("plain", _edit(event_type)),
        ("no-data", _edit(event_type, top={"data": DROP})),
        ("null-data", _edit(event_type, top={"data": None})),
        ("empty-data", _edit(event_type, top={"data": []})),
        ("module-name", _edit(event_type, context={"name": "digit-classifier"})),
        ("empty-optional-context", _edit(event_type, context=dict.fromkeys(_OPTIONAL, ""))),
        ("no-optional-context", _edit(event_type, context=dict.fromkeys(_OPTIONAL, DROP))),
        ("type-max-length", _edit(event_type, top={"type": "t" * ids.MAX_EVENT_TYPE_CHARS})),
        ("type-2018", _edit(event_type, top={"type": "frontapi.new_link"})),
        ("unicode-value", _edit(event_type, pair=_pair("note", "ünïcødé ✓"), ascii_only=False)),
        ("escaped-unicode-value", _edit(event_type, pair=_pair("note", "ünïcødé ✓"))),
        ("emoji-pair-escaped", _edit(event_type, pair=_pair("e", "\U0001f600"))),
        ("multiline-value", _edit(event_type, pair=_pair("text", "a\nb\tc\r\n"))),
        ("empty-value", _edit(event_type, pair=_pair("k2", ""))),
        ("unicode-key", _edit(event_type, pair=_pair("clé", "v"))),
        ("file-like-key", _edit(event_type, pair=_pair("frames/0001.png", "file:///x"))),
        ("max-key", _edit(event_type, pair=_pair("k" * ids.MAX_KEY_CHARS, "v"))),
        ("max-value", _edit(event_type, pair=_pair("big", "v" * ids.MAX_VALUE_CHARS))),
        (
            "max-pairs",
            _edit(event_type, top={"data": [_pair(f"k{i}", "v") for i in range(ids.MAX_PAIRS)]}),
        ),
        (
            "extra-fields",
            _edit(event_type, top={"priority": 3, "trace": {"p": "00-abc"}, "r": 0.5, "n": None}),
        ),
        (
            "extra-nested-to-the-limit",
            _edit(event_type, top={"x": json.loads(_nest(ids.MAX_JSON_DEPTH - 1))}),
        ),
        ("int-64-digits", _edit(event_type, top={"x": int("9" * ids.MAX_NUMBER_CHARS)})),
        ("backslash-u-text", _edit(event_type, pair=_pair("path", "C:\\ud800\\x"))),
        ("pretty-printed", json.dumps(good_event(event_type, seed="pretty"), indent=4).encode()),
    ]
    for label, value in ids_ok:
        out.append((f"correlation-{label}", _edit(event_type, context={"correlationId": value})))
        out.append((f"event-id-{label}", _edit(event_type, context={"eventId": value})))
        out.append((f"parent-{label}", _edit(event_type, context={"parentEventId": value})))
    return out
