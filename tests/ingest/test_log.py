"""ACK=log (the default on the embedded engine): events are acknowledged once fdatasync'd in the
write-ahead log and reach `events` and every rollup exactly once, through outages, failing views,
restarts and retries. Real engine, real files; crashes are in tests/test_lifecycle.py."""

from __future__ import annotations

import asyncio
import struct
import uuid
import zlib
from dataclasses import replace
from pathlib import Path

import orjson
import pytest
from starlette.testclient import TestClient

from server.ingest.wal import Position, WriteAheadLog, encode_record
from server.process.app import create_app
from server.store import db
from tests.ingest.test_batcher import Outage, events, metric, query, run_clients, running

ROLLUP_TOTALS = (
    "SELECT (SELECT count() FROM events), (SELECT sum(events) FROM event_counts_hourly), "
    "(SELECT sum(amount) FROM events), (SELECT sum(revenue) FROM revenue_15m), "
    "(SELECT uniqExact(event_id) FROM events)"
)


async def wait_until(condition, seconds: float = 30.0) -> None:
    deadline = asyncio.get_running_loop().time() + seconds
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.05)


def paid(client_number: int, count: int) -> list[dict]:
    return [dict(event, amount=client_number + 1) for event in events(client_number, count)]


def test_200_concurrent_clients_share_fsyncs_and_large_inserts(make_settings):
    settings = make_settings()
    app = create_app(settings)
    responses = asyncio.run(run_clients(app, [events(n, 50) for n in range(200)]))
    assert [r.status_code for r in responses] == [202] * 200
    assert all(r.json() == {"accepted": 50} for r in responses)
    assert query(settings, "SELECT count(), uniqExact(user_id, props['seq']) FROM events") == [(10_000, 10_000)]
    # Group commit: fewer syncs than requests; the consumer: no more INSERTs than syncs.
    assert metric(app, "log_group_records_count") < 200
    assert metric(app, "log_group_records_sum") == 200
    assert metric(app, "batch_rows_count") <= metric(app, "log_group_records_count")
    assert metric(app, "events_inserted_total") == 10_000


def test_events_acknowledged_while_clickhouse_refuses_are_stored_once_when_it_takes_them(make_settings):
    settings = make_settings(log_batch_max_rows=500)
    app = create_app(settings)

    async def scenario():
        async with running(app) as client:
            outage = Outage(settings, "events")
            during = await asyncio.gather(*(client.post("/events", json=paid(n, 100)) for n in range(30)))
            await wait_until(lambda: metric(app, "insert_failures_total") >= 2)
            ready = (await client.get("/readyz")).json()
            outage.end()
            await wait_until(lambda: metric(app, "events_inserted_total") == 3000)
            after = await client.post("/events", json=paid(99, 7))
            return during, ready, after

    during, ready, after = asyncio.run(scenario())
    assert {r.status_code for r in during} == {202}
    assert ready["status"] == "ready" and ready["log_bytes"] > 0
    assert "did not take a batch" in ready["insert_failure"]
    assert after.status_code == 202
    # Replayed in batches of at most 500 rows, once each, into events and every rollup.
    assert metric(app, "batch_rows_sum") == 3007 and metric(app, "batch_rows_count") >= 6
    total_amount = sum(n + 1 for n in range(30)) * 100 + 100 * 7
    assert query(settings, ROLLUP_TOTALS) == [(3007, 3007, total_amount, total_amount, 3007)]


