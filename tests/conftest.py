"""Fixtures: the real ClickHouse engine (chDB) and the real ASGI app.

chDB runs one engine (one data directory) per process, so the test process opens one
directory for the whole session and gives every test a fresh database inside it. Tests that
need a process of their own (signals, restarts) start `analytics-api serve` as a subprocess
with its own directory.
"""

from __future__ import annotations

import atexit
import gc
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import hypothesis
import pytest
from clickhouse_connect.driver.client import Client
from hypothesis.configuration import set_hypothesis_home_dir
from starlette.testclient import TestClient

from server.config import Settings
from server.process.app import create_app
from server.store import db
from tests.servers import ROOT


@pytest.fixture(scope="session")
def chdb_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("chdb")


class DatabasePool:
    """Migrated databases of the session's engine, emptied and handed to the next test.

    Migrating a new database costs ~0.3 s (some forty DDL statements); emptying one costs ~10 ms.
    A database goes back to the pool only when its schema is exactly what the migrations made
    (same tables, same CREATE statements, every migration recorded): a test that renamed a
    table, recreated the Buffer with other thresholds or deleted a migration's record leaves a
    database that is dropped instead. TRUNCATE also clears a table's deduplication log, so a
    block inserted by an earlier test is not taken for a retry in the next.

    Comparing the CREATE statements costs ~12 ms (the engine formats every table's), so it is done
    once a database: then what the tables are (name, UUID: a table made again gets a new one;
    metadata file's time: an ALTER rewrites it) and schema_migrations' parts (a deleted record
    makes new ones) are kept, and a database that shows the same again is the same (~3 ms).
    """

    def __init__(self, chdb_dir: Path) -> None:
        self.url = f"chdb://{chdb_dir}"
        # Held open for the session: the embedded engine shuts down when its last client closes,
        # and opening it again costs each test's app ~30 ms per client it opens.
        self.client = db.connect(Settings.from_env({}, clickhouse_url=self.url), database="default")
        # The first database, migrated here, is the schema every database given back must have.
        first = Settings.from_env({}, clickhouse_url=f"{self.url}?database=t_{uuid.uuid4().hex[:12]}")
        db.migrate(first)
        schema = self._schema(self.client, first.database)
        assert schema is not None
        self.schema = schema
        self.free = [first.database]
        self.known: dict[str, object] = {}  # database -> its fingerprint when its schema was found the same
        self.settled_seconds = 2

    def take(self) -> str | None:
        return self.free.pop() if self.free else None

    def give_back(self, made: list[Settings]) -> None:
        for settings in made:
            if settings.database in self.free:
                continue  # given back already
            if settings.clickhouse_url.startswith(self.url + "?") and self._reusable(self.client, settings.database):
                self._empty(self.client, settings.database)
                self.free.append(settings.database)
            else:
                self.client.command("DROP DATABASE IF EXISTS {name:Identifier} SYNC", parameters={"name": settings.database})

    def _reusable(self, client: Client, database: str) -> bool:
        found, settled, migrations = client.query(
            "SELECT groupArray((name, uuid, metadata_modification_time)), "
            "max(metadata_modification_time) < now() - {settled:Int32}, "
            "(SELECT groupArray(name) FROM system.parts WHERE database = {d:String} AND table = 'schema_migrations' "
            "AND active) FROM (SELECT name, uuid, metadata_modification_time FROM system.tables WHERE database = {d:String} "
            "ORDER BY name)",
            parameters={"d": database, "settled": self.settled_seconds}).result_rows[0]
        fingerprint = (found, migrations)
        if found and self.known.get(database) == fingerprint:
            return True
        same = self._schema(client, database) == self.schema
        # A metadata file's time is in seconds: an ALTER in the same second as the fingerprint's
        # newest would leave it unchanged, so it is kept only once that second is past.
        if same and settled:
            self.known[database] = fingerprint
        return same

    @staticmethod
    def _schema(client: Client, database: str) -> str | None:
        if not client.command("EXISTS DATABASE {d:Identifier}", parameters={"d": database}):
            return None
        if not client.command("EXISTS TABLE {d:Identifier}.schema_migrations", parameters={"d": database}):
            return None
        versions = client.query("SELECT version FROM {d:Identifier}.schema_migrations FINAL ORDER BY version",
                                parameters={"d": database}).result_rows
        if [version for (version,) in versions] != [migration.version for migration in db.migration_files()]:
            return None  # a test deleted a migration's record
        tables = client.query("SELECT name, replaceAll(create_table_query, {d:String}, '') FROM system.tables "
                              "WHERE database = {d:String} ORDER BY name", parameters={"d": database}).result_rows
        return "\n".join(f"{name}: {query}" for name, query in tables)

    @staticmethod
    def _empty(client: Client, database: str) -> None:
        """TRUNCATE each table that has parts, active or not (system.parts also lists those a merge,
        mutation or DROP PARTITION replaced): a table that never had one never took an INSERT, so its
        deduplication log is empty too. ~2 ms for a test's few tables instead of 8 ms for all 26."""
        client.command("OPTIMIZE TABLE {d:Identifier}.events_buffer", parameters={"d": database})  # Buffer: no TRUNCATE
        tables = client.query("SELECT DISTINCT table FROM system.parts WHERE database = {d:String} "
                              "AND table != 'schema_migrations'", parameters={"d": database}).result_rows
        for (name,) in tables:
            client.command("TRUNCATE TABLE {d:Identifier}.{t:Identifier}", parameters={"d": database, "t": name})


