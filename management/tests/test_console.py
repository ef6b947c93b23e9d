"""The web console's views (ion.management.console) through the front API over TLS.

A stub platform (real embedded backends, no dispatchers) with the module registry; attempts,
logs and outputs are written to the stores directly, as a dispatcher would, so each page is
checked against known records.
"""

from __future__ import annotations

import re
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from ion.core import ModuleSpec, naming
from ion.core.config import IonSettings
from ion.core.records import AttemptState, JobAttempt
from ion.management.console import Console
from ion.management.console._auth import SESSION_SECONDS, Gate
from ion.management.deployers import InProcessDeployer
from ion.management.front_api import start_front_api
from ion.management.registry import ModuleRegistry
from ion.management.testing import CertificateSet, StubPlatform

TOKEN = "console-test-token"


@dataclass
class Site:
    url: str
    platform: StubPlatform
    registry: ModuleRegistry
    certs: CertificateSet

    def ssl(self, *, client: bool = False) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=str(self.certs.pki.ca_cert))
        if client:
            files = self.certs.pki.client
            context.load_cert_chain(str(files.certfile), str(files.keyfile))
        return context

    def session(self, *, client: bool = False, **headers: str) -> aiohttp.ClientSession:
        return aiohttp.ClientSession(
            base_url=self.url,
            connector=aiohttp.TCPConnector(ssl=self.ssl(client=client)),
            headers=headers,
        )


@pytest.fixture
async def site(settings: IonSettings, certs: CertificateSet) -> AsyncIterator[Site]:
    async with StubPlatform(settings) as platform:
        registry = ModuleRegistry(platform.meta, platform.bus, InProcessDeployer(platform))
        console = Console(platform, registry, token=TOKEN)
        runner, port = await start_front_api(
            platform,
            host="127.0.0.1",
            port=0,
            tls=certs.pki.server,
            token=TOKEN,
            mounted={"/ui": console.app()},
        )
        try:
            yield Site(
                url=f"https://localhost:{port}", platform=platform, registry=registry, certs=certs
            )
        finally:
            await runner.cleanup()


BEARER = {"Authorization": f"Bearer {TOKEN}"}


async def _get(session: aiohttp.ClientSession, path: str) -> tuple[int, str, Any]:
    async with session.get(path, allow_redirects=False) as response:
        return response.status, await response.text(), response.headers


def _csrf(page: str) -> str:
    found = re.search(r'name="csrf_token" value="([0-9a-f]+)"', page)
    assert found, "the page has no CSRF token"
    return found.group(1)


async def _module(site: Site, name: str = "resize", event: str = "image.uploaded") -> str:
    record = await site.registry.create(
        ModuleSpec(name=name, subscribes_to=event, command=["true"])
    )
    return record.id


async def test_unauthenticated_requests_get_the_login_page_and_no_data(site: Site) -> None:
    await _module(site, "secret-module")
    async with site.session() as anonymous:
        for path in ("/ui/modules", "/ui/dead-letters", "/ui/flows/abc", "/ui"):
            status, body, headers = await _get(anonymous, path)
            assert status == 303, path
            assert headers["Location"].startswith("/ui/login?next=")
            assert "secret-module" not in body
        async with anonymous.post(
            "/ui/dead-letters/replay", data={"module": "x", "message_id": "y"}
        ) as refused:
            assert refused.status == 401
        status, body, _ = await _get(anonymous, "/ui/login?next=/ui/modules")
        assert status == 200 and 'name="token"' in body and "secret-module" not in body
        status, _, _ = await _get(anonymous, "/ui/static/console.css")
        assert status == 200  # the stylesheet is public, and holds no data
    async with site.session(Authorization="Bearer wrong") as wrong:
        status, _, _ = await _get(wrong, "/ui/modules")
        assert status == 303


