"""The log's consumer: large batches from the write-ahead log into `events`, each exactly once.

One thread reads records after the checkpoint and inserts them into `events` as one INSERT
(up to LOG_BATCH_MAX_ROWS rows, or what LOG_BATCH_SECONDS gathered; never across segments).
For every batch:

1. the checkpoint file records the batch's range as `intent` and is fsync'd;
2. the INSERT carries `insert_deduplication_token = <log id>:<segment>:<start>:<end>` and
   `deduplicate_blocks_in_dependent_materialized_views = 1`; `events` and every rollup keep the
   hashes of their recent blocks (migration 006), so the same range sent again is dropped by
   each table that has it and taken by any that missed it (a view that failed mid-INSERT);
3. the checkpoint records the range as `done` (fsync'd), and the next batch starts at its end.

After a crash at any point, recovery sends the `intent` range again with the same token, then
goes on after it: nothing is lost, nothing doubled. An INSERT that ClickHouse refuses is
retried with backoff, in order, for as long as it takes: the log is the outage spool. A
segment is deleted once every batch in it is done.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from clickhouse_connect.driver.client import Client
from clickhouse_connect.driver.exceptions import ClickHouseError

from server.http.errors import first_line
from server.ingest.wal import LogSource, Position, Record
from server.metrics import Metrics

log = logging.getLogger(__name__)

BACKOFF_SECONDS = (0.2, 0.5, 1, 2, 5)
# While a batch gathers, the writer wakes the consumer once this much more of the log is synced
# (~1,000 one-event records; 1 MiB read larger pieces at once and raised the p99 to ~15 ms).
WAKE_BYTES = 1 << 18


@dataclass(frozen=True)
class Checkpoint:
    """The last batch: its range and whether its INSERT is known to have succeeded."""

    segment: int
    start: int
    end: int
    done: bool

    @property
    def next_position(self) -> Position:
        return Position(self.segment, self.end)

    @classmethod
    def load(cls, path: Path) -> Checkpoint | None:
        if not path.exists():
            return None
        data = json.loads(path.read_text())
        return cls(int(data["segment"]), int(data["start"]), int(data["end"]), data["state"] == "done")

    def save(self, path: Path) -> None:
        """Replace the file atomically and durably (write, fsync, rename, fsync the directory)."""
        temporary = path.with_suffix(".tmp")
        state = {"segment": self.segment, "start": self.start, "end": self.end,
                 "state": "done" if self.done else "intent"}
        with open(temporary, "w") as f:
            f.write(json.dumps(state))
            f.flush()
            os.fsync(f.fileno())
        os.replace(temporary, path)
        directory = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)


class Consumer:
    def __init__(
        self,
        wal: LogSource,
        client: Client,
        *,
        batch_seconds: float,
        batch_max_rows: int,
        metrics: Metrics,
        on_consumed: Callable[[Position], None],
    ):
        self._wal = wal
        self._client = client
        self._batch_seconds = batch_seconds
        self._batch_max_rows = batch_max_rows
        self._metrics = metrics
        self._on_consumed = on_consumed
        self._checkpoint_path = wal.directory / "checkpoint.json"
        checkpoint = Checkpoint.load(self._checkpoint_path)
        self._recovering = checkpoint if checkpoint and not checkpoint.done else None
        first = wal.segments()[0] if wal.segments() else 0
        self.position = checkpoint.next_position if checkpoint else Position(first, 0)
        self._condition = threading.Condition()
        self._durable_end: Position | None = None
        # What the gatherer has read, and whether it waits with nothing read: the writer wakes it
        # for the first records of a batch, then only every WAKE_BYTES (durable())
        self._read_to = self.position
        self._idle = True
        self._hurry = False  # insert what is there now (stop, settle)
        self._deadline: float | None = None  # set by stop(): keep inserting until then
        self._thread = threading.Thread(target=self._run, name="wal-consumer", daemon=True)
        self.failure: str | None = None  # the last INSERT failure, until one succeeds
        self.pause_lock = threading.Lock()  # held around each INSERT; an erasure holds it to pause inserts

    def start(self) -> None:
        self._thread.start()

    @property
    def unconsumed_from(self) -> Position:
        """Where the events not known to be in ClickHouse begin: the batch in flight at the last
        stop (sent again first), or the next position."""
        if self._recovering is not None:
            return Position(self._recovering.segment, self._recovering.start)
        return self.position

    def durable(self, end: Position) -> None:
        """Called by the writer: the log is synced up to `end`. Wakes the gatherer when it waits
        for a batch's first records, or when WAKE_BYTES more are there (a batch may be full before
        its time); otherwise it reads them all at its batch's deadline. Waking it for each group
        commit (~450 a second at one event a request) cost the event loop the GIL as often."""
        with self._condition:
            self._durable_end = end
            if (self._idle or end.segment != self._read_to.segment
                    or end.offset - self._read_to.offset >= WAKE_BYTES):
                self._condition.notify_all()
        self._metrics.log_bytes.set(self.waiting_bytes())

    def settle(self, timeout: float) -> bool:
        """Insert everything synced so far now; True once it is in ClickHouse (within timeout)."""
        deadline = time.monotonic() + timeout
        with self._condition:
            target = self._wal.synced_end() if self._durable_end is None else self._durable_end
            self._hurry = True
            self._condition.notify_all()
            while target is not None and self.position < target:
                if not self._condition.wait(max(0.0, deadline - time.monotonic())):
                    return False
            return True

    def stop(self, timeout: float) -> None:
        """Insert what can be inserted within `timeout`, then stop; the rest stays in the log.
        Returns after the thread has ended, so that nothing is written after the stop."""
        if self._thread.ident is None:
            return  # never started (the start-up failed before it)
        with self._condition:
            self._deadline = time.monotonic() + timeout
            self._hurry = True
            self._condition.notify_all()
        self._thread.join(timeout + 60)  # an INSERT under way is waited for
        if self._thread.is_alive():
            log.error("the log consumer did not stop within %.0f s", timeout + 60)

    # --- the thread ---------------------------------------------------------------------

    def _stopping(self) -> bool:
        return self._deadline is not None

    def _out_of_time(self) -> bool:
        return self._deadline is not None and time.monotonic() >= self._deadline

    def _run(self) -> None:
        if self._recovering is not None:
            records = list(self._wal.read(Position(self._recovering.segment, self._recovering.start),
                                          max_rows=2**62))
            records = [r for r in records if r.end.offset <= self._recovering.end]
            log.info("log recovery: sending again the batch of %d record(s) that was in flight",
                     len(records))
            if not self._insert(records, self._recovering):
                return
        while not self._out_of_time():
            gathered = self._gather()
            if gathered is None:
                return
            if not gathered:
                continue
            records = gathered
            checkpoint = Checkpoint(self.position.segment, records[0].start.offset, records[-1].end.offset, False)
            checkpoint.save(self._checkpoint_path)
            if not self._insert(records, checkpoint):
                return

    def _gather(self) -> list[Record] | None:
        """The next batch's records, or [] to look again, or None to stop. Records are read once
        each, as they become durable; the wait in between is woken by the writer."""
        started = time.monotonic()
        records: list[Record] = []
        rows = 0
        segment = self.position.segment
        while True:
            if self._out_of_time():
                return None
            for record in self._wal.read(records[-1].end if records else self.position, self._batch_max_rows - rows):
                records.append(record)
                rows += record.rows
            tail = records[-1].end.offset if records else self.position.offset
            # A finished segment ends at its end, or at a torn tail: the read stopped short of both
            # its end and the row limit (bytes of a write whose process died before syncing it).
            at_segment_end = not self._wal.is_live(segment) and (
                tail >= self._wal.readable_end(segment) or rows < self._batch_max_rows)
            if records and (rows >= self._batch_max_rows or at_segment_end or self._hurry
                            or time.monotonic() - started >= self._batch_seconds):
                return records
            if not records and at_segment_end:
                later = [s for s in self._wal.segments() if s > segment]
                if later:  # this segment is finished: on to the next
                    self._wal.delete_segment(segment)
                    self._move_to(Position(later[0], 0))
                    return []
            with self._condition:
                if self._stopping() and (not records or self._out_of_time()):
                    return None
                if not records:
                    self._hurry = False
                    self._condition.notify_all()
                    started = time.monotonic()
                    self._idle = True
                    self._condition.wait(0.5)
                    self._idle = False
                else:
                    self._read_to = records[-1].end
                    self._condition.wait(max(0.001, started + self._batch_seconds - time.monotonic()))

    def _move_to(self, position: Position) -> None:
        with self._condition:
            self.position = position
            self._condition.notify_all()
        self._metrics.log_bytes.set(self.waiting_bytes())

    def waiting_bytes(self) -> int:
        """Bytes of the log not yet in ClickHouse."""
        return self._wal.bytes_after(self.position)

    def _insert(self, records: list[Record], checkpoint: Checkpoint) -> bool:
        """INSERT the batch until it succeeds (True) or the stop's time is up (False)."""
        body = b"".join(record.payload for record in records)
        rows = sum(record.rows for record in records)
        token = f"{self._wal.log_id}:{checkpoint.segment}:{checkpoint.start}:{checkpoint.end}"
        attempt = 0
        while True:
            started = time.perf_counter()
            try:
                with self.pause_lock:
                    self._client.raw_insert("events", insert_block=body, fmt="JSONEachRow", settings={
                        "insert_deduplication_token": token,
                        "deduplicate_blocks_in_dependent_materialized_views": 1,
                    })
                break
            except ClickHouseError as error:
                self.failure = f"ClickHouse did not take a batch from the log: {first_line(error)}"
                self._metrics.insert_failures.inc()
                wait = BACKOFF_SECONDS[min(attempt, len(BACKOFF_SECONDS) - 1)]
                log.warning("insert of %d rows from the log failed (attempt %d), retrying in %.1f s: %s",
                            rows, attempt + 1, wait, first_line(error))
                attempt += 1
                with self._condition:
                    if self._stopping() and time.monotonic() + wait >= (self._deadline or 0):
                        return False
                    self._condition.wait(wait)
        self.failure = None
        self._metrics.insert_seconds.observe(time.perf_counter() - started)
        self._metrics.batch_rows.observe(rows)
        self._metrics.events_inserted.inc(rows)
        Checkpoint(checkpoint.segment, checkpoint.start, checkpoint.end, True).save(self._checkpoint_path)
        end = Position(checkpoint.segment, checkpoint.end)
        self._on_consumed(end)
        self._move_to(end)
        return True
