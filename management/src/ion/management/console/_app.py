"""The console's aiohttp application: pages rendered with Jinja2, logs and outputs streamed.

Routes (under the `/ui` prefix the front API mounts it at):

- `GET /login`, `POST /login`, `POST /logout`: the token login and its session cookie;
- `GET /modules`: every live module with its state, replicas and counts;
- `GET /flows`: recent flows, filtered by status, module and time, paged;
- `GET /flows/{correlation_id}`: one flow's tree of events and module runs;
- `GET /flows/{correlation_id}/attempts/{attempt_id}/log`: an attempt's stored log, as text;
- `GET /flows/{correlation_id}/files/{key}`: a file of the flow (a run's output or a root
  event's file) from the blob store, as a download;
- `GET /dead-letters`, `POST /dead-letters/replay`: dead letters and their replay;
- `GET /static/...`: the stylesheet and the script, served from the package.

A page asked for with `X-Ion-Live: 1` (the script's polling) is rendered the same way.
Bad input (an id that breaks `ion.core.identifiers`, an unknown flow, module or dead letter)
gets an error page with the reason, never a traceback.
"""

from __future__ import annotations

import logging
import posixpath
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import jinja2
from aiohttp import web

from ion.core import TERMINAL_STATES, errors, identifiers
from ion.core.events import ROOT_PUBLISHER
from ion.core.flow import Flow, FlowEvent
from ion.management import deadletters, flows
from ion.management.console import _auth
from ion.management.console._flows import flows_page
from ion.management.dataplane import Platform
from ion.management.registry import ModuleRegistry, ModuleState

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

_HERE = Path(__file__).parent
_IDENTITY = web.RequestKey("ion_console_identity", str)
"""How the request authenticated (`Gate.identity`); '' when it did not."""
_PUBLIC = ("/ui/login", "/ui/static/")
_SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'self'; script-src 'self'; img-src 'self' data:;"
        " connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
}

# Status → (icon name, CSS tone); the word itself is always shown next to the icon.
_ICONS: dict[str, tuple[str, str]] = {
    # runs, attempts and whole flows
    "SUCCEEDED": ("check", "ok"),
    "DEAD_LETTERED": ("cross", "bad"),
    "FAILED": ("cross", "bad"),
    "RUNNING": ("play", "busy"),
    "RETRYING": ("retry", "warn"),
    "PENDING": ("clock", "idle"),
    "FILTERED": ("slash", "idle"),
    "CANCELLED": ("stop", "warn"),
    "NO_SUBSCRIBER": ("slash", "warn"),
}
_MODULE_ICONS: dict[str, tuple[str, str]] = {
    ModuleState.RUNNING: ("check", "ok"),
    ModuleState.DEGRADED: ("warning", "warn"),
    ModuleState.STOPPED: ("stop", "bad"),
    ModuleState.DELETED: ("cross", "idle"),
}


def _icon_of(status: object, kind: str = "") -> tuple[str, str]:
    table = _MODULE_ICONS if kind == "module" else _ICONS
    return table.get(str(status), ("dot", "idle"))


def _when(value: datetime | None) -> str:
    if value is None:
        return "—"
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _seconds(value: float | None) -> str:
    if value is None:
        return "—"
    if value < 60:
        return f"{value:.2f} s"
    minutes, seconds = divmod(value, 60)
    return f"{int(minutes)} min {seconds:.0f} s"


