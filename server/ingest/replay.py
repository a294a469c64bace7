"""Replaying the outage spool into ClickHouse once inserts work again (see spool.py)."""

from __future__ import annotations

import asyncio
import logging

import orjson
from clickhouse_connect.driver.client import Client

from server.errors import first_line
from server.ingest.dedup import stored_ids
from server.ingest.spool import Spool
from server.ingest.writer import EventWriter
from server.metrics import Metrics

log = logging.getLogger(__name__)


class Replayer:
    """Stores one spool record: the rows whose event_id is not stored yet, into INSERT_TABLE."""

    def __init__(self, client: Client, table: str, metrics: Metrics):
        self.client, self.writer, self.metrics = client, EventWriter([client], table), metrics

    def __call__(self, payload: bytes) -> None:
        lines = [line for line in payload.split(b"\n") if line]
        ids = [orjson.loads(line)["event_id"] for line in lines]
        stored = stored_ids(self.client, ids)
        fresh = [line for line, event_id in zip(lines, ids) if event_id not in stored]
        if fresh:
            self.writer.insert(b"\n".join(fresh) + b"\n")
        self.metrics.events_replayed.inc(len(fresh))
        self.metrics.events_duplicate.inc(len(lines) - len(fresh))


async def replay_spool(spool: Spool, store: Replayer, metrics: Metrics, every_seconds: float = 1.0) -> None:
    """At start and then every second: replay what the spool holds, oldest first."""
    while True:
        try:
            records, size = spool.depth()
            if records or size:  # size alone: a segment holding only a torn record, to delete
                replayed = await asyncio.to_thread(spool.replay, store)
                log.info("outage spool: %d batch(es) replayed into ClickHouse", replayed)
        except Exception as exc:  # ClickHouse still refuses: the records stay, try again later
            log.warning("outage spool: replay stopped, will retry: %s", first_line(exc))
        records, size = spool.depth()
        metrics.spool_records.set(records)
        metrics.spool_bytes.set(size)
        await asyncio.sleep(every_seconds)
