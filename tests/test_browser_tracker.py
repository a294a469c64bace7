"""The page tracker in a real browser: headless Chromium (Debian's package) driven by Playwright
loads a page from another origin carrying the one-line script tag, navigates two single-page
routes, fires a custom event and closes; the rows arrive in the server with the browser, the
page's referrer and UTM, and one cookieless visitor id. The browser context has a desktop Chrome
User-Agent: `HeadlessChrome`, Chromium's own in headless mode, is itself a bot signature."""

from __future__ import annotations

import http.server
import os
import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.servers import free_port, local_http, output, start_server

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
DESKTOP_CHROME = ("Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
                  "Chrome/131.0.0.0 Safari/537.36")

try:
    from playwright.sync_api import sync_playwright
except ImportError as exc:  # pragma: no cover - reported as a skip
    pytest.skip(f"Playwright is not installed ({exc})", allow_module_level=True)
if not (shutil.which(CHROMIUM) or Path(CHROMIUM).exists()):
    pytest.skip(f"Chromium is not installed at {CHROMIUM} (apt-get install chromium)", allow_module_level=True)

pytestmark = pytest.mark.browser


@pytest.fixture
def analytics(tmp_path: Path) -> Iterator[str]:
    port = free_port()
    process = start_server(tmp_path / "data", port, LOG_BATCH_SECONDS="0.05")
    yield f"http://127.0.0.1:{port}"
    process.terminate()
    process.wait(timeout=60)
    assert "Traceback" not in output(process)


@pytest.fixture
def site(analytics: str) -> Iterator[str]:
    """A shop's page on another origin, with the tracker's script tag."""
    page = (f'<!doctype html><title>Shop</title><script defer src="{analytics}/t.js" data-app="shop"></script>'
            "<h1>Shop</h1>").encode()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(page)))
            self.end_headers()
            self.wfile.write(page)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://localhost:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def sql_rows(analytics: str, sql: str) -> list[list[object]]:
    with local_http() as http:  # polled: a plain httpx.post loads the CA bundle each call
        r = http.post(analytics + "/sql", json={"sql": sql})
    assert r.status_code == 200, r.text
    return r.json()["rows"]


def test_pageviews_navigations_and_a_custom_event_from_a_page(analytics, site):
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=[
            "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"])
        context = browser.new_context(user_agent=DESKTOP_CHROME)
        page = context.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.goto(site + "/?utm_source=newsletter&utm_campaign=launch", referer="https://news.example/today")
        page.wait_for_function("window.analytics && window.analytics.tracker === 1")
        page.evaluate("history.pushState({}, '', '/pricing')")
        page.evaluate("history.pushState({}, '', '/signup')")
        page.evaluate("analytics.track('plan_chosen', {plan: 'pro', seats: 3})")
        page.close(run_before_unload=True)  # page hide: what waits goes by sendBeacon
        context.close()
        browser.close()
    assert errors == []
    deadline = time.monotonic() + 30
    while sql_rows(analytics, "SELECT count() FROM events")[0][0] < 4 and time.monotonic() < deadline:
        time.sleep(0.2)
    rows = sql_rows(analytics, "SELECT event, screen, browser, device_type, is_bot, referrer_domain, utm_source, "
                               "utm_campaign, props['plan'], user_id, app_id FROM events ORDER BY dt")
    assert [(r[0], r[1]) for r in rows] == [("pageview", "/"), ("pageview", "/pricing"), ("pageview", "/signup"),
                                            ("plan_chosen", "/signup")]
    first = rows[0]
    assert first[2] in ("Chrome", "Chromium") and first[3] == "desktop" and first[4] == 0
    assert (first[5], first[6], first[7]) == ("news.example", "newsletter", "launch")
    assert [r[5] for r in rows[1:]] == ["", "", ""]  # navigations within the site are no source
    assert rows[3][8] == "pro"
    assert len({r[9] for r in rows}) == 1 and str(rows[0][9]).startswith("v:")
    assert {r[10] for r in rows} == {"shop"}


@pytest.fixture
def flaky(analytics: str) -> Iterator[tuple[str, list[int]]]:
    """A proxy in front of the server that serves /t.js and answers the first two POSTs with 503
    (the first bare: the tracker backs off 2 s; the second with Retry-After: 1, which the tracker
    follows) before passing the rest through: an overloaded or restarting server."""
    statuses: list[int] = []
    tracker = httpx.get(analytics + "/t.js", headers={"Accept-Encoding": "identity"}).content

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            body = tracker if self.path == "/t.js" else (
                f'<!doctype html><script defer src="/t.js" data-app="flaky"></script><h1>{self.path}</h1>').encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/javascript" if self.path == "/t.js" else "text/html")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_POST(self) -> None:  # noqa: N802
            body = self.rfile.read(int(self.headers["Content-Length"]))
            if sum(1 for s in statuses if s == 503) < 2:
                status, answer = 503, b'{"error": {"code": "unavailable", "message": "busy"}}'
            else:
                forwarded = httpx.post(analytics + self.path, content=body, headers={
                    "Content-Type": self.headers["Content-Type"], "User-Agent": self.headers["User-Agent"]})
                status, answer = forwarded.status_code, forwarded.content
            statuses.append(status)
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(answer)))
            if status == 503 and len(statuses) == 2:
                self.send_header("Retry-After", "1")
            self.end_headers()
            self.wfile.write(answer)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}", statuses
    server.shutdown()
    server.server_close()


def test_the_tracker_retries_a_busy_server_and_stores_each_event_once(analytics, flaky):
    site, statuses = flaky
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=[
            "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"])
        context = browser.new_context(user_agent=DESKTOP_CHROME)
        page = context.new_page()
        page.goto(site + "/home")
        page.wait_for_function("window.analytics && window.analytics.tracker === 1")
        page.evaluate("analytics.track('clicked', {n: 1}); analytics.track('clicked', {n: 2})")
        deadline = time.monotonic() + 30  # 1 s gather, 2 s of backoff, 1 s as the second 503 asks
        while 202 not in statuses and time.monotonic() < deadline:
            page.wait_for_timeout(200)
        page.close(run_before_unload=True)  # a beacon may send a copy too: event_ids make it harmless
        context.close()
        browser.close()
    assert statuses[:2] == [503, 503] and 202 in statuses, statuses
    deadline = time.monotonic() + 30
    while sql_rows(analytics, "SELECT count() FROM events")[0][0] < 3 and time.monotonic() < deadline:
        time.sleep(0.2)
    time.sleep(1)
    rows = sql_rows(analytics, "SELECT event, props['n'], count() FROM events GROUP BY ALL ORDER BY 1, 2")
    assert rows == [["clicked", "1", 1], ["clicked", "2", 1], ["pageview", "", 1]]
