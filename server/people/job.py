"""The stitch job in the server: a round (server/people/stitch.py) every STITCH_INTERVAL_SECONDS,
the moves with the log's consumer paused (nothing of a moved id arrives in between), on a client
of its own (a move's mutations outlast the reports' time limit)."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TypeVar

from clickhouse_connect.driver.client import Client
from clickhouse_connect.driver.exceptions import ClickHouseError

from server.config import Settings
from server.data.erase import finish_removal
from server.http.errors import Unavailable, first_line
from server.ingest.pipeline import Pipeline
from server.metrics import Metrics
from server.people import stitch

QUIESCE_TIMEOUT_SECONDS = 60.0
# A round looks at what was inserted since the last one began, less this: an insert that had begun
# then (its rows stamped before) and became visible after.
MARGIN_SECONDS = 60.0
FULL_LOOK_SECONDS = 3600.0  # and at everything this often (and first): what a window can miss
STOP_TIMEOUT_SECONDS = 30.0  # at stop, how long a move under way may take to finish

log = logging.getLogger(__name__)
T = TypeVar("T")


def db_now(client: Client) -> datetime:
    """The database's clock (rows' `inserted` come from it)."""
    found: datetime = client.query("SELECT now64(3, 'UTC')").result_rows[0][0]
    return found.replace(tzinfo=UTC) if found.tzinfo is None else found


@dataclass
class StitchJob:
    settings: Settings
    metrics: Metrics
    pipeline: Pipeline
    connect: Callable[[], Client]
    _client: Client | None = field(init=False, default=None)
    _since: datetime = field(init=False, default=stitch.EVERYTHING)  # the last round's start, less a margin
    _full_at: float = field(init=False, default=0.0)  # monotonic time of the last full look
    _round: threading.Lock = field(init=False, default_factory=threading.Lock)  # held by a round's thread work

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.settings.stitch_interval_seconds)
            try:
                await self.round()
            except (ClickHouseError, Unavailable) as exc:  # nothing is half-done for long: the next round finishes it
                log.error("the stitch job failed: %s", first_line(exc))

    async def round(self) -> stitch.Stitched:
        """Decide the joins inserted since the last round; when ids have events to move, move them
        with the pipeline quiesced. The first round, and one an hour, look at everything."""
        full = self._since == stitch.EVERYTHING or time.monotonic() - self._full_at > FULL_LOOK_SECONDS
        began = await asyncio.to_thread(self._locked, lambda client: db_now(client))
        since = stitch.EVERYTHING if full else self._since
        decided = await asyncio.to_thread(self._locked, lambda client: stitch.decide(
            client, self.settings.identity_merge_identified, since))
        for outcome, count in decided.outcomes.items():
            self.metrics.identity_merges.labels(outcome).inc(count)
        moved = 0
        if await asyncio.to_thread(self._locked, lambda client: bool(stitch.movers(client, since, decided.changed, 1))):
            async with self.pipeline.quiesced(QUIESCE_TIMEOUT_SECONDS):  # only while the copies and deletes are made
                found = await asyncio.to_thread(self._locked, lambda client: stitch.movers(client, since, decided.changed))
                removal = await asyncio.to_thread(self._locked, lambda client: stitch.begin_move(client, found))
            if removal is not None:
                await asyncio.to_thread(self._locked, lambda client: finish_removal(client, removal))
            moved = sum(len(pairs) for pairs in found.values())
            self.metrics.identity_ids_moved.inc(moved)
        if decided.complete:  # else the next round takes the joins this one left, from the same time
            self._since = began - timedelta(seconds=MARGIN_SECONDS)
        if full:
            self._full_at = time.monotonic()
        if decided.outcomes or moved:
            log.info("stitch job: joins decided %s, ids moved to their person %d", decided.outcomes, moved)
        return stitch.Stitched(decided.outcomes, moved)

    def _locked(self, work: Callable[[Client], T]) -> T:
        with self._round:
            if self._client is None:
                self._client = self.connect()
            return work(self._client)

    async def close(self) -> None:
        """Wait for a round's work under way (it runs on in its thread after its task is cancelled)."""
        if await asyncio.to_thread(self._round.acquire, True, STOP_TIMEOUT_SECONDS):
            self._round.release()