def _attempt_seconds(started: datetime | None, finished: datetime | None) -> str:
    if started is None or finished is None:
        return "—"
    return _seconds((finished - started).total_seconds())


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(_HERE / "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["when"] = _when
    env.filters["seconds"] = _seconds
    env.filters["quote"] = lambda value: quote(str(value), safe="")
    env.filters["quote_path"] = lambda value: quote(str(value), safe="/")
    env.globals["attempt_seconds"] = _attempt_seconds
    env.globals["icon_of"] = _icon_of
    return env


def flow_files(flow: Flow) -> set[str]:
    """Every blob key the flow's pages may link to: runs' outputs and root events' files."""
    keys = {key for run in flow.runs() for key in run.outputs}
    for event in flow.events():
        if event.published_by == ROOT_PUBLISHER and event.raised_from_outside:
            prefix = f"{flow.correlation_id}/{event.event_id}/{ROOT_PUBLISHER}"
            keys.update(f"{prefix}/{name}" for name in event.files)
    return keys


def event_files(flow: Flow, event: FlowEvent) -> list[str]:
    """The blob keys of a root event's own files (a child's are its parent run's outputs)."""
    if event.published_by != ROOT_PUBLISHER or not event.raised_from_outside:
        return []
    prefix = f"{flow.correlation_id}/{event.event_id}/{ROOT_PUBLISHER}"
    return [f"{prefix}/{name}" for name in event.files]


class Console:
    """The web console over a platform and its module registry."""

    def __init__(self, platform: Platform, registry: ModuleRegistry, *, token: str | None) -> None:
        """`token`: the front API's bearer token (None: only client certificates get in)."""
        self._platform = platform
        self._registry = registry
        self._gate = _auth.Gate(token)
        self._templates = _environment()

    def app(self) -> web.Application:
        """Return the application to mount under `/ui`."""
        app = web.Application(middlewares=[self._guard])
        app.router.add_get("", self._home)
        app.router.add_get("/", self._home)
        app.router.add_get("/login", self._login_form)
        app.router.add_post("/login", self._login)
        app.router.add_post("/logout", self._logout)
        app.router.add_get("/modules", self._modules)
        app.router.add_get("/flows", self._flows)
        app.router.add_get("/flows/{correlation_id}", self._flow)
        app.router.add_get("/flows/{correlation_id}/attempts/{attempt_id}/log", self._log)
        app.router.add_get("/flows/{correlation_id}/files/{key:.+}", self._file)
        app.router.add_get("/dead-letters", self._dead_letters)
        app.router.add_post("/dead-letters/replay", self._replay)
        app.router.add_static("/static", _HERE / "static", append_version=True, name="static")
        return app

    # -- authentication ------------------------------------------------------------------

    @web.middleware
    async def _guard(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        public = request.path.startswith(_PUBLIC)
        identity = self._gate.identity(request)
        request[_IDENTITY] = identity or ""
        if identity is None and not public:
            if request.method in ("GET", "HEAD"):
                target = request.path_qs
                raise web.HTTPSeeOther("/ui/login?" + urlencode({"next": target}))
            return web.Response(
                status=401,
                text="authentication required: log in at /ui/login, or send a bearer token"
                " or a client certificate",
            )
        if request.method == "POST" and _auth.cross_site(request):
            return await self._error(request, 403, "refused: the request came from another site")
        try:
            response = await handler(request)
        except web.HTTPException as err:
            if err.status >= 400 and err.content_type == "text/plain" and not err.text:
                return await self._error(request, err.status, err.reason)
            raise
        except errors.ValidationError as err:
            return await self._error(request, 400, str(err))
        except errors.NotFoundError as err:
            return await self._error(request, 404, str(err))
        except errors.TransientError as err:
            return await self._error(request, 503, f"{err}; try again")
        response.headers.update(_SECURITY_HEADERS)
        if not request.path.startswith("/ui/static/"):
            response.headers.setdefault("Cache-Control", "no-store")
        return response

    def _csrf(self, request: web.Request) -> str:
        identity = request.get(_IDENTITY, "")
        return self._gate.csrf_token(identity) if identity else ""

    async def _check_csrf(self, request: web.Request, form: Any) -> None:
        presented = str(form.get(_auth.CSRF_FIELD, ""))
        identity = request.get(_IDENTITY, "")
        if not identity or not self._gate.csrf_valid(identity, presented):
            raise web.HTTPForbidden(
                text="refused: the form's CSRF token is missing or stale; reload the page and"
                " try again"
            )

    # -- rendering -----------------------------------------------------------------------

    def _page(
        self, request: web.Request, template: str, *, status: int = 200, **values: Any
    ) -> web.Response:
        body = self._templates.get_template(template).render(
            request_path=request.path,
            csrf_token=self._csrf(request),
            signed_in=bool(request.get(_IDENTITY)),
            cookie_session=request.get(_IDENTITY, "").startswith("session:"),
            static=lambda name: (
                request.app.router["static"].url_for(filename=name)
                if "static" in request.app.router
                else f"/ui/static/{name}"
            ),
            **values,
        )
        return web.Response(text=body, status=status, content_type="text/html", charset="utf-8")

    async def _error(self, request: web.Request, status: int, message: str) -> web.Response:
        response = self._page(request, "error.html", status=status, code=status, message=message)
        response.headers.update(_SECURITY_HEADERS)
        response.headers["Cache-Control"] = "no-store"
        return response

    # -- login ---------------------------------------------------------------------------

    @staticmethod
    def _next(value: str) -> str:
        # Only a path of the console: never another host (`//host`) or scheme.
        if value.startswith("/ui") and not value.startswith("//") and "\\" not in value:
            return value
        return "/ui/modules"

    async def _home(self, request: web.Request) -> web.StreamResponse:
        raise web.HTTPSeeOther("/ui/modules")

    async def _login_form(self, request: web.Request) -> web.Response:
        return self._page(
            request,
            "login.html",
            next=self._next(request.query.get("next", "")),
            has_token=self._gate.token is not None,
            failed=False,
        )

    async def _login(self, request: web.Request) -> web.Response:
        form = await request.post()
        target = self._next(str(form.get("next", "")))
        if not self._gate.token_matches(str(form.get("token", ""))):
            log.warning("console: a login with a wrong token from %s", request.remote)
            return self._page(
                request,
                "login.html",
                status=401,
                next=target,
                has_token=self._gate.token is not None,
                failed=True,
            )
        response = web.HTTPSeeOther(target)
        _auth.set_session(response, self._gate.new_session())
        raise response

    async def _logout(self, request: web.Request) -> web.Response:
        await self._check_csrf(request, await request.post())
        response = web.HTTPSeeOther("/ui/login")
        _auth.clear_session(response)
        raise response

    # -- pages ---------------------------------------------------------------------------

    async def _modules(self, request: web.Request) -> web.Response:
        records = await self._registry.list_modules()
        statuses = [await self._registry.status(record) for record in records]
        return self._page(request, "modules.html", statuses=statuses, now=datetime.now(UTC))

    async def _flows(self, request: web.Request) -> web.StreamResponse:
        wanted = request.query.get("correlation_id", "").strip()
        if wanted:  # a full id, or a unique prefix (the 8-character ids trees print)
            found = await flows.resolve_flow(self._platform.meta, wanted)
            raise web.HTTPSeeOther(f"/ui/flows/{quote(found, safe='')}")
        values = await flows_page(self._platform.meta, self._registry, request.query)
        return self._page(request, "flows.html", **values)

    async def _load_flow(self, correlation_id: str) -> Flow:
        identifiers.check_id(correlation_id, field="correlation_id")
        flow = await self._platform.flow(correlation_id)
        if not flow.roots:
            raise errors.NotFoundError(
                f"no flow with correlation id {correlation_id!r}; the id is printed by"
                " `ion event create` (correlationId)"
            )
        return flow

    async def _flow(self, request: web.Request) -> web.Response:
        flow = await self._load_flow(request.match_info["correlation_id"])
        return self._page(
            request,
            "flow.html",
            flow=flow,
            event_files=event_files,
            basename=posixpath.basename,
            now=datetime.now(UTC),
        )

    async def _log(self, request: web.Request) -> web.StreamResponse:
        correlation_id = request.match_info["correlation_id"]
        attempt_id = request.match_info["attempt_id"]
        identifiers.check_id(correlation_id, field="correlation_id")
        attempt = await self._platform.meta.get_attempt(correlation_id, attempt_id)
        if attempt.state not in TERMINAL_STATES or not attempt.logs_ref:
            # Running: what the job wrote so far, where this server can read it; or why
            # there is no log (the same words as `ion logs`).
            found = await flows.attempt_log(self._platform, attempt)
            text = found.content.decode("utf-8", errors="replace")
            if found.note:
                text = f"[{attempt.id}: {found.note}]\n{text}"
            return web.Response(
                text=text,
                content_type="text/plain",
                charset="utf-8",
                headers={**_SECURITY_HEADERS, "Cache-Control": "no-store"},
            )
        return await self._stream(
            request,
            attempt.logs_ref,
            content_type="text/plain",
            disposition=f'inline; filename="{posixpath.basename(attempt.logs_ref)}"',
        )

    async def _file(self, request: web.Request) -> web.StreamResponse:
        flow = await self._load_flow(request.match_info["correlation_id"])
        key = request.match_info["key"]
        if key not in flow_files(flow):
            raise errors.NotFoundError(f"flow {flow.correlation_id} has no file {key!r}")
        name = posixpath.basename(key).replace('"', "")
        return await self._stream(
            request,
            key,
            content_type="application/octet-stream",
            disposition=f"attachment; filename*=UTF-8''{quote(name, safe='')}",
        )

    async def _stream(
        self, request: web.Request, key: str, *, content_type: str, disposition: str
    ) -> web.StreamResponse:
        chunks = self._platform.blobs.get_stream(key, chunk_size=256 * 1024)
        first = await anext(aiter(chunks), b"")  # NotFoundError before any header is sent
        response = web.StreamResponse(
            headers={
                "Content-Type": f"{content_type}; charset=utf-8"
                if content_type.startswith("text/")
                else content_type,
                "Content-Disposition": disposition,
                **_SECURITY_HEADERS,
                "Cache-Control": "no-store",
            }
        )
        await response.prepare(request)
        await response.write(first)
        async for chunk in chunks:
            await response.write(chunk)
        await response.write_eof()
        return response

    async def _dead_letters(self, request: web.Request) -> web.Response:
        module = request.query.get("module", "").strip()
        letters = await deadletters.list_dead_letters(
            self._platform, self._registry, module, max_messages=100
        )
        return self._page(
            request,
            "dead_letters.html",
            letters=letters,
            module=module,
            modules=await self._registry.list_modules(),
            replayed=request.query.get("replayed", ""),
            replayed_module=request.query.get("replayed_module", ""),
            replayed_flow=request.query.get("replayed_flow", ""),
            now=datetime.now(UTC),
        )

    async def _replay(self, request: web.Request) -> web.StreamResponse:
        form = await request.post()
        await self._check_csrf(request, form)
        module = str(form.get("module", ""))
        message_id = str(form.get("message_id", ""))
        correlation_id = str(form.get("correlation_id", "")).strip()
        if correlation_id:
            identifiers.check_id(correlation_id, field="correlation_id")
        record = await deadletters.replay_dead_letter(
            self._platform, self._registry, module, message_id
        )
        log.info(
            "console: replayed dead letter %s of %s",
            message_id,
            record.id,
            extra={"ion_module": record.id},
        )
        query = {"replayed": message_id.strip(), "replayed_module": record.id}
        if correlation_id:
            query["replayed_flow"] = correlation_id
        raise web.HTTPSeeOther("/ui/dead-letters?" + urlencode(query))