def test_a_view_failing_mid_insert_does_not_double_the_retry(make_settings):
    """`events` and some rollups take the block, one view throws: the INSERT fails and is sent
    again with the same token; each table ends with every row once."""
    settings = make_settings()
    app = create_app(settings)

    async def scenario():
        async with running(app) as client:
            admin = db.connect(settings)
            admin.command("CREATE TABLE boom (x UInt8) ENGINE = MergeTree ORDER BY x "
                          "SETTINGS non_replicated_deduplication_window = 1000")
            admin.command("CREATE MATERIALIZED VIEW boom_mv TO boom AS SELECT throwIf(user_id = 'boom') AS x FROM events")
            body = paid(1, 40) + [{"dt": 1735689600, "event": "pay", "user_id": "boom", "amount": 1000}]
            response = await client.post("/events", json=body)
            await wait_until(lambda: metric(app, "insert_failures_total") >= 1)
            half_stored = admin.query(ROLLUP_TOTALS).result_rows
            admin.command("DROP VIEW boom_mv")
            await wait_until(lambda: metric(app, "events_inserted_total") == 41)
            admin.close()
            return response, half_stored

    response, half_stored = asyncio.run(scenario())
    assert response.status_code == 202
    assert half_stored[0][0] == 41  # the failed INSERT had written `events` already
    assert query(settings, ROLLUP_TOTALS) == [(41, 41, 1080, 1080, 41)]


def test_resent_events_are_recognised_while_still_in_the_log_and_after_a_restart(make_settings):
    # The consumer holds everything (an hour's gathering) and, at stop, inserts nothing.
    settings = make_settings(log_batch_seconds=3600, stop_timeout_seconds=0)
    batch = [dict(event, event_id=str(uuid.uuid4())) for event in events(1, 30)]
    with TestClient(create_app(settings)) as api:
        assert api.post("/events", json=batch).json() == {"accepted": 30}
        assert api.post("/events", json=batch).json() == {"accepted": 30, "duplicates": 30}
    assert query(settings, "SELECT count() FROM events") == [(0,)]  # all still in the log
    with TestClient(create_app(settings)) as api:  # the ids are read back from the log at start
        assert api.post("/events", json=batch[:10] + events(2, 5)).json() == {"accepted": 15, "duplicates": 10}
    with TestClient(create_app(replace(settings, log_batch_seconds=0))) as api:
        assert api.get("/readyz").status_code == 200
    assert query(settings, "SELECT count(), uniqExact(event_id) FROM events WHERE user_id = 'c1'") == [(30, 30)]
    assert query(settings, "SELECT count() FROM events") == [(35,)]


def test_concurrent_copies_of_the_same_events_are_stored_once(make_settings):
    settings = make_settings()
    app = create_app(settings)
    batch = [dict(event, event_id=str(uuid.uuid4())) for event in events(7, 20)]
    responses = asyncio.run(run_clients(app, [batch] * 8))
    assert {r.status_code for r in responses} == {202}
    assert sum(r.json().get("duplicates", 0) for r in responses) == 7 * 20
    assert query(settings, "SELECT count(), uniqExact(event_id) FROM events") == [(20, 20)]


def test_a_full_log_answers_503_and_stores_nothing_of_that_request(make_settings):
    settings = make_settings(log_max_bytes=20_000, log_batch_seconds=3600, stop_timeout_seconds=30)
    with TestClient(create_app(settings)) as api:
        codes = [api.post("/events", json=events(n, 20)).status_code for n in range(20)]
        refused = api.post("/events", json=events(99, 20))
    assert 202 in codes and codes[-1] == 503 and set(codes) == {202, 503}
    assert refused.status_code == 503 and refused.headers["Retry-After"] == "5"
    assert "write-ahead log holds" in refused.json()["error"]["message"]
    assert query(settings, "SELECT count() FROM events") == [(20 * codes.count(202),)]


def spool_record(rows: list[dict]) -> bytes:
    payload = b"".join(orjson.dumps(row) + b"\n" for row in rows)
    return struct.pack("<4sII", b"SPL1", len(payload), zlib.crc32(payload)) + payload


