"""posthog-js, PostHog's browser library from npm, unchanged, in headless Chromium on a page of
another origin, configured with our host and nothing else: its page view, a custom event and an
identify reach us once each, and the anonymous visitor is joined to the user.

npm installs the package into a cache under the temporary directory (once per machine); without
npm or Chromium the test is skipped with the reason."""

from __future__ import annotations

import contextlib
import http.server
import os
import re
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.ingest.test_batcher import Outage

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
NPM_CACHE = Path(tempfile.gettempdir()) / "analytics-api-npm"
# A desktop Chrome's User-Agent: posthog-js drops the events of a headless browser as a bot's.
USER_AGENT = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36"

try:
    from playwright.sync_api import sync_playwright
except ImportError as exc:  # pragma: no cover - reported as a skip
    pytest.skip(f"Playwright is not installed ({exc})", allow_module_level=True)
if not (shutil.which(CHROMIUM) or Path(CHROMIUM).exists()):
    pytest.skip(f"Chromium is not installed at {CHROMIUM} (apt-get install chromium)", allow_module_level=True)
if not shutil.which("npm"):
    pytest.skip("npm is not installed (apt-get install npm)", allow_module_level=True)

pytestmark = pytest.mark.browser


def from_npm(package: str, path: str) -> Path:
    """A file of an npm package, installed into the cache when it is not there yet."""
    found = NPM_CACHE / "node_modules" / package.rsplit("@", 1)[0] / path
    if not found.exists():
        NPM_CACHE.mkdir(parents=True, exist_ok=True)
        installed = subprocess.run(["npm", "install", "--silent", "--no-audit", "--no-fund", "--prefix", str(NPM_CACHE),
                                    package], capture_output=True, text=True, timeout=300)
        if installed.returncode != 0:
            pytest.skip(f"npm could not install {package}: {installed.stderr[-300:]}")
    return found


@pytest.fixture(scope="module")
def posthog_js() -> bytes:
    """The library's browser bundle (dist/array.js), from the npm registry."""
    return from_npm("posthog-js@1", "dist/array.js").read_bytes()


PAGE = """<!doctype html><html><head><title>Shop</title><script src="/array.js"></script></head><body>
<script>
  posthog.init("phc_browser_key", {api_host: "API", persistence: "memory", autocapture: false,
                                    disable_session_recording: true, request_batching: false});
  posthog.capture("added to cart", {sku: "A-1"});
  posthog.identify("buyer-1", {plan: "pro"});
</script></body></html>"""


@contextlib.contextmanager
def shop(page_html: str, files: dict[str, bytes]) -> Iterator[str]:
    """The shop's page and its copy of the library (`files` by path), served from this machine on
    another port: an origin other than the API's (Chromium lets a loopback page call a loopback
    address only)."""
    page = page_html.encode()

    class Shop(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (the standard library's name)
            path = self.path.split("?")[0]
            body, kind = (files[path], "text/javascript") if path in files else (page, "text/html")
            self.send_response(200)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Shop)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def refusals(server) -> float:
    """The requests the server refused with 503 because ClickHouse refused (its metric)."""
    text = server.app.state.services.metrics.render().body.decode()
    found = re.search(r'^events_rejected_total\{reason="unavailable"\} (\S+)$', text, re.MULTILINE)
    return float(found.group(1)) if found else 0.0


def end_when_refused(server, outage: Outage) -> None:
    """Once the server has answered a 503 (the library sends at once), ClickHouse takes inserts again."""
    deadline = time.monotonic() + 30
    while not refusals(server) and time.monotonic() < deadline:
        time.sleep(0.02)
    outage.end()


def visit(server, page_html: str, files: dict[str, bytes], path: str, anonymous_id_js: str,
          outage: Outage | None = None) -> tuple[str, str]:
    """Open the shop's page in Chromium until the server holds three events: the library's
    anonymous id as the page knows it, and the page's origin. No JavaScript error may happen.
    With an `outage` (ClickHouse refusing), it ends after the server's first 503."""
    with sync_playwright() as playwright, shop(page_html.replace("API", server.url), files) as origin:
        # navigator.webdriver (automation) makes posthog-js drop every event as a bot's.
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=[
            "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--disable-blink-features=AutomationControlled"])
        page = browser.new_page(user_agent=USER_AGENT)
        errors: list[str] = []
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.goto(origin + path)
        if outage is not None:
            end_when_refused(server, outage)
        deadline = time.monotonic() + 60  # a library's retry comes after its backoff
        while time.monotonic() < deadline and len(server.rows("SELECT 1 FROM events")) < 3:
            time.sleep(0.2)
        anonymous = str(page.evaluate(anonymous_id_js)).strip('"')
        browser.close()
    assert errors == []
    return anonymous, origin