async def test_login_sets_a_strict_session_cookie_that_opens_the_console_only(site: Site) -> None:
    await _module(site)
    async with site.session() as browser:
        async with browser.post(
            "/ui/login", data={"token": "nope", "next": "/ui/modules"}, allow_redirects=False
        ) as failed:
            assert failed.status == 401
            assert "not the front API token" in await failed.text()
            assert "ion_console" not in failed.cookies
        async with browser.post(
            "/ui/login",
            data={"token": TOKEN, "next": "https://evil.example/steal"},
            allow_redirects=False,
        ) as ok:
            assert ok.status == 303
            assert ok.headers["Location"] == "/ui/modules"  # never another site
            header = ok.headers["Set-Cookie"]
            assert TOKEN not in header
            for attribute in ("HttpOnly", "Secure", "SameSite=Strict", "Path=/ui"):
                assert attribute.lower() in header.lower(), attribute
        status, body, headers = await _get(browser, "/ui/modules")
        assert status == 200 and "resize" in body
        assert "default-src 'none'" in headers["Content-Security-Policy"]
        assert headers["Cache-Control"] == "no-store"
        # The cookie is not a front API credential.
        async with browser.post("/events/image.uploaded", json={}) as event:
            assert event.status == 401
        async with browser.post("/ui/logout", data={"csrf_token": _csrf(body)}) as out:
            assert out.status == 200 and 'name="token"' in await out.text()
        status, _, _ = await _get(browser, "/ui/modules")
        assert status == 303


def test_sessions_expire_and_are_bound_to_the_token() -> None:
    gate = Gate(TOKEN)
    now = datetime.now(UTC).timestamp()
    value = gate.new_session(now=now)
    assert gate.session_valid(value, now=now + 60)
    assert not gate.session_valid(value, now=now + SESSION_SECONDS + 1)
    assert not Gate("another-token").session_valid(value, now=now)
    assert not gate.session_valid(value.replace("v1.", "v1.1"), now=now)
    assert not gate.session_valid("garbage", now=now)
    assert not Gate(None).session_valid(value, now=now)


async def test_modules_page_shows_state_replicas_and_counts(site: Site) -> None:
    module_id = await _module(site)
    record = await site.registry.resolve(module_id)
    started = datetime.now(UTC) + timedelta(seconds=1)
    for attempt, state in ((1, AttemptState.FAILED), (2, AttemptState.SUCCEEDED)):
        await site.platform.meta.upsert_attempt(
            JobAttempt(
                id=f"job-{attempt}",
                module=record.spec.name,
                event_id="e-1",
                correlation_id="c-1",
                attempt=attempt,
                state=state,
                started_at=started,
            )
        )
    async with site.session(client=True) as browser:  # a client certificate is enough
        status, body, _ = await _get(browser, "/ui/modules")
    assert status == 200
    row = body[body.index('data-module="resize"') :]
    row = row[: row.index("</tr>")]
    assert 'data-status="RUNNING"' in row and ">RUNNING<" in row
    assert "1 / 1" in row
    assert re.search(r'data-count="succeeded">1<', row)
    assert re.search(r'data-count="failed">1<', row)
    assert '<meta name="viewport"' in body


async def _flow_with_a_run(site: Site, tmp_path: Path) -> tuple[str, str, str]:
    """A root event with a file, one run of 'resize' (failed, then succeeded) with a log and an
    output; returns (correlation id, attempt id of attempt 1, output key)."""
    await _module(site)
    source = tmp_path / "photo.txt"
    source.write_text("pixels")
    event = await site.platform.raise_event("image.uploaded", data={"size": "64"}, files=[source])
    correlation = event.correlation_id
    output = f"{correlation}/{event.event_id}/resize/small/photo.txt"
    await site.platform.blobs.put_stream(output, _chunks(b"smaller pixels"))
    now = datetime.now(UTC)
    for attempt in (1, 2):
        log_key = naming.logs_key(correlation, event.event_id, "resize", attempt)
        await site.platform.blobs.put_stream(
            log_key, _chunks(f"attempt {attempt} says hi\n".encode())
        )
        await site.platform.meta.upsert_attempt(
            JobAttempt(
                id=f"resize-{attempt}",
                module="resize",
                event_id=event.event_id,
                correlation_id=correlation,
                parent_event_id="frontapi",
                event_type="image.uploaded",
                attempt=attempt,
                state=AttemptState.FAILED if attempt == 1 else AttemptState.SUCCEEDED,
                started_at=now,
                finished_at=now + timedelta(seconds=attempt),
                exit_code=3 if attempt == 1 else 0,
                reason="exited with code 3" if attempt == 1 else "",
                logs_ref=log_key,
                outputs=[] if attempt == 1 else [output],
            )
        )
    return correlation, "resize-1", output


async def _chunks(data: bytes) -> AsyncIterator[bytes]:
    yield data


