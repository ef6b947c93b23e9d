"""The web console in a real browser: Debian's headless Chromium driven by Playwright.

`ion-management serve` (mutual TLS for gRPC, HTTPS for the front API and the console) runs the
media-classifiers example and a module that fails until a marker file exists. The browser is
refused without credentials, logs in with the token, opens each page, clicks through to the
flow and reads its tree, follows a log link, replays the dead letter with the keyboard and
watches the flow page update itself until the replay succeeds; a client certificate opens the
console with no login. A screenshot of each page goes to `test-artifacts/console/` (git-ignored).

The browser is `$ION_CHROMIUM`, else `chromium` on PATH (tools/browser/prepare.sh installs it).
Without it the test skips, unless ION_REQUIRE_BROWSER=1 (as .ci/run sets): then it fails.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
import yaml
from playwright.sync_api import APIRequestContext, Browser, Page, expect, sync_playwright

from ion.proto import module_pb2, module_pb2_grpc
from tests.e2e_support import Management, management_server

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "media-classifiers"
PIPELINE = yaml.safe_load((EXAMPLE / "pipeline.yaml").read_text())
ARTIFACTS = ROOT / "test-artifacts" / "console"
TOKEN = "browser-test-token-0123456789"
REQUIRE_ENV = "ION_REQUIRE_BROWSER"
SETTLE_MS = 90_000
"""How long a page may take to show a flow's end (the pages poll every few seconds)."""

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]


def _chromium() -> str:
    found = os.environ.get("ION_CHROMIUM") or shutil.which("chromium")
    if found and Path(found).exists():
        return found
    reason = "no chromium (ION_CHROMIUM unset, none on PATH); run tools/browser/prepare.sh"
    if os.environ.get(REQUIRE_ENV) == "1":
        pytest.fail(f"{REQUIRE_ENV}=1 but {reason}", pytrace=False)
    pytest.skip(f"{reason} ({REQUIRE_ENV}=1 makes this a failure)")


@pytest.fixture
def browser() -> Iterator[Browser]:
    path = _chromium()
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=path, headless=True)
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Management]:
    with management_server(tmp_path, {"ION_MANAGEMENT__FRONT_API_TOKEN": TOKEN}) as running:
        yield running


def _create_modules(m: Management, marker: Path) -> None:
    """The example's modules and a failing one, created over gRPC as `ion module create` does
    (in this process: six CLI start-ups would cost seconds of CPU)."""
    requests = [
        module_pb2.ModuleCreateRequest(
            modulename=spec["name"],
            eventsubscriptions=spec["subscribes_to"],
            eventpublications=",".join(spec["publishes"]),
            command=[sys.executable, spec["command"][1]],
            working_dir=str(EXAMPLE),
            env=spec["env"],
            retrycount=0,
        )
        for spec in PIPELINE["modules"]
    ]
    # Fails (exit 3, after a line on stderr) until the marker exists: a dead letter to replay.
    script = (
        "import os, sys; print('flaky: looking for the marker', file=sys.stderr);"
        f" sys.exit(0 if os.path.exists({str(marker)!r}) else 3)"
    )
    requests.append(
        module_pb2.ModuleCreateRequest(
            modulename="flaky",
            eventsubscriptions="flaky.requested",
            command=[sys.executable, "-c", script],
            retrycount=0,
        )
    )
    env = m.cli_env
    credentials = grpc.ssl_channel_credentials(
        root_certificates=Path(env["ION_CACERTFILE"]).read_bytes(),
        private_key=Path(env["ION_KEYFILE"]).read_bytes(),
        certificate_chain=Path(env["ION_CERTFILE"]).read_bytes(),
    )
    with grpc.secure_channel(env["ION_ENDPOINT"], credentials) as channel:
        modules = module_pb2_grpc.ModuleServiceStub(channel)
        for request in requests:
            modules.Create(request, timeout=30)


def _raise(request: APIRequestContext, base: str, event_type: str, data: dict[str, str]) -> str:
    """Raise a root event through the front API with the bearer token; return its flow's id."""
    raised = request.post(
        f"{base}/events/{event_type}",
        data=json.dumps(data),
        headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"},
    )
    assert raised.status == 201, raised.text()
    return str(raised.json()["context"]["correlationId"])


