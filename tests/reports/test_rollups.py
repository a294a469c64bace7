"""The rollup job's stored days (server/reports/rollups.py): reports that take them still equal
the Python reference, in UTC and a DST zone, for all apps and one; a late event or an erasure
makes the days it touches computed again (never a stale or doubled count; an erasure: in
tests/test_erase.py); and a single day's
active users from each user's latest event (today's) equal the reference."""

from __future__ import annotations

import threading
import time
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from clickhouse_connect.driver.client import Client
from clickhouse_connect.driver.exceptions import DatabaseError

from server.process.app import create_app
from server.reports import queries, rollup_job, rollups
from server.reports.cache import DayCache
from server.reports.params import ReportRange
from server.store import db
from tests.conftest import SettlingClient
from tests.reports import reference

FIRST, LAST = date(2025, 3, 3), date(2025, 3, 16)
ZONES = ("UTC", "America/New_York")  # New York changes to DST on 2025-03-09
NO_CACHE = {"Cache-Control": "no-cache"}  # the memory skipped: stored days, or computed


@pytest.fixture
def stored(make_settings):
    """An app with generated events stored and every finished day rolled up (zones ZONES)."""
    events = reference.generate(seed=23, first_day=FIRST, days=14, users=30)
    settings = make_settings(rollup_zones=",".join(ZONES))
    with SettlingClient(create_app(settings)) as api:
        post(api, events)
        client = db.connect(settings)
        # The server's own memory of stored rows gets them, as when its job stores them.
        done = rollup_job.refresh(client, ZONES, keep_days=(date.today() - FIRST).days + 40, memory=memory_of(api))
        assert done.days > 0
        yield api, client, events
        client.close()


def post(api, events: list[dict], batch: int = 10_000) -> None:
    for n in range(0, len(events), batch):
        assert api.post("/events", json=events[n:n + batch]).status_code == 202
    client = db.connect(api.app.state.services.settings)
    db.flush_buffer_table(client)
    client.close()


def memory_of(api) -> rollups.StoredDays:
    return api.app.state.services.stored_days


def params(tz: str, **extra: str) -> dict[str, str]:
    return {"from": FIRST.isoformat(), "to": LAST.isoformat(), "tz": tz, **extra}


def taken_from_storage(api, path: str, query: dict[str, str]) -> tuple[dict | list, int, int]:
    """The report's answer, and how many of its days came from storage and were computed."""
    cache = api.app.state.services.report_cache
    stored_before, computed_before = cache.stored, cache.computed
    answer = api.get(path, params=query, headers=NO_CACHE).json()
    return answer, cache.stored - stored_before, cache.computed - computed_before


@pytest.mark.parametrize("tz", ZONES)
def test_reports_from_stored_days_equal_the_reference(stored, tz):
    api, _, events = stored
    daily, from_storage, computed = taken_from_storage(api, "/reports/daily", params(tz))
    assert daily == reference.daily(events, FIRST, LAST, tz)
    # Active users, new users, session length; and the total as of 15 March (plus the 16th's new users).
    assert (from_storage, computed) == (3 * 14 + 1, 0)
    active, from_storage, computed = taken_from_storage(api, "/reports/active-users", params(tz))
    assert active == reference.active_users(events, FIRST, LAST, tz)
    assert (from_storage, computed) == (14, 0)
    revenue, from_storage, _ = taken_from_storage(api, "/reports/revenue", params(tz))
    assert revenue == reference.revenue(events, FIRST, LAST, tz) and from_storage == 2 * 14
    app = events[0]["app_id"]
    one_app = [e for e in events if e["app_id"] == app]
    daily, from_storage, _ = taken_from_storage(api, "/reports/daily", params(tz, app_id=app))
    assert daily == reference.daily(one_app, FIRST, LAST, tz) and from_storage == 3 * 14 + 1


def test_filters_and_zones_the_job_does_not_store_are_computed(stored):
    api, _, events = stored
    for query in (params("Asia/Kolkata"), params("UTC", bots="include"), params("UTC", country=events[0]["country"])):
        _, from_storage, computed = taken_from_storage(api, "/reports/active-users", query)
        assert (from_storage, computed) == (0, 14)
    assert taken_from_storage(api, "/reports/active-users", params("Asia/Kolkata"))[0] == reference.active_users(
        events, FIRST, LAST, "Asia/Kolkata")


