"""Idempotent retries: an event whose `event_id` is already stored, in the write-ahead log, or in
flight in this process, is not stored again.

Only events that carry an `event_id` take part (a client that wants safe retries sends one). For
those, a request first claims its ids in this process (so two copies racing through the log or
the batcher cannot both pass), then looks for them among the events in the log not yet inserted
(`LoggedIds`, in memory, rebuilt from the log at start) and asks ClickHouse for the rest
(`events_buffer` reads the Buffer and `events`; a bloom filter index makes it a few granules,
see migration 005). The claimed ids are released when the request ends, stored or not.
Requests without event ids cost nothing here.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections import Counter, deque
from collections.abc import Callable, Iterable

import orjson
from clickhouse_connect.driver.client import Client
from clickhouse_connect.driver.exceptions import ClickHouseError

from server.http.errors import first_line
from server.ingest.validate import Row
from server.ingest.wal import LogSource, Position

log = logging.getLogger(__name__)

LOOKUP_SQL = "SELECT DISTINCT toString(event_id) FROM events_buffer WHERE event_id IN {ids:Array(UUID)}"
LOOKUP_CHUNK = 5000


class LookupFailed(Exception):
    """The lookup's source (the engine process of a group) did not answer."""


def stored_ids(client: Client, ids: list[str]) -> set[str]:
    found: set[str] = set()
    for start in range(0, len(ids), LOOKUP_CHUNK):
        chunk = ids[start:start + LOOKUP_CHUNK]
        found.update(row[0] for row in client.query(LOOKUP_SQL, parameters={"ids": chunk}).result_rows)
    return found


class LoggedIds:
    """The event_ids of events in the write-ahead log that are not in ClickHouse yet. Added when
    a request's record is durable, dropped when the consumer has inserted past it."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._ids: Counter[str] = Counter()
        self._by_position: deque[tuple[Position, list[str]]] = deque()
        self._consumed = Position(-1, 0)

    def add(self, position: Position, ids: list[str]) -> None:
        with self._lock:
            if position <= self._consumed:
                return  # inserted already: ClickHouse answers for them
            self._by_position.append((position, ids))
            self._ids.update(ids)

    def consumed_through(self, position: Position) -> None:
        with self._lock:
            self._consumed = max(self._consumed, position)
            while self._by_position and self._by_position[0][0] <= position:
                _, ids = self._by_position.popleft()
                self._ids.subtract(ids)
                for event_id in ids:
                    if self._ids[event_id] <= 0:
                        del self._ids[event_id]

    def known(self, ids: Iterable[str]) -> set[str]:
        with self._lock:
            return {event_id for event_id in ids if event_id in self._ids}

    def add_from_log(self, log: LogSource, start: Position) -> Position:
        """Add the ids of every event the log holds from `start` on; return where reading ended
        (at start-up; and, in a group's engine, each time a worker's log has grown)."""
        end = start
        for segment in log.segments():
            if segment < start.segment:
                continue
            position = start if segment == start.segment else Position(segment, 0)
            for record in log.read(position, max_rows=2**62):
                rows = [orjson.loads(line) for line in record.payload.splitlines() if b'"event_id"' in line]
                ids = [str(row["event_id"]) for row in rows if "event_id" in row]
                if ids:
                    self.add(record.end, ids)
                end = record.end
        return end


class Claim:
    """The rows of one request that are new, and the ids this request holds until release()."""

    def __init__(self, rows: list[Row], duplicates: int, held: list[str], release: Callable[[list[str]], None]):
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

    async def claim(self, rows: list[Row]) -> Claim:
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
        except (ClickHouseError, LookupFailed) as exc:
            # ClickHouse (or the engine process) cannot answer: with ACK=log the events are still taken (the log is the
            # outage spool; ids already in the log were found above), unchecked against ClickHouse.
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
