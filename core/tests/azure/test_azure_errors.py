"""Azure SDK errors become Ion errors by kind, keep the SDK error as cause, and leak no URL."""

from __future__ import annotations

from datetime import timedelta
from types import SimpleNamespace

import pytest
from azure.core import exceptions as az

from ion.core import errors
from ion.core.backends.azure._errors import translate


def _http(status: int, *, headers: dict[str, str] | None = None) -> az.HttpResponseError:
    err = az.HttpResponseError(message=f"status {status}")
    err.status_code = status
    err.response = SimpleNamespace(headers=headers or {})
    return err


@pytest.mark.parametrize(
    ("err", "kind"),
    [
        (az.ResourceNotFoundError("BlobNotFound"), errors.NotFoundError),
        (_http(404), errors.NotFoundError),
        (az.ResourceExistsError("exists"), errors.ConflictError),
        (az.ResourceModifiedError("etag"), errors.ConflictError),
        (_http(412), errors.ConflictError),
        (az.ClientAuthenticationError("bad key"), errors.ConfigError),
        (_http(403), errors.ConfigError),
        (_http(400), errors.ValidationError),
        (_http(429), errors.TransientError),
        (_http(503), errors.TransientError),
        (az.ServiceRequestError("connection refused"), errors.TransientError),
        (az.ServiceResponseError("connection reset"), errors.TransientError),
    ],
)
def test_errors_map_by_kind(err: az.AzureError, kind: type[errors.IonError]) -> None:
    mapped = translate(err, "reading blob 'k'")
    assert type(mapped) is kind
    assert str(mapped).startswith("reading blob 'k' failed")


def test_throttling_carries_retry_after() -> None:
    cosmos = translate(_http(429, headers={"x-ms-retry-after-ms": "1500"}), "upsert")
    assert isinstance(cosmos, errors.TransientError)
    assert cosmos.retry_after == timedelta(milliseconds=1500)
    storage = translate(_http(503, headers={"Retry-After": "7"}), "put")
    assert isinstance(storage, errors.TransientError)
    assert storage.retry_after == timedelta(seconds=7)


def test_the_message_is_one_line_without_the_request() -> None:
    err = az.HttpResponseError(
        message="Server failed to authenticate the request.\nRequestId:1\n"
        "URL: https://acct.blob.core.windows.net/c/k?sig=SECRET"
    )
    err.status_code = 403
    mapped = translate(err, "reading blob 'k'")
    assert "SECRET" not in str(mapped)
    assert "\n" not in str(mapped)
