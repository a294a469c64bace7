"""Fixtures: the real ClickHouse engine (chDB) and the real ASGI app.

chDB runs one engine (one data directory) per process, so the test process opens one
directory for the whole session and gives every test a fresh database inside it. Tests that
need a process of their own (signals, restarts) start `analytics-api serve` as a subprocess
with its own directory.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from clickhouse_connect.driver.client import Client
from starlette.testclient import TestClient

from server import db
from server.app import create_app
from server.config import Settings


@pytest.fixture(scope="session")
def chdb_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("chdb")


@pytest.fixture
def make_settings(chdb_dir: Path):
    """Settings on a fresh database of the session's engine; keyword arguments override.

    The databases are dropped after the test: hundreds of idle databases, each with a Buffer
    table's background flushes, slow the shared engine down for every later test.
    """
    made: list[Settings] = []

    def make(**overrides: object) -> Settings:
        database = "t_" + uuid.uuid4().hex[:12]
        url = f"chdb://{chdb_dir}?database={database}"
        overrides.setdefault("spool_dir", str(chdb_dir.parent / "spool" / database))
        overrides.setdefault("log_dir", str(chdb_dir.parent / "wal" / database))
        settings = Settings.from_env({}, clickhouse_url=url, **overrides)
        made.append(settings)
        return settings

    yield make
    drop_databases(made)


def drop_databases(made: list[Settings]) -> None:
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