def test_posthog_js_delivers_a_pageview_an_event_and_an_identify_once(live, posthog_js):
    server = live(write_keys="shop:phc_browser_key")
    anonymous, origin = visit(server, PAGE, {"/array.js": posthog_js}, "/?utm_source=news",
                              "posthog.get_property('$device_id')")
    rows = server.rows("SELECT event, user_id, app_id, props['url'], utm_source, browser FROM events ORDER BY dt, event")
    assert sorted(row[0] for row in rows) == ["$identify", "added to cart", "pageview"]
    by_event = {row[0]: row for row in rows}
    assert by_event["pageview"][2:6] == ("shop", f"{origin}/?utm_source=news", "news", "Chrome")
    assert by_event["$identify"][1] == "buyer-1"
    assert server.rows("SELECT anonymous_id, user_id FROM identities FINAL") == [(anonymous, "buyer-1")]
    [(traits,)] = server.rows("SELECT traits FROM person_traits FINAL")
    assert traits["plan"] == "pro"


SEGMENT_PAGE = """<!doctype html><html><head><title>Shop</title><script src="/segment/index.js"></script></head><body>
<script>
  // cdnURL: where analytics.js reads its settings, which name this server as where events go.
  const analytics = AnalyticsNext.AnalyticsBrowser.load({writeKey: "segment-browser-key", cdnURL: "API"});
  analytics.page();
  analytics.track("added to cart", {sku: "B-2"});
  analytics.identify("buyer-2", {plan: "team"});
</script></body></html>"""


def test_segment_analytics_next_delivers_a_page_a_track_and_an_identify_once(live):
    bundle = from_npm("@segment/analytics-next@1", "dist/umd/index.js")
    files = {f"/segment/{f.name}": f.read_bytes() for f in bundle.parent.glob("*.js")}
    server = live(write_keys="shop:segment-browser-key")
    anonymous, _ = visit(server, SEGMENT_PAGE, files, "/shop?utm_source=mail", "localStorage.getItem('ajs_anonymous_id')")
    rows = server.rows("SELECT event, user_id, app_id, screen, utm_source, browser FROM events ORDER BY dt, event")
    assert sorted(row[0] for row in rows) == ["$identify", "added to cart", "pageview"]
    by_event = {row[0]: row for row in rows}
    # The calls queued before the library loaded go out after identify set the user: each carries
    # the user and the anonymous id, so the page view is the user's either way.
    assert by_event["pageview"][1] in (anonymous, "buyer-2")
    assert by_event["pageview"][2:6] == ("shop", "/shop", "mail", "Chrome")
    assert server.rows("SELECT anonymous_id, user_id FROM identities FINAL") == [(anonymous, "buyer-2")]


@pytest.mark.parametrize("library", ["posthog-js", "analytics-next"])
def test_each_browser_library_retries_a_503_and_each_event_is_stored_once(live, posthog_js, library):
    """ClickHouse refuses the first request (503 with Retry-After): the library's own retry
    delivers it; nothing is stored twice."""
    server = live(ack="insert", write_keys="shop:phc_browser_key,shop:segment-browser-key")
    outage = Outage(server.settings)
    if library == "posthog-js":
        visit(server, PAGE, {"/array.js": posthog_js}, "/", "posthog.get_property('$device_id')", outage)
    else:
        bundle = from_npm("@segment/analytics-next@1", "dist/umd/index.js")
        files = {f"/segment/{f.name}": f.read_bytes() for f in bundle.parent.glob("*.js")}
        visit(server, SEGMENT_PAGE, files, "/shop", "localStorage.getItem('ajs_anonymous_id')", outage)
    assert refusals(server) >= 1
    rows = server.rows("SELECT event, count() FROM events GROUP BY event ORDER BY event")
    assert rows == [("$identify", 1), ("added to cart", 1), ("pageview", 1)]
