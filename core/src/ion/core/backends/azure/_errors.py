"""Translate Azure SDK errors into `ion.core.errors`, so callers branch on Ion types only.

One mapping for Blob Storage and Cosmos DB (their errors share `azure.core.exceptions`). The
message keeps the service's status and error code but never the request URL, so SAS tokens and
keys cannot leak into logs; the SDK error stays chained as ``__cause__``.
"""

from __future__ import annotations

from datetime import timedelta

from azure.core import exceptions as az

from ion.core import errors

_TRANSIENT_STATUS = frozenset({408, 429, 500, 502, 503, 504})


def _retry_after(err: az.AzureError) -> timedelta | None:
    response = getattr(err, "response", None)
    headers = getattr(response, "headers", None) or {}
    try:
        if "x-ms-retry-after-ms" in headers:
            return timedelta(milliseconds=float(headers["x-ms-retry-after-ms"]))
        if "Retry-After" in headers:
            return timedelta(seconds=float(headers["Retry-After"]))
    except ValueError:
        return None
    return None


def _summary(err: az.AzureError) -> str:
    status = getattr(err, "status_code", None)
    code = getattr(err, "error_code", None)
    code_text = getattr(code, "value", code)
    first_line = (str(getattr(err, "message", "") or err).strip().splitlines() or [""])[0]
    head = " ".join(str(p) for p in (status, code_text) if p)
    return f"{head}: {first_line[:300]}" if head else first_line[:300]


def translate(err: az.AzureError, action: str) -> errors.IonError:
    """Return the Ion error for an SDK error raised while doing `action` (raise it `from err`)."""
    status = getattr(err, "status_code", None)
    text = f"{action} failed: {_summary(err)}"
    if isinstance(err, az.ResourceNotFoundError) or status == 404:
        return errors.NotFoundError(text)
    if isinstance(err, az.ResourceExistsError | az.ResourceModifiedError) or status in (409, 412):
        return errors.ConflictError(text)
    if isinstance(err, az.ClientAuthenticationError) or status in (401, 403):
        return errors.ConfigError(
            f"{text}; check the credentials in the environment and the identity's role"
        )
    if isinstance(err, az.HttpResponseError) and status is not None and 400 <= status < 500:
        if status in _TRANSIENT_STATUS:
            return errors.TransientError(text, retry_after=_retry_after(err))
        code = getattr(err, "error_code", None)
        return errors.ValidationError(text, rule=str(getattr(code, "value", code) or status))
    # 5xx, timeouts, connection resets, truncated bodies: all worth retrying.
    return errors.TransientError(text, retry_after=_retry_after(err))
