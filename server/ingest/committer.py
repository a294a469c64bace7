"""Group commit into the write-ahead log: many requests, one write and one fdatasync.

A request hands its encoded rows to `GroupCommit.submit()` and waits on a future. One writer
thread takes every record waiting, writes them together and syncs once (server/ingest/wal.py),
then resolves all their futures; while it syncs, the next group gathers. A request's rows are
one record, so a request is durable whole or not at all.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from server.ingest.batcher import ShuttingDown
from server.ingest.wal import LogFull, LogWriteFailed, Position, WriteAheadLog, encode_record
from server.metrics import Metrics

log = logging.getLogger(__name__)


class GroupCommit:
    def __init__(self, wal: WriteAheadLog, metrics: Metrics, on_durable: Callable[[Position], None]):
        self._wal = wal
        self._metrics = metrics
        self._on_durable = on_durable  # wakes the consumer
        self._waiting: list[tuple[bytes, asyncio.Future[Position]]] = []
        self._wakeup = asyncio.Event()
        # One thread: appends and syncs happen in order, never two at once.
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="wal-writer")
        self._closing = False
        self._runner: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._runner = asyncio.create_task(self._run(), name="wal-writer")

    async def submit(self, payload: bytes, rows: int) -> Position:
        """Append the rows as one record; returns once they are fdatasync'd. Raises LogFull,
        LogWriteFailed or ShuttingDown (then nothing of them is in the log)."""
        if self._closing:
            raise ShuttingDown("the server is shutting down")
        future: asyncio.Future[Position] = asyncio.get_running_loop().create_future()
        self._waiting.append((encode_record(payload), future))
        self._wakeup.set()
        # Each request has a future of its own: a client that goes away cancels only its own
        # (its record is written with the group all the same), so no shield is needed.
        return await future

    async def close(self) -> None:
        """Stop taking records; write and sync the ones waiting."""
        self._closing = True
        self._wakeup.set()
        if self._runner is not None:
            await self._runner
        self._executor.shutdown(wait=True)

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            if not self._waiting:
                if self._closing:
                    return
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            group, self._waiting = self._waiting, []
            started = time.perf_counter()
            try:
                end = await loop.run_in_executor(self._executor, self._wal.append, [record for record, _ in group])
            except (LogFull, LogWriteFailed) as error:
                if isinstance(error, LogWriteFailed):
                    self._metrics.log_write_failures.inc()
                    log.error("%s; %d request(s) answered 503", error, len(group))
                for _, future in group:
                    if not future.done():
                        future.set_exception(error)
                        future.exception()  # retrieved: the client may have gone away
                continue
            self._metrics.log_sync_seconds.observe(time.perf_counter() - started)
            self._metrics.log_group_records.observe(len(group))
            for _, future in group:
                if not future.done():
                    future.set_result(end)
            self._on_durable(end)
