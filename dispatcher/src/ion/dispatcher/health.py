"""The dispatcher's health endpoints: `/healthz` (the process answers) and `/readyz` (it
receives), and `/metrics` (Prometheus' text format, from `ion.core.metrics`).

A Kubernetes Deployment probes these and Prometheus scrapes the same port; a plain HTTP/1.1
responder on asyncio streams is enough for three fixed answers, so the dispatcher carries no
web framework.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

from ion.core import metrics

log = logging.getLogger(__name__)


class HealthServer:
    """Answers `GET /healthz` with 200 while the loop runs, `/readyz` with 200 once `ready()`,
    and `/metrics` with the process's Prometheus metrics."""

    def __init__(self, *, host: str, port: int, ready: Callable[[], bool]) -> None:
        self._host, self._port, self._ready = host, port, ready
        self._server: asyncio.Server | None = None

    @property
    def port(self) -> int:
        """The port it listens on (the one chosen when started with port 0)."""
        if self._server is None or not self._server.sockets:
            return self._port
        return int(self._server.sockets[0].getsockname()[1])

    async def start(self) -> None:
        """Listen; raises OSError when the port is taken."""
        self._server = await asyncio.start_server(self._answer, self._host, self._port)
        log.info("health endpoints on %s:%d (/healthz, /readyz, /metrics)", self._host, self.port)

    async def aclose(self) -> None:
        """Stop listening."""
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def _answer(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            request = await asyncio.wait_for(reader.readline(), timeout=5)
            while (line := await asyncio.wait_for(reader.readline(), timeout=5)) not in (
                b"\r\n",
                b"\n",
                b"",
            ):
                del line
            parts = request.decode("latin-1").split()
            path = parts[1].split("?", 1)[0] if len(parts) > 1 else ""
            content_type = "text/plain"
            if path == "/healthz":
                status, body = "200 OK", b"ok\n"
            elif path == "/readyz":
                ok = self._ready()
                status, body = (
                    ("200 OK", b"ready\n") if ok else ("503 Service Unavailable", b"not ready\n")
                )
            elif path == "/metrics":
                status = "200 OK"
                body, content_type = metrics.exposition()
            else:
                status, body = "404 Not Found", b"try /healthz, /readyz or /metrics\n"
            writer.write(
                f"HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\n"
                f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
                + body
            )
            await writer.drain()
        except (TimeoutError, ConnectionError, UnicodeError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()