def test_an_earlier_version_s_spool_is_moved_into_the_log_without_doubles(make_settings):
    settings = make_settings()
    rows = [dict(event, event_id=str(uuid.uuid4()), dt="1735689600.000", received_at="1735689600.000")
            for event in events(3, 20)]
    spool = Path(settings.spool_dir)
    spool.mkdir(parents=True)
    with open(spool / "spool-000000000001.log", "wb") as f:
        for start in range(0, 20, 5):
            f.write(spool_record(rows[start:start + 5]))
        f.write(b"SPL1\x40\x00\x00\x00garbage")  # a torn record: never acknowledged
    with TestClient(create_app(settings)) as api:  # migrates; stores one record "by hand" first
        pass
    assert query(settings, "SELECT count(), uniqExact(event_id) FROM events") == [(20, 20)]
    assert list(spool.glob("spool-*.log")) == []
    # A spool whose first record was stored already before the crash: only the rest is stored.
    more = [dict(row, event_id=str(uuid.uuid4())) for row in rows]
    with open(spool / "spool-000000000002.log", "wb") as f:
        f.write(spool_record(more[:5]) + spool_record(more[5:]))
    admin = db.connect(settings)
    admin.command("INSERT INTO events FORMAT JSONEachRow", data=b"".join(orjson.dumps(r) + b"\n" for r in more[:5]))
    admin.close()
    with TestClient(create_app(settings)) as api:
        assert api.get("/readyz").status_code == 200
    assert query(settings, "SELECT count(), uniqExact(event_id) FROM events") == [(40, 40)]


def test_the_log_never_appends_after_a_restart_and_reads_stop_at_a_torn_tail(tmp_path):
    wal = WriteAheadLog(tmp_path, max_bytes=10**9)
    first = wal.append([encode_record(b'{"a":1}\n'), encode_record(b'{"a":2}\n')])
    wal.close()
    with open(tmp_path / "wal-000000000001.seg", "ab") as f:
        f.write(b"WAL1\xff\x00\x00\x00torn")
    again = WriteAheadLog(tmp_path, max_bytes=10**9)
    assert again.log_id == wal.log_id
    second = again.append([encode_record(b'{"a":3}\n')])
    assert (first.segment, second.segment) == (1, 2)
    assert [r.payload for r in again.read(Position(1, 0), max_rows=100)] == [b'{"a":1}\n', b'{"a":2}\n']
    assert [r.payload for r in again.read(Position(2, 0), max_rows=100)] == [b'{"a":3}\n']


@pytest.mark.parametrize("mode", ["log", "insert"])
def test_readyz_says_which_acknowledgement_and_what_waits(make_settings, mode):
    with TestClient(create_app(make_settings(ack=mode))) as api:
        ready = api.get("/readyz").json()
    assert ready["status"] == "ready" and ready["ack"] == mode
    assert ("log_bytes" in ready) == (mode == "log") and ("queued_rows" in ready) == (mode == "insert")


def test_a_retry_during_recovery_of_a_batch_in_flight_is_recognised(make_settings):
    """A crash after the checkpoint said `intent` and before `done`: at the next start that
    batch is sent again first. Until it is in ClickHouse its ids count as in the log, so a
    client's retry meanwhile is a duplicate, not a second copy."""
    settings = make_settings(log_batch_seconds=3600, stop_timeout_seconds=0)
    batch = [dict(event, event_id=str(uuid.uuid4())) for event in events(4, 30)]
    with TestClient(create_app(settings)) as api:
        assert api.post("/events", json=batch).json() == {"accepted": 30}
    [segment] = sorted(Path(settings.log_dir).glob("wal-*.seg"))
    # The state a crash between the intent checkpoint and the INSERT's end leaves behind.
    (Path(settings.log_dir) / "checkpoint.json").write_text(orjson.dumps(
        {"segment": int(segment.stem.split("-")[1]), "start": 0, "end": segment.stat().st_size, "state": "intent"}
    ).decode())
    admin = db.connect(settings)
    admin.command("RENAME TABLE events TO events_away")  # the recovery's INSERT keeps failing
    with TestClient(create_app(replace(settings, stop_timeout_seconds=30))) as api:
        assert api.post("/events", json=batch).json() == {"accepted": 30, "duplicates": 30}
        admin.command("RENAME TABLE events_away TO events")
    admin.close()
    assert query(settings, "SELECT count(), uniqExact(event_id) FROM events") == [(30, 30)]
