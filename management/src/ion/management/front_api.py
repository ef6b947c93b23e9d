"""The front API: raise root events over HTTP (the 2018 `frontapi`, authenticated).

Routes:
- `POST /events/{type}`: JSON object of string values (the event's data), or multipart form
  fields (data) and file parts (files); `?correlation_id=` continues an existing flow. 201 with
  the root event JSON.
- `POST /` with `{"url": ...}`: the 2018 route; raises `frontapi.new_link` with data `url`.
  200 with the root event JSON, as in 2018.
- `GET /healthz`: 200 `{"status": "ok"}`, unauthenticated.
- `/ui/...`: the web console (`ion.management.console`), when mounted; it checks the same
  credentials itself, plus its own session cookie.

Every other request needs `Authorization: Bearer <token>` or, when served over TLS, a client
certificate signed by Ion's CA. Unlike 2018, a body that is not valid JSON is a 400.

Input follows the rules of `ion.core.identifiers`, the same as gRPC `Publish` and the bus
reader: a broken rule is a 400 `{"error", "field", "reason"}` naming the field (`event_type`,
`correlation_id`, `data`, `files`, `body`) before anything is stored. A request body over
`max_request_bytes` (all multipart parts together) or a file part over `max_file_bytes` is a
413 with the same JSON.
"""

from __future__ import annotations

import asyncio
import binascii
import hashlib
import hmac
import logging
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping

from aiohttp import BodyPartReader, web

from ion.core import Event, errors, identifiers
from ion.management.certs import TlsFiles
from ion.management.control import RootEvent
from ion.management.dataplane import Platform

log = logging.getLogger(__name__)

NEW_LINK_EVENT = "frontapi.new_link"
"""The event type the 2018 route raises."""
REQUEST_TIMEOUT_SECONDS = 20.0
"""As the 2018 front API: a request that takes longer answers 503."""
MAX_BODY_BYTES = 64 * 1024 * 1024
"""Default cap of a request body, all multipart parts together."""
MAX_FILE_BYTES = 64 * 1024 * 1024
"""Default cap of one uploaded file part."""
_MAX_FIELD_BYTES = 4 * identifiers.MAX_VALUE_CHARS
"""A multipart text field longer than this cannot be a valid value in any encoding."""

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _error(status: int, message: str, *, field: str = "", reason: str = "") -> web.Response:
    body = {"error": message}
    if field:
        body["field"] = field
    if reason:
        body["reason"] = reason
    return web.json_response(body, status=status)


def _invalid(err: errors.ValidationError) -> web.Response:
    return _error(400, str(err), field=err.field, reason=err.rule)


def _part_text(part: BodyPartReader, raw: bytearray, field: str) -> str:
    """Decode a form field by its transfer encoding and charset (UTF-8 by default)."""
    try:
        return bytes(part.decode(raw)).decode(part.get_charset(default="utf-8"))
    except (LookupError, UnicodeDecodeError, RuntimeError, ValueError, binascii.Error) as err:
        raise errors.ValidationError(
            f"{field}: not text in its declared encoding: {err}",
            field=field,
            rule=identifiers.INVALID_TEXT,
        ) from err


class _Refused(Exception):
    """Ends a request early with an error response."""

    def __init__(self, response: web.Response) -> None:
        super().__init__(response.text)
        self.response = response


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


def credential(request: web.Request, token: str | None) -> str | None:
    """Return how the request authenticates, or None: `cert:<sha256 of the client certificate>`
    for a client certificate signed by Ion's CA (TLS verified it), `bearer` for
    `Authorization: Bearer <token>` matching `token`."""
    transport = request.transport
    if transport is not None and transport.get_extra_info("peercert"):
        tls = transport.get_extra_info("ssl_object")
        der = tls.getpeercert(binary_form=True) if tls is not None else None
        return "cert:" + (hashlib.sha256(der).hexdigest() if der else "")
    header = request.headers.get("Authorization", "")
    scheme, _, presented = header.partition(" ")
    if (
        token
        and scheme.lower() == "bearer"
        and hmac.compare_digest(presented.strip().encode(), token.encode())
    ):
        return "bearer"
    return None