def test_a_late_event_makes_the_days_it_touches_computed_until_the_job_stores_them_again(stored):
    api, client, events = stored
    late_day = date(2025, 3, 10)
    # A new user's late event on 10 March, and a late event that lengthens a session begun on 9 March.
    session = next(e for e in events if "session_id" in e and reference.local_day(e["dt"], "UTC") == late_day - timedelta(1))
    late = [{**events[0], "user_id": "late-user", "dt": int(datetime(2025, 3, 10, 12, tzinfo=UTC).timestamp()),
             "event": "view", "amount": 0},
            {**session, "dt": session["dt"] + 600, "event": "late-step"}]
    late = [{k: v for k, v in e.items() if k != "event_id"} for e in late]
    # Looked at once before: the server watches the rows' stamps, then reads only newer blocks.
    assert taken_from_storage(api, "/reports/daily", params("UTC"))[1:] == (3 * 14 + 1, 0)
    post(api, late)
    everything = events + late
    # The blocks' events run from 9 to 10 March: active and new users from the 9th on, session
    # length 8 to 11 March, total users as of the 15th computed.
    for name, touched in (("/reports/active-users", 8), ("/reports/daily", 8 + 8 + 4 + 1)):
        answer, from_storage, computed = taken_from_storage(api, name, params("UTC"))
        assert answer == (reference.active_users(everything, FIRST, LAST, "UTC") if name.endswith("users")
                          else reference.daily(everything, FIRST, LAST, "UTC"))
        assert computed == touched
    # The job stores the days that are no longer true again, once; a second round finds none.
    keep = (date.today() - FIRST).days + 40
    assert rollup_job.refresh(client, ZONES, keep_days=keep, memory=memory_of(api)).days > 0
    assert rollup_job.refresh(client, ZONES, keep_days=keep, memory=memory_of(api)).days == 0
    daily, from_storage, computed = taken_from_storage(api, "/reports/daily", params("UTC"))
    assert daily == reference.daily(everything, FIRST, LAST, "UTC") and (from_storage, computed) == (3 * 14 + 1, 0)


def test_an_old_event_makes_only_the_days_it_can_touch_computed(stored):
    """A block's earliest and latest event (016_event_changes_last.sql) bound the days it can
    change: an old-dated event of a known user changes revenue on its day only, WAU/MAU for 30
    days from it, new users from it on."""
    api, _, events = stored
    known = next(e for e in events if reference.local_day(e["dt"], "UTC") < date(2025, 3, 4))
    old = {"dt": "2025-03-04T12:00:00Z", "event": "pay", "user_id": known["user_id"], "amount": 300,
           "app_id": known["app_id"]}
    post(api, [old])
    everything = [*events, {**old, "dt": int(datetime(2025, 3, 4, 12, tzinfo=UTC).timestamp())}]
    revenue, from_storage, computed = taken_from_storage(api, "/reports/revenue", params("UTC"))
    assert revenue == reference.revenue(everything, FIRST, LAST, "UTC")
    assert computed == 1 + 13  # revenue on 4 March; the paying share's active users from 4 March on
    assert from_storage == 13 + 1  # revenue on every other day; active users on 3 March


def test_a_block_stamped_before_the_rows_that_commits_after_a_look_is_still_seen(stored):
    """A block's view stamps `inserted` before its INSERT commits: one stamped in the margin
    before the rows were stored, visible only after the server has looked at them, changes the
    count there, and the days it touches are computed."""
    api, client, events = stored
    assert taken_from_storage(api, "/reports/active-users", params("UTC"))[1:] == (14, 0)  # looked at
    stamp = client.query("SELECT min(stored) FROM report_days").result_rows[0][0]
    newest = client.query("SELECT max(inserted) FROM event_changes").result_rows[0][0]
    late = {"dt": int(datetime(2025, 3, 12, 9, tzinfo=UTC).timestamp()), "event": "view", "user_id": "late-commit",
            "app_id": "a1", "country": "TR"}
    post(api, [late])
    # Its block as if stamped 5 s before the rows: moved back in event_changes.
    client.command("ALTER TABLE event_changes DELETE WHERE inserted > {n:DateTime64(3, 'UTC')} SETTINGS mutations_sync = 2",
                   parameters={"n": newest})
    client.command("INSERT INTO event_changes (inserted, first_dt, last_dt, rows) VALUES "
                   "({s:DateTime64(3, 'UTC')} - INTERVAL 5 SECOND, '2025-03-12 09:00:00', '2025-03-12 09:00:00', 1)",
                   parameters={"s": stamp})
    answer, from_storage, computed = taken_from_storage(api, "/reports/active-users", params("UTC"))
    assert answer == reference.active_users([*events, late], FIRST, LAST, "UTC")
    # Which block of the margin is new cannot be told: all of them count as unseen, and every day
    # their events touch (here all: the fixture's own blocks are in the margin) is computed.
    assert (from_storage, computed) == (0, 14)


