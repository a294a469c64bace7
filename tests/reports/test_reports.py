"""Every report against the same seeded events computed in plain Python (tests/reports/reference.py).

The events go in over HTTP, out of order, and the reports are read back over HTTP. All the
reports here use exact functions (uniqExact, exact sums), so the comparison is exact.
"""

from __future__ import annotations

import gzip
from datetime import UTC, date, datetime

import pytest

from server.process.app import create_app
from server.store import db
from tests.conftest import SettlingClient, drop_databases
from tests.reports import reference

FIRST, LAST = date(2025, 3, 3), date(2025, 3, 16)
# Users of both apps, first seen in each on a different day: new in the one first, for all apps.
CROSS_APP = [{"dt": int(datetime(2025, 3, day, hour, tzinfo=UTC).timestamp()), "event": "view", "user_id": user,
              "app_id": app_id, "country": "TR"}
             for user, visits in {"x0": [(5, 10, "a1"), (9, 12, "a2")], "x1": [(4, 23, "a2"), (10, 1, "a1")],
                                  "x2": [(2, 9, "a2"), (16, 9, "a1")]}.items()
             for day, hour, app_id in visits]
EVENTS = reference.generate(seed=7, first_day=FIRST, days=14) + CROSS_APP
ZONES = ["UTC", "Asia/Kolkata", "America/New_York"]  # New York changes to DST on 2025-03-09


@pytest.fixture(scope="module")
def reports(chdb_dir):
    """One app with the generated events stored, shared by the tests of this module."""
    import uuid

    from server.config import Settings

    url = f"chdb://{chdb_dir}?database=r_{uuid.uuid4().hex[:12]}"
    settings = Settings.from_env({}, clickhouse_url=url, rollup_interval_seconds=0)  # every day computed
    with SettlingClient(create_app(settings)) as api:
        for n in range(0, len(EVENTS), 50):
            assert api.post("/events", json=EVENTS[n:n + 50]).status_code == 202
        client = db.connect(settings)
        db.flush_buffer_table(client)  # reports read `events` and its views: flush what the Buffer holds
        client.close()
        yield api
    drop_databases([settings])


def query(tz: str, **extra: str) -> dict[str, str]:
    return {"from": FIRST.isoformat(), "to": LAST.isoformat(), "tz": tz, **extra}


def only(app_id: str) -> list[dict]:
    return [e for e in EVENTS if e["app_id"] == app_id]


def test_the_generated_data_has_what_the_reports_need():
    assert len(EVENTS) > 300
    assert any(e["dt"] < reference.day_bounds(FIRST, LAST, "UTC")[0] for e in EVENTS)  # seen before the range
    assert any("session_id" in e for e in EVENTS) and any("session_id" not in e for e in EVENTS)


@pytest.mark.parametrize("tz", ZONES)
def test_daily(reports, tz):
    expected = reference.daily(EVENTS, FIRST, LAST, tz)
    for path in ("/reports/daily", "/event", "/analytics/daily"):
        assert reports.get(path, params=query(tz)).json() == expected


@pytest.mark.parametrize("tz", ZONES)
def test_daily_over_a_few_days(reports, tz):
    """Ranges of one to three days (their new users from new_users_recent.sql: only the users
    first seen in the range looked up) equal the reference, for all apps and each (CROSS_APP's
    users are new in a2 on a day they are not new for all apps)."""
    new = 0
    for first, last in ((LAST, LAST), (date(2025, 3, 9), date(2025, 3, 10)), (date(2025, 3, 4), date(2025, 3, 6))):
        for app_id, kept in (("", EVENTS), ("a1", only("a1")), ("a2", only("a2"))):
            params = {"from": first.isoformat(), "to": last.isoformat(), "tz": tz, **({"app_id": app_id} if app_id else {})}
            got = reports.get("/reports/daily", params=params).json()
            assert got == reference.daily(kept, first, last, tz)
            new += sum(d["new_user_count"] for d in got["daily_stats"])
    assert new > 0


@pytest.mark.parametrize("tz", ZONES)
def test_active_users(reports, tz):
    assert reports.get("/reports/active-users", params=query(tz)).json() == reference.active_users(EVENTS, FIRST, LAST, tz)


def test_filters_by_app_id(reports):
    events = only("a1")
    got = reports.get("/reports/daily", params=query("UTC", app_id="a1")).json()
    assert got == reference.daily(events, FIRST, LAST, "UTC")
    got = reports.get("/reports/active-users", params=query("UTC", app_id="a1")).json()
    assert got == reference.active_users(events, FIRST, LAST, "UTC")


@pytest.mark.parametrize("tz", ["UTC", "Asia/Kolkata"])
@pytest.mark.parametrize("window", [600, 3600])
def test_funnel(reports, tz, window):
    steps = ["view", "start_task", "finish_task"]
    got = reports.get("/reports/funnel", params=query(tz, steps=",".join(steps), window=str(window))).json()
    expected = reference.funnel(EVENTS, FIRST, LAST, tz, steps, window)
    assert [s["users"] for s in got["steps"]] == expected
    assert [s["step"] for s in got["steps"]] == steps
    assert got["steps"][0]["conversion"] == 1.0
    assert got["steps"][2]["conversion"] == round(expected[2] / expected[0], 6)


