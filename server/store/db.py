"""The ClickHouse side: clients for both targets, the migrations runner, the Buffer table.

Every database call goes through clickhouse-connect. `CLICKHOUSE_URL` picks the target:
`chdb:///abs/path` runs the real engine in this process (one data path per process),
`http://…` talks to a ClickHouse server. The code above this module does not know which.
"""

from __future__ import annotations

import logging
import queue
import re
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime
from importlib.resources import files
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import clickhouse_connect
import orjson
from clickhouse_connect.driver.client import Client
from clickhouse_connect.driver.exceptions import ClickHouseError

from server.config import Settings, clickhouse_target
from server.store import cluster

log = logging.getLogger(__name__)

def _sql_dir() -> Path:
    """The SQL's directory: package data of `server.sql` (clickhouse/ in the repository, mapped by
    pyproject.toml), found through importlib.resources; read as files, so not from a zip."""
    found = files("server.sql")
    if not isinstance(found, Path):
        raise RuntimeError(f"the SQL files must be on disk, not in {found}: install analytics-api unzipped")
    return found


SQL_DIR = _sql_dir()
MIGRATIONS_DIR = SQL_DIR / "migrations"
MIGRATION_NAME = re.compile(r"^(\d{3})_([a-z0-9_]+)\.sql$")
# Buffer engine arguments must be literals (ClickHouse refuses bound parameters there), so the
# thresholds are written into the migration's text. They come from validated integer settings.
# {{CUTOVER}} is the migration run's start in epoch milliseconds (views and their backfills).
PLACEHOLDER = re.compile(r"\{\{([A-Z_]+)\}\}")


# For the batcher's clients. Parallel parsing starts threads for every INSERT, which small
# batches never repay: without it an INSERT of 16 rows into the Buffer took 1.18 ms of CPU
# instead of 1.31 ms (embedded engine, this machine).
INSERT_SETTINGS = {"input_format_parallel_parsing": 0}


# The embedded engine's paths for files a query may name (file(), executable(), format schemas)
# point at an empty directory of our own, so that a query the policy missed finds nothing there.
# (chDB, like clickhouse-local, still reads absolute paths: server/query/policy.py refuses them.)
CONFINED_PATHS = ("user_files_path", "user_scripts_path", "format_schema_path")

# How soon the embedded engine's background jobs look again for work they could not start: its
# pool runs 4 merges or mutations at once, and a mutation of more parts (an erasure or a stitch
# move over a few monthly partitions) left the rest to a wake-up 0.1-1.1 s later (ClickHouse's
# defaults: 0.1 s, growing 1.1x while idle, plus a random 0-1 s), each time. A DELETE over 6
# parts took 0.12-0.81 s, over 12 parts 0.36-2.0 s; with these 24-33 and 43-55 ms.
ENGINE_OPTIONS = {"background_processing_pool_thread_sleep_seconds_if_nothing_to_do": "0.01",
                  "background_processing_pool_task_sleep_seconds_when_no_work_random_part": "0.01"}


def connect(settings: Settings, database: str | None = None, client_settings: dict[str, Any] | None = None) -> Client:
    """A client on the configured target, using `database` (default: the configured one).

    `client_settings` are ClickHouse settings for every query of this client; they are set once
    (not per query, which the embedded engine applies with a SET before and after each query).
    """
    kind, configured = clickhouse_target(settings.clickhouse_url)
    database = database or configured
    if kind == "chdb":
        # The database is passed on its own; left in the DSN's query it is reported as ignored.
        path = urlparse(settings.clickhouse_url).path
        empty = Path(path) / "confined"
        empty.mkdir(parents=True, exist_ok=True)
        from server.store.embedded import EmbeddedClient  # imports chDB: only where it runs

        return EmbeddedClient(path=path, database=database, settings=client_settings,
                              chdb_options={**{name: str(empty) for name in CONFINED_PATHS}, **ENGINE_OPTIONS})
    # One HTTP session per client would serialize concurrent inserts on the server side.
    return clickhouse_connect.get_client(
        dsn=settings.clickhouse_url, database=database, autogenerate_session_id=False, settings=client_settings
    )


