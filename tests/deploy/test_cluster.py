"""CLICKHOUSE_CLUSTER: the migrations' cluster form (server/cluster.py), checked as far as this
machine can: every statement parsed by the engine's own parser, its shape (replicated `_local`
tables, Distributed tables named as today's, views on the shard's tables), and the reports run on
chDB against the layout one shard has, equal to a single node's. A real cluster is not run here
(README: A ClickHouse cluster, "not verified here")."""

from __future__ import annotations

import re
import uuid

import pytest

from server import cluster, db
from server.app import create_app
from server.config import Settings
from server.ingest.validate import Limits, validate_events
from server.ingest.writer import encode_rows
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
    assert {"events", "user_first_seen", "sessions", "user_hours", "session_spans", "visitor_salts"} <= local
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


def shard_layout(statement: str) -> str | None:
    """A cluster statement as one shard's node has it, runnable on chDB (which has no cluster):
    no ON CLUSTER, the replicated engines as their plain twins, and each Distributed table as a
    Merge table over the shard's local table (what a Distributed read sees on one shard)."""
    statement = statement.replace(f" ON CLUSTER {CLUSTER}", "")
    statement = re.sub(r"Replicated(\w*MergeTree)\('/clickhouse/tables/\{shard\}/\{database\}/\{table\}', '\{replica\}'"
                       r"(?:, ([^)]*))?\)", lambda m: f"{m.group(1)}({m.group(2) or ''})", statement)
    statement = re.sub(rf"ENGINE = Distributed\({CLUSTER}, currentDatabase\(\), (\w+), [^)]*\)\)?$",
                       lambda m: f"ENGINE = Merge(currentDatabase(), '^{m.group(1)}$')", statement)
    return statement


@pytest.fixture
def single_node(api):
    for n in range(0, len(EVENTS), 50):
        assert api.post("/events", json=EVENTS[n:n + 50]).status_code == 202
    db.flush_buffer_table(db.connect(api.app.state.services.settings))
    return api


REPORTS = [("/reports/daily", {}), ("/reports/active-users", {}), ("/reports/revenue", {}),
           ("/reports/retention", {"period": "week"}), ("/reports/funnel", {"steps": "view,start_task,finish_task,pay"}),
           ("/reports/total-users", {}), ("/reports/breakdown", {"by": "country"}), ("/reports/events", {})]


def test_the_reports_on_one_shard_s_layout_equal_a_single_node_s(database_pool: DatabasePool, chdb_dir, single_node):
    client = database_pool.client
    database = "c_" + uuid.uuid4().hex[:12]
    client.command(f"CREATE DATABASE {database}")
    settings = Settings.from_env({}, clickhouse_url=f"chdb://{chdb_dir}?database={database}",
                                 log_dir=str(chdb_dir.parent / "wal" / database))
    shard = db.connect(settings)
    try:
        for out in cluster.rewrite(
                db.canonical(shard, "CREATE TABLE IF NOT EXISTS schema_migrations (version UInt32, name String, applied_at "
                                    "DateTime64(3, 'UTC') DEFAULT now64(3)) ENGINE = ReplacingMergeTree ORDER BY version"),
                CLUSTER, {"schema_migrations"}):
            shard.command(shard_layout(out))
        for _, rewritten in cluster_form(shard):
            for out in rewritten or []:
                shard.command(shard_layout(out))
        for m in db.migration_files():
            shard.command("INSERT INTO schema_migrations_local (version, name) VALUES ({v:UInt32}, {n:String})",
                          parameters={"v": m.version, "n": m.name})
        rows, errors = validate_events(EVENTS, Limits.from_settings(settings))
        assert errors == []
        shard.command("INSERT INTO events_local FORMAT JSONEachRow", data=encode_rows(rows))  # what a shard receives
        # The stand-ins for Distributed tables are read-only (Merge): the salts the app would insert, made here.
        shard.command("INSERT INTO visitor_salts_local (day, salt) SELECT today() + number, hex(randomString(32)) "
                      "FROM numbers(2)")
        with SettlingClient(create_app(settings)) as on_shard:
            assert db.migrate(settings) == []  # the app sees a migrated schema
            params = {"from": FIRST.isoformat(), "to": LAST.isoformat(), "tz": "Asia/Kolkata"}
            for path, extra in REPORTS:
                expected = single_node.get(path, params={**params, **extra})
                got = on_shard.get(path, params={**params, **extra})
                assert got.status_code == expected.status_code == 200, (path, got.text)
                assert got.json() == expected.json(), path
            assert single_node.get("/reports/total-users", params=params).json() == {
                "total_users": len({e["user_id"] for e in EVENTS})}
            assert reference.revenue(EVENTS, FIRST, LAST, "Asia/Kolkata") == on_shard.get(
                "/reports/revenue", params=params).json()
    finally:
        shard.close()
        drop_databases([settings])


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
