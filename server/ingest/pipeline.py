"""The ingest side's moving parts for one ACK mode, opened at start and closed at stop.

ACK=log: group commit into the write-ahead log (server/ingest/committer.py, wal.py) and its
consumer thread (consumer.py) inserting into `events`. ACK=insert: the batcher (batcher.py)
inserting into the Buffer table `events_buffer`. Either way the routes see one `sink`, and the
dedup lookup sees the ids of events in the log as well as those in ClickHouse.

Stopping: the routes have finished (uvicorn drains them first); the sink takes no more rows and
syncs (or inserts) what waits; then the consumer inserts what it can within
STOP_TIMEOUT_SECONDS and its thread ends before the stop returns; or, ACK=insert, the Buffer is
flushed into `events` (the embedded engine drops a Buffer's memory with the process).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, Protocol

from clickhouse_connect.driver.client import Client
from clickhouse_connect.driver.exceptions import ClickHouseError

from server.config import Settings
from server.http.errors import Unavailable, first_line
from server.ingest.batcher import Batcher
from server.ingest.committer import GroupCommit
from server.ingest.consumer import Consumer
from server.ingest.dedup import Dedup, LoggedIds, stored_ids
from server.ingest.legacy_spool import move_legacy_spool
from server.ingest.wal import Position, WriteAheadLog, encode_record
from server.ingest.worker_logs import WorkerLog
from server.ingest.writer import EventWriter
from server.metrics import Metrics
from server.store import db

log = logging.getLogger(__name__)


class Sink(Protocol):
    """Where accepted rows go: the write-ahead log's group commit, or the insert batcher. Returns
    once they are durable (the log's position, or None)."""

    async def submit(self, body: bytes, rows: int) -> Position | None: ...


class Pipeline:
    def __init__(self, settings: Settings, metrics: Metrics, worker_dirs: list[Path] | None = None):
        self.settings = settings
        # The engine process of a group (server/process/group.py): the HTTP workers' logs it consumes.
        self.worker_dirs = worker_dirs or []
        self.worker_logs: list[WorkerLog] = []
        self.metrics = metrics
        self.mode = settings.ack_mode
        self._clients: list[Client] = []
        self.dedup_client = self._connect()
        self.wal: WriteAheadLog | None = None
        self.consumer: Consumer | None = None
        self.committer: GroupCommit | None = None
        self.batcher: Batcher | None = None
        self.logged_ids: LoggedIds | None = None
        self.sink: Sink

    def _connect(self, client_settings: dict[str, Any] | None = None) -> Client:
        client = db.connect(self.settings, client_settings=client_settings)
        self._clients.append(client)
        return client

    def stored(self, ids: list[str]) -> set[str]:
        """Which of these event_ids are stored: in the log (not yet inserted) or in ClickHouse."""
        in_log = self.logged_ids.known(ids) if self.logged_ids is not None else set()
        for worker_log in self.worker_logs:
            in_log |= worker_log.known(ids)
        rest = [event_id for event_id in ids if event_id not in in_log]
        return in_log | (stored_ids(self.dedup_client, rest) if rest else set())

    def dedup(self) -> Dedup:
        return Dedup(self.stored)

    def open(self) -> None:
        """Build and start everything (call from the event loop; blocking work is short)."""
        if self.mode == "log":
            self._open_log()
        else:
            self._open_batcher()

    def _open_log(self) -> None:
        settings = self.settings
        self.wal = wal = WriteAheadLog(Path(settings.log_dir), settings.log_max_bytes)
        self.logged_ids = LoggedIds()
        self.consumer = Consumer(
            wal, self._connect(db.INSERT_SETTINGS), batch_seconds=settings.log_batch_seconds,
            batch_max_rows=settings.log_batch_max_rows, metrics=self.metrics,
            on_consumed=self.logged_ids.consumed_through,
        )
        self.logged_ids.add_from_log(wal, self.consumer.unconsumed_from)

        def to_log(rows: bytes, ids: list[str]) -> None:
            end = wal.append([encode_record(rows)])
            assert self.logged_ids is not None
            self.logged_ids.add(end, ids)
            assert self.consumer is not None
            self.consumer.durable(end)

        self._move_legacy_spool(to_log)
        self.committer = GroupCommit(wal, self.metrics, self.consumer.durable)
        self.committer.start()
        self.consumer.start()
        self.sink = self.committer
        for directory in self.worker_dirs:
            worker_log = WorkerLog(directory, self._connect(db.INSERT_SETTINGS), batch_seconds=settings.log_batch_seconds,
                                   batch_max_rows=settings.log_batch_max_rows, metrics=self.metrics)
            worker_log.consumer.start()
            self.worker_logs.append(worker_log)

    @property
    def consumers(self) -> list[Consumer]:
        own = [self.consumer] if self.consumer is not None else []
        return own + [worker_log.consumer for worker_log in self.worker_logs]

    def _open_batcher(self) -> None:
        settings = self.settings
        writer_clients = [self._connect(db.INSERT_SETTINGS) for _ in range(settings.insert_concurrency)]
        self.batcher = Batcher(
            EventWriter(writer_clients, "events_buffer").insert,
            max_rows=settings.batch_max_rows,
            max_delay_seconds=settings.batch_max_delay_ms / 1000,
            concurrency=settings.insert_concurrency,
            max_queued_rows=settings.queue_max_rows,
            metrics=self.metrics,
        )
        writer = EventWriter([self._connect(db.INSERT_SETTINGS)], "events_buffer")
        self._move_legacy_spool(lambda rows, ids: writer.insert(rows))
        self.batcher.start()
        self.sink = self.batcher

    def _move_legacy_spool(self, store: Any) -> None:
        try:
            moved = move_legacy_spool(Path(self.settings.spool_dir), self.stored, store)
        except (ClickHouseError, OSError) as error:
            log.error("the outage spool of an earlier version in %s could not be moved now (it stays for "
                      "the next start): %s", self.settings.spool_dir, first_line(error))
            return
        if moved:
            log.info("moved %d event(s) from an earlier version's outage spool", moved)

    @contextlib.asynccontextmanager
    async def quiesced(self, timeout: float) -> AsyncIterator[None]:
        """While the block runs: every event acknowledged before it is in `events`, and the log's
        consumer inserts nothing (it waits; the log keeps acknowledging). ACK=insert: the Buffer
        table is flushed into `events` first (other writers go on)."""
        if self.consumer is None:
            await asyncio.to_thread(db.flush_buffer_table, self.dedup_client)
            yield
            return
        async with contextlib.AsyncExitStack() as paused:
            for consumer in self.consumers:  # this process's log, then each HTTP worker's
                if not await asyncio.to_thread(consumer.settle, timeout):
                    raise Unavailable(f"the log's consumer did not insert what waits within {timeout:.0f} s; retry later")
                await paused.enter_async_context(_held(consumer.pause_lock))
            yield

    async def close(self) -> None:
        if self.committer is not None:
            await self.committer.close()
        for consumer in self.consumers:
            await asyncio.to_thread(consumer.stop, self.settings.stop_timeout_seconds)
        if self.wal is not None:
            self.wal.close()
        if self.batcher is not None:
            await self.batcher.close()
            try:
                await asyncio.to_thread(db.flush_buffer_table, self.dedup_client)
            except ClickHouseError as exc:  # an outage: what the Buffer holds is at risk
                log.error("could not flush events_buffer into events at stop: %s", first_line(exc))
        for client in self._clients:
            client.close()

    def status(self) -> dict[str, Any]:
        """For /readyz: what waits, and the last failure of the log or its consumer."""
        if self.wal is not None and self.consumer is not None:
            return {"ack": "log", "log_bytes": sum(consumer.waiting_bytes() for consumer in self.consumers),
                    "log_failure": self.wal.failure,
                    # a group's engine inserts the workers' logs: their consumers' failures count too
                    "insert_failure": next((c.failure for c in self.consumers if c.failure), None)}
        assert self.batcher is not None
        return {"ack": "insert", "queued_rows": self.batcher.queued_rows}


@contextlib.asynccontextmanager
async def _held(lock: threading.Lock) -> AsyncIterator[None]:
    """A thread lock taken from the event loop without blocking it."""
    acquiring = asyncio.ensure_future(asyncio.to_thread(lock.acquire))
    try:
        await asyncio.shield(acquiring)
    except asyncio.CancelledError:  # the lock is still taken by the thread: give it back then
        acquiring.add_done_callback(lambda done: lock.release())
        raise
    try:
        yield
    finally:
        lock.release()
