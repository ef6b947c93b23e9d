"""The dispatcher's health endpoints, over a real socket."""

from __future__ import annotations

import asyncio

from ion.dispatcher.health import HealthServer


async def _get(port: int, path: str) -> tuple[int, str]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    await writer.drain()
    raw = await reader.read()
    writer.close()
    head, _, body = raw.decode().partition("\r\n\r\n")
    return int(head.split()[1]), body


async def test_healthz_answers_and_readyz_follows_readiness() -> None:
    ready = False
    server = HealthServer(host="127.0.0.1", port=0, ready=lambda: ready)
    await server.start()
    try:
        assert await _get(server.port, "/healthz") == (200, "ok\n")
        assert (await _get(server.port, "/readyz"))[0] == 503
        ready = True
        assert await _get(server.port, "/readyz") == (200, "ready\n")
        assert (await _get(server.port, "/nothing"))[0] == 404
    finally:
        await server.aclose()


async def test_metrics_are_served_in_prometheus_text_format() -> None:
    from ion.core import metrics

    metrics.EVENTS_RECEIVED.labels("health-probe-module").inc(3)
    server = HealthServer(host="127.0.0.1", port=0, ready=lambda: True)
    await server.start()
    try:
        status, body = await _get(server.port, "/metrics")
    finally:
        await server.aclose()
    assert status == 200
    assert "# TYPE ion_events_received_total counter" in body
    assert 'ion_events_received_total{module="health-probe-module"} 3.0' in body


async def test_a_client_that_sends_nothing_does_not_block_others() -> None:
    server = HealthServer(host="127.0.0.1", port=0, ready=lambda: True)
    await server.start()
    try:
        _, idle = await asyncio.open_connection("127.0.0.1", server.port)
        assert await asyncio.wait_for(_get(server.port, "/healthz"), 2) == (200, "ok\n")
        idle.close()
    finally:
        await server.aclose()