def test_a_stored_day_is_used_only_while_it_is_fresh(stored):
    api, client, events = stored
    # A stored value that says something else for one day: fresh, it is what the report shows
    # (so the days really come from storage); older than MAX_AGE_HOURS, it is not used.
    day = date(2025, 3, 12)
    expected = next(row["dau"] for row in reference.active_users(events, FIRST, LAST, "UTC") if row["date"] == day.isoformat())
    for hours_ago, shown in ((0, 999_999), (rollups.MAX_AGE_HOURS + 1, expected)):
        client.command("ALTER TABLE report_days DELETE WHERE day = {d:Date} SETTINGS mutations_sync = 2", parameters={"d": day})
        stamp, seen = client.query(  # as the job stamps a row: the blocks in the margin before it counted
            "WITH now64(3, 'UTC') - toIntervalHour({h:UInt32}) AS t SELECT t, "
            "(SELECT count() FROM event_changes WHERE inserted > t - toIntervalSecond({m:UInt32}) AND inserted <= t)",
            parameters={"h": hours_ago, "m": rollups.CHANGES_MARGIN_SECONDS}).result_rows[0]
        client.insert("report_days", [["active_users", "UTC|", day, "[999999,999999,999999]", stamp, seen]],
                      column_names=["report", "key", "day", "value", "stored", "seen"])
        memory_of(api).forget()  # a row no job stored: the server reads the table again
        answer = api.get("/reports/active-users", params=params("UTC"), headers=NO_CACHE).json()
        assert next(row["dau"] for row in answer if row["date"] == day.isoformat()) == shown


@pytest.mark.slow
def test_the_job_runs_in_the_server_and_says_so_on_metrics(make_settings):
    """(make test-slow: under the full suite's load on 2 cores a round of the job in the server
    took over 30 s here, in a configured funnel's or breakdown's INSERT … SELECT of a day or two,
    and the merges this test waits for came too late: 3 failures in 7 full runs on 2026-12-04,
    reproduced with two CPU hogs beside the test alone. Why a piece takes that long is open.)"""
    events = reference.generate(seed=31, first_day=FIRST, days=14, users=10)
    settings = make_settings(rollup_zones="UTC", rollup_interval_seconds=0.2,
                             rollup_days=(date.today() - FIRST).days + 40)
    with SettlingClient(create_app(settings)) as api:
        post(api, events, batch=50)  # blocks of their own: parts for the job to merge
        deadline = time.monotonic() + 30
        while "rollup_days_stored_total 0.0" in api.get("/metrics").text and time.monotonic() < deadline:
            time.sleep(0.1)
        assert "rollup_days_stored_total 0.0" not in api.get("/metrics").text
        # A round that ran while the events were still arriving stored days that later blocks
        # touched: those are computed until a later round (0.2 s apart) stores them again.
        deadline = time.monotonic() + 30
        answer, from_storage, _ = taken_from_storage(api, "/reports/daily", params("UTC"))
        while from_storage != 3 * 14 + 1 and time.monotonic() < deadline:
            time.sleep(0.2)
            answer, from_storage, _ = taken_from_storage(api, "/reports/daily", params("UTC"))
        assert answer == reference.daily(events, FIRST, LAST, "UTC") and from_storage == 3 * 14 + 1
        # The per-user tables were merged into one part each (rollup_job.PER_USER_TABLES).
        # (A round merges at its start: the log's consumer may insert its last block after one did.)
        client = api.app.state.services.query_client
        parts = "SELECT count() FROM system.parts WHERE database = currentDatabase() AND table = {t:String} AND active"
        for table in rollup_job.PER_USER_TABLES:
            deadline = time.monotonic() + 30
            while client.command(parts, parameters={"t": table}) > 1 and time.monotonic() < deadline:
                time.sleep(0.1)
            assert client.command(parts, parameters={"t": table}) == 1
        # Events of today in blocks of their own: the current month's partition of the tables
        # today's reports read is merged into one part by a later round.
        now = int(time.time())
        post(api, [{"dt": now - n * 60, "event": "view", "user_id": f"today-{n}", "app_id": "a1"} for n in range(6)],
             batch=2)
        month_parts = ("SELECT count() FROM system.parts WHERE database = currentDatabase() AND table = {t:String} "
                       "AND active AND partition_id = {p:String}")
        month = datetime.now(UTC).strftime("%Y%m")
        for table in rollup_job.CURRENT_MONTH_TABLES:
            deadline = time.monotonic() + 30
            while client.command(month_parts, parameters={"t": table, "p": month}) > 1 and time.monotonic() < deadline:
                time.sleep(0.1)
            assert client.command(month_parts, parameters={"t": table, "p": month}) == 1


