"""Idempotent retries: an event whose `event_id` is already stored, or in flight in this process,
is not stored again.

Only events that carry an `event_id` take part (a client that wants safe retries sends one; the
outage spool gives every spooled event one). For those, a request first claims its ids in this
process (so two copies racing through the batcher cannot both pass), then asks ClickHouse which
are stored already (`events_buffer` reads the Buffer and `events`; a bloom filter index makes it
a few granules, see migration 005). The claimed ids are released when the request ends, stored
or not. Requests without event ids cost nothing here.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from typing import Callable

from clickhouse_connect.driver.client import Client

from server.errors import first_line

log = logging.getLogger(__name__)

LOOKUP_SQL = "SELECT DISTINCT toString(event_id) FROM events_buffer WHERE event_id IN {ids:Array(UUID)}"
LOOKUP_CHUNK = 5000


def stored_ids(client: Client, ids: list[str]) -> set[str]:
    found: set[str] = set()
    for start in range(0, len(ids), LOOKUP_CHUNK):
        chunk = ids[start:start + LOOKUP_CHUNK]
        found.update(row[0] for row in client.query(LOOKUP_SQL, parameters={"ids": chunk}).result_rows)
    return found


class Claim:
    """The rows of one request that are new, and the ids this request holds until release()."""

    def __init__(self, rows: list[dict], duplicates: int, held: list[str], release: Callable[[list[str]], None]):
        self.rows = rows
        self.duplicates = duplicates
        self._held = held
        self._release = release

    def release(self) -> None:
        self._release(self._held)
        self._held = []


class Dedup:
    def __init__(self, lookup: Callable[[list[str]], set[str]]):
        self._lookup = lookup
        self._in_flight: Counter[str] = Counter()

    async def claim(self, rows: list[dict]) -> Claim:
        if not any("event_id" in row for row in rows):
            return Claim(rows, 0, [], self._forget)
        kept, held, seen = [], [], set()
        for row in rows:
            event_id = row.get("event_id")
            if event_id is None:
                kept.append(row)
            elif event_id not in seen and not self._in_flight[event_id]:
                seen.add(event_id)
                held.append(event_id)
                self._in_flight[event_id] += 1
                kept.append(row)
            else:
                seen.add(event_id)
        try:
            stored = await asyncio.to_thread(self._lookup, held) if held else set()
        except Exception as exc:
            # ClickHouse cannot answer: the INSERT will most likely fail too and the rows go to
            # the spool, whose replay asks again. Refusing here would lose the outage spool.
            log.warning("event_id lookup failed, inserting unchecked: %s", first_line(exc))
            stored = set()
        except BaseException:
            self._forget(held)
            raise
        if stored:
            kept = [row for row in kept if row.get("event_id") not in stored]
        return Claim(kept, len(rows) - len(kept), held, self._forget)

    def _forget(self, ids: list[str]) -> None:
        for event_id in ids:
            self._in_flight[event_id] -= 1
            if self._in_flight[event_id] <= 0:
                del self._in_flight[event_id]
