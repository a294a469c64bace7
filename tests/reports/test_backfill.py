"""A migration that adds views fills them from rows already in `events`, counting each row once."""

from __future__ import annotations

import shutil
from datetime import date

from clickhouse_connect.driver.client import Client

from server.ingest.validate import Limits, validate_events
from server.ingest.writer import encode_rows
from server.process.app import create_app
from server.store import db
from tests.conftest import SettlingClient
from tests.reports import reference

FIRST, LAST = date(2025, 3, 3), date(2025, 3, 9)


def at_version(settings, tmp_path, version: int) -> Client:
    """The database migrated to `version` only (the migrations after it not yet written), and a
    client on it."""
    old = tmp_path / "migrations"
    old.mkdir()
    for migration in db.migration_files()[:version]:
        shutil.copy(migration.path, old / migration.path.name)
    assert db.migrate(settings, old)[-1] == f"{version:03d}_{db.migration_files()[version - 1].name}"
    return db.connect(settings)


def store_directly(client: Client, settings, events: list[dict], table: str = "events") -> None:
    """Events stored the way an older server did: validated, then inserted (no log, no server)."""
    rows, errors = validate_events(events, Limits.from_settings(settings))
    assert errors == []
    client.command(f"INSERT INTO {table} FORMAT JSONEachRow", data=encode_rows(rows))


def test_rows_before_and_after_the_rollups_migration_are_each_counted_once(make_settings, tmp_path):
    events = reference.generate(seed=11, first_day=FIRST, days=7, users=20)
    before, after = events[: len(events) // 2], events[len(events) // 2:]
    settings = make_settings(fresh=True)

    # A database at version 3: events stored before the rollups existed (some still in the Buffer).
    client = at_version(settings, tmp_path, 3)
    store_directly(client, settings, before, "events_buffer")

    # The server starts, migrates to 004 and on (flushing the Buffer, then backfilling), takes the rest.
    with SettlingClient(create_app(settings)) as api:
        assert client.command("SELECT max(version) FROM schema_migrations") == len(db.migration_files())
        for n in range(0, len(after), 50):
            assert api.post("/events", json=after[n:n + 50]).status_code == 202
        db.flush_buffer_table(client)
        params = {"from": FIRST.isoformat(), "to": LAST.isoformat()}
        assert api.get("/reports/daily", params=params).json() == reference.daily(events, FIRST, LAST, "UTC")
        assert api.get("/reports/revenue", params=params).json() == reference.revenue(events, FIRST, LAST, "UTC")
        # Sums would show a double count: the hourly counts hold every event exactly once.
        assert client.command("SELECT sum(events) FROM event_counts_hourly") == len(events)
        assert client.command("SELECT sum(count) FROM (SELECT session_id, user_id, sum(events) AS count "
                              "FROM sessions GROUP BY session_id, user_id)") == sum(1 for e in events if "session_id" in e)
    client.close()


def test_rows_before_and_after_the_enrichment_migration_are_each_counted_once(make_settings, tmp_path):
    """007 replaces every view (to carry is_bot): rows counted by the old views stay, rows after
    are counted by the new ones, none twice; bots posted after it are left out of the reports."""
    events = reference.generate(seed=12, first_day=FIRST, days=7, users=20)
    before, after = events[: len(events) // 2], events[len(events) // 2:]
    settings = make_settings(fresh=True)
    client = at_version(settings, tmp_path, 6)
    store_directly(client, settings, before)  # counted by the old views

    with SettlingClient(create_app(settings)) as api:
        assert client.command("SELECT max(version) FROM schema_migrations") == len(db.migration_files())
        for n in range(0, len(after), 50):
            assert api.post("/events", json=after[n:n + 50]).status_code == 202
        bots = [{**e, "user_id": f"bot-{e['user_id']}"} for e in after[:40]]
        assert api.post("/events", json=bots, headers={"User-Agent": "Googlebot/2.1 (+http://www.google.com/bot.html)"}
                        ).status_code == 202
        params = {"from": FIRST.isoformat(), "to": LAST.isoformat()}
        assert api.get("/reports/daily", params=params).json() == reference.daily(events, FIRST, LAST, "UTC")
        assert api.get("/reports/revenue", params=params).json() == reference.revenue(events, FIRST, LAST, "UTC")
        with_bots = api.get("/reports/daily", params={**params, "bots": "include"}).json()
        assert with_bots == reference.daily(events + bots, FIRST, LAST, "UTC")
        assert client.command("SELECT sum(events) FROM event_counts_hourly") == len(events) + len(bots)
        assert client.command("SELECT sum(events) FROM event_counts_hourly WHERE is_bot = 1") == len(bots)
    client.close()


def test_rows_before_and_after_the_users_first_and_session_spans_v2_migrations_are_each_counted_once(
        make_settings, tmp_path):
    """012 fills `users_first` from `events` and swaps the reports' view of first events onto it
    (a user seen before and after it is one user, first seen at their earliest event); 013 fills
    `session_spans_v2` and the sessions read it (a session cut by the upgrade is one session)."""
    events = reference.generate(seed=13, first_day=FIRST, days=7, users=20)
    before, after = events[: len(events) // 2], events[len(events) // 2:]
    settings = make_settings(fresh=True)
    client = at_version(settings, tmp_path, 11)
    store_directly(client, settings, before)

    with SettlingClient(create_app(settings)) as api:
        assert client.command("SELECT max(version) FROM schema_migrations") == len(db.migration_files())
        for n in range(0, len(after), 50):
            assert api.post("/events", json=after[n:n + 50]).status_code == 202
        assert client.command("SELECT count() FROM users_first WHERE first < toDateTime64('2025-03-06', 3, 'UTC')") > 0
        assert client.command("SELECT count() FROM session_spans_v2 WHERE bucket < toDateTime('2025-03-06', 'UTC')") > 0
        # 015's users_last: each user's latest event per app, from rows before and after it.
        latest = "SELECT app_id, is_bot, user, max(last) FROM {table} GROUP BY ALL ORDER BY ALL"
        assert client.query(latest.format(table="users_last")).result_rows == client.query(latest.format(
            table="(SELECT app_id, is_bot, sipHash64(user_id) AS user, dt AS last FROM events)")).result_rows
        # 017's user_days: each user's active UTC days, from rows before and after it.
        days = "SELECT DISTINCT day, app_id, country, is_bot, user FROM {table} ORDER BY ALL"
        assert client.query(days.format(table="user_days")).result_rows == client.query(days.format(
            table="(SELECT toDate(dt, 'UTC') AS day, app_id, country, is_bot, sipHash64(user_id) AS user FROM events)")
        ).result_rows
        params = {"from": FIRST.isoformat(), "to": LAST.isoformat()}
        assert api.get("/reports/daily", params=params).json() == reference.daily(events, FIRST, LAST, "UTC")
        for tz in ("UTC", "America/New_York"):
            got = api.get("/reports/retention", params={**params, "tz": tz, "period": "day"}).json()
            assert got["cohorts"] == reference.retention(events, FIRST, LAST, tz, "day")
    client.close()