@pytest.fixture(scope="session")
def database_pool(chdb_dir: Path) -> Iterator[DatabasePool]:
    pool = DatabasePool(chdb_dir)
    yield pool
    pool.client.close()


@pytest.fixture
def make_settings(chdb_dir: Path, database_pool: DatabasePool):
    """Settings on an empty database of the session's engine; keyword arguments override.

    The database comes from the pool of migrated ones unless `fresh=True` (a test of the
    migrations themselves). After the test it is emptied and pooled, or dropped: hundreds of
    idle databases, each with a Buffer table's background flushes, slow the shared engine down
    for every later test. The write-ahead log's directory is new for every test.
    """
    made: list[Settings] = []

    def make(fresh: bool = False, **overrides: object) -> Settings:
        database = (None if fresh else database_pool.take()) or "t_" + uuid.uuid4().hex[:12]
        url = f"{database_pool.url}?database={database}"
        run = uuid.uuid4().hex[:12]
        overrides.setdefault("spool_dir", str(chdb_dir.parent / "spool" / run))
        overrides.setdefault("log_dir", str(chdb_dir.parent / "wal" / run))
        overrides.setdefault("rollup_interval_seconds", 0)  # the job runs where a test asks for it
        # The resident memory is this pytest process's, which holds many tests' apps and their
        # engine: over MEMORY_TRIM_ABOVE_MB every report request gave memory back and the next
        # queries faulted it in again (~10% of the CPU of the report tests). test_ops tests it.
        overrides.setdefault("memory_trim_above_mb", 1_000_000)
        settings = Settings.from_env({}, clickhouse_url=url, **overrides)
        made.append(settings)
        return settings

    yield make
    database_pool.give_back(made)


def drop_databases(made: list[Settings]) -> None:
    """Drop the databases of module-wide fixtures (tests get theirs from `make_settings`)."""
    if not made:
        return
    client = db.connect(made[0], database="default")
    try:
        for settings in made:
            client.command("DROP DATABASE IF EXISTS {name:Identifier} SYNC", parameters={"name": settings.database})
    finally:
        client.close()


@pytest.fixture
def settings(make_settings) -> Settings:
    return make_settings()


