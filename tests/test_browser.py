"""The built-in page in a real browser: headless Chromium (Debian's package) driven by
Playwright, against a real server holding demo data. Checks that the charts drew their data
(pixels of the series colour on the canvases, not just axes), that the console runs a query and
shows the table, and that a refused query shows ClickHouse's error. Screenshots are saved to
$SCREENSHOTS_DIR (default: analytics-api-screenshots in the temporary directory; the suite
writes nothing in the working tree). When Chromium or Playwright is missing, the tests are
skipped with the reason."""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from pathlib import Path

import httpx
import pytest

from tests import forkserver
from tests.servers import ROOT, free_port, start_server

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
ARTIFACTS = Path(os.environ.get("SCREENSHOTS_DIR") or Path(tempfile.gettempdir()) / "analytics-api-screenshots")
SERIES_PIXELS = """(selector) => {
  // Pixels of the first series colour (#4c78a8) on the chart's canvas: the data was drawn.
  const canvas = document.querySelector(selector + " canvas");
  if (!canvas) return -1;
  const data = canvas.getContext("2d").getImageData(0, 0, canvas.width, canvas.height).data;
  let count = 0;
  for (let i = 0; i < data.length; i += 4)
    if (Math.abs(data[i] - 76) < 12 && Math.abs(data[i + 1] - 120) < 12 && Math.abs(data[i + 2] - 168) < 12
        && data[i + 3] > 100) count++;
  return count;
}"""

try:
    from playwright.sync_api import sync_playwright
except ImportError as exc:  # pragma: no cover - reported as a skip
    pytest.skip(f"Playwright is not installed ({exc})", allow_module_level=True)
if not (shutil.which(CHROMIUM) or Path(CHROMIUM).exists()):
    pytest.skip(f"Chromium is not installed at {CHROMIUM} (apt-get install chromium)", allow_module_level=True)

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    data = tmp_path_factory.mktemp("browser")
    env = {**os.environ, "CLICKHOUSE_URL": f"chdb://{data}"}
    forkserver.run([sys.executable, "-m", "server.cli", "seed-demo", "--events", "60000", "--days", "40"],
                   cwd=ROOT, env=env, check=True, capture_output=True)
    port = free_port()
    process = start_server(data, port)
    yield f"http://127.0.0.1:{port}"
    process.terminate()
    process.wait(timeout=60)


@pytest.fixture(scope="module")
def page(server):
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=[
            "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"])
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        errors: list[str] = []
        page.on("pageerror", lambda error: errors.append(str(error)))
        yield page
        browser.close()
        assert errors == [], f"JavaScript errors on the page: {errors}"


def test_live_tab_draws_events_per_second(server, page):
    page.goto(server + "/#live")
    for n in range(6):  # events arrive while the page samples /metrics
        body = [{"dt": "2026-01-01T00:00:00Z", "event": "view", "user_id": f"live{n}-{i}"} for i in range(50)]
        assert httpx.post(server + "/events", json=body).status_code == 202
        page.wait_for_timeout(800)
    page.wait_for_function(f"({SERIES_PIXELS})('#live-events') > 20", timeout=15000)
    assert page.evaluate(f"({SERIES_PIXELS})('#live-insert')") > 20
    assert "updated" in page.inner_text("#live-status")
    page.screenshot(path=str(ARTIFACTS / "live.png"), full_page=True)


def test_reports_tab_draws_every_chart_funnel_and_retention(server, page):
    page.goto(server + "/#reports")
    page.wait_for_function("document.querySelector('#report-status').textContent.includes('users in total')",
                           timeout=30000)
    for chart in ("#chart-active", "#chart-new", "#chart-session", "#chart-revenue"):
        assert page.evaluate(f"({SERIES_PIXELS})('{chart}')") > 20, f"{chart} drew no data"
    steps = page.locator("#funnel .bar")
    assert steps.count() == 4
    assert page.locator("#funnel .bar .label").all_inner_texts() == ["view", "start_task", "finish_task", "pay"]
    assert page.locator("#retention tr").count() > 2
    page.screenshot(path=str(ARTIFACTS / "reports.png"), full_page=True)


def test_sql_tab_runs_an_example_and_shows_refusals(server, page):
    page.goto(server + "/#sql")
    page.click("button[data-example='top']")
    page.wait_for_selector("#result-table")
    headers = page.locator("#result-table th").all_inner_texts()
    assert headers == ["event", "events", "users"]
    events = page.locator("#result-table tr td:first-child").all_inner_texts()
    assert {"view", "start_task", "finish_task", "pay"} <= set(events)
    assert "row(s)" in page.inner_text("#sql-status")
    page.screenshot(path=str(ARTIFACTS / "sql.png"), full_page=True)
    page.fill("#sql", "DROP TABLE events")
    page.click("#run")
    page.wait_for_selector("#sql-error:not([hidden])")
    assert "readonly" in page.inner_text("#sql-error").lower()
    page.screenshot(path=str(ARTIFACTS / "sql-refused.png"), full_page=True)
