"""The outage spool and idempotent retries: a real failure of the embedded engine, events
acknowledged during it, and every one of them found exactly once afterwards."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

from server import db
from server.app import create_app
from server.ingest.spool import read_records
from tests.ingest.test_batcher import Outage, events, metric, query, running


async def wait_until(condition, seconds: float = 30.0) -> None:
    deadline = asyncio.get_running_loop().time() + seconds
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.1)


def test_events_acknowledged_during_an_outage_are_spooled_and_replayed_exactly_once(make_settings):
    settings = make_settings()
    app = create_app(settings)

    async def scenario():
        async with running(app) as client:
            outage = Outage(settings)
            during = await asyncio.gather(*(client.post("/events", json=events(n, 10)) for n in range(20)))
            ready = (await client.get("/readyz")).json()
            outage.end()
            await wait_until(lambda: metric(app, "events_replayed_total") == 200)
            after = await client.post("/events", json=events(99, 7))
            return during, ready, after

    during, ready, after = asyncio.run(scenario())
    assert {r.status_code for r in during} == {202}
    assert all(r.json() == {"accepted": 10, "spooled": True} for r in during)
    assert ready["spool"]["records"] == 20 and ready["spool"]["bytes"] > 0
    assert after.status_code == 202 and after.json() == {"accepted": 7}
    assert query(settings, "SELECT count(), uniqExact(user_id, props['seq']) FROM events") == [(207, 207)]
    assert query(settings, "SELECT count() FROM events WHERE user_id = 'c3'") == [(10,)]
    assert metric(app, "events_spooled_total") == 200
    assert metric(app, "spool_records") == 0
    assert list(Path(settings.spool_dir).glob("*.log")) == []


def test_a_spool_left_by_a_stopped_server_is_replayed_by_the_next_one_without_doubles(make_settings):
    settings = make_settings()
    first = create_app(settings)

    async def outage():
        async with running(first) as client:
            still_refusing = Outage(settings)
            responses = [await client.post("/events", json=events(n, 5)) for n in range(4)]
            # The server stops while ClickHouse still refuses: the spool stays on disk.
            return responses, still_refusing

    responses, still_refusing = asyncio.run(outage())
    assert all(r.json().get("spooled") for r in responses)
    spool_dir = Path(settings.spool_dir)
    [segment] = spool_dir.glob("spool-*.log")
    payloads = list(read_records(segment))
    assert len(payloads) == 4
    # A crash during a later replay: one record's rows already stored. The replay must skip them.
    still_refusing.end()
    admin = still_refusing.admin
    admin.command("INSERT INTO events FORMAT JSONEachRow", data=payloads[0])
    # And a torn record at the end (a crash mid-append: never acknowledged).
    with open(segment, "ab") as f:
        f.write(b"SPL1\x40\x00\x00\x00garbage")
    admin.close()

    second = create_app(settings)

    async def recovery():
        async with running(second):
            await wait_until(lambda: not list(spool_dir.glob("spool-*.log")))

    asyncio.run(recovery())
    assert query(settings, "SELECT count(), uniqExact(event_id), uniqExact(user_id, props['seq']) FROM events") == [(20, 20, 20)]
    assert metric(second, "events_duplicate_total") == 5


def test_resent_events_with_the_same_event_id_are_stored_once(settings, api, ch):
    batch = [dict(event, event_id=str(uuid.uuid4())) for event in events(1, 30)]
    first = api.post("/events", json=batch)
    again = api.post("/events", json=batch)  # a retry after a timeout
    partly = api.post("/events", json=batch[:10] + events(2, 5))  # some new, some resent
    twice_in_one = api.post("/events", json=[batch[0], batch[0]])
    assert first.json() == {"accepted": 30}
    assert again.json() == {"accepted": 30, "duplicates": 30}
    assert partly.json() == {"accepted": 15, "duplicates": 10}
    assert twice_in_one.json() == {"accepted": 2, "duplicates": 2}
    db.flush_buffer_table(ch)
    assert ch.command("SELECT count() FROM events") == 35
    # Reports read the same numbers as if each event had been sent once.
    assert api.get("/reports/events", params={"from": "2025-01-01", "to": "2025-01-01"}).json()[0]["events"] == 35


def test_concurrent_copies_of_the_same_events_are_stored_once(make_settings):
    settings = make_settings()
    app = create_app(settings)
    batch = [dict(event, event_id=str(uuid.uuid4())) for event in events(7, 20)]

    async def scenario():
        async with running(app) as client:
            return await asyncio.gather(*(client.post("/events", json=batch) for _ in range(8)))

    responses = asyncio.run(scenario())
    assert {r.status_code for r in responses} == {202}
    assert sum(r.json().get("duplicates", 0) for r in responses) == 7 * 20
    assert query(settings, "SELECT count(), uniqExact(event_id) FROM events") == [(20, 20)]
