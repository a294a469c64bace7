"""Erasing a user (DELETE /users/{user_id}, `analytics-api erase`): the user's rows leave every
table, events still in the write-ahead log included, and every report changes by exactly that
user (against the Python reference on the events without them)."""

from __future__ import annotations

import os
import signal
import sys
import time
from datetime import UTC, date, datetime

import httpx
import orjson
import pytest
from starlette.testclient import TestClient

from server.data.erase import pending_erasures
from server.process.app import create_app
from server.reports import rollup_job
from server.store import db
from tests import forkserver
from tests.conftest import SettlingClient
from tests.reports import reference
from tests.servers import ROOT, free_port, queries_in_process, start_server

FIRST, LAST = date(2025, 3, 3), date(2025, 3, 9)
EVENTS = reference.generate(seed=21, first_day=FIRST, days=7, users=12)
ADMIN = "admin-token-0123456789"
RANGE = {"from": FIRST.isoformat(), "to": LAST.isoformat()}


def victim() -> str:
    """A user with a payment and a named session, seen on several days."""
    payers = {e["user_id"] for e in EVENTS if e.get("amount")}
    named = {e["user_id"] for e in EVENTS if e.get("session_id")}
    return sorted(payers & named)[0]


def rows_of(client, user_id: str) -> dict[str, int]:
    """Rows naming the user in every table of the database: user_id columns, and user hashes."""
    found = {}
    tables = client.query("SELECT table, name FROM system.columns WHERE database = currentDatabase() "
                          "AND name IN ('user_id', 'user') AND table IN (SELECT name FROM system.tables WHERE "
                          "database = currentDatabase() AND engine LIKE '%MergeTree')").result_rows
    for table, column in tables:
        value = "{u:String}" if column == "user_id" else "sipHash64({u:String})"
        found[table] = client.query(f"SELECT count() FROM `{table}` WHERE `{column}` = {value}",
                                    parameters={"u": user_id}).result_rows[0][0]
    return found


@pytest.fixture
def admin(make_settings):
    with SettlingClient(create_app(make_settings(admin_token=ADMIN))) as api:
        for n in range(0, len(EVENTS), 100):
            assert api.post("/events", json=EVENTS[n:n + 100]).status_code == 202
        yield api


def test_an_erased_user_is_in_no_table_and_no_report(admin):
    user = victim()
    client = admin.app.state.services.query_client
    before = rows_of(client, user)
    assert before["events"] > 0 and before["user_hours"] > 0 and before["user_days"] > 0 and before["session_spans_v2"] > 0
    assert before["sessions"] > 0
    assert admin.get("/reports/daily", params=RANGE).json() == reference.daily(EVENTS, FIRST, LAST, "UTC")  # cached
    # The rollup job's days stored too (server/reports/rollups.py): the erasure must make them go.
    stored_funnels = admin.app.state.services.stored_reports()  # the dashboard's funnel and breakdowns, by default
    assert rollup_job.refresh(client, ("UTC",), keep_days=(date.today() - FIRST).days + 40,
                           memory=admin.app.state.services.stored_days, more=stored_funnels).days > 0
    assert rows_of(client, user)["funnel_days"] > 0
    r = admin.delete(f"/users/{user}", headers={"Authorization": f"Bearer {ADMIN}"})
    assert r.status_code == 200, r.text
    assert r.json()["removed"]["events"] == sum(1 for e in EVENTS if e["user_id"] == user)
    assert set(rows_of(client, user).values()) == {0}
    rest = [e for e in EVENTS if e["user_id"] != user]
    assert admin.get("/reports/daily", params=RANGE).json() == reference.daily(rest, FIRST, LAST, "UTC")
    assert admin.get("/reports/active-users", params=RANGE).json() == reference.active_users(rest, FIRST, LAST, "UTC")
    assert admin.get("/reports/revenue", params=RANGE).json() == reference.revenue(rest, FIRST, LAST, "UTC")
    retention = admin.get("/reports/retention", params={**RANGE, "period": "day"}).json()["cohorts"]
    assert retention == reference.retention(rest, FIRST, LAST, "UTC", "day")
    funnel = admin.get("/reports/funnel", params={**RANGE, "steps": ",".join(reference.STEPS), "window": "3600"}).json()
    assert [step["users"] for step in funnel["steps"]] == reference.funnel(rest, FIRST, LAST, "UTC", reference.STEPS, 3600)
    counts = admin.get("/reports/events", params=RANGE).json()
    assert sum(c["events"] for c in counts) == sum(
        1 for e in rest if reference.day_bounds(FIRST, LAST, "UTC")[0] <= e["dt"] < reference.day_bounds(FIRST, LAST, "UTC")[1])
    again = admin.delete(f"/users/{user}", headers={"Authorization": f"Bearer {ADMIN}"}).json()
    assert set(again["removed"].values()) == {0}


