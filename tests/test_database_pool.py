"""The test suite's pool of migrated databases (tests/conftest.py) hands each test an empty one:
no rows and no deduplication memory of the test before. The pool is only sound while TRUNCATE
on this engine clears a table's deduplication log, which this test checks."""

from __future__ import annotations

import time

from server.store import db
from tests.conftest import DatabasePool

BLOCK = '{"dt": "2025-01-01 00:00:00", "event": "view", "user_id": "u1", "event_id": "00000000-0000-4000-8000-000000000001"}\n'


def test_a_pooled_database_is_empty_and_forgets_the_blocks_it_took(database_pool: DatabasePool, make_settings):
    settings = make_settings()
    db.migrate(settings)
    client = db.connect(settings)
    token = {"insert_deduplication_token": "same-token"}
    for _ in range(2):  # the second is recognised as a retry: one row
        client.command("INSERT INTO events FORMAT JSONEachRow", data=BLOCK.encode(), settings=token)
    assert client.command("SELECT count() FROM events") == 1
    assert client.command("SELECT count() FROM event_counts_hourly") == 1
    client.close()

    database_pool.give_back([settings])
    assert database_pool.free[-1] == settings.database
    again = make_settings()
    assert again.database == settings.database  # the same database, handed on
    client = db.connect(again)
    assert client.command("SELECT count() FROM events") == 0
    assert client.command("SELECT count() FROM event_counts_hourly") == 0
    client.command("INSERT INTO events FORMAT JSONEachRow", data=BLOCK.encode(), settings=token)
    assert client.command("SELECT count() FROM events") == 1  # not taken for a retry of the earlier test's block
    assert client.command("SELECT count() FROM event_counts_hourly") == 1
    client.close()


def test_a_database_whose_schema_changed_is_dropped(database_pool: DatabasePool, make_settings):
    settings = make_settings()
    db.migrate(settings)
    client = db.connect(settings)
    client.command("RENAME TABLE events TO events_away")
    client.close()
    database_pool.give_back([settings])
    assert settings.database not in database_pool.free
    assert not database_pool.client.command("EXISTS DATABASE {d:Identifier}", parameters={"d": settings.database})


def test_a_database_changed_after_its_schema_was_found_the_same_is_dropped(database_pool: DatabasePool, make_settings,
                                                                          monkeypatch):
    """Once a database's schema was compared whole, the next give-backs compare what its tables
    are and schema_migrations' parts: an ALTER or a deleted migration record still sends it away."""
    monkeypatch.setattr(database_pool, "settled_seconds", -60)  # its fingerprint is kept at once
    changes = ["ALTER TABLE events MODIFY SETTING non_replicated_deduplication_window = 7",
               "ALTER TABLE schema_migrations DELETE WHERE version = 1 SETTINGS mutations_sync = 2"]
    for change in changes:
        settings = make_settings()
        db.migrate(settings)
        database_pool.give_back([settings])
        assert database_pool.known[settings.database]
        again = make_settings()
        assert again.database == settings.database
        time.sleep(1.1)  # the metadata file's time is in seconds
        client = db.connect(again)
        client.command(change)
        client.close()
        database_pool.give_back([again])
        assert again.database not in database_pool.free, change
