"""The front API: raise root events over HTTP (the 2018 `frontapi`, authenticated).

Routes:
- `POST /events/{type}`: JSON object of string values (the event's data), or multipart form
  fields (data) and file parts (files); `?correlation_id=` continues an existing flow. 201 with
  the root event JSON.
- `POST /` with `{"url": ...}`: the 2018 route; raises `frontapi.new_link` with data `url`.
  200 with the root event JSON, as in 2018.
- `GET /healthz`: 200 `{"status": "ok"}`, unauthenticated.

Every other request needs `Authorization: Bearer <token>` or, when served over TLS, a client
certificate signed by Ion's CA. Unlike 2018, a body that is not valid JSON is a 400.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import ssl
import tempfile
from collections.abc import Awaitable, Callable
from pathlib import Path, PurePosixPath

from aiohttp import BodyPartReader, web

from ion.core import Event, errors
from ion.core.modules import check_event_type
from ion.management.certs import TlsFiles
from ion.management.dataplane import Platform

log = logging.getLogger(__name__)

NEW_LINK_EVENT = "frontapi.new_link"
"""The event type the 2018 route raises."""
REQUEST_TIMEOUT_SECONDS = 20.0
"""As the 2018 front API: a request that takes longer answers 503."""
MAX_BODY_BYTES = 64 * 1024 * 1024

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


def _event_response(event: Event, status: int) -> web.Response:
    return web.Response(
        body=event.to_json(), status=status, content_type="application/json", charset="utf-8"
    )


def ssl_context(files: TlsFiles) -> ssl.SSLContext:
    """Return a server TLS context asking for (not requiring) a client certificate of the CA."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=str(files.cacertfile))
    context.load_cert_chain(str(files.certfile), str(files.keyfile))
    context.verify_mode = ssl.CERT_OPTIONAL
    return context


class FrontApi:
    """The aiohttp application raising root events on a platform."""

    def __init__(self, platform: Platform, *, token: str | None) -> None:
        self._platform = platform
        self._token = token or None

    def app(self) -> web.Application:
        """Return the application with its routes and authentication."""
        app = web.Application(middlewares=[self._authenticate], client_max_size=MAX_BODY_BYTES)
        app.router.add_get("/healthz", self._healthz)
        app.router.add_post("/events/{type}", self._post_event)
        app.router.add_post("/", self._post_link)
        return app

    @web.middleware
    async def _authenticate(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path == "/healthz":
            return await handler(request)
        transport = request.transport
        if transport is not None and transport.get_extra_info("peercert"):
            return await handler(request)
        header = request.headers.get("Authorization", "")
        scheme, _, presented = header.partition(" ")
        if (
            self._token
            and scheme.lower() == "bearer"
            and hmac.compare_digest(presented.strip().encode(), self._token.encode())
        ):
            return await handler(request)
        return _error(
            401,
            "authentication required: send 'Authorization: Bearer <token>' (the token is in"
            " ION_MANAGEMENT__FRONT_API_TOKEN or <ION_HOME>/front-api-token) or a client"
            " certificate signed by Ion's CA",
        )

    async def _healthz(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def _raise(
        self,
        event_type: str,
        data: dict[str, str],
        files: list[Path],
        correlation_id: str | None,
    ) -> Event:
        async with asyncio.timeout(REQUEST_TIMEOUT_SECONDS):
            return await self._platform.raise_event(
                event_type, data=data, files=files, correlation_id=correlation_id
            )

    async def _post_event(self, request: web.Request) -> web.Response:
        event_type = request.match_info["type"]
        try:
            check_event_type(event_type)
        except ValueError as err:
            return _error(400, str(err))
        correlation_id = request.query.get("correlation_id") or None
        with tempfile.TemporaryDirectory(prefix="ion-front-") as tmp:
            files: list[Path] = []
            data: dict[str, str] = {}
            if request.content_type.startswith("multipart/"):
                reader = await request.multipart()
                while (part := await reader.next()) is not None:
                    if not isinstance(part, BodyPartReader):
                        return _error(400, "nested multipart bodies are not supported")
                    name = part.name or ""
                    filename = part.filename
                    if filename:
                        base = PurePosixPath(filename.replace("\\", "/")).name
                        if not base or base in (".", ".."):
                            return _error(400, f"file name {filename!r} is not usable")
                        target = Path(tmp) / base
                        if target.exists():
                            return _error(400, f"two files are named {base!r}")
                        with target.open("wb") as out:
                            while chunk := await part.read_chunk():
                                out.write(chunk)
                        files.append(target)
                    elif name:
                        data[name] = await part.text()
            else:
                raw = await request.read()
                if raw.strip():
                    try:
                        body = json.loads(raw)
                    except (UnicodeDecodeError, json.JSONDecodeError) as err:
                        return _error(400, f"body is not JSON: {err}")
                    if not isinstance(body, dict):
                        return _error(400, "body must be a JSON object of string values")
                    for key, value in body.items():
                        if not isinstance(value, str):
                            return _error(
                                400, f"data value of {key!r} must be a string (2018 contract)"
                            )
                        data[key] = value
            return await self._respond(event_type, data, files, correlation_id, status=201)

    async def _post_link(self, request: web.Request) -> web.Response:
        try:
            body = json.loads(await request.read())
        except (UnicodeDecodeError, json.JSONDecodeError) as err:
            return _error(400, f'body is not JSON: {err}; send {{"url": "..."}}')
        url = body.get("url") if isinstance(body, dict) else None
        if not isinstance(url, str) or not url:
            return _error(400, 'body must be {"url": "<string>"}')
        return await self._respond(NEW_LINK_EVENT, {"url": url}, [], None, status=200)

    async def _respond(
        self,
        event_type: str,
        data: dict[str, str],
        files: list[Path],
        correlation_id: str | None,
        *,
        status: int,
    ) -> web.Response:
        try:
            event = await self._raise(event_type, data, files, correlation_id)
        except TimeoutError:
            return _error(503, "raising the event took too long; try again")
        except errors.ValidationError as err:
            return _error(400, str(err))
        except errors.NotFoundError as err:
            return _error(404, str(err))
        except errors.TransientError as err:
            return _error(503, str(err))
        log.info(
            "front API raised %s",
            event_type,
            extra={"event_id": event.event_id, "correlation_id": event.correlation_id},
        )
        return _event_response(event, status)


async def start_front_api(
    platform: Platform,
    *,
    host: str,
    port: int,
    tls: TlsFiles | None,
    token: str | None,
) -> tuple[web.AppRunner, int]:
    """Start the front API; return its runner (to clean up) and the bound port.

    Raises:
        errors.ConfigError: the port cannot be bound.
    """
    runner = web.AppRunner(FrontApi(platform, token=token).app(), access_log=None)
    await runner.setup()
    site = web.TCPSite(
        runner,
        host,
        port,
        ssl_context=ssl_context(tls) if tls is not None else None,
        reuse_port=False,
    )
    try:
        await site.start()
    except OSError as err:
        await runner.cleanup()
        raise errors.ConfigError(
            f"front API cannot listen on {host}:{port}: {err.strerror}; pick another port with"
            " --front-api-port or ION_MANAGEMENT__FRONT_API_PORT"
        ) from err
    bound = int(runner.addresses[0][1]) if runner.addresses else port
    if tls is None and not token:
        log.warning("front API has no token and no TLS: every request will be refused (401)")
    log.info("front API on %s://%s:%d", "https" if tls is not None else "http", host, bound)
    return runner, bound
