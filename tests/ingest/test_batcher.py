"""ACK=insert: group commit into the Buffer table under real concurrency, and failed inserts,
against the real engine. (ACK=log, the default on the embedded engine: test_log.py.)"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import httpx
import orjson
from prometheus_client.parser import text_string_to_metric_families

from server.process.app import create_app
from server.store import db


def events(client_number: int, count: int) -> list[dict]:
    return [
        {"dt": 1735689600 + i, "event": "e", "user_id": f"c{client_number}", "seq": i}
        for i in range(count)
    ]


@contextlib.asynccontextmanager
async def running(app) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client over the ASGI app, with the app's lifespan (start-up and shutdown) around it."""
    async with app.router.lifespan_context(app):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as client:
            yield client


async def run_clients(app, bodies: list, path: str = "/events") -> list[httpx.Response]:
    """Send every body at once, each request on its own, concurrently."""
    async with running(app) as client:
        return await asyncio.gather(*(client.post(path, json=body) for body in bodies))


def query(settings, sql: str) -> list[tuple]:
    """Rows of one query on the test's database (run after the app stopped and flushed its Buffer)."""
    client = db.connect(settings)
    try:
        return client.query(sql).result_rows
    finally:
        client.close()


class Outage:
    """ClickHouse refusing every insert, for real: the table renamed away until end()."""

    def __init__(self, settings, table: str = "events_buffer"):
        self.table = table
        self.admin = db.connect(settings)
        self.admin.command(f"RENAME TABLE {table} TO {table}_away")

    def end(self) -> None:
        self.admin.command(f"RENAME TABLE {self.table}_away TO {self.table}")


def metric(app, name: str) -> float:
    text = app.state.services.metrics.render().body.decode()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name:
                return sample.value
    raise KeyError(name)


def test_200_concurrent_clients_of_50_events_store_exactly_10000_rows(make_settings):
    settings = make_settings(ack="insert")
    app = create_app(settings)
    responses = asyncio.run(run_clients(app, [events(n, 50) for n in range(200)]))
    assert [r.status_code for r in responses] == [202] * 200
    assert all(r.json() == {"accepted": 50} for r in responses)
    # The app flushed the Buffer on shutdown: every row is in the MergeTree table itself.
    assert query(settings, "SELECT count() FROM events") == [(10_000,)]
    assert query(settings, "SELECT uniqExact(user_id, props['seq']) FROM events") == [(10_000,)]
    assert query(settings, "SELECT count() FROM events_buffer") == [(10_000,)]
    # Group commit happened: fewer INSERTs than requests.
    assert metric(app, "batch_rows_count") < 200
    assert metric(app, "batch_rows_sum") == 10_000
    assert metric(app, "events_accepted_total") == 10_000


def test_small_batches_split_at_max_rows_without_splitting_a_request(make_settings):
    settings = make_settings(ack="insert", batch_max_rows=120, insert_concurrency=1)
    app = create_app(settings)
    responses = asyncio.run(run_clients(app, [events(n, 50) for n in range(40)]))
    assert all(r.status_code == 202 for r in responses)
    assert query(settings, "SELECT count() FROM events") == [(2000,)]
    # No INSERT held more than 120 rows (so, whole requests of 50: at most 100 each).
    text = app.state.services.metrics.render().body.decode()
    at_most_100 = float(text.split('batch_rows_bucket{le="100.0"} ')[1].split()[0])
    assert at_most_100 == metric(app, "batch_rows_count")
    assert metric(app, "batch_rows_sum") == 2000
    assert metric(app, "batch_rows_count") >= 2000 / 100


def test_a_failed_insert_fails_exactly_its_requests_and_stores_nothing(make_settings):
    # ACK=insert keeps nothing locally: a failed INSERT fails every request of its batch.
    settings = make_settings(ack="insert")
    app = create_app(settings)

    async def scenario():
        async with running(app) as client:
            outage = Outage(settings)
            failed = await asyncio.gather(*(client.post("/events", json=events(n, 10)) for n in range(20)))
            outage.end()
            ok = await client.post("/events", json=events(99, 7))
            return failed, ok

    failed, ok = asyncio.run(scenario())
    assert {r.status_code for r in failed} == {503}
    error = failed[0].json()["error"]
    assert error["code"] == "unavailable" and "nothing was stored" in error["message"]
    assert "ClickHouse did not store the events" in error["message"] and failed[0].headers["Retry-After"] == "1"
    assert ok.status_code == 202
    assert query(settings, "SELECT user_id, count() FROM events GROUP BY user_id") == [("c99", 7)]
    assert metric(app, "insert_failures_total") >= 1


def test_queue_bound_answers_503_instead_of_growing(make_settings):
    # A queue bound below one request's rows: a request that would overflow a non-empty queue
    # waits for nothing and gets 503 at once, while the first one is stored.
    settings = make_settings(ack="insert", queue_max_rows=60, insert_concurrency=1)
    app = create_app(settings)
    responses = asyncio.run(run_clients(app, [events(n, 50) for n in range(30)]))
    codes = [r.status_code for r in responses]
    assert 202 in codes and 503 in codes
    assert set(codes) <= {202, 503}
    assert query(settings, "SELECT count() FROM events") == [(50 * codes.count(202),)]


def test_ndjson_and_form_requests_share_batches(make_settings):
    settings = make_settings(ack="insert")
    app = create_app(settings)

    async def scenario():
        async with running(app) as client:
            ndjson = b"\n".join(orjson.dumps(e) for e in events(1, 30))
            form = {"dt": "2025-01-01T00:00:00Z", "event": "f", "userid": "form"}
            return await asyncio.gather(
                *(client.post("/events", content=ndjson, headers={"Content-Type": "application/x-ndjson"})
                  for _ in range(10)),
                *(client.post("/events/", data=form) for _ in range(10)),
            )

    responses = asyncio.run(scenario())
    assert all(r.status_code == 202 for r in responses)
    assert query(settings, "SELECT count() FROM events") == [(310,)]