class SettlingClient(TestClient):
    """Starlette's TestClient that, after a 202, waits until the write-ahead log's consumer has
    inserted every event acknowledged so far (ACK=log; `Consumer.settle`, the real consumer
    cutting its gathering short). Tests then read what they sent, as a report would a second later."""

    def request(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        response = super().request(*args, **kwargs)
        consumer = self.app.state.services.pipeline.consumer  # type: ignore[attr-defined]
        if response.status_code == 202 and consumer is not None:
            assert consumer.settle(timeout=60), "the log's consumer did not catch up in 60 s"
        return response


@pytest.fixture
def api(settings: Settings) -> Iterator[TestClient]:
    """The app over real HTTP semantics (Starlette's TestClient), lifespan included."""
    with SettlingClient(create_app(settings)) as client:
        yield client


@pytest.fixture
def ch(settings: Settings, api: TestClient) -> Iterator[Client]:
    """A query client on the test's database (after the app has migrated it)."""
    client = db.connect(settings)
    yield client
    client.close()


def count_events(ch: Client, where: str = "1") -> int:
    """Rows in `events` plus rows still held by the Buffer table (reading the Buffer reads both)."""
    return int(ch.command(f"SELECT count() FROM events_buffer WHERE {where}"))


# Seconds the slowest files take in `make test` (wall time of one run with three workers on two cores,
# rounded). pytest-xdist hands each worker a file at a time, in collection order when told
# --no-loadscope-reorder (as `make test` does; by default it orders files by their count of tests,
# which put test_group.py's five tests and 30 s near the end). Longest first, the run ends on short
# files: one worker no longer finishes a long file while the other two have nothing left to do.
SLOWEST_FILES = {
    "test_group.py": 30, "people/test_stitching.py": 25, "test_fuzz.py": 22, "test_erase.py": 19,
    "sdks/test_browser_sdks.py": 18, "reports/test_rollups.py": 15, "test_lifecycle.py": 13,
    "test_backup.py": 12, "reports/test_stored_rows.py": 12, "test_browser.py": 12,
    "test_browser_tracker.py": 11, "ingest/test_events_api.py": 11, "test_crashes.py": 10,
    "sdks/test_segment.py": 7, "ingest/test_enrich.py": 7, "test_import.py": 7, "test_config.py": 7,
    "test_clickhouse_http.py": 7, "reports/test_reports.py": 6, "test_loadtest.py": 6,
    "sdks/test_scripts.py": 6, "ingest/test_rate_limit.py": 6, "deploy/test_dashboards.py": 5,
    "reports/test_seed_demo.py": 5, "ingest/test_log.py": 5, "test_export.py": 5, "sdks/test_posthog.py": 5,
}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The slowest files first (SLOWEST_FILES), each file's tests kept together and in their order."""
    tests = Path(__file__).parent
    items.sort(key=lambda item: -SLOWEST_FILES.get(item.path.relative_to(tests).as_posix(), 0))


def pytest_collection_finish(session: pytest.Session) -> None:
    """Collection's objects (every test module, schemathesis's schema, hypothesis's strategies)
    live for the whole run: kept out of the collector's full passes, which otherwise walk them
    again and again while the tests make garbage."""
    gc.freeze()


# Hypothesis keeps no example database, and its other files (a cache of the code's constants) go
# to a temporary directory instead of .hypothesis/ in the working tree: a run leaves no files.
hypothesis.settings.register_profile("suite", database=None)
hypothesis.settings.load_profile("suite")
HYPOTHESIS_HOME = tempfile.mkdtemp(prefix="hypothesis-")
set_hypothesis_home_dir(HYPOTHESIS_HOME)
atexit.register(shutil.rmtree, HYPOTHESIS_HOME, True)


def _working_tree_files() -> set[str]:
    """Paths git would list as changed, untracked or ignored (caches of the tools excepted)."""
    listed = subprocess.run(["git", "status", "--porcelain", "--ignored", "--untracked-files=all"], cwd=ROOT,
                            capture_output=True, text=True, check=False).stdout.splitlines()
    caches = ("__pycache__/", ".pytest_cache/", ".mypy_cache/", ".ruff_cache/", ".venv/", ".venv-tools/", ".egg-info/")
    return {line[3:] for line in listed if not any(cache in line for cache in caches)}


def pytest_sessionstart(session: pytest.Session) -> None:
    if not hasattr(session.config, "workerinput"):  # once, in the process that runs the others
        session.config.stash[_TREE_BEFORE] = _working_tree_files()


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """The suite writes only under its temporary directories: a file it left in the working tree
    fails the run, named."""
    if hasattr(session.config, "workerinput") or _TREE_BEFORE not in session.config.stash:
        return
    left = sorted(_working_tree_files() - session.config.stash[_TREE_BEFORE])
    if left:
        print("\nthe test run left files in the working tree:\n  " + "\n  ".join(left[:20]))
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


_TREE_BEFORE = pytest.StashKey[set[str]]()
