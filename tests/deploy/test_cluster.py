"""CLICKHOUSE_CLUSTER: the migrations' cluster form (server/store/cluster.py), checked as far as this
machine can: every statement parsed by the engine's own parser, its shape (replicated `_local`
tables, Distributed tables named as today's, views on the shard's tables), and the reports run on
chDB over two shards laid out as the generated DDL makes them, equal to a single node's. A real cluster is not run here
(README: A ClickHouse cluster, "not verified here")."""

from __future__ import annotations

import re
import uuid

import pytest

from server.config import Settings
from server.ingest.validate import Limits, validate_events
from server.ingest.writer import encode_rows
from server.process.app import create_app
from server.store import cluster, db
from tests.conftest import DatabasePool, SettlingClient, drop_databases
from tests.reports import reference
from tests.reports.test_reports import EVENTS, FIRST, LAST

CLUSTER = "analytics"


def cluster_form(client) -> list[tuple[str, list[str] | None]]:
    """(canonical statement, its cluster statements or None for a backfill) for every migration."""
    settings = Settings.from_env({}, clickhouse_url="chdb:///unused")
    canonical = [db.canonical(client, s) for m in db.migration_files() for s in m.statements(settings)]
    local = cluster.local_tables(canonical)
    out: list[tuple[str, list[str] | None]] = []
    for statement in canonical:
        if statement.startswith("INSERT INTO "):
            with pytest.raises(cluster.ClusterUnsupported, match="backfill"):
                cluster.rewrite(statement, CLUSTER, local)
            out.append((statement, None))
        else:
            out.append((statement, cluster.rewrite(statement, CLUSTER, local)))
    return out


def test_every_migration_statement_has_a_cluster_form_the_engine_parses(database_pool: DatabasePool):
    client = database_pool.client
    forms = cluster_form(client)
    local = cluster.local_tables(statement for statement, _ in forms)
    assert {"events", "user_first_seen", "sessions", "user_hours", "session_spans", "users_first", "session_spans_v2",
            "users_last", "report_days", "user_days", "funnel_days", "breakdown_days", "visitor_salts",
            "identities", "person_traits", "group_members"} <= local
    for _, rewritten in forms:
        for out in rewritten or []:
            assert db.canonical(client, out) == out  # parsed, and already in canonical form
            assert f" ON CLUSTER {CLUSTER}" in out
            if out.startswith("CREATE TABLE") and "_local ON CLUSTER" in out:
                assert re.search(r"ENGINE = Replicated\w*MergeTree\('/clickhouse/tables/\{shard\}/\{database\}/\{table\}', "
                                 r"'\{replica\}'", out), out
            if "ENGINE = Distributed(" in out:
                name = out.split()[5]
                assert f"Distributed({CLUSTER}, currentDatabase(), {name}_local, " in out
                assert name != "events" or out.endswith("cityHash64(user_id))")  # a user's events on one shard
            if out.startswith("CREATE MATERIALIZED VIEW"):
                assert re.search(r" TO \w+_local AS ", out) and " FROM events_local" in out
                assert not re.search(rf"\b(FROM|JOIN) ({'|'.join(local)})\b(?!_local)", out), out
            assert "non_replicated_deduplication_window" not in out


def on_chdb(statement: str, shards: list[str]) -> tuple[bool, str]:
    """A cluster statement as chDB (which has no cluster) can run it: (runs on each shard's
    database?, the statement). No ON CLUSTER; the replicated engines as their plain twins; a
    Distributed table as a Merge table over the `_local` table of every shard's database (what a
    Distributed read gathers). Local tables and materialized views go to every shard; Distributed
    tables, the Buffer and plain views to the database the app uses."""
    statement = statement.replace(f" ON CLUSTER {CLUSTER}", "")
    statement = re.sub(r"Replicated(\w*MergeTree)\('/clickhouse/tables/\{shard\}/\{database\}/\{table\}', '\{replica\}'"
                       r"(?:, ([^)]*))?\)", lambda m: f"{m.group(1)}({m.group(2) or ''})", statement)
    statement = re.sub(rf"ENGINE = Distributed\({CLUSTER}, currentDatabase\(\), (\w+), [^)]*\)\)?$",
                       lambda m: f"ENGINE = Merge(REGEXP('^({'|'.join(shards)})$'), '^{m.group(1)}$')", statement)
    on_shards = bool(re.match(r"(CREATE TABLE IF NOT EXISTS|ALTER TABLE) \w+_local ", statement)
                     or re.match(r"(CREATE MATERIALIZED VIEW IF NOT EXISTS|DROP VIEW IF EXISTS) \w+_mv ", statement))
    if not on_shards:  # the Distributed table's columns: those of a shard's local table
        statement = re.sub(r" AS (\w+_local) ENGINE", rf" AS {shards[0]}.\1 ENGINE", statement)
    return on_shards, statement


@pytest.fixture
def single_node(api):
    for n in range(0, len(EVENTS), 50):
        assert api.post("/events", json=EVENTS[n:n + 50]).status_code == 202
    db.flush_buffer_table(db.connect(api.app.state.services.settings))
    return api


REPORTS = [("/reports/daily", {}), ("/reports/active-users", {}), ("/reports/revenue", {}),
           ("/reports/retention", {"period": "week"}), ("/reports/funnel", {"steps": "view,start_task,finish_task,pay"}),
           ("/reports/total-users", {}), ("/reports/breakdown", {"by": "country"}), ("/reports/events", {}),
           ("/reports/ratio", {"numerator": "finish_task", "denominator": "start_task"})]


