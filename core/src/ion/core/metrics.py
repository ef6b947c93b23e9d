"""Prometheus metrics: what Ion counts and measures, and how a process serves them.

Every metric lives in prometheus-client's default registry, so one process (a management
server with its embedded dispatchers, or one `ion-dispatcher`) exposes them all on one
`/metrics`. Names follow Prometheus' conventions (`ion_` prefix, `_total` counters, base units
`_seconds` and `_bytes`); labels are bounded: a module name, an executor name, an outcome, a
reason code or a gRPC method, never an event or correlation id. docs/observability.md lists
them with their meaning.

`serve(host, port)` starts a plain-HTTP `/metrics` listener on its own thread (the library's
own server); `exposition()` renders the registry for a server that is already running (the
dispatcher's health port).
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING

import prometheus_client
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, Counter, Gauge, Histogram

from ion.core import errors

if TYPE_CHECKING:
    from wsgiref.simple_server import WSGIServer

log = logging.getLogger(__name__)

# `_created` samples double the series count and no dashboard reads them.
prometheus_client.disable_created_metrics()  # type: ignore[no-untyped-call]

_JOB_SECONDS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600)
_STEP_SECONDS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)
_RPC_SECONDS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)

# -- dispatcher -----------------------------------------------------------------------------
EVENTS_RECEIVED = Counter(
    "ion_events_received", "Messages a module's dispatcher received from the bus.", ["module"]
)
EVENTS_FILTERED = Counter(
    "ion_events_filtered",
    "Events a module's `when` rule did not match (recorded FILTERED, never run).",
    ["module"],
)
POISON_MESSAGES = Counter(
    "ion_poison_messages",
    "Messages dead-lettered at once because they are not a valid event, by reason code.",
    ["module", "reason"],
)
JOBS_STARTED = Counter(
    "ion_jobs_started", "Jobs (attempts) submitted to an executor.", ["module", "executor"]
)
JOBS_FINISHED = Counter(
    "ion_jobs_finished",
    "Attempts that finished, by outcome (succeeded or failed).",
    ["module", "executor", "outcome"],
)
JOBS_RETRIED = Counter(
    "ion_jobs_retried", "Failed attempts scheduled to run again after a backoff.", ["module"]
)
JOBS_DEAD_LETTERED = Counter(
    "ion_jobs_dead_lettered",
    "Events given up on (dead-lettered) after their last attempt, by reason code.",
    ["module", "reason"],
)
JOBS_ADOPTED = Counter(
    "ion_jobs_adopted",
    "Redelivered messages whose job was found running or finished and adopted.",
    ["module"],
)
JOBS_IN_FLIGHT = Gauge(
    "ion_jobs_in_flight", "Messages a module's dispatcher is handling right now.", ["module"]
)
JOB_DURATION = Histogram(
    "ion_job_duration_seconds",
    "Time from an attempt's start to its result (prepare, module and commit).",
    ["module", "executor", "outcome"],
    buckets=_JOB_SECONDS,
)
QUEUE_WAIT = Histogram(
    "ion_job_queue_wait_seconds",
    "Time from a message's enqueue on the bus (or its scheduled retry time) to its job's start.",
    ["module"],
    buckets=_JOB_SECONDS,
)
RECEIVE_ERRORS = Counter(
    "ion_bus_receive_errors", "Failed receives from a module's subscription.", ["module"]
)
SETTLE_ERRORS = Counter(
    "ion_bus_settle_errors",
    "Failed settlements (complete, abandon, dead-letter) of a message, each try counted.",
    ["module"],
)

# -- handler steps (in the dispatcher's process for the local executor) -----------------------
PREPARE_DURATION = Histogram(
    "ion_prepare_duration_seconds",
    "Time to lay out a job directory and download its inputs.",
    ["module"],
    buckets=_STEP_SECONDS,
)
PREPARE_BYTES = Counter(
    "ion_prepare_bytes", "Bytes of input files downloaded into jobs' in/data.", ["module"]
)
COMMIT_DURATION = Histogram(
    "ion_commit_duration_seconds",
    "Time to upload a job's outputs, record its documents and publish its events.",
    ["module"],
    buckets=_STEP_SECONDS,
)
COMMIT_BYTES = Counter("ion_commit_bytes", "Bytes of output files uploaded by commits.", ["module"])
EVENTS_PUBLISHED = Counter(
    "ion_events_published", "Child events published by modules' commits.", ["module"]
)

# -- management -----------------------------------------------------------------------------
GRPC_REQUESTS = Counter(
    "ion_grpc_requests",
    "Management API calls handled, by method and gRPC status code.",
    ["method", "code"],
)
GRPC_DURATION = Histogram(
    "ion_grpc_request_duration_seconds",
    "Time to handle a management API call.",
    ["method"],
    buckets=_RPC_SECONDS,
)

# Ion's metrics declared above (a test checks the dashboard reads only these).
FAMILIES = tuple(
    collector
    for collector in (
        EVENTS_RECEIVED,
        EVENTS_FILTERED,
        POISON_MESSAGES,
        JOBS_STARTED,
        JOBS_FINISHED,
        JOBS_RETRIED,
        JOBS_DEAD_LETTERED,
        JOBS_ADOPTED,
        JOBS_IN_FLIGHT,
        JOB_DURATION,
        QUEUE_WAIT,
        RECEIVE_ERRORS,
        SETTLE_ERRORS,
        PREPARE_DURATION,
        PREPARE_BYTES,
        COMMIT_DURATION,
        COMMIT_BYTES,
        EVENTS_PUBLISHED,
        GRPC_REQUESTS,
        GRPC_DURATION,
    )
)


def exposition() -> tuple[bytes, str]:
    """The registry in Prometheus' text format, and its content type."""
    return prometheus_client.generate_latest(REGISTRY), CONTENT_TYPE_LATEST


@dataclass(slots=True)
class MetricsServer:
    """A running `/metrics` listener."""

    host: str
    port: int
    _server: WSGIServer
    _thread: threading.Thread

    @property
    def url(self) -> str:
        """Where Prometheus scrapes it."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/metrics"

    def close(self) -> None:
        """Stop listening and wait for the server's thread."""
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


def serve(host: str, port: int) -> MetricsServer:
    """Serve the registry over plain HTTP on `host:port` (0 picks a free port).

    Raises:
        errors.ConfigError: the address cannot be bound (the message names the setting).
    """
    try:
        server, thread = prometheus_client.start_http_server(port, addr=host)
    except OSError as err:
        raise errors.ConfigError(
            f"cannot serve /metrics on {host}:{port}: {err.strerror or err}; pick another"
            " port with ION_TELEMETRY__METRICS_PORT (or its host with ION_TELEMETRY__METRICS_HOST)"
        ) from err
    bound = int(server.server_address[1])
    log.info("Prometheus metrics on http://%s:%d/metrics", host, bound)
    return MetricsServer(host=host, port=bound, _server=server, _thread=thread)