def test_one_app_of_a_user(admin):
    user = victim()
    apps = {e["app_id"] for e in EVENTS if e["user_id"] == user}
    app = sorted(apps)[0]
    r = admin.delete(f"/users/{user}", params={"app_id": app}, headers={"X-Admin-Token": ADMIN})
    assert r.json()["removed"]["events"] == sum(1 for e in EVENTS if e["user_id"] == user and e["app_id"] == app)
    rest = [e for e in EVENTS if not (e["user_id"] == user and e["app_id"] == app)]
    assert admin.get("/reports/daily", params=RANGE).json() == reference.daily(rest, FIRST, LAST, "UTC")


def test_one_app_of_a_user_in_two_apps_leaves_the_other_in_stored_funnels(admin):
    """The stored funnel days of all apps hold the user's level from both apps: the erasure
    deletes the user's rows there and makes each day from their first event in any app stored
    again, so their level in the other app, earlier, still counts."""
    client = admin.app.state.services.query_client
    day = int(datetime(2025, 3, 4, 10, tzinfo=UTC).timestamp())
    both = [{"user_id": "two-apps", "app_id": "a1", "event": "view", "dt": day},
            {"user_id": "two-apps", "app_id": "a1", "event": "start_task", "dt": day + 60},
            {"user_id": "two-apps", "app_id": "a2", "event": "view", "dt": day + 2 * 86400}]
    assert admin.post("/events", json=both).status_code == 202
    everything = EVENTS + both
    steps = {**RANGE, "steps": ",".join(reference.STEPS), "window": "3600"}
    stored_funnels = admin.app.state.services.stored_reports()
    assert rollup_job.refresh(client, ("UTC",), keep_days=(date.today() - FIRST).days + 40,
                           memory=admin.app.state.services.stored_days, more=stored_funnels).days > 0
    assert [s["users"] for s in admin.get("/reports/funnel", params=steps).json()["steps"]] == reference.funnel(
        everything, FIRST, LAST, "UTC", reference.STEPS, 3600)
    r = admin.delete("/users/two-apps", params={"app_id": "a2"}, headers={"X-Admin-Token": ADMIN})
    assert r.json()["removed"]["funnel_days"] > 0
    rest = EVENTS + both[:2]
    expected = reference.funnel(rest, FIRST, LAST, "UTC", reference.STEPS, 3600)
    assert [s["users"] for s in admin.get("/reports/funnel", params=steps).json()["steps"]] == expected
    assert [s["users"] for s in admin.get("/reports/funnel", params=steps, headers={"Cache-Control": "no-cache"}).json()[
        "steps"]] == expected


def test_only_the_admin_token_erases(make_settings, admin):
    assert admin.delete("/users/u1").json()["error"]["field"] == "authorization"
    assert admin.delete("/users/u1", headers={"Authorization": "Bearer wrong-token-0123456"}).status_code == 403
    with SettlingClient(create_app(make_settings(read_token="read-token-0123", write_keys="*:write-key-0123"))) as api:
        for token in ("read-token-0123", "write-key-0123"):
            r = api.delete("/users/u1", headers={"Authorization": f"Bearer {token}"})
            assert r.status_code == 403 and "ADMIN_TOKEN" in r.json()["error"]["message"]


def test_events_still_in_the_log_are_erased_too(make_settings):
    settings = make_settings(admin_token=ADMIN, log_batch_seconds=3600, log_batch_max_rows=10**9)
    with TestClient(create_app(settings)) as api:  # no settling: the events stay in the log
        assert api.post("/events", json=EVENTS).status_code == 202
        user = victim()
        r = api.delete(f"/users/{user}", headers={"Authorization": f"Bearer {ADMIN}"})
        assert r.json()["removed"]["events"] == sum(1 for e in EVENTS if e["user_id"] == user)
        client = db.connect(settings)
        assert set(rows_of(client, user).values()) == {0}
        assert client.command("SELECT count() FROM events") == len(EVENTS) - r.json()["removed"]["events"]
        client.close()