class ClientPool:
    """Clients for queries run from worker threads at once: a client runs one query at a time
    (clickhouse-connect locks it), so N clients let N queries of one request run in parallel."""

    def __init__(self, make: Callable[[], Client], size: int) -> None:
        self._make = make
        self._size = size
        self.clients: list[Client] = []  # opened at first need (~20 ms each on the embedded engine)
        self._free: queue.SimpleQueue[Client] = queue.SimpleQueue()
        self._lock = threading.Lock()

    def _free_or_new(self) -> Client | None:
        """A client not in use, or a new one if the pool is not full; None otherwise."""
        try:
            return self._free.get_nowait()
        except queue.Empty:
            with self._lock:
                if len(self.clients) >= self._size:
                    return None
                self.clients.append(client := self._make())
                return client

    @contextmanager
    def client(self) -> Iterator[Client]:
        client = self._free_or_new() or self._free.get()
        try:
            yield client
        finally:
            self._free.put(client)

    @contextmanager
    def spare(self) -> Iterator[Client | None]:
        """A client not in use (opened if the pool is not full), or None: never waits, so a query
        holding a client may ask for a second one to run a part alongside, without waiting for
        queries that hold the others (and may ask the same)."""
        client = self._free_or_new()
        try:
            yield client
        finally:
            if client is not None:
                self._free.put(client)


def scalar(client: Client, sql: str, parameters: dict[str, Any] | None = None) -> int:
    """The one integer a query answers (a count, an EXISTS)."""
    return int(client.query(sql, parameters=parameters).result_rows[0][0])


