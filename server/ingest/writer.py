"""Rows → JSONEachRow bytes → one INSERT into ClickHouse.

Rows are encoded once, in the request that validated them, so the batcher only joins bytes.
JSONEachRow built with orjson is several times cheaper than clickhouse-connect's per-value
Native conversion (NOTES: ~57k rows/s for `insert()` of Python rows against ~550k rows/s for
JSONEachRow at 10k rows), and `command()` with inline data has half the per-insert latency of
`raw_insert()` on the embedded engine (measured: ~0.8 ms against ~1.6 ms for 3 rows).
"""

from __future__ import annotations

import queue
from collections.abc import Iterable
from typing import Any

import orjson
from clickhouse_connect.driver.client import Client

WRITABLE_TABLES = ("events_buffer", "events", "activities")


def encode_rows(rows: Iterable[dict[str, Any]]) -> bytes:
    return b"".join([orjson.dumps(row) + b"\n" for row in rows])


class EventWriter:
    """Inserts encoded rows; safe to call from several threads (one client per call in flight)."""

    def __init__(self, clients: list[Client], table: str):
        if table not in WRITABLE_TABLES:
            raise ValueError(f"cannot insert events into {table!r}")
        self._statement = f"INSERT INTO {table} FORMAT JSONEachRow"
        self._clients: queue.SimpleQueue[Client] = queue.SimpleQueue()
        for client in clients:
            self._clients.put(client)

    def insert(self, body: bytes) -> None:
        client = self._clients.get()
        try:
            client.command(self._statement, data=body)
        finally:
            self._clients.put(client)