class FrontApi:
    """The aiohttp application raising root events on a platform."""

    def __init__(
        self,
        platform: Platform,
        *,
        token: str | None,
        max_request_bytes: int = MAX_BODY_BYTES,
        max_file_bytes: int = MAX_FILE_BYTES,
        mounted: Mapping[str, web.Application] | None = None,
    ) -> None:
        """`mounted`: applications served under a path prefix (`/ui`: the web console), each
        authenticating its own requests (with `credential`)."""
        self._platform = platform
        self._token = token or None
        self._max_request_bytes = max_request_bytes
        self._max_file_bytes = max_file_bytes
        self._mounted = dict(mounted or {})

    def app(self) -> web.Application:
        """Return the application with its routes and authentication."""
        app = web.Application(
            middlewares=[self._authenticate], client_max_size=self._max_request_bytes
        )
        app.router.add_get("/healthz", self._healthz)
        app.router.add_post("/events/{type}", self._post_event)
        app.router.add_post("/", self._post_link)
        for prefix, sub in self._mounted.items():
            app.add_subapp(prefix, sub)
        return app

    @web.middleware
    async def _authenticate(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path == "/healthz" or any(
            request.path == prefix or request.path.startswith(prefix + "/")
            for prefix in self._mounted
        ):
            return await handler(request)  # a mounted application authenticates by itself
        if credential(request, self._token) is not None:
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
        self, event_type: str, data: dict[str, str], correlation_id: str | None
    ) -> Event:
        async with asyncio.timeout(REQUEST_TIMEOUT_SECONDS):
            return await self._platform.raise_event(
                event_type, data=data, correlation_id=correlation_id
            )

    def _too_large(self, what: str, *, field: str) -> _Refused:
        setting, limit = (
            ("FILE", self._max_file_bytes)
            if field == "files"
            else ("REQUEST", self._max_request_bytes)
        )
        return _Refused(
            _error(
                413,
                f"{what} is larger than {limit} bytes (ION_MANAGEMENT__FRONT_API_MAX_{setting}_BYTES)",
                field=field,
                reason=identifiers.TOO_LARGE,
            )
        )

    async def _read_body(self, request: web.Request) -> bytes:
        try:
            return await request.read()
        except web.HTTPRequestEntityTooLarge as err:
            raise self._too_large("the request body", field="body") from err

    def _parse_json(self, raw: bytes, *, root: str = "") -> object:
        try:
            return identifiers.parse_json(
                raw, field="body", max_bytes=self._max_request_bytes, root=root
            )
        except errors.ValidationError as err:
            raise _Refused(_invalid(err)) from err

    async def _post_event(self, request: web.Request) -> web.Response:
        event_type = request.match_info["type"]
        correlation_id = request.query.get("correlation_id") or None
        try:
            identifiers.check_event_type(event_type, field="event_type")
            if correlation_id is not None:
                identifiers.check_id(correlation_id, field="correlation_id")
        except errors.ValidationError as err:
            return _invalid(err)
        if (request.content_length or 0) > self._max_request_bytes:
            return self._too_large("the request body", field="body").response
        if not request.content_type.startswith("multipart/"):
            data: dict[str, str] = {}
            try:
                await self._read_json_data(request, data)
            except _Refused as refused:
                return refused.response
            except errors.ValidationError as err:
                return _invalid(err)
            return await self._respond(
                event_type, self._raise(event_type, data, correlation_id), status=201
            )
        # Files stream straight into the blob store; a refusal deletes what was stored.
        root = self._platform.root_event(event_type, correlation_id=correlation_id)
        try:
            async with root:
                await self._read_multipart(request, root)
                identifiers.check_data(root.data, field="data")
        except _Refused as refused:
            return refused.response
        except errors.ValidationError as err:
            return _invalid(err)
        except errors.TransientError as err:
            return _error(503, str(err))
        return self._raised(root.event, status=201)

    async def _read_json_data(self, request: web.Request, data: dict[str, str]) -> None:
        raw = await self._read_body(request)
        if not raw.strip():
            return
        body = self._parse_json(raw, root="data")
        if not isinstance(body, dict):
            raise _Refused(
                _error(
                    400,
                    "body must be a JSON object of string values",
                    field="body",
                    reason=identifiers.WRONG_TYPE,
                )
            )
        for key, value in body.items():
            identifiers.check_key(key, field="data")
            data[key] = identifiers.check_value(value, field=f"data.{key}")

    async def _read_multipart(self, request: web.Request, root: RootEvent) -> None:
        """Stream file parts into the root event and collect text fields, every part capped."""
        reader = await request.multipart()
        read = [0]  # bytes of every part so far, against max_request_bytes
        while (part := await reader.next()) is not None:
            if not isinstance(part, BodyPartReader):
                raise _Refused(_error(400, "nested multipart bodies are not supported"))
            if part.filename:
                base = identifiers.check_file_name(part.filename, field="files")
                too_big = self._too_large(f"file {identifiers.shown(base)}", field="files")
                await root.attach(base, self._chunks(part, read, self._max_file_bytes, too_big))
            elif part.name:
                key = identifiers.check_key(part.name, field="data")
                field = f"data.{key}"
                too_long = errors.ValidationError(
                    f"{field}: longer than a value may be ({identifiers.MAX_VALUE_CHARS}"
                    " characters)",
                    field=field,
                    rule=identifiers.TOO_LARGE,
                )
                raw = bytearray()
                async for chunk in self._chunks(part, read, _MAX_FIELD_BYTES, too_long):
                    raw += chunk
                root.data[key] = identifiers.check_value(_part_text(part, raw, field), field=field)
            else:  # neither a file nor a field: read past it, counted like the rest
                async for _ in self._chunks(part, read, self._max_request_bytes, None):
                    pass

    async def _chunks(
        self, part: BodyPartReader, read: list[int], limit: int, over: Exception | None
    ) -> AsyncIterator[bytes]:
        """Yield a part's chunks; raise `over` past `limit`, or 413 past the request's cap."""
        size = 0
        while chunk := await part.read_chunk():
            size += len(chunk)
            read[0] += len(chunk)
            if read[0] > self._max_request_bytes:
                raise self._too_large("the request body", field="body")
            if over is not None and size > limit:
                raise over
            yield chunk

    async def _post_link(self, request: web.Request) -> web.Response:
        try:
            body = self._parse_json(await self._read_body(request))
        except _Refused as refused:
            return refused.response
        url = body.get("url") if isinstance(body, dict) else None
        if not isinstance(url, str) or not url:
            return _error(400, 'body must be {"url": "<string>"}', field="url")
        return await self._respond(
            NEW_LINK_EVENT, self._raise(NEW_LINK_EVENT, {"url": url}, None), status=200
        )

    async def _respond(
        self, event_type: str, raising: Awaitable[Event], *, status: int
    ) -> web.Response:
        try:
            event = await raising
        except TimeoutError:
            return _error(503, "raising the event took too long; try again")
        except errors.ValidationError as err:
            return _invalid(err)
        except errors.NotFoundError as err:
            return _error(404, str(err))
        except errors.TransientError as err:
            return _error(503, str(err))
        return self._raised(event, status=status)

    def _raised(self, event: Event, *, status: int) -> web.Response:
        log.info(
            "front API raised %s",
            event.type,
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
    max_request_bytes: int = MAX_BODY_BYTES,
    max_file_bytes: int = MAX_FILE_BYTES,
    mounted: Mapping[str, web.Application] | None = None,
) -> tuple[web.AppRunner, int]:
    """Start the front API; return its runner (to clean up) and the bound port.

    Raises:
        errors.ConfigError: the port cannot be bound.
    """
    front = FrontApi(
        platform,
        token=token,
        max_request_bytes=max_request_bytes,
        max_file_bytes=max_file_bytes,
        mounted=mounted,
    )
    runner = web.AppRunner(front.app(), access_log=None)
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