def test_a_single_days_active_users_come_from_each_users_latest_event(make_settings):
    """Today's DAU/WAU/MAU (active_users_day.sql), with users active the same day and the days
    before, then also after it (events dated up to a day ahead): equal to the reference, and to
    the same day computed over two days (the day masks), in UTC and in Asia/Kolkata (+5:30, whose
    days do not start on whole UTC hours: with users ahead it is computed from `events`)."""
    now = int(time.time())
    past = [{"dt": now - back * 3600, "event": "view", "user_id": f"u{n}", "app_id": "web"}
            for n, back in enumerate([0, 1, 5, 30, 24 * 3, 24 * 6 + 1, 24 * 8, 24 * 29, 24 * 31, 24 * 40])]
    past.append({"dt": now - 24 * 3600 * 20, "event": "view", "user_id": "ahead", "app_id": "ios"})
    ahead = [{"dt": now + 3600, "event": "view", "user_id": "ahead", "app_id": "web"},
             {"dt": now + 3600, "event": "view", "user_id": "only-ahead", "app_id": "web"}]
    settings = make_settings()
    with SettlingClient(create_app(settings)) as api:
        client = db.connect(settings)
        for sent in (past, past + ahead):
            post(api, sent[len(past):] if len(sent) > len(past) else sent)
            for tz in ("UTC", "Asia/Kolkata"):
                today = datetime.fromtimestamp(now, UTC).astimezone(ZoneInfo(tz)).date()
                for app_id, kept in (("", sent), ("web", [e for e in sent if e["app_id"] == "web"])):
                    expected = reference.active_users(kept, today, today, tz)[0]
                    expected_row = (expected["dau"], expected["wau"], expected["mau"])
                    assert queries.active_users(client, ReportRange(today, today, tz, app_id=app_id))[today] == expected_row
                    two_days = ReportRange(today, today + timedelta(days=1), tz, app_id=app_id)
                    assert queries.active_users(client, two_days)[today] == expected_row
        client.close()


def test_todays_days_are_computed_alongside_the_stored_ones(make_settings):
    """A range ending today: once its finished days are stored (and held in memory), they are
    looked up on a second client of the pool while today's are computed; the answer equals the
    reference (and before anything was stored, all days came from one query). When today's
    query fails, the request fails with its error, and both clients are back in the pool."""
    today = datetime.now(UTC).date()
    first = today - timedelta(days=9)
    now = datetime.now(UTC).timestamp()  # the rest of today's are in the future (refused): not sent
    events = [e for e in reference.generate(seed=29, first_day=first, days=10, users=30) if e["dt"] <= now]
    settings = make_settings(rollup_zones="UTC")
    range_params = {"from": first.isoformat(), "to": today.isoformat()}
    with SettlingClient(create_app(settings)) as api:
        post(api, events)
        client = db.connect(settings)
        cache = api.app.state.services.report_cache
        # Nothing stored yet: every day computed, by one query (no lookup alongside).
        before = (cache.stored, cache.computed, cache.alongside)
        answer = api.get("/reports/active-users", params=range_params, headers=NO_CACHE).json()
        assert answer == reference.active_users(events, first, today, "UTC")
        assert (cache.stored - before[0], cache.computed - before[1], cache.alongside - before[2]) == (0, 10, 0)
        rollup_job.refresh(client, ("UTC",), keep_days=60, memory=memory_of(api))
        before = (cache.stored, cache.computed, cache.alongside)
        answer = api.get("/reports/active-users", params=range_params, headers=NO_CACHE).json()
        assert answer == reference.active_users(events, first, today, "UTC")
        assert (cache.stored - before[0], cache.computed - before[1], cache.alongside - before[2]) == (9, 1, 1)

        pool = db.ClientPool(lambda: db.connect(settings), 2)
        failing = DayCache(memory_of(api), pool.spare)

        def today_fails(on: Client, piece: ReportRange) -> dict:
            if piece.last_day == today:
                on.query("SELECT throwIf(1, 'today failed')")
            return queries.active_users(on, piece)

        with pool.client() as first_client, pytest.raises(DatabaseError, match="today failed"):
            failing.days(first_client, "active_users", ReportRange(first, today, "UTC"), today_fails, memory=False)
        assert failing.alongside == 1
        with pool.spare() as one, pool.spare() as two:
            assert one is not None and two is not None
        for opened in (*pool.clients, client):
            opened.close()