@pytest.mark.parametrize("tz", ZONES)
def test_ratio(reports, tz):
    got = reports.get("/reports/ratio", params=query(tz, numerator="finish_task", denominator="start_task")).json()
    expected = reference.ratio(EVENTS, FIRST, LAST, tz, "finish_task", "start_task")
    assert {row["date"]: row["users"] for row in got} == {d: users for d, (_, users) in expected.items()}
    for row in got:
        assert row["ratio"] == pytest.approx(expected[row["date"]][0], rel=1e-12)


@pytest.mark.parametrize("tz", ZONES)
def test_active_users_over_more_days_than_one_query_covers(reports, tz):
    """Ranges longer than 35 days are answered in pieces (a user's days are a 64-bit mask)."""
    first = date(2025, 1, 28)
    got = reports.get("/reports/active-users", params={"from": first.isoformat(), "to": LAST.isoformat(), "tz": tz})
    assert got.json() == reference.active_users(EVENTS, first, LAST, tz)


@pytest.mark.parametrize(("filters", "kept"), [({"app_id": "a1"}, lambda e: e["app_id"] == "a1"),
                                               ({"event": "start_task"}, lambda e: e["event"] == "start_task"),
                                               ({"country": "DE", "app_id": "a2"},
                                                lambda e: e["country"] == "DE" and e["app_id"] == "a2")])
def test_active_users_with_filters(reports, filters, kept):
    got = reports.get("/reports/active-users", params=query("America/New_York", **filters)).json()
    expected = reference.active_users([e for e in EVENTS if kept(e)], FIRST, LAST, "America/New_York")
    assert got == expected


@pytest.mark.parametrize(("filters", "kept"), [({"app_id": "a1"}, lambda e: e["app_id"] == "a1"),
                                               ({"country": "DE"}, lambda e: e["country"] == "DE"),
                                               ({"country": "DE", "app_id": "a2"},
                                                lambda e: e["country"] == "DE" and e["app_id"] == "a2")])
def test_new_and_total_users_with_filters(reports, filters, kept):
    """New and total users come from `users_first` without a country or event filter, else from
    `user_first_seen` (012_users_first.sql): both agree with the reference."""
    got = reports.get("/reports/daily", params=query("UTC", **filters)).json()
    expected = reference.daily([e for e in EVENTS if kept(e)], FIRST, LAST, "UTC")
    assert got["total_users"] == expected["total_users"]
    assert [d["new_user_count"] for d in got["daily_stats"]] == [d["new_user_count"] for d in expected["daily_stats"]]
    assert sum(d["new_user_count"] for d in got["daily_stats"]) > 0


@pytest.mark.parametrize("tz", ZONES)
def test_revenue(reports, tz):
    assert reports.get("/reports/revenue", params=query(tz)).json() == reference.revenue(EVENTS, FIRST, LAST, tz)


@pytest.mark.parametrize("tz", ["UTC", "America/New_York"])
@pytest.mark.parametrize("period", ["day", "week"])
def test_retention(reports, tz, period):
    got = reports.get("/reports/retention", params=query(tz, period=period)).json()
    assert got["cohorts"] == reference.retention(EVENTS, FIRST, LAST, tz, period)


@pytest.mark.parametrize("period", ["day", "week"])
@pytest.mark.parametrize(("filters", "kept"), [({"app_id": "a2"}, lambda e: e["app_id"] == "a2"),
                                               ({"country": "DE"}, lambda e: e["country"] == "DE"),
                                               ({"country": "DE", "app_id": "a2"},
                                                lambda e: e["country"] == "DE" and e["app_id"] == "a2")])
def test_retention_with_filters(reports, filters, kept, period):
    """In UTC: by app from `user_days` and `users_first` (retention_days.sql; CROSS_APP's users
    are in a2's cohorts on days they are not in all apps'), with a country from `user_hours`."""
    got = reports.get("/reports/retention", params=query("UTC", period=period, **filters)).json()
    assert got["cohorts"] == reference.retention([e for e in EVENTS if kept(e)], FIRST, LAST, "UTC", period)


def test_total_users_and_the_seed_000_routes(reports):
    everyone = len({e["user_id"] for e in EVENTS})
    assert reports.get("/api/v1/crm/user-stat/total-user").json() == {"total_user": everyone}
    expected = reference.daily(EVENTS, FIRST, LAST, "UTC")["total_users"]
    assert reports.get("/reports/total-users", params=query("UTC")).json() == {"total_users": expected}
    day = date(2025, 3, 10)
    dau = next(r["dau"] for r in reference.active_users(EVENTS, day, day, "UTC"))
    assert reports.post("/api/v1/crm/daily-stat/active-user", json={"date": "2025-03-10"}).json() == {"distinct_user": dau}
    gzipped = gzip.compress(b'{"date": "2025-03-10"}')
    r = reports.post("/api/v1/crm/daily-stat/active-user", content=gzipped,
                     headers={"Content-Type": "application/json", "Content-Encoding": "gzip"})
    assert r.json() == {"distinct_user": dau}