def test_the_erase_command_takes_events_from_the_log_of_a_killed_server(tmp_path):
    data, port = tmp_path / "data", free_port()
    server = start_server(data, port, LOG_BATCH_SECONDS="3600", LOG_BATCH_MAX_ROWS="1000000000")
    assert httpx.post(f"http://127.0.0.1:{port}/events", json=EVENTS, timeout=30).status_code == 202
    os.kill(server.pid, signal.SIGKILL)  # acknowledged, in the log, not in ClickHouse
    server.wait(timeout=30)
    user = victim()
    env = {**os.environ, "CLICKHOUSE_URL": f"chdb://{data}", "LOG_DIR": f"{data}-wal", "SPOOL_DIR": f"{data}-spool"}
    done = forkserver.run([sys.executable, "-m", "server.cli", "erase", "--user-id", user], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    removed = orjson.loads(done.stdout.strip().splitlines()[-1])["removed"]
    assert removed["events"] == sum(1 for e in EVENTS if e["user_id"] == user)
    assert queries_in_process(data, f"SELECT count() FROM events WHERE user_id = '{user}'", "SELECT count() FROM events") == [
        [[0]], [[len(EVENTS) - removed["events"]]]]


def test_an_erasure_cut_after_deleting_the_events_is_finished_when_asked_again(admin):
    """What a crash after an erasure's first mutations leaves: its record (021_erasures.sql), the
    user's events gone, the rollups still counting them. Asked again, it rebuilds from the record."""
    user = victim()
    client = admin.app.state.services.query_client
    cut_erasure(client, user)
    rest = [e for e in EVENTS if e["user_id"] != user]
    assert admin.get("/reports/revenue", params=RANGE).json() != reference.revenue(rest, FIRST, LAST, "UTC")
    assert pending_erasures(client) == [(user, "")]
    assert admin.delete(f"/users/{user}", headers={"Authorization": f"Bearer {ADMIN}"}).status_code == 200
    assert pending_erasures(client) == []
    assert admin.get("/reports/revenue", params=RANGE).json() == reference.revenue(rest, FIRST, LAST, "UTC")
    assert admin.get("/reports/events", params=RANGE).json() == admin.get(
        "/reports/events", params=RANGE, headers={"Cache-Control": "no-cache"}).json()
    assert set(rows_of(client, user).values()) == {0}


def cut_erasure(client, user: str) -> None:
    """What a crash after an erasure's first mutations leaves: its record, the user's events gone."""
    params = {"u": user}
    buckets, hours, first_dt, rows = client.query(
        "SELECT groupUniqArray(toStartOfFifteenMinutes(toDateTime(dt, 'UTC'))), groupUniqArray(toStartOfHour(toDateTime(dt, "
        "'UTC'))), min(dt), count() FROM events WHERE user_id = {u:String}", parameters=params).result_rows[0]
    client.insert("erasures", [[user, "", buckets, hours, first_dt, rows, first_dt]],
                  column_names=["user_id", "app_id", "buckets", "hours", "first_dt", "rows", "begun"])
    client.command("ALTER TABLE events DELETE WHERE user_id = {u:String} SETTINGS mutations_sync = 2", parameters=params)


def test_the_server_finishes_an_erasure_cut_short_when_it_starts(make_settings):
    settings = make_settings(admin_token=ADMIN)
    with SettlingClient(create_app(settings)) as api:
        for n in range(0, len(EVENTS), 100):
            assert api.post("/events", json=EVENTS[n:n + 100]).status_code == 202
        cut_erasure(api.app.state.services.query_client, victim())
    with SettlingClient(create_app(settings)) as api:  # a new start on the same data
        client = api.app.state.services.query_client
        deadline = time.monotonic() + 30
        while pending_erasures(client) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert pending_erasures(client) == []
        rest = [e for e in EVENTS if e["user_id"] != victim()]
        assert api.get("/reports/revenue", params=RANGE).json() == reference.revenue(rest, FIRST, LAST, "UTC")
        assert set(rows_of(client, victim()).values()) == {0}