async def test_flow_page_shows_the_tree_with_attempts_logs_and_outputs(
    site: Site, tmp_path: Path
) -> None:
    correlation, attempt_id, output = await _flow_with_a_run(site, tmp_path)
    async with site.session(**BEARER) as browser:
        status, body, _ = await _get(browser, f"/ui/flows/{correlation}")
        assert status == 200
        assert 'data-event-type="image.uploaded"' in body
        run = body[body.index('data-module="resize"') :]
        assert 'data-status="SUCCEEDED"' in run[:200]
        assert "2 attempts" in run and "exited with code 3" in run
        log_link = f"/ui/flows/{correlation}/attempts/{attempt_id}/log"
        assert log_link in body
        async with browser.get(log_link) as log:
            assert log.status == 200 and log.content_type == "text/plain"
            assert await log.text() == "attempt 1 says hi\n"
        assert f"/files/{output}" in body
        async with browser.get(f"/ui/flows/{correlation}/files/{output}") as download:
            assert download.status == 200
            assert "attachment" in download.headers["Content-Disposition"]
            assert await download.read() == b"smaller pixels"
        root_file = f"/ui/flows/{correlation}/files/{correlation}/"
        assert root_file in body  # the root event's own file
        # Only the flow's own files: no other blob through this route.
        other = naming.logs_key(correlation, "x", "resize", 1)
        status, _, _ = await _get(browser, f"/ui/flows/{correlation}/files/{other}")
        assert status == 404
        status, body, _ = await _get(browser, f"/ui/flows/{correlation}/attempts/nope/log")
        assert status == 404 and "Error 404" in body
        flow = await site.platform.flow(correlation)
        await site.platform.meta.upsert_attempt(
            JobAttempt(
                id="resize-3",
                module="resize",
                event_id=flow.roots[0].event_id,
                correlation_id=correlation,
                attempt=3,
                state=AttemptState.RUNNING,
                started_at=datetime.now(UTC),
            )
        )
        status, body, _ = await _get(browser, f"/ui/flows/{correlation}")
        assert f"/ui/flows/{correlation}/attempts/resize-3/log" in body and "log so far" in body
        async with browser.get(f"/ui/flows/{correlation}/attempts/resize-3/log") as running:
            assert running.status == 200 and running.content_type == "text/plain"
            assert "its log is stored when the attempt ends" in await running.text()
        status, _, headers = await _get(browser, f"/ui/flows?correlation_id={correlation[:8]}")
        assert status == 303 and headers["Location"] == f"/ui/flows/{correlation}"
        status, body, _ = await _get(browser, "/ui/flows?correlation_id=ffffffff-none")
        assert status == 404 and "no flow with correlation id" in body
        status, body, _ = await _get(browser, "/ui/flows/no-such-flow")
        assert status == 404 and "no flow with correlation id" in body
        status, body, _ = await _get(browser, "/ui/flows/" + "x" * 300)
        assert status == 400 and "correlation_id" in body
        status, _, headers = await _get(browser, f"/ui/flows?correlation_id={correlation}")
        assert status == 303 and headers["Location"] == f"/ui/flows/{correlation}"


async def test_dead_letters_are_listed_and_replayed_with_a_csrf_token(site: Site) -> None:
    module_id = await _module(site)
    event = await site.platform.raise_event("image.uploaded", data={"size": "64"})
    bus = site.platform.bus
    [message] = await bus.receive(
        "image.uploaded", "image.uploaded_resize", max_wait=timedelta(seconds=1)
    )
    await bus.dead_letter(message, reason="ModuleFailed", description="exit code 3")
    async with site.session(**BEARER) as browser:
        status, body, _ = await _get(browser, "/ui/dead-letters")
        assert status == 200
        assert "ModuleFailed" in body and "exit code 3" in body
        assert f'data-message-id="{message.message_id}"' in body
        assert f"/ui/flows/{event.correlation_id}" in body
        form = {"module": module_id, "message_id": message.message_id}
        async with browser.post("/ui/dead-letters/replay", data=form) as no_token:
            assert no_token.status == 403 and "CSRF" in await no_token.text()
        form["csrf_token"] = _csrf(body)
        form["correlation_id"] = event.correlation_id
        async with browser.post(
            "/ui/dead-letters/replay", data=form, headers={"Origin": "https://evil.example"}
        ) as cross:
            assert cross.status == 403
        async with browser.post(
            "/ui/dead-letters/replay", data=form, allow_redirects=False
        ) as replayed:
            assert replayed.status == 303
            assert "replayed=" in replayed.headers["Location"]
        status, body, _ = await _get(
            browser, "/ui/dead-letters?" + replayed.headers["Location"].split("?")[1]
        )
        assert "is back on its subscription" in body and "No dead letters" in body
        assert f"/ui/flows/{event.correlation_id}" in body
        peeked = await bus.peek("image.uploaded", "image.uploaded_resize", max_messages=5)
        assert len(peeked) == 1
        async with browser.post("/ui/dead-letters/replay", data=form) as again:
            assert again.status == 404 and "no dead-lettered message" in await again.text()
        form["module"] = "no-such-module"
        async with browser.post("/ui/dead-letters/replay", data=form) as unknown:
            assert unknown.status == 404