@pytest.mark.parametrize(
    "params,name",
    [
        ({"from": "2025-13-01"}, "from"),
        ({"to": "yesterday"}, "to"),
        ({"from": "2025-03-10", "to": "2025-03-01"}, "from"),
        ({"from": "2024-01-01", "to": "2025-03-01"}, "to"),
        ({"tz": "Mars/Olympus"}, "tz"),
        ({"tz": "../../etc/passwd"}, "tz"),
        ({"tz": "posix/Europe/Berlin"}, "tz"),
    ],
)
def test_bad_report_parameters_get_422_naming_them(reports, params, name):
    for path in ("/reports/daily", "/reports/active-users", "/reports/revenue", "/reports/retention"):
        r = reports.get(path, params=params)
        assert r.status_code == 422, (path, r.text)
        assert r.json()["error"]["errors"][0]["field"] == name


@pytest.mark.parametrize(
    "params,name",
    [
        ({"steps": "view"}, "steps"),
        ({"steps": ",".join(f"e{i}" for i in range(11))}, "steps"),
        ({"steps": "view,view"}, "steps"),
        ({"steps": "view,pay", "window": "0"}, "window"),
        ({"steps": "view,pay", "window": str(30 * 86400 + 1)}, "window"),
        ({"steps": "view,pay", "window": "soon"}, "window"),
    ],
)
def test_bad_funnel_parameters(reports, params, name):
    r = reports.get("/reports/funnel", params=params)
    assert r.status_code == 422 and r.json()["error"]["errors"][0]["field"] == name


def test_other_bad_parameters(reports):
    assert reports.get("/reports/retention", params={"period": "month"}).status_code == 422
    assert reports.get("/reports/ratio", params={"numerator": "x"}).json()["error"]["errors"][0]["field"] == "denominator"
    r = reports.post("/api/v1/crm/daily-stat/active-user", json={"date": "10/03/2025"})
    assert r.status_code == 422 and r.json()["error"]["errors"][0]["field"] == "date"


def test_event_filter_counts_the_users_of_that_event(reports):
    paid = [e for e in EVENTS if e["event"] == "pay"]
    params = query("UTC", event="pay")
    assert reports.get("/reports/active-users", params=params).json() == reference.active_users(paid, FIRST, LAST, "UTC")
    assert reports.get("/reports/revenue", params=params).json() == reference.revenue(paid, FIRST, LAST, "UTC")
    got = reports.get("/reports/retention", params={**params, "period": "week"}).json()
    assert got["cohorts"] == reference.retention(paid, FIRST, LAST, "UTC", "week")
    daily = reports.get("/reports/daily", params=params).json()
    expected = reference.daily(paid, FIRST, LAST, "UTC")
    assert daily["total_users"] == expected["total_users"]
    # Sessions are whole: their durations do not change with the event filter.
    unfiltered = reference.daily(EVENTS, FIRST, LAST, "UTC")["daily_stats"]
    for got_day, want_day, all_day in zip(daily["daily_stats"], expected["daily_stats"], unfiltered, strict=True):
        assert (got_day["active_user_count"], got_day["new_user_count"]) == (
            want_day["active_user_count"], want_day["new_user_count"])
        assert got_day["average_session_duration"] == all_day["average_session_duration"]
    assert sum(d["active_user_count"] for d in daily["daily_stats"]) > 0


@pytest.mark.parametrize("tz", ["UTC", "America/New_York"])
def test_event_counts_per_hour(reports, tz):
    from collections import Counter
    from datetime import datetime
    from zoneinfo import ZoneInfo

    start, end = reference.day_bounds(FIRST, LAST, tz)
    expected = Counter(
        (datetime.fromtimestamp(e["dt"] - e["dt"] % 3600, ZoneInfo(tz)).isoformat(), e["event"])
        for e in EVENTS if start <= e["dt"] < end and e["app_id"] == "a2"
    )
    got = reports.get("/reports/events", params=query(tz, app_id="a2")).json()
    assert {(r["hour"], r["event"]): r["events"] for r in got} == dict(expected)
    assert sum(expected.values()) > 0


def test_the_hourly_activity_table_serves_whole_hour_zones_only():
    from server.reports.params import ReportRange
    from server.reports.queries import whole_hour_days

    assert whole_hour_days(ReportRange(FIRST, LAST, "America/New_York"))  # across its DST change
    assert whole_hour_days(ReportRange(FIRST, LAST, "UTC"))
    assert not whole_hour_days(ReportRange(FIRST, LAST, "Asia/Kolkata"))
