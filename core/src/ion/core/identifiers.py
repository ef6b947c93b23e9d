"""One set of rules for what may name things in Ion, and how big an event may be.

Ids, names, event types, file names and data end up in blob keys, log paths, job names, URLs
and bus topics, so every way in — the bus reader (`Event.from_json`), root-event creation
(`new_root_event`), the front API, the gRPC `Publish` call and the CLI (through it) — checks
them here, with the same rules:

| what | rule |
|---|---|
| event id, correlation id, parent event id, context name, document type | 1-128 characters: letters, digits, `.`, `_`, `-`; starting with a letter or digit; no `..` |
| event type | letters, digits, `.`, `_`, `-`; starting with a letter or digit; at most 120 characters |
| file name (an uploaded file) | one plain name: no `/` or `\\`, not `.` or `..`, no control characters, at most 255 UTF-8 bytes |
| data key | 1-256 characters, no control characters |
| data value | at most 65536 characters, no NUL |
| text anywhere | valid UTF-8 (no lone surrogates) |
| Secret, service account name (module spec) | a DNS-1123 subdomain: lowercase letters, digits, `-`, `.`; at most 253 |
| node selector key, toleration key (module spec) | a Kubernetes qualified name: `[prefix/]name`, name at most 63 of `[A-Za-z0-9_.-]` starting and ending alphanumeric |
| node selector value | empty, or like the name part of a qualified name |
| image, handler image (module spec) | an image reference `[host[:port]/]path[:tag][@algorithm:digest]`, at most 255 |
| a bus message | at most 256 KiB, JSON nested at most 16 deep, at most 10000 JSON values, at most 1000 data pairs |

2018 ids are UUIDv4 strings; the id rule keeps everything a 2018 client could send that is safe
(the CLI's default correlation id `dev`, uppercase, dots, underscores, dashes) and refuses path
separators, `..`, control characters and anything over the bound.

Every check raises `errors.ValidationError` whose `field` names what was wrong and whose `rule`
is a stable CamelCase reason (`InvalidId`, `TooLarge`, ...); the bus reader turns it into a
`PoisonMessageError` with that reason, so the message is dead-lettered at once.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from typing import Any, Final

from ion.core import errors

MAX_ID_CHARS: Final = 128
MAX_EVENT_TYPE_CHARS: Final = 120
MAX_FILE_NAME_BYTES: Final = 255
MAX_KEY_CHARS: Final = 256
MAX_VALUE_CHARS: Final = 64 * 1024
MAX_PAIRS: Final = 1000
"""Data pairs of one event."""
MAX_FILES: Final = 1000
"""Files attached to one root event."""
MAX_EVENT_BYTES: Final = 256 * 1024
"""A whole bus message body (Azure Service Bus standard tier caps a message at 256 KB)."""
MAX_JSON_DEPTH: Final = 16
"""Nesting of arrays and objects (an event needs 3)."""
MAX_JSON_VALUES: Final = 10_000
"""Values (strings, numbers, arrays, objects...) in one JSON body."""
MAX_NUMBER_CHARS: Final = 64

# Reasons: stable CamelCase words, the `rule` of a ValidationError and the dead-letter reason.
NOT_JSON: Final = "NotJson"
INVALID_TEXT: Final = "InvalidText"
INVALID_NUMBER: Final = "InvalidNumber"
TOO_LARGE: Final = "TooLarge"
TOO_DEEP: Final = "TooDeep"
WRONG_TYPE: Final = "WrongType"
INVALID_ID: Final = "InvalidId"
INVALID_EVENT_TYPE: Final = "InvalidEventType"
INVALID_FILE_NAME: Final = "InvalidFileName"
INVALID_KEY: Final = "InvalidKey"
DUPLICATE_FILE_NAME: Final = "DuplicateFileName"

ID_RULE: Final = (
    "1 to 128 characters: letters, digits, '.', '_' and '-', starting with a letter or digit,"
    " without '..'"
)
EVENT_TYPE_RULE: Final = (
    "letters, digits, '.', '_' and '-', starting with a letter or digit, at most 120 characters"
)
FILE_NAME_RULE: Final = (
    "a plain file name: no '/' or '\\', not '.' or '..', no control characters, at most 255"
    " UTF-8 bytes"
)
KEY_RULE: Final = "1 to 256 characters without control characters"

_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
_EVENT_TYPE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,119}")
_SURROGATE = re.compile("[\ud800-\udfff]")
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")
_BAD_FILE_NAME = re.compile("[\x00-\x1f\x7f-\x9f/\\\\\ud800-\udfff]")
_BAD_KEY = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff]")
_BAD_VALUE = re.compile("[\x00\ud800-\udfff]")


def shown(value: str, limit: int = 40) -> str:
    """Return `value` as a short repr for an error message (control characters escaped)."""
    return repr(value) if len(value) <= limit else repr(value[:limit]) + f"... ({len(value)} chars)"


def _fail(message: str, *, field: str, rule: str) -> errors.ValidationError:
    return errors.ValidationError(message, field=field, rule=rule)


def _string(value: object, *, field: str, what: str) -> str:
    if not isinstance(value, str):
        raise _fail(
            f"{field}: {what} must be a string, not {type(value).__name__}",
            field=field,
            rule=WRONG_TYPE,
        )
    return value


def check_id(value: object, *, field: str, allow_empty: bool = False) -> str:
    """Return `value` if it is a valid id (or name, see the module table).

    Raises:
        errors.ValidationError: rule `InvalidId` (`WrongType` if not a string).
    """
    text = _string(value, field=field, what="an id")
    if not text and allow_empty:
        return text
    if len(text) > MAX_ID_CHARS:
        raise _fail(
            f"{field}: {shown(text)} is longer than {MAX_ID_CHARS} characters; use {ID_RULE}",
            field=field,
            rule=INVALID_ID,
        )
    if not _ID.fullmatch(text) or ".." in text:
        raise _fail(
            f"{field}: {shown(text)} is not a valid id: use {ID_RULE}", field=field, rule=INVALID_ID
        )
    return text


def is_event_type(value: str) -> bool:
    """True if `value` follows the event type rule."""
    return _EVENT_TYPE.fullmatch(value) is not None


def check_event_type(value: object, *, field: str = "type") -> str:
    """Return `value` if it is a valid event type (a bus topic name).

    Raises:
        errors.ValidationError: rule `InvalidEventType` (`WrongType` if not a string).
    """
    text = _string(value, field=field, what="an event type")
    if not is_event_type(text):
        raise _fail(
            f"{field}: {shown(text)} is not a valid event type: use {EVENT_TYPE_RULE}",
            field=field,
            rule=INVALID_EVENT_TYPE,
        )
    return text


def check_file_name(value: object, *, field: str = "files") -> str:
    """Return `value` if it is a plain file name to attach (no directories).

    Raises:
        errors.ValidationError: rule `InvalidFileName` (`WrongType` if not a string).
    """
    text = _string(value, field=field, what="a file name")
    if (
        not text
        or text in (".", "..")
        or _BAD_FILE_NAME.search(text)
        or len(text.encode()) > MAX_FILE_NAME_BYTES
    ):
        raise _fail(
            f"{field}: file name {shown(text)} is not usable: use {FILE_NAME_RULE}",
            field=field,
            rule=INVALID_FILE_NAME,
        )
    return text


def check_file_names(names: Iterable[str], *, field: str = "files") -> list[str]:
    """Return `names` if each is a valid file name, no two are equal and there are not too many.

    Raises:
        errors.ValidationError: `InvalidFileName`, `DuplicateFileName` or `TooLarge`.
    """
    checked = [check_file_name(name, field=field) for name in names]
    if len(checked) > MAX_FILES:
        raise _fail(
            f"{field}: {len(checked)} files are attached; at most {MAX_FILES} may be",
            field=field,
            rule=TOO_LARGE,
        )
    seen: set[str] = set()
    for name in checked:
        if name in seen:
            raise _fail(
                f"{field}: two files are named {shown(name)}",
                field=field,
                rule=DUPLICATE_FILE_NAME,
            )
        seen.add(name)
    return checked


def check_text(value: object, *, field: str) -> str:
    """Return `value` if it is a string that encodes as UTF-8 and holds no NUL.

    Raises:
        errors.ValidationError: rule `InvalidText` (`WrongType` if not a string).
    """
    text = _string(value, field=field, what="text")
    if _BAD_VALUE.search(text):
        raise _fail(
            f"{field}: {shown(text)} holds a NUL character or a lone surrogate (not UTF-8 text)",
            field=field,
            rule=INVALID_TEXT,
        )
    return text


def check_key(value: object, *, field: str) -> str:
    """Return `value` if it is a valid data key.

    Raises:
        errors.ValidationError: `InvalidKey`, `TooLarge` (`WrongType` if not a string).
    """
    text = _string(value, field=field, what="a key")
    if len(text) > MAX_KEY_CHARS:
        raise _fail(
            f"{field}: key {shown(text)} is longer than {MAX_KEY_CHARS} characters",
            field=field,
            rule=TOO_LARGE,
        )
    if not text or _BAD_KEY.search(text):
        raise _fail(
            f"{field}: key {shown(text)} is not valid: use {KEY_RULE}",
            field=field,
            rule=INVALID_KEY,
        )
    return text


def check_value(value: object, *, field: str) -> str:
    """Return `value` if it is a valid data value (a string: the 2018 contract's values are).

    Raises:
        errors.ValidationError: `WrongType`, `TooLarge` or `InvalidText`.
    """
    if not isinstance(value, str):
        raise _fail(
            f"{field}: values must be strings (the 2018 contract has string values only),"
            f" not {type(value).__name__}",
            field=field,
            rule=WRONG_TYPE,
        )
    if len(value) > MAX_VALUE_CHARS:
        raise _fail(
            f"{field}: value is {len(value)} characters long; at most {MAX_VALUE_CHARS} may be",
            field=field,
            rule=TOO_LARGE,
        )
    return check_text(value, field=field)


def check_data(data: Mapping[str, str] | Iterable[tuple[str, str]], *, field: str = "data") -> None:
    """Check an event's data: at most MAX_PAIRS pairs, each key and value valid.

    Raises:
        errors.ValidationError: the first broken rule; `field` is `data[<key>]`-style.
    """
    items = list(data.items() if isinstance(data, Mapping) else data)
    if len(items) > MAX_PAIRS:
        raise _fail(
            f"{field}: {len(items)} pairs; at most {MAX_PAIRS} may be",
            field=field,
            rule=TOO_LARGE,
        )
    for key, value in items:
        check_key(key, field=field)
        check_value(value, field=f"{field}.{key}" if isinstance(key, str) else field)


def check_root_request(
    event_type: object,
    *,
    data: Mapping[str, str] | Iterable[tuple[str, str]] = (),
    correlation_id: str | None = None,
    file_names: Iterable[str] = (),
) -> None:
    """Check what an entry point is asked to raise, with API field names.

    Fields: `event_type`, `correlation_id` (empty or None: a new flow), `data`, `files`.

    Raises:
        errors.ValidationError: the first broken rule.
    """
    check_event_type(event_type, field="event_type")
    if correlation_id:
        check_id(correlation_id, field="correlation_id")
    check_data(data, field="data")
    check_file_names(file_names, field="files")


# --- Kubernetes names --------------------------------------------------------------------
# Module specs carry names Kubernetes checks again when a job is created (node selector labels,
# tolerations, Secret and service account names, images); checking them here with the same
# rules refuses a bad spec at create time, with the field, instead of failing every job later.

MAX_DNS_SUBDOMAIN_CHARS: Final = 253
MAX_LABEL_CHARS: Final = 63
"""The name part of a qualified name, and a label value."""
MAX_IMAGE_REFERENCE_CHARS: Final = 255

INVALID_QUALIFIED_NAME: Final = "InvalidQualifiedName"
INVALID_LABEL_VALUE: Final = "InvalidLabelValue"
INVALID_DNS_SUBDOMAIN: Final = "InvalidDnsSubdomain"
INVALID_IMAGE_REFERENCE: Final = "InvalidImageReference"
DUPLICATE_NAME: Final = "DuplicateName"

DNS_SUBDOMAIN_RULE: Final = (
    "a DNS-1123 subdomain: lowercase letters, digits, '-' and '.', starting and ending with a"
    " letter or digit, at most 253 characters"
)
LABEL_NAME_RULE: Final = (
    "at most 63 letters, digits, '-', '_' and '.', starting and ending with a letter or digit"
)
QUALIFIED_NAME_RULE: Final = (
    f"a Kubernetes qualified name: a name ({LABEL_NAME_RULE}), optionally after a prefix and"
    " '/' (the prefix being a DNS-1123 subdomain: lowercase letters, digits, '-' and '.', at"
    " most 253 characters)"
)
LABEL_VALUE_RULE: Final = f"empty, or {LABEL_NAME_RULE}"
IMAGE_REFERENCE_RULE: Final = (
    "an image reference: [host[:port]/]path[:tag][@algorithm:digest], path components of"
    " lowercase letters and digits joined by '.', '_', '__' or '-', a tag of at most 128 letters,"
    " digits, '_', '.' and '-', no whitespace, at most 255 characters"
)

_DNS_LABEL = r"[a-z0-9](?:[-a-z0-9]*[a-z0-9])?"
_DNS_SUBDOMAIN = re.compile(rf"{_DNS_LABEL}(?:\.{_DNS_LABEL})*")
_LABEL_NAME = re.compile(r"[A-Za-z0-9](?:[-A-Za-z0-9_.]*[A-Za-z0-9])?")
# The grammar of github.com/distribution/reference (docker's): a registry host (domain
# components, optional port), lowercase path components, a tag, a digest.
_DOMAIN_PART = r"(?:[A-Za-z0-9]|[A-Za-z0-9][-A-Za-z0-9]*[A-Za-z0-9])"
_DOMAIN = rf"{_DOMAIN_PART}(?:\.{_DOMAIN_PART})*(?::[0-9]+)?"
_PATH_PART = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_TAG = r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}"
_DIGEST = r"[a-z0-9]+(?:[-_+.][a-z0-9]+)*:[0-9a-fA-F]{32,}"
_IMAGE_REFERENCE = re.compile(
    rf"(?:{_DOMAIN}/)?{_PATH_PART}(?:/{_PATH_PART})*(?::{_TAG})?(?:@{_DIGEST})?"
)


def is_dns_subdomain(value: str) -> bool:
    """True if `value` is a DNS-1123 subdomain (a Kubernetes object name such as a Secret's)."""
    return len(value) <= MAX_DNS_SUBDOMAIN_CHARS and _DNS_SUBDOMAIN.fullmatch(value) is not None


def is_qualified_name(value: str) -> bool:
    """True if `value` is a Kubernetes qualified name (a label key, a taint key)."""
    prefix, slash, name = value.rpartition("/")
    if slash and not is_dns_subdomain(prefix):
        return False
    return len(name) <= MAX_LABEL_CHARS and _LABEL_NAME.fullmatch(name) is not None


def is_label_value(value: str) -> bool:
    """True if `value` is a Kubernetes label value (empty is one)."""
    return not value or (len(value) <= MAX_LABEL_CHARS and _LABEL_NAME.fullmatch(value) is not None)


def is_image_reference(value: str) -> bool:
    """True if `value` is a container image reference (`registry:5000/team/app:1.2@sha256:...`)."""
    return len(value) <= MAX_IMAGE_REFERENCE_CHARS and _IMAGE_REFERENCE.fullmatch(value) is not None


def check_dns_subdomain(value: object, *, field: str, allow_empty: bool = False) -> str:
    """Return `value` if it is a DNS-1123 subdomain (or empty, with `allow_empty`).

    Raises:
        errors.ValidationError: rule `InvalidDnsSubdomain` (`WrongType` if not a string).
    """
    text = _string(value, field=field, what="a name")
    if (text or not allow_empty) and not is_dns_subdomain(text):
        raise _fail(
            f"{field}: {shown(text)} is not a valid name: use {DNS_SUBDOMAIN_RULE}",
            field=field,
            rule=INVALID_DNS_SUBDOMAIN,
        )
    return text


def check_dns_subdomains(names: Iterable[object], *, field: str) -> list[str]:
    """Return `names` if each is a DNS-1123 subdomain and none is listed twice.

    Raises:
        errors.ValidationError: `InvalidDnsSubdomain` or `DuplicateName`.
    """
    checked: list[str] = []
    for name in names:
        text = check_dns_subdomain(name, field=field)
        if text in checked:
            raise _fail(f"{field}: {shown(text)} is listed twice", field=field, rule=DUPLICATE_NAME)
        checked.append(text)
    return checked


def check_qualified_name(value: object, *, field: str, allow_empty: bool = False) -> str:
    """Return `value` if it is a Kubernetes qualified name (or empty, with `allow_empty`).

    Raises:
        errors.ValidationError: rule `InvalidQualifiedName` (`WrongType` if not a string).
    """
    text = _string(value, field=field, what="a name")
    if (text or not allow_empty) and not is_qualified_name(text):
        raise _fail(
            f"{field}: {shown(text)} is not a valid key: use {QUALIFIED_NAME_RULE}",
            field=field,
            rule=INVALID_QUALIFIED_NAME,
        )
    return text


def check_label_value(value: object, *, field: str) -> str:
    """Return `value` if it is a Kubernetes label value.

    Raises:
        errors.ValidationError: rule `InvalidLabelValue` (`WrongType` if not a string).
    """
    text = _string(value, field=field, what="a label value")
    if not is_label_value(text):
        raise _fail(
            f"{field}: {shown(text)} is not a valid label value: use {LABEL_VALUE_RULE}",
            field=field,
            rule=INVALID_LABEL_VALUE,
        )
    return text


def check_labels(labels: Mapping[str, str], *, field: str) -> dict[str, str]:
    """Return `labels` if every key is a qualified name and every value a label value.

    Raises:
        errors.ValidationError: `InvalidQualifiedName` or `InvalidLabelValue`.
    """
    for key, value in labels.items():
        check_qualified_name(key, field=field)
        check_label_value(value, field=field)
    return dict(labels)


def check_image_reference(value: object, *, field: str, allow_empty: bool = False) -> str:
    """Return `value` if it is a container image reference (or empty, with `allow_empty`).

    Raises:
        errors.ValidationError: rule `InvalidImageReference` (`WrongType` if not a string).
    """
    text = _string(value, field=field, what="an image")
    if not text and allow_empty:
        return text
    if len(text) > MAX_IMAGE_REFERENCE_CHARS:
        raise _fail(
            f"{field}: {shown(text)} is longer than {MAX_IMAGE_REFERENCE_CHARS} characters",
            field=field,
            rule=INVALID_IMAGE_REFERENCE,
        )
    if not is_image_reference(text):
        raise _fail(
            f"{field}: {shown(text)} is not a valid image: use {IMAGE_REFERENCE_RULE}",
            field=field,
            rule=INVALID_IMAGE_REFERENCE,
        )
    return text


# --- JSON ------------------------------------------------------------------------------------


class _BadNumber(Exception):
    pass


class _BadConstant(Exception):
    pass


def _parse_int(text: str) -> int:
    if len(text) > MAX_NUMBER_CHARS:
        raise _BadNumber(text)
    return int(text)


def _parse_float(text: str) -> float:
    if len(text) > MAX_NUMBER_CHARS:
        raise _BadNumber(text)
    return float(text)


def _parse_constant(text: str) -> Any:
    raise _BadConstant(text)


_DECODER = json.JSONDecoder(
    parse_int=_parse_int, parse_float=_parse_float, parse_constant=_parse_constant
)


def as_text(raw: bytes | bytearray | memoryview | str, *, field: str, max_bytes: int) -> str:
    """Return `raw` as text if it is at most `max_bytes` of valid UTF-8.

    Raises:
        errors.ValidationError: `TooLarge`, `InvalidText` or `WrongType` (not bytes or text).
    """
    if isinstance(raw, str):
        if len(raw) > max_bytes:
            raise _too_big(len(raw), field=field, max_bytes=max_bytes)
        try:
            size = len(raw.encode())
        except UnicodeEncodeError as err:
            raise _fail(
                f"{field} is not valid UTF-8 text: {err.reason} at {err.start}",
                field=field,
                rule=INVALID_TEXT,
            ) from err
        if size > max_bytes:
            raise _too_big(size, field=field, max_bytes=max_bytes)
        return raw
    if not isinstance(raw, bytes | bytearray | memoryview):
        raise _fail(
            f"{field} must be bytes or text, not {type(raw).__name__}",
            field=field,
            rule=WRONG_TYPE,
        )
    if len(raw) > max_bytes:
        raise _too_big(len(raw), field=field, max_bytes=max_bytes)
    try:
        return bytes(raw).decode()
    except UnicodeDecodeError as err:
        raise _fail(
            f"{field} is not valid UTF-8: {err.reason} at byte {err.start}",
            field=field,
            rule=INVALID_TEXT,
        ) from err


def _too_big(size: int, *, field: str, max_bytes: int) -> errors.ValidationError:
    return _fail(
        f"{field} is {size} bytes; at most {max_bytes} may be", field=field, rule=TOO_LARGE
    )


def parse_json(
    raw: bytes | bytearray | memoryview | str,
    *,
    field: str = "body",
    max_bytes: int = MAX_EVENT_BYTES,
    max_depth: int = MAX_JSON_DEPTH,
    max_values: int = MAX_JSON_VALUES,
    root: str = "",
) -> Any:
    """Parse a JSON document within bounds: size, UTF-8, nesting, number of values, text.

    Strict JSON: no `NaN`/`Infinity`, no numbers longer than 64 characters, no NUL or lone
    surrogate in any string (escaped or not). Errors name the JSON path in `field`
    (`data.0.value`, after `root` if given; `field` itself for the document as a whole).

    Raises:
        errors.ValidationError: `TooLarge`, `InvalidText`, `NotJson`, `InvalidNumber`,
            `TooDeep` or `WrongType`.
    """
    text = as_text(raw, field=field, max_bytes=max_bytes)
    try:
        body = _DECODER.decode(text)
    except json.JSONDecodeError as err:
        raise _fail(
            f"{field} is not JSON: {err.msg} (line {err.lineno}, column {err.colno})",
            field=field,
            rule=NOT_JSON,
        ) from err
    except _BadNumber as err:
        raise _fail(
            f"{field} holds a number of more than {MAX_NUMBER_CHARS} characters",
            field=field,
            rule=INVALID_NUMBER,
        ) from err
    except _BadConstant as err:
        raise _fail(
            f"{field} is not JSON: {err} is not a JSON value", field=field, rule=NOT_JSON
        ) from err
    except RecursionError as err:
        raise _fail(
            f"{field} is nested deeper than {max_depth} levels", field=field, rule=TOO_DEEP
        ) from err
    except ValueError as err:  # any other refusal of the decoder
        raise _fail(f"{field} is not JSON: {err}", field=field, rule=NOT_JSON) from err
    # Text can only hold a NUL or a lone surrogate through a \u escape (raw control characters
    # are refused by the decoder, and `text` is valid UTF-8), so strings are searched only then.
    _check_tree(
        body,
        field=field,
        max_depth=max_depth,
        max_values=max_values,
        check_strings="\\u" in text,
        root=root,
    )
    return body


_PLAIN_KEY = re.compile(r"[A-Za-z0-9_-]{1,64}")

_Path = tuple[Any, str | int] | None
"""A JSON path as a linked list, (parent path, key), rendered only for an error."""


def _render(path: _Path, field: str, root: str = "") -> str:
    if path is None:
        return field
    parts: list[str] = []
    while path is not None:
        path, key = path
        if isinstance(key, int) or _PLAIN_KEY.fullmatch(key):
            parts.append(str(key))
        else:
            parts.append(shown(key, 20))
    if root:
        parts.append(root)
    return ".".join(reversed(parts))


def _check_tree(
    body: Any, *, field: str, max_depth: int, max_values: int, check_strings: bool, root: str
) -> None:
    """Bound nesting and value count; with `check_strings`, refuse NUL and lone surrogates.

    Paths in errors are relative to the body (`context.eventId`, `data.0.value`); the body
    itself is `field`.
    """

    def bad_text(text: str, path: _Path, what: str = "") -> errors.ValidationError:
        where = _render(path, field, root)
        return _fail(
            f"{where}: {what}{shown(text)} holds a NUL character or a lone surrogate",
            field=where,
            rule=INVALID_TEXT,
        )

    if isinstance(body, str):
        if check_strings and _BAD_VALUE.search(body):
            raise bad_text(body, None)
        return
    if not isinstance(body, dict | list):
        return
    count = 1
    stack: list[tuple[Any, int, _Path]] = [(body, 0, None)]
    while stack:
        node, depth, path = stack.pop()
        if depth >= max_depth:
            where = _render(path, field, root)
            raise _fail(
                f"{where} is nested deeper than {max_depth} levels", field=where, rule=TOO_DEEP
            )
        count += len(node)
        if count > max_values:
            raise _fail(
                f"{field} holds more than {max_values} JSON values", field=field, rule=TOO_LARGE
            )
        is_dict = isinstance(node, dict)
        for key, value in node.items() if is_dict else enumerate(node):
            if is_dict and check_strings and isinstance(key, str) and _BAD_VALUE.search(key):
                raise bad_text(key, path, "key ")
            if isinstance(value, dict | list):
                stack.append((value, depth + 1, (path, key)))
            elif check_strings and isinstance(value, str) and _BAD_VALUE.search(value):
                raise bad_text(value, (path, key))