def insert_rows(client: Client, table: str, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
    """Python rows (lists in `columns`' order) into `table`, as one JSONEachRow INSERT. Dates go as
    ISO days and times as UTC text (every time column of ours is in 'UTC'; a naive time is UTC,
    as the engine hands them out). Not clickhouse-connect's `insert()`: its first call imports
    pandas to ask whether the data is a DataFrame, 0.4 s of CPU and 81 MB of memory in every
    server process, which never uses pandas."""
    body = b"".join([orjson.dumps(dict(zip(columns, row, strict=True)), default=_json_time,
                                  option=orjson.OPT_PASSTHROUGH_DATETIME) + b"\n" for row in rows])
    if body:
        client.command(f"INSERT INTO {table} ({', '.join(columns)}) FORMAT JSONEachRow", data=body)


def _json_time(value: object) -> str:
    if isinstance(value, datetime):
        if value.tzinfo is not None:
            value = value.astimezone(UTC).replace(tzinfo=None)
        return value.strftime("%Y-%m-%d %H:%M:%S.%f")
    if isinstance(value, date):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not a column value")


class MutationFailed(ClickHouseError):
    """A mutation (ALTER … DELETE) that failed or did not finish in time."""


def wait_mutations(client: Client, timeout: float = 600.0) -> None:
    """Until every mutation of the database is done; a failed one raises with its reason."""
    deadline = time.monotonic() + timeout
    while True:
        pending, reason = client.query(
            "SELECT count(), any(latest_fail_reason) FROM system.mutations "
            "WHERE database = currentDatabase() AND NOT is_done").result_rows[0]
        if not pending:
            return
        if reason:
            raise MutationFailed(f"a mutation failed: {reason}")
        if time.monotonic() > deadline:
            raise MutationFailed(f"{pending} mutations not done after {timeout:.0f} s")
        time.sleep(0.02)


def sql_statements(text: str) -> list[str]:
    """The statements of a .sql file: each ends with ';' at the end of a line (no ';' inside strings)."""
    parts = re.split(r";\s*(?:\n|$)", text)
    return [p.strip() for p in parts if strip_comments(p).strip()]


def ensure_database(settings: Settings) -> None:
    """Create the configured database if it is missing (clients on it cannot start before)."""
    if settings.database == "default":
        return
    client = connect(settings, database="default")
    on_cluster = f" ON CLUSTER {settings.clickhouse_cluster}" if settings.clickhouse_cluster else ""
    try:
        client.command("CREATE DATABASE IF NOT EXISTS {name:Identifier}" + on_cluster, parameters={"name": settings.database})
    finally:
        client.close()


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    path: Path

    def statements(self, settings: Settings, cutover_ms: int = 0) -> list[str]:
        return sql_statements(_fill_placeholders(self.path.read_text(), settings, cutover_ms))


def migration_files(directory: Path = MIGRATIONS_DIR) -> list[Migration]:
    found = []
    for path in sorted(directory.glob("*.sql")):
        match = MIGRATION_NAME.match(path.name)
        if not match:
            raise ValueError(f"migration file {path.name} is not named NNN_name.sql")
        found.append(Migration(int(match.group(1)), match.group(2), path))
    versions = [m.version for m in found]
    if len(set(versions)) != len(versions):
        raise ValueError(f"two migrations share a version number in {directory}")
    return found


def applied_versions(client: Client) -> set[int]:
    if not scalar(client, "EXISTS TABLE schema_migrations"):
        return set()
    result = client.query("SELECT DISTINCT version FROM schema_migrations")
    return {row[0] for row in result.result_rows}


def pending_migrations(client: Client, directory: Path = MIGRATIONS_DIR) -> list[Migration]:
    done = applied_versions(client)
    return [m for m in migration_files(directory) if m.version not in done]


def migrate(settings: Settings, directory: Path = MIGRATIONS_DIR) -> list[str]:
    """Apply pending migrations in order and bring the Buffer table to the configured thresholds.

    Safe to rerun: applied versions are recorded in `schema_migrations`, and every statement is
    written to be idempotent, so two processes migrating at once cannot break the schema.
    """
    ensure_database(settings)
    client = connect(settings)
    try:
        run = _runner(client, settings, directory)
        run(
            "CREATE TABLE IF NOT EXISTS schema_migrations "
            "(version UInt32, name String, applied_at DateTime64(3, 'UTC') DEFAULT now64(3)) "
            "ENGINE = ReplacingMergeTree ORDER BY version"
        )
        applied = []
        pending = pending_migrations(client, directory)
        if pending and scalar(client, "EXISTS TABLE events_buffer"):
            flush_buffer_table(client)  # backfills read `events`: nothing may wait in the Buffer
        cutover_ms = int(time.time() * 1000)
        for migration in pending:
            for statement in migration.statements(settings, cutover_ms):
                if BACKFILL.match(strip_comments(statement)) and _events_empty(client):
                    continue  # a backfill from an empty `events` inserts nothing (a fresh database)
                run(statement)
            client.command(
                "INSERT INTO schema_migrations (version, name) VALUES ({v:UInt32}, {n:String})",
                parameters={"v": migration.version, "n": migration.name},
            )
            applied.append(f"{migration.version:03d}_{migration.name}")
            log.info("applied migration %03d_%s", migration.version, migration.name)
        sync_buffer_table(client, settings, directory)
        return applied
    finally:
        client.close()


def _runner(client: Client, settings: Settings, directory: Path) -> Callable[[str], None]:
    """Runs a migration statement as written, or (CLICKHOUSE_CLUSTER) in its cluster form."""
    if not settings.clickhouse_cluster:
        def run_as_written(statement: str) -> None:
            client.command(statement)

        return run_as_written
    local = cluster.local_tables(canonical(client, s) for m in migration_files(directory) for s in m.statements(settings))
    local.add("schema_migrations")

    def run(statement: str) -> None:
        try:
            rewritten = cluster.rewrite(canonical(client, statement), settings.clickhouse_cluster, local)
        except cluster.ClusterUnsupported as exc:
            raise cluster.ClusterUnsupported(f"CLICKHOUSE_CLUSTER: cannot migrate: {exc}") from None
        for out in rewritten:
            client.command(out)

    return run


def canonical(client: Client, statement: str) -> str:
    """A statement in ClickHouse's one-line canonical form (the server's own parser)."""
    return str(client.query("SELECT formatQuerySingleLine({q:String})", parameters={"q": statement}).result_rows[0][0])


# `INSERT INTO <rollup> SELECT … FROM events …`: a migration's backfill of a new rollup.
BACKFILL = re.compile(r"^\s*INSERT\s+INTO\s+\w+\s+SELECT\b.*\bFROM\s+events\b", re.IGNORECASE | re.DOTALL)


def _events_empty(client: Client) -> bool:
    return not scalar(client, "EXISTS TABLE events") or not scalar(client, "SELECT count() > 0 FROM events")


def buffer_engine_arguments(settings: Settings) -> tuple[int, ...]:
    return (
        settings.buffer_layers,
        settings.buffer_min_seconds,
        settings.buffer_max_seconds,
        settings.buffer_min_rows,
        settings.buffer_max_rows,
        settings.buffer_min_bytes,
        settings.buffer_max_bytes,
    )


def sync_buffer_table(client: Client, settings: Settings, directory: Path = MIGRATIONS_DIR) -> bool:
    """Recreate `events_buffer` when its thresholds differ from the settings. True if it did.

    The old Buffer is flushed into `events` first, so no row is lost by the swap.
    """
    engine = client.command(
        "SELECT engine_full FROM system.tables WHERE database = currentDatabase() AND name = 'events_buffer'"
    )
    if not engine:
        return False
    current = tuple(int(n) for n in re.findall(r",\s*(\d+)", str(engine)))
    if current == buffer_engine_arguments(settings):
        return False
    creating = [m for m in migration_files(directory) if m.name == "events_buffer"]
    flush_buffer_table(client)
    run = _runner(client, settings, directory)
    run("DROP TABLE IF EXISTS events_buffer SYNC")
    for statement in creating[0].statements(settings):
        run(statement)
    log.info("events_buffer thresholds changed from %s to %s", current, buffer_engine_arguments(settings))
    return True


def seed_demo(client: Client, events: int, days: int = 180) -> int:
    """Fill `events` with `events` rows of demo data made inside ClickHouse; returns rows added."""
    before = scalar(client, "SELECT count() FROM events")
    # A session keeps ~1.9 of its 8 slots on average, and few of them fall in a short --days: scan
    # enough numbers to reach `events` rows (the LIMIT stops the scan there).
    parameters = {"events": events, "scan": events * 30 + 6400, "users": max(10, events // 40), "days": days}
    client.command((SQL_DIR / "demo" / "seed_demo.sql").read_text(), parameters=parameters)
    return scalar(client, "SELECT count() FROM events") - before


def flush_buffer_table(client: Client) -> None:
    """Write every row held in the Buffer table's memory into `events`.

    With the embedded engine, rows left in a Buffer table are lost when the process exits,
    even on a clean close; `OPTIMIZE TABLE` on a Buffer table flushes it.
    """
    client.command("OPTIMIZE TABLE events_buffer")


def _fill_placeholders(text: str, settings: Settings, cutover_ms: int) -> str:
    def value(match: re.Match[str]) -> str:
        name = match.group(1)
        if name == "CUTOVER":
            return str(int(cutover_ms))
        if not name.startswith("BUFFER_") or not hasattr(settings, name.lower()):
            raise ValueError(f"unknown placeholder {{{{{name}}}}} in a migration")
        return str(int(getattr(settings, name.lower())))

    return PLACEHOLDER.sub(value, text)


def strip_comments(sql: str) -> str:
    """Without its whole-line `--` comments (the engine parses a report's query ~1 ms faster)."""
    return "\n".join(line for line in sql.splitlines() if not line.strip().startswith("--"))
