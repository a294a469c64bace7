"""Group commit: many requests' rows, one INSERT.

A request hands its encoded rows to `Batcher.submit()` and waits until the INSERT holding them
has succeeded or failed. The batcher sends a batch as soon as an insert slot is free (after
`max_delay` if that is set), or at once when `max_rows` rows wait; while inserts are in flight,
new rows gather into the next batch, so batches grow with load by themselves. A request's rows
are never split across two inserts: a batch is all or nothing for every request in it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from clickhouse_connect.driver.exceptions import ClickHouseError

from server.http.errors import first_line
from server.metrics import Metrics

log = logging.getLogger(__name__)


class InsertFailed(Exception):
    """The INSERT holding the request's rows failed; none of them were stored."""


class ShuttingDown(Exception):
    """The server is stopping and takes no new rows."""


class QueueFull(Exception):
    """More rows wait than the queue bound allows."""


@dataclass
class Batch:
    parts: list[bytes] = field(default_factory=list)
    rows: int = 0
    requests: int = 0
    started: float = 0.0
    done: asyncio.Future[None] = field(default_factory=lambda: asyncio.get_running_loop().create_future())


class Batcher:
    def __init__(
        self,
        insert: Callable[[bytes], None],
        *,
        max_rows: int,
        max_delay_seconds: float,
        concurrency: int,
        max_queued_rows: int,
        metrics: Metrics,
    ):
        self._insert = insert
        self._max_rows = max_rows
        self._max_delay = max_delay_seconds
        self._max_queued_rows = max_queued_rows
        self._metrics = metrics
        self._slots = asyncio.Semaphore(concurrency)
        self._executor = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="insert")
        self._batches: list[Batch] = []  # the last one is open for more rows
        self._queued_rows = 0
        self._wakeup = asyncio.Event()
        self._in_flight: set[asyncio.Task[None]] = set()
        self._closing = False
        self._runner: asyncio.Task[None] | None = None

    @property
    def queued_rows(self) -> int:
        return self._queued_rows

    def start(self) -> None:
        self._runner = asyncio.create_task(self._run(), name="batcher")

    async def submit(self, body: bytes, rows: int) -> None:
        """Queue encoded rows and wait until they are inserted. Raises InsertFailed,
        ShuttingDown or QueueFull; on return the rows are in ClickHouse."""
        if self._closing:
            raise ShuttingDown("the server is shutting down")
        if self._queued_rows and self._queued_rows + rows > self._max_queued_rows:
            raise QueueFull(f"{self._queued_rows} rows are waiting to be inserted")
        batch = self._batches[-1] if self._batches else None
        if batch is None or (batch.rows and batch.rows + rows > self._max_rows):
            batch = Batch(started=time.monotonic())
            self._batches.append(batch)
        batch.parts.append(body)
        batch.rows += rows
        batch.requests += 1
        self._queued_rows += rows
        self._metrics.queue_rows.set(self._queued_rows)
        self._wakeup.set()
        # shield: a client that disconnects must not cancel the batch other requests share.
        await asyncio.shield(batch.done)

    async def close(self) -> None:
        """Stop taking rows, insert everything queued, wait for inserts in flight."""
        self._closing = True
        self._wakeup.set()
        if self._runner is not None:
            await self._runner
        if self._in_flight:
            await asyncio.gather(*self._in_flight, return_exceptions=True)
        self._executor.shutdown(wait=True)

    async def _run(self) -> None:
        while True:
            if not self._batches:
                if self._closing:
                    return
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            await self._wait_for_more_rows()
            await self._slots.acquire()
            batch = self._batches.pop(0)
            self._queued_rows -= batch.rows
            self._metrics.queue_rows.set(self._queued_rows)
            task = asyncio.create_task(self._send(batch))
            self._in_flight.add(task)
            task.add_done_callback(self._in_flight.discard)

    async def _wait_for_more_rows(self) -> None:
        first = self._batches[0]
        if self._max_delay <= 0 or self._closing or len(self._batches) > 1 or first.rows >= self._max_rows:
            return
        remaining = first.started + self._max_delay - time.monotonic()
        while remaining > 0 and len(self._batches) == 1 and first.rows < self._max_rows and not self._closing:
            self._wakeup.clear()
            try:
                await asyncio.wait_for(self._wakeup.wait(), remaining)
            except TimeoutError:
                return
            remaining = first.started + self._max_delay - time.monotonic()

    async def _send(self, batch: Batch) -> None:
        loop = asyncio.get_running_loop()
        body = b"".join(batch.parts)
        started = time.perf_counter()
        try:
            await loop.run_in_executor(self._executor, self._insert, body)
        except ClickHouseError as exc:  # ClickHouse refused: fails exactly this batch, 503 to each request
            self._metrics.insert_failures.inc()
            log.warning("insert of %d rows from %d requests failed: %s", batch.rows, batch.requests, exc)
            batch.done.set_exception(InsertFailed(first_line(exc)))
            batch.done.exception()  # mark it retrieved: its clients may all have gone away
        except Exception as exc:  # a bug: each request of the batch gets it, and the one handler logs it
            batch.done.set_exception(exc)
            batch.done.exception()
        else:
            self._metrics.insert_seconds.observe(time.perf_counter() - started)
            self._metrics.batch_rows.observe(batch.rows)
            batch.done.set_result(None)
        finally:
            self._slots.release()