def _shot(page: Page, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def test_console_in_a_browser(browser: Browser, server: Management, tmp_path: Path) -> None:
    started = time.monotonic()
    base = f"https://127.0.0.1:{server.front_api_port}"
    marker = tmp_path / "flaky-may-succeed"
    _create_modules(server, marker)
    # The TLS certificate is Ion's own CA's, which this browser does not trust.
    context = browser.new_context(ignore_https_errors=True, viewport={"width": 1100, "height": 900})
    page = context.new_page()
    pipeline_flow = _raise(context.request, base, "media.submitted", {"count": "6", "seed": "7"})
    failing_flow = _raise(context.request, base, "flaky.requested", {"why": "browser-test"})
    print(
        f"console browser test: modules created, events raised in {time.monotonic() - started:.1f} s"
    )
    names = [spec["name"] for spec in PIPELINE["modules"]]

    # Refused without credentials: no data, a redirect to the login page (or a 401).
    for path in ("/ui/modules", "/ui/dead-letters", f"/ui/flows/{pipeline_flow}"):
        refused = context.request.get(base + path, max_redirects=0)
        assert refused.status == 303 and "/ui/login" in refused.headers["location"]
        assert "digit-classifier" not in refused.text()
    refused_post = context.request.post(
        base + "/ui/dead-letters/replay", form={"module": "flaky", "message_id": "x"}
    )
    assert refused_post.status == 401
    page.goto(base + "/ui/modules")
    expect(page).to_have_url(re.compile(r"/ui/login\?next="))
    assert "digit-classifier" not in page.content()
    _shot(page, "login")

    # Log in with the token, by keyboard: type it and press Enter.
    page.get_by_label("Front API token").fill("wrong")
    page.keyboard.press("Enter")
    expect(page.get_by_role("alert")).to_contain_text("not the front API token")
    page.get_by_label("Front API token").fill(TOKEN)
    page.keyboard.press("Enter")
    expect(page).to_have_url(base + "/ui/modules")
    [cookie] = [c for c in context.cookies() if c["name"] == "ion_console"]
    assert cookie["httpOnly"] and cookie["secure"] and cookie["sameSite"] == "Strict"

    # Modules: each with its state in words, replicas and counts, which the page keeps
    # up to date by itself (polling) while the flows run.
    expect(page.get_by_role("heading", name="Modules")).to_be_visible()
    for name in [*names, "flaky"]:
        row = page.locator(f'tr[data-module="{name}"]')
        expect(row).to_contain_text("RUNNING")
        expect(row.locator(".replicas")).to_have_text("1 / 1")
    for name in names:
        succeeded = page.locator(f'tr[data-module="{name}"] [data-count="succeeded"]')
        expect(succeeded).to_have_text("1", timeout=SETTLE_MS)
    flaky_row = page.locator('tr[data-module="flaky"]')
    expect(flaky_row.locator('[data-count="failed"]')).to_have_text("1", timeout=SETTLE_MS)
    expect(flaky_row.locator('[data-count="dead-letters"]')).to_contain_text("1", timeout=SETTLE_MS)
    _shot(page, "modules")

    # Flows: newest first, filtered by status, and from the list to the flow.
    page.get_by_role("link", name="Flows").click()
    expect(page.get_by_role("heading", name="Flows")).to_be_visible()
    pipeline_row = page.locator(f'tr[data-correlation-id="{pipeline_flow}"]')
    failing_row = page.locator(f'tr[data-correlation-id="{failing_flow}"]')
    expect(pipeline_row).to_have_attribute("data-status", "SUCCEEDED")
    expect(pipeline_row).to_contain_text("media.submitted")
    expect(failing_row).to_have_attribute("data-status", "FAILED")
    expect(failing_row.locator(".status")).to_have_text("failed")
    _shot(page, "flows")
    page.get_by_role("checkbox", name="failed").check()
    page.get_by_role("button", name="Filter").click()
    expect(page).to_have_url(re.compile(r"status=FAILED"))
    expect(page.locator("tr[data-correlation-id]")).to_have_count(1)
    expect(failing_row).to_be_visible()
    page.get_by_role("link", name="Clear").click()
    pipeline_row.locator("a.flow-link").click()
    expect(page).to_have_url(base + f"/ui/flows/{pipeline_flow}")

    # The tree: every module of the example ran once and succeeded, in the right place.
    expect(page.locator(".flow-state")).to_contain_text("succeeded", timeout=SETTLE_MS)
    for name in names:
        run = page.locator(f'li.run[data-module="{name}"]')
        expect(run).to_have_count(1)
        expect(run).to_have_attribute("data-status", "SUCCEEDED")
        expect(run.locator(":scope > .node > .status")).to_have_text("SUCCEEDED")
    nested = page.locator(
        'li.run[data-module="ingest"] li.event[data-event-type="media.ingested"]'
        ' li.run[data-module="digit-classifier"] li.run[data-module="stats-reporter"]'
        ' li.run[data-module="html-report"]'
    )
    expect(nested).to_have_count(1)
    expect(page.locator('li.run[data-module="digit-classifier"] .kv').first).to_contain_text(
        "heldout_accuracy"
    )
    _shot(page, "flow")
    page.set_viewport_size({"width": 390, "height": 844})  # a phone
    overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
    assert overflow <= 0, f"the flow page scrolls sideways on a phone by {overflow}px"
    _shot(page, "flow-phone")
    page.set_viewport_size({"width": 1100, "height": 900})

    # An output downloads; a log link opens the attempt's stored log as text.
    report_outputs = page.locator('li.run[data-module="html-report"] details.files').first
    report_outputs.locator("summary").click()
    with page.expect_download() as download:
        report_outputs.locator("a").first.click()
    assert Path(download.value.path()).stat().st_size > 0
    log_link = page.locator('li.run[data-module="ingest"] > .node a.last-log')
    href = log_link.get_attribute("href")
    assert href and href.endswith("/log")
    log_link.click()
    expect(page).to_have_url(base + href)
    expect(page.locator("body")).to_contain_text("ingest: raised media.ingested")
    log_response = context.request.get(base + href)
    assert log_response.headers["content-type"].startswith("text/plain")
    _shot(page, "log")
    page.go_back()

    # Dead letters: the failing module's, with its reason; replayed by keyboard.
    page.get_by_role("link", name="Dead letters").click()
    row = page.locator('tr[data-module="flaky"]')
    expect(row).to_have_count(1)
    expect(row).to_contain_text("exited with code 3")
    expect(row.locator("td.num")).to_have_text("1")  # deliveries
    _shot(page, "dead-letters")
    # A second tab keeps the modules page open through the replay, unreloaded.
    watcher = context.new_page()
    watcher.goto(base + "/ui/modules")
    watched = watcher.locator('tr[data-module="flaky"] [data-count="succeeded"]')
    expect(watched).to_have_text("0")
    watcher.evaluate("window.ionTestMark = 'same document'")
    marker.write_text("go")
    row.get_by_role("button", name=re.compile("^Replay")).focus()
    page.keyboard.press("Enter")
    expect(page.locator("#replayed")).to_contain_text("back on its subscription")
    expect(page.locator('tr[data-module="flaky"]')).to_have_count(0)
    page.get_by_role("link", name="Follow its flow").click()
    expect(page).to_have_url(base + f"/ui/flows/{failing_flow}")
    # The page updates itself (polling) until the replayed run has succeeded.
    flaky = page.locator('li.run[data-module="flaky"]')
    expect(flaky).to_have_attribute("data-status", "SUCCEEDED", timeout=30_000)
    expect(flaky).to_contain_text("2 attempts")
    expect(page.locator(".flow-state")).to_contain_text("succeeded")
    expect(watched).to_have_text("1", timeout=SETTLE_MS)  # the other tab polled it in
    assert watcher.evaluate("window.ionTestMark") == "same document"
    watcher.close()
    flaky.get_by_text("Attempts of flaky").click()
    attempts = flaky.locator("details.attempts tbody tr")
    expect(attempts).to_have_count(2)
    expect(attempts.nth(0)).to_contain_text("DEAD_LETTERED")
    expect(attempts.nth(0)).to_contain_text("exited with code 3")
    expect(attempts.nth(1)).to_contain_text("SUCCEEDED")
    _shot(page, "flow-replayed")
    flaky.get_by_role("link", name="log of flaky attempt 1").click()
    expect(page.locator("body")).to_contain_text("flaky: looking for the marker")

    # Keyboard: the first Tab reaches the skip link, and focus is visible.
    page.goto(base + "/ui/modules")
    page.keyboard.press("Tab")
    focused = page.evaluate(
        "[document.activeElement.textContent, getComputedStyle(document.activeElement).outlineStyle]"
    )
    assert focused == ["Skip to content", "solid"]

    # Logging out ends the session.
    page.get_by_role("button", name="Log out").click()
    expect(page).to_have_url(re.compile(r"/ui/login"))
    page.goto(base + "/ui/modules")
    expect(page).to_have_url(re.compile(r"/ui/login\?next="))
    context.close()

    # A client certificate signed by Ion's CA opens the console with no login.
    certs = Path(server.cli_env["ION_CERTFILE"]), Path(server.cli_env["ION_KEYFILE"])
    with_cert = browser.new_context(
        ignore_https_errors=True,
        client_certificates=[{"origin": base, "certPath": str(certs[0]), "keyPath": str(certs[1])}],
    )
    cert_page = with_cert.new_page()
    cert_page.goto(base + "/ui/modules")
    expect(cert_page).to_have_url(base + "/ui/modules")
    expect(cert_page.locator('tr[data-module="ingest"]')).to_contain_text("RUNNING")
    expect(cert_page.get_by_role("button", name="Log out")).to_have_count(0)
    with_cert.close()
    print(f"console browser test: {time.monotonic() - started:.1f} s")