def test_the_reports_over_two_shards_equal_a_single_node_s(database_pool: DatabasePool, chdb_dir, single_node):
    """Two shards as two databases of chDB, each with the generated local tables and views, the
    events split between them by the Distributed table's key; the app reads them through Merge
    tables named as the Distributed ones: every report equals the single node's."""
    client = database_pool.client
    name = "c_" + uuid.uuid4().hex[:8]
    shards = [f"{name}_s1", f"{name}_s2"]
    for database in [name, *shards]:
        client.command(f"CREATE DATABASE {database}")
    settings = Settings.from_env({}, clickhouse_url=f"chdb://{chdb_dir}?database={name}",
                                 log_dir=str(chdb_dir.parent / "wal" / name))
    shard_settings = [Settings.from_env({}, clickhouse_url=f"chdb://{chdb_dir}?database={s}") for s in shards]
    app_db, shard_dbs = db.connect(settings), [db.connect(s) for s in shard_settings]
    try:
        migrations_table = db.canonical(app_db, "CREATE TABLE IF NOT EXISTS schema_migrations (version UInt32, name String, "
                                                "applied_at DateTime64(3, 'UTC') DEFAULT now64(3)) "
                                                "ENGINE = ReplacingMergeTree ORDER BY version")
        statements = cluster.rewrite(migrations_table, CLUSTER, {"schema_migrations"})
        statements += [out for _, rewritten in cluster_form(app_db) for out in rewritten or []]
        for statement in statements:
            on_shards, runnable = on_chdb(statement, shards)
            for target in (shard_dbs if on_shards else [app_db]):
                target.command(runnable)
        for m in db.migration_files():
            shard_dbs[0].command("INSERT INTO schema_migrations_local (version, name) VALUES ({v:UInt32}, {n:String})",
                                 parameters={"v": m.version, "n": m.name})
        rows, errors = validate_events(EVENTS, Limits.from_settings(settings))
        assert errors == []
        # What each shard receives from the Distributed table: the rows of its users (cityHash64(user_id)).
        app_db.command(f"CREATE TABLE incoming AS {shards[0]}.events_local ENGINE = Memory")
        app_db.command("INSERT INTO incoming FORMAT JSONEachRow", data=encode_rows(rows))
        for number, shard in enumerate(shard_dbs):
            shard.command(f"INSERT INTO events_local SELECT * FROM {name}.incoming WHERE cityHash64(user_id) % 2 = {number}")
        counts = [shard.command("SELECT count() FROM events_local") for shard in shard_dbs]
        assert all(counts) and sum(counts) == len(EVENTS), counts  # both shards hold some
        # The stand-ins for Distributed tables are read-only (Merge): the salts the app would insert, made here.
        shard_dbs[0].command("INSERT INTO visitor_salts_local (day, salt) SELECT today() + number, hex(randomString(32)) "
                             "FROM numbers(2)")
        with SettlingClient(create_app(settings)) as on_cluster:
            assert db.migrate(settings) == []  # the app sees a migrated schema
            params = {"from": FIRST.isoformat(), "to": LAST.isoformat(), "tz": "Asia/Kolkata"}
            for path, extra in REPORTS:
                expected = single_node.get(path, params={**params, **extra})
                got = on_cluster.get(path, params={**params, **extra})
                assert got.status_code == expected.status_code == 200, (path, got.text)
                assert got.json() == expected.json(), path
            # One day's active users from each user's latest event (users_last, with users active after it).
            one_day = {"from": FIRST.isoformat(), "to": FIRST.isoformat(), "tz": "UTC"}
            assert on_cluster.get("/reports/active-users", params=one_day).json() == single_node.get(
                "/reports/active-users", params=one_day).json()
            assert on_cluster.get("/reports/total-users", params=params).json() == {
                "total_users": len({e["user_id"] for e in EVENTS})}
            assert reference.revenue(EVENTS, FIRST, LAST, "Asia/Kolkata") == on_cluster.get(
                "/reports/revenue", params=params).json()
    finally:
        for connection in [app_db, *shard_dbs]:
            connection.close()
        drop_databases([settings, *shard_settings])


def test_against_a_real_server_when_one_is_given(tmp_path):
    """Opt-in: CLICKHOUSE_TEST_URL=http://user:pass@host:8123 (and CLICKHOUSE_TEST_CLUSTER=name for a
    cluster) migrates a new database there, stores the report tests' events and reads them back."""
    import os

    url = os.environ.get("CLICKHOUSE_TEST_URL")
    if not url:
        pytest.skip("CLICKHOUSE_TEST_URL is not set (no ClickHouse server on this machine)")
    database = "analytics_test_" + uuid.uuid4().hex[:8]
    settings = Settings.from_env({}, clickhouse_url=f"{url.rstrip('/')}/{database}", log_dir=str(tmp_path / "wal"),
                                 clickhouse_cluster=os.environ.get("CLICKHOUSE_TEST_CLUSTER", ""))
    with SettlingClient(create_app(settings)) as api:
        for n in range(0, len(EVENTS), 50):
            assert api.post("/events", json=EVENTS[n:n + 50]).status_code == 202
        db.flush_buffer_table(db.connect(settings))
        params = {"from": FIRST.isoformat(), "to": LAST.isoformat(), "tz": "Asia/Kolkata"}
        assert api.get("/reports/revenue", params=params).json() == reference.revenue(EVENTS, FIRST, LAST, "Asia/Kolkata")
