"""Shared Key authentication as the Batch service checks it.

The string to sign (REST docs, "Authenticate requests to Azure Batch"):

    VERB\\n Content-Encoding\\n Content-Language\\n Content-Length\\n Content-MD5\\n Content-Type\\n
    Date\\n If-Modified-Since\\n If-Match\\n If-None-Match\\n If-Unmodified-Since\\n Range\\n
    CanonicalizedHeaders CanonicalizedResource

CanonicalizedHeaders: every `ocp-*` header, lower-cased, sorted, `name:value\\n`.
CanonicalizedResource: `/<account><path>` then, per query parameter sorted by lower-cased name,
`\\n<name>:<decoded value>` (empty values left out). A request that is not a GET or HEAD and
has no Content-Length is signed with `0`, as the SDK signs it. The signature is
base64(HMAC-SHA256(base64-decoded key, string)), and the request date (`ocp-date`, else `Date`)
must be within 15 minutes of now.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from urllib.parse import parse_qs

SIGNED_HEADERS = (
    "content-encoding",
    "content-language",
    "content-length",
    "content-md5",
    "content-type",
    "date",
    "if-modified-since",
    "if-match",
    "if-none-match",
    "if-unmodified-since",
    "range",
)
MAX_SKEW = timedelta(minutes=15)


class AuthFailure(Exception):
    """The request is not signed by the account's key; `detail` says how."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


def string_to_sign(
    method: str, raw_path: str, query: str, headers: Mapping[str, str], account: str
) -> str:
    """The string the service signs for a request."""
    lower = {k.lower(): v for k, v in headers.items() if v}
    if method not in ("GET", "HEAD"):
        lower.setdefault("content-length", "0")
    text = method + "\n" + "\n".join(lower.get(h, "") for h in SIGNED_HEADERS) + "\n"
    for name, value in sorted((k, v) for k, v in lower.items() if k.startswith("ocp-")):
        text += f"{name}:{value}\n"
    text += f"/{account}{raw_path}"
    params = parse_qs(query)
    for name in sorted(params, key=str.lower):
        values = [v for v in params[name] if v]
        if values:
            text += f"\n{name.lower()}:{','.join(sorted(values))}"
    return text


def sign(key: str, text: str) -> str:
    """base64 HMAC-SHA256 of `text` with the base64 `key`."""
    digest = hmac.new(base64.b64decode(key), text.encode(), hashlib.sha256).digest()
    return base64.b64encode(digest).decode()


def verify(
    method: str,
    raw_path: str,
    query: str,
    headers: Mapping[str, str],
    *,
    account: str,
    key: str,
    now: datetime | None = None,
) -> None:
    """Check the request's Authorization header.

    Raises:
        AuthFailure: missing, malformed, for another account, stale, or a wrong signature.
    """
    lower = {k.lower(): v for k, v in headers.items()}
    auth = lower.get("authorization", "")
    if not auth:
        raise AuthFailure("Server failed to authenticate the request: no Authorization header.")
    scheme, _, credential = auth.partition(" ")
    name, _, signature = credential.partition(":")
    if scheme != "SharedKey" or not signature:
        raise AuthFailure(f"The authentication scheme of {auth[:40]!r} is not supported.")
    if name != account:
        raise AuthFailure(f"The account {name!r} in the Authorization header is not this account.")
    stamp = lower.get("ocp-date") or lower.get("date") or ""
    try:
        when = parsedate_to_datetime(stamp)
    except (TypeError, ValueError):
        raise AuthFailure("The request has no valid ocp-date or Date header.") from None
    if abs((now or datetime.now(UTC)) - when) > MAX_SKEW:
        raise AuthFailure(f"Request date header too old: {stamp!r}.")
    expected = sign(key, string_to_sign(method, raw_path, query, headers, account))
    if not hmac.compare_digest(expected, signature):
        raise AuthFailure(
            f"The MAC signature found in the HTTP request '{signature}' is not the same as any "
            "computed signature."
        )