def test_a_job_round_that_fails_unexpectedly_is_logged_when_it_happens(make_settings, monkeypatch, caplog):
    def broken(*args: object, **kwargs: object) -> rollup_job.Refreshed:
        raise RuntimeError("a bug in the rollup job")

    monkeypatch.setattr(rollup_job, "refresh", broken)
    with SettlingClient(create_app(make_settings(rollup_interval_seconds=0.05))) as api:
        deadline = time.monotonic() + 10
        while "a bug in the rollup job" not in caplog.text and time.monotonic() < deadline:
            time.sleep(0.05)
        assert "background task" in caplog.text and "a bug in the rollup job" in caplog.text
        assert api.get("/healthz").status_code == 200  # the server goes on; the reports compute every day


def test_a_stop_waits_for_a_running_round_which_ends_early_and_stores_nothing(make_settings, monkeypatch):
    events = reference.generate(seed=37, first_day=FIRST, days=3, users=5)
    started, calls = threading.Event(), []

    def slow_revenue(client, report):  # the round's first key, and a slow one
        calls.append(report)
        started.set()
        time.sleep(0.5)
        return queries.revenue(client, report)

    others = {name: compute for name, compute in rollups.REPORTS.items() if name != "revenue"}
    monkeypatch.setattr(rollups, "REPORTS", {"revenue": slow_revenue, **others})
    settings = make_settings(rollup_zones="UTC", rollup_interval_seconds=0.05,
                             rollup_days=(date.today() - FIRST).days + 40)
    api = SettlingClient(create_app(settings))
    with api:
        post(api, events)
        assert started.wait(30)
    # The app has stopped: the round was waited for, went no further than its key, stored nothing.
    client = db.connect(settings)
    assert len(calls) == 1
    assert client.command("SELECT count() FROM report_days") == 0
    client.close()


def test_a_piece_of_few_events_holds_35_days_and_any_piece_size_stores_the_same_values(make_settings):
    """The job's queries cover as many days as the busiest day's events allow (rollup_job.piece_days):
    here every report's piece holds 35 days; pieces of one day give the same values."""
    events = reference.generate(seed=29, first_day=FIRST, days=14, users=20)
    settings = make_settings(report_breakdowns="country")
    with SettlingClient(create_app(settings)) as api:
        post(api, events)
        services = api.app.state.services
        client = services.query_client
        reports = {**rollups.REPORTS, **services.stored_reports()}
        assert any(name.startswith(rollups.ROW_PREFIXES) for name in reports)  # a funnel's and a breakdown's rows
        pieces = rollup_job.piece_days(client)
        assert {pieces(name) for name in reports} == {rollup_job.MOST_PIECE_DAYS}
        whole = ReportRange(FIRST, LAST, "America/New_York")
        for name, compute in reports.items():
            by_day = rollup_job._computed(client, name, whole, whole.days(), compute, lambda _: 1)
            at_once = rollup_job._computed(client, name, whole, whole.days(), compute, pieces)
            if name.startswith(rollups.ROW_PREFIXES):  # one query (batch) for 14 days, or one a day
                assert (len({row[3] for row in at_once}), len({row[3] for row in by_day})) == (1, 14), name
            assert [value_of(client, name, row) for row in by_day] == [value_of(client, name, row) for row in at_once], name


def value_of(client: Client, name: str, row: list) -> object:
    """A stored day's value; for a funnel or breakdown, the day's rows its value (a batch) names."""
    _, _, day, value, _, _ = row
    if not name.startswith(rollups.ROW_PREFIXES):
        return day, value
    table = "funnel_days" if name.startswith("funnel:") else "breakdown_days"
    return day, client.query(f"SELECT * EXCEPT (batch, stored) FROM {table} WHERE day = {{d:Date}} AND batch = {{b:UInt64}} "
                             "ORDER BY ALL", parameters={"d": day, "b": int(value)}).result_rows
