"""Enrichment at ingest: browser/OS/device from the User-Agent, bots stored but not counted,
country from the client IP, referrer and UTM from the event's fields, cookieless visitor ids,
and the IP stored nowhere. Real requests into the real engine; the client address is set on
Starlette's TestClient as uvicorn would set it (from the connection or a trusted proxy)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import date, timedelta

import httpx
import pytest
from clickhouse_connect.driver.client import Client

from server.config import Settings
from server.ingest.useragent import describe
from server.ingest.visitors import Visitors
from server.process.app import create_app
from server.store import db
from tests.conftest import SettlingClient
from tests.servers import free_port, output, query_in_process, start_server, wait_consumed

CHROME = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36"
IPHONE = ("Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
          "Version/17.5 Mobile/15E148 Safari/604.1")
IPAD = ("Mozilla/5.0 (iPad; CPU OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 "
        "Mobile/15E148 Safari/604.1")
ANDROID_PHONE = ("Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) "
                 "Chrome/131.0.0.0 Mobile Safari/537.36")
ANDROID_TABLET = ("Mozilla/5.0 (Linux; Android 13; SM-X700) AppleWebKit/537.36 (KHTML, like Gecko) "
                  "Chrome/131.0.0.0 Safari/537.36")
FIREFOX_WINDOWS = "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:133.0) Gecko/20100101 Firefox/133.0"
CRAWLERS = {
    "Googlebot": "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
    "bingbot": "Mozilla/5.0 (compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm)",
    "HeadlessChrome": CHROME.replace("Chrome/", "HeadlessChrome/"),
}
TOOLS = {"curl": "curl/8.5.0", "python-requests": "python-requests/2.32.3"}
GB_IP = "81.2.69.160"  # RIPE: allocated to a GB network
JP_IP = "1.0.16.1"  # APNIC: JP


@pytest.fixture
def web(settings: Settings) -> Iterator[SettlingClient]:
    """The app as a browser on a British address reaches it."""
    with SettlingClient(create_app(settings), client=(GB_IP, 50000), headers={"User-Agent": CHROME}) as client:
        yield client


@pytest.fixture
def wch(settings: Settings, web: SettlingClient) -> Iterator[Client]:
    client = db.connect(settings)
    yield client
    client.close()


def rows(ch: Client, columns: str, where: str = "1") -> list[tuple]:
    order = "" if "count()" in columns or "DISTINCT" in columns else " ORDER BY dt, event"
    return ch.query(f"SELECT {columns} FROM events WHERE {where}{order}").result_rows


def event(**fields: object) -> dict[str, object]:
    return {"dt": "2025-03-01T10:00:00Z", "event": "pageview", **fields}


# --- the User-Agent ---------------------------------------------------------------------

@pytest.mark.parametrize(("user_agent", "browser", "os", "device"), [
    (CHROME, "Chrome", "Linux", "desktop"),
    (FIREFOX_WINDOWS, "Firefox", "Windows", "desktop"),
    (IPHONE, "Mobile Safari", "iOS", "mobile"),
    (IPAD, "Mobile Safari", "iOS", "tablet"),
    (ANDROID_PHONE, "Chrome Mobile", "Android", "mobile"),
    (ANDROID_TABLET, "Chrome", "Android", "tablet"),
])
def test_browser_os_and_device_type_from_the_user_agent(web, wch, user_agent, browser, os, device):
    r = web.post("/events", json=event(user_id="u1"), headers={"User-Agent": user_agent})
    assert r.status_code == 202, r.text
    assert rows(wch, "browser, os, device_type, is_bot") == [(browser, os, device, 0)]
    assert rows(wch, "browser_version")[0][0].split(".")[0].isdigit()


def test_describe_is_cached_per_user_agent():
    describe.cache_clear()
    describe(CHROME)
    describe(CHROME)
    assert describe.cache_info().hits == 1


# --- bots ---------------------------------------------------------------------------------

REPORTS = ["/reports/active-users", "/reports/daily", "/reports/total-users", "/reports/events",
           "/reports/revenue", "/reports/retention", "/reports/funnel?steps=pageview,signup",
           "/reports/ratio?numerator=signup&denominator=pageview"]
RANGE = "from=2025-02-20&to=2025-03-05"


def report_bodies(client: SettlingClient, extra: str = "") -> dict[str, object]:
    bodies = {}
    for path in REPORTS:
        joiner = "&" if "?" in path else "?"
        r = client.get(f"{path}{joiner}{RANGE}{extra}")
        assert r.status_code == 200, r.text
        bodies[path] = r.json()
    return bodies


def test_crawlers_and_anonymous_tools_are_stored_flagged_and_left_out_of_every_report(web, wch):
    people = [event(user_id="alice"), event(user_id="alice", event="signup", dt="2025-03-01T10:05:00Z", amount=50),
              event(user_id="bob", dt="2025-03-02T09:00:00Z")]
    assert web.post("/events", json=people).status_code == 202
    before = report_bodies(web)
    for name, user_agent in {**CRAWLERS, **TOOLS}.items():
        hits = [event(), event(event="signup", dt="2025-03-01T10:01:00Z", amount=7, session_id=f"s-{name}"),
                event(user_id=f"{name}-named", dt="2025-03-03T00:00:00Z")]
        if name in TOOLS:
            hits.pop()  # a tool that names its user is an app's back end: see the next test
        r = web.post("/events", json=hits, headers={"User-Agent": user_agent})
        assert r.status_code == 202, r.text
    flagged = rows(wch, "count()", "is_bot = 1")[0][0]
    assert flagged == 2 * len(CRAWLERS) + 2 * len(TOOLS) + len(CRAWLERS)
    assert rows(wch, "DISTINCT device_type", "is_bot = 1") == [("bot",)]
    assert report_bodies(web) == before  # stored, and no report counts them
    included = report_bodies(web, "&bots=include")
    assert included["/reports/total-users"]["total_users"] > before["/reports/total-users"]["total_users"]
    assert included != before
    metrics = web.get("/metrics").text
    assert re.search(r"^events_bot_total\s+13\.0$", metrics, re.MULTILINE), metrics


def test_a_tool_that_names_its_user_is_counted(web, wch):
    """Seed 004's README sends its events with curl: an app's back end, not a crawler."""
    r = web.post("/events/", data={"dt": "2025-03-01T11:11:11Z", "event": "test", "userid": "1"},
                 headers={"User-Agent": "curl/8.5.0"})
    assert r.status_code == 202
    assert rows(wch, "user_id, browser, device_type, is_bot") == [("1", "curl", "other", 0)]


def test_bots_parameter_is_checked(web):
    r = web.get("/reports/daily?bots=maybe")
    assert r.status_code == 422
    assert r.json()["error"]["field"] == "bots"


# --- country from the IP -------------------------------------------------------------------

def test_country_from_the_client_ip_unless_the_event_sent_one(web, wch):
    assert web.post("/events", json=[event(user_id="a"), event(user_id="b", country="FR")]).status_code == 202
    assert sorted(rows(wch, "user_id, country")) == [("a", "GB"), ("b", "FR")]


def test_country_from_x_forwarded_for_through_uvicorn(tmp_path):
    """uvicorn takes the client address from X-Forwarded-For when the peer is one of
    FORWARDED_ALLOW_IPS (default 127.0.0.1, as here): a proxy on the same host."""
    port = free_port()
    server = start_server(tmp_path / "data", port)
    try:
        r = httpx.post(f"http://127.0.0.1:{port}/events", json=event(),
                       headers={"X-Forwarded-For": f"{JP_IP}, 127.0.0.1", "User-Agent": CHROME})
        assert r.status_code == 202, r.text
        wait_consumed(port)
    finally:
        server.terminate()
        server.wait(timeout=60)
    found = query_in_process(tmp_path / "data", "SELECT country, user_id LIKE 'v:%' FROM events")
    assert found == [["JP", 1]], output(server)


# --- referrer and UTM -----------------------------------------------------------------------

def test_referrer_domain_and_utm_from_the_event_url(web, wch):
    landing = event(user_id="u", url="https://shop.example/p?utm_source=newsletter&utm_medium=email&utm_campaign=nov&x=1",
                    referrer="https://www.google.com/search?q=shoes")
    inner = event(user_id="u", dt="2025-03-01T10:01:00Z", url="https://shop.example/cart",
                  referrer="https://shop.example/p")
    explicit = event(user_id="u", dt="2025-03-01T10:02:00Z", url="https://shop.example/?utm_source=ad",
                     utm_source="partner")
    assert web.post("/events", json=[landing, inner, explicit]).status_code == 202
    assert rows(wch, "referrer_domain, utm_source, utm_medium, utm_campaign, props['url'] != ''") == [
        ("google.com", "newsletter", "email", "nov", 1),
        ("", "", "", "", 1),  # a link within the site is no source
        ("", "partner", "", "", 1),  # what the event sent wins
    ]
    assert rows(wch, "referrer")[0][0] == "https://www.google.com/search?q=shoes"


# --- cookieless visitors ---------------------------------------------------------------------

def test_an_event_without_user_id_gets_a_daily_visitor_id(web, wch):
    for _ in range(2):
        assert web.post("/events", json=event(app_id="shop")).status_code == 202
    assert web.post("/events", json=event(app_id="blog")).status_code == 202
    assert web.post("/events", json=event(app_id="shop"), headers={"User-Agent": FIREFOX_WINDOWS}).status_code == 202
    ids = [user for (user,) in rows(wch, "user_id")]
    assert all(re.fullmatch(r"v:[0-9a-f]{16}", user) for user in ids), ids
    assert len(set(ids)) == 3  # the same visitor of one app twice; another app; another browser


def test_without_a_user_agent_an_event_needs_its_user_id(web):
    r = web.post("/events", json=event(), headers={"User-Agent": ""})
    assert r.status_code == 422
    assert r.json()["error"]["errors"][0]["field"] == "user_id"


def test_salts_change_each_day_and_past_days_are_deleted(settings, web, wch):
    visitors = Visitors(wch)
    today = date(2030, 1, 10)
    visitors.refresh(today)
    first = visitors.visitor_id("app", GB_IP, CHROME, today)
    assert first == Visitors(wch).visitor_id("app", GB_IP, CHROME, today)  # another process agrees
    next_day = visitors.visitor_id("app", GB_IP, CHROME, today + timedelta(days=1))
    assert next_day != first
    visitors.refresh(today + timedelta(days=1))
    assert wch.query("SELECT min(day) FROM visitor_salts").result_rows[0][0] == today + timedelta(days=1)
    assert visitors.known_days() == [today + timedelta(days=1), today + timedelta(days=2)]


# --- the IP is stored nowhere -------------------------------------------------------------------

def test_the_client_ip_appears_in_no_table(settings, web, wch):
    body = [event(), event(user_id="u", url="https://a.example/?utm_source=x", referrer="https://b.example/")]
    assert web.post("/events", json=body).status_code == 202
    assert web.post("/events", json=event(), headers={"User-Agent": CRAWLERS["Googlebot"]}).status_code == 202
    columns = wch.query(
        "SELECT table, name FROM system.columns WHERE database = currentDatabase() AND type NOT LIKE 'AggregateFunction%'"
        " AND table IN (SELECT name FROM system.tables WHERE database = currentDatabase() AND engine LIKE '%MergeTree')"
    ).result_rows
    assert ("events", "user_id") in columns and len(columns) > 30
    for table, column in columns:
        found = wch.query(f"SELECT count() FROM `{table}` WHERE position(toString(`{column}`), {{ip:String}}) > 0",
                          parameters={"ip": GB_IP}).result_rows[0][0]
        assert found == 0, f"{table}.{column} holds the client IP"
    assert rows(wch, "count()")[0][0] == 3
