"""posthog-js, PostHog's browser library from npm, unchanged, in headless Chromium on a page of
another origin, configured with our host and nothing else: its page view, a custom event and an
identify reach us once each, and the anonymous visitor is joined to the user.

npm installs the package into a cache under the temporary directory (once per machine); without
npm or Chromium the test is skipped with the reason."""

from __future__ import annotations

import contextlib
import http.server
import os
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

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


@pytest.fixture(scope="module")
def posthog_js() -> bytes:
    """The library's browser bundle (dist/array.js), from the npm registry."""
    bundle = NPM_CACHE / "node_modules" / "posthog-js" / "dist" / "array.js"
    if not bundle.exists():
        NPM_CACHE.mkdir(parents=True, exist_ok=True)
        installed = subprocess.run(["npm", "install", "--silent", "--no-audit", "--no-fund", "--prefix", str(NPM_CACHE),
                                    "posthog-js@1"], capture_output=True, text=True, timeout=300)
        if installed.returncode != 0:
            pytest.skip(f"npm could not install posthog-js: {installed.stderr[-300:]}")
    return bundle.read_bytes()


PAGE = """<!doctype html><html><head><title>Shop</title><script src="/array.js"></script></head><body>
<script>
  posthog.init("phc_browser_key", {api_host: "API", persistence: "memory", autocapture: false,
                                    disable_session_recording: true, request_batching: false});
  posthog.capture("added to cart", {sku: "A-1"});
  posthog.identify("buyer-1", {plan: "pro"});
</script></body></html>"""


@contextlib.contextmanager
def shop(api_url: str, library: bytes) -> Iterator[str]:
    """The shop's page and its copy of the library, served from this machine on another port: an
    origin other than the API's (Chromium lets a loopback page call a loopback address only)."""
    page = PAGE.replace("API", api_url).encode()

    class Shop(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (the standard library's name)
            body, kind = (library, "text/javascript") if self.path.startswith("/array.js") else (page, "text/html")
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


def test_posthog_js_delivers_a_pageview_an_event_and_an_identify_once(live, posthog_js):
    server = live(write_keys="shop:phc_browser_key")
    with sync_playwright() as playwright, shop(server.url, posthog_js) as origin:
        # navigator.webdriver (automation) makes posthog-js drop every event as a bot's.
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=[
            "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--disable-blink-features=AutomationControlled"])
        page = browser.new_page(user_agent=USER_AGENT)
        errors: list[str] = []
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.goto(f"{origin}/?utm_source=news")
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and len(server.rows("SELECT 1 FROM events")) < 3:
            time.sleep(0.2)
        anonymous = page.evaluate("posthog.get_property('$device_id')")
        browser.close()
    assert errors == []
    rows = server.rows("SELECT event, user_id, app_id, props['url'], utm_source, browser FROM events ORDER BY dt, event")
    assert sorted(row[0] for row in rows) == ["$identify", "added to cart", "pageview"]
    by_event = {row[0]: row for row in rows}
    assert by_event["pageview"][2:6] == ("shop", f"{origin}/?utm_source=news", "news", "Chrome")
    assert by_event["$identify"][1] == "buyer-1"
    assert server.rows("SELECT anonymous_id, user_id FROM identities FINAL") == [(anonymous, "buyer-1")]
    [(traits,)] = server.rows("SELECT traits FROM person_traits FINAL")
    assert traits["plan"] == "pro"
