"""The stitch job in the server: a round (server/people/stitch.py) every STITCH_INTERVAL_SECONDS,
the moves with the log's consumer paused (nothing of a moved id arrives in between), on a client
of its own (a move's mutations outlast the reports' time limit)."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

from clickhouse_connect.driver.client import Client
from clickhouse_connect.driver.exceptions import ClickHouseError

from server.config import Settings
from server.http.errors import Unavailable, first_line
from server.ingest.pipeline import Pipeline
from server.metrics import Metrics
from server.people import stitch

QUIESCE_TIMEOUT_SECONDS = 60.0
STOP_TIMEOUT_SECONDS = 30.0  # at stop, how long a move under way may take to finish

log = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass
class StitchJob:
    settings: Settings
    metrics: Metrics
    pipeline: Pipeline
    connect: Callable[[], Client]
    _client: Client | None = field(init=False, default=None)
    _round: threading.Lock = field(init=False, default_factory=threading.Lock)  # held by a round's thread work

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.settings.stitch_interval_seconds)
            try:
                await self.round()
            except (ClickHouseError, Unavailable) as exc:  # nothing is half-done for long: the next round finishes it
                log.error("the stitch job failed: %s", first_line(exc))

    async def round(self) -> stitch.Stitched:
        """Decide the new joins; when ids have events to move, move them with the pipeline quiesced."""
        decided = await asyncio.to_thread(self._locked, self._decide)
        for outcome, count in decided.items():
            self.metrics.identity_merges.labels(outcome).inc(count)
        moved = 0
        if await asyncio.to_thread(self._locked, lambda client: bool(stitch.movers(client, limit=1))):
            async with self.pipeline.quiesced(QUIESCE_TIMEOUT_SECONDS):
                moved = await asyncio.to_thread(self._locked, lambda client: stitch.move(client, stitch.movers(client)))
            self.metrics.identity_ids_moved.inc(moved)
        if decided or moved:
            log.info("stitch job: joins decided %s, ids moved to their person %d", decided, moved)
        return stitch.Stitched(decided, moved)

    def _decide(self, client: Client) -> dict[str, int]:
        return stitch.decide(client, self.settings.identity_merge_identified)

    def _locked(self, work: Callable[[Client], T]) -> T:
        with self._round:
            if self._client is None:
                self._client = self.connect()
            return work(self._client)

    async def close(self) -> None:
        """Wait for a round's work under way (it runs on in its thread after its task is cancelled)."""
        if await asyncio.to_thread(self._round.acquire, True, STOP_TIMEOUT_SECONDS):
            self._round.release()