async def test_flows_page_lists_filters_and_pages_flows(site: Site) -> None:
    await _module(site)
    raised = [
        (await site.platform.raise_event("image.uploaded", data={"n": str(n)})).correlation_id
        for n in range(21)
    ]
    failed = raised[3]
    await site.platform.meta.upsert_attempt(
        JobAttempt(
            id="resize-dead",
            module="resize",
            event_id=(await site.platform.flow(failed)).roots[0].event_id,
            correlation_id=failed,
            parent_event_id="frontapi",
            event_type="image.uploaded",
            state=AttemptState.DEAD_LETTERED,
            started_at=datetime.now(UTC),
            finished_at=datetime.now(UTC),
            reason="exited with code 3",
        )
    )
    lonely = (await site.platform.raise_event("nobody.listens")).correlation_id

    def rows(page: str) -> list[str]:
        return re.findall(r'<tr data-correlation-id="([^"]+)"', page)

    async with site.session(**BEARER) as browser:
        status, first, _ = await _get(browser, "/ui/flows")
        assert status == 200
        assert rows(first) == [lonely, *reversed(raised)][:20]  # newest first, 20 a page
        older = re.search(r'<a href="([^"]+)" rel="next">Older flows</a>', first)
        assert older is not None
        _, second, _ = await _get(browser, older.group(1).replace("&amp;", "&"))
        assert rows(second) == [raised[1], raised[0]] and "Newest flows" in second
        assert 'rel="next"' not in second

        _, page, _ = await _get(browser, "/ui/flows?status=FAILED")
        assert rows(page) == [failed] and "exited" not in page
        assert re.search(r'data-status="FAILED".*?failed</span>', page, re.S)
        _, page, _ = await _get(browser, "/ui/flows?status=NO_SUBSCRIBER&status=FAILED")
        assert rows(page) == [lonely, failed]
        _, page, _ = await _get(browser, "/ui/flows?module=resize&limit=50")
        assert sorted(rows(page)) == sorted(raised)
        _, page, _ = await _get(browser, "/ui/flows?module=nobody")
        assert rows(page) == [] and "No flows match these filters" in page
        later = (datetime.now(UTC) + timedelta(minutes=5)).strftime("%Y-%m-%dT%H:%M")
        _, page, _ = await _get(browser, f"/ui/flows?from={later}")
        assert rows(page) == []
        _, page, _ = await _get(browser, f"/ui/flows?to={later}&limit=50")
        assert len(rows(page)) == 22

        for query, field in (
            ("status=DONE", "status"),
            ("limit=7", "limit"),
            ("from=yesterday", "from"),
            ("cursor=not-a-cursor", "cursor"),
        ):
            status, page, _ = await _get(browser, f"/ui/flows?{query}")
            assert status == 400 and field in page, query
        status, _, headers = await _get(browser, f"/ui/flows?correlation_id={lonely}")
        assert status == 303 and headers["Location"] == f"/ui/flows/{lonely}"


async def test_a_csrf_token_is_bound_to_who_asked_for_it(site: Site) -> None:
    module_id = await _module(site)
    await site.platform.raise_event("image.uploaded")
    bus = site.platform.bus
    [message] = await bus.receive(
        "image.uploaded", "image.uploaded_resize", max_wait=timedelta(seconds=1)
    )
    await bus.dead_letter(message, reason="ModuleFailed", description="exit code 3")
    async with site.session(client=True) as with_cert:
        _, page, _ = await _get(with_cert, "/ui/dead-letters")
        cert_token = _csrf(page)
    form = {"module": module_id, "message_id": message.message_id, "csrf_token": cert_token}
    async with (
        site.session(**BEARER) as bearer,
        bearer.post("/ui/dead-letters/replay", data=form) as refused,
    ):
        assert refused.status == 403
    assert len(await bus.peek("image.uploaded", "image.uploaded_resize", dead_letter=True)) == 1
    async with (
        site.session(client=True) as with_cert,
        with_cert.post("/ui/dead-letters/replay", data=form, allow_redirects=False) as replayed,
    ):
        assert replayed.status == 303
    assert await bus.peek("image.uploaded", "image.uploaded_resize", dead_letter=True) == []
