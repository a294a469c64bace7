"""Everything the routes use, built once from Settings, opened at start and closed at stop.

`Services.open()` migrates the schema and opens, in order: the query client (reports,
readiness), the two read-only query services (the console, `/clickhouse/`), the visitors'
daily salts (refreshed every VISITOR_SALT_REFRESH_SECONDS) and the ingest pipeline (the
write-ahead log and its consumer, or the batcher). `close()` takes them down in
the reverse order. Handlers reach them with `server.state.services(request)`, typed.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

from clickhouse_connect.driver.client import Client
from clickhouse_connect.driver.exceptions import ClickHouseError

from server.config import Settings
from server.data.erase import QUIESCE_TIMEOUT_SECONDS, erase_user, pending_erasures
from server.http.auth import Keys
from server.http.bodies import BodyDeadlines
from server.http.errors import Unavailable, first_line
from server.ingest.enrich import Enricher
from server.ingest.pipeline import Pipeline
from server.ingest.rate_limit import RateLimiter
from server.ingest.routes import Ingest
from server.ingest.validate import Limits
from server.ingest.visitors import Visitors
from server.ingest.writer import EventWriter
from server.metrics import Metrics
from server.people.job import StitchJob
from server.query import clickhouse_http, console
from server.query.service import QueryService
from server.reports import configured, rollup_job, rollups, stored_rows
from server.reports.cache import DayCache
from server.reports.params import ReportRange
from server.store import db

log = logging.getLogger(__name__)

# Tomorrow's salt is made ahead, so this only bounds how long after midnight yesterday's is deleted.
VISITOR_SALT_REFRESH_SECONDS = 600
# Report queries at once: daily's four go two at a time. Peak RSS at 10 M demo events after every
# report computed once: 1 client 489 MB, 2: 500 MB, 4: 531 MB.
REPORT_CLIENTS = 2
# The engine compiles an expression (LLVM) the third time it sees it: the report queries are
# small and many, so that made a server's 4th request of a report 2-4x slower (day of active
# users at 10 M: 19 ms, 87 ms the 4th time) and gave nothing after (same times without it).
NO_JIT = {"compile_expressions": 0, "compile_aggregate_expressions": 0, "compile_sort_description": 0}
# The embedded engine's allocator (jemalloc) keeps the memory a query freed for reuse and gives it
# back to the system only seconds later, so reports run one after another held more and more (at
# 10 M demo events, eight reports after a load: 449 -> 507 MB, the anonymous part 193 -> 248 MB).
# SYSTEM JEMALLOC PURGE gives it back (~5 ms for 60 MB, off the request path) once the process's
# RSS is over MEMORY_TRIM_ABOVE_MB (470): looked at after every report request and every TRIM_SECONDS (ingest,
# the rollup job, client SQL). Not below it: the next queries fault the pages in again (at 10 M
# demo events, purged over 440 MB: the funnel 187 -> 213 ms, reports from `events` up to 1.5x
# slower; over 470 MB no slower than never; the bench's peak 479-497 MB with 440, 480-488 with 470).
TRIM_SECONDS = 1.0
# The rollup job's first round comes this long after start (not in the way of a start's own work).
ROLLUP_FIRST_DELAY_SECONDS = 2.0
# At stop, how long a running round of the rollup job may take to notice (one report key's time).
STOP_ROLLUP_TIMEOUT_SECONDS = 30.0
# How often the rollup job deletes the per-user rows of stored days no marker names any more.
CLEANUP_SECONDS = 3600.0


def _rss_mb() -> float:
    """This process's resident memory (Linux); infinite where /proc does not say."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("inf")


def _log_unexpected_end(task: asyncio.Task[None]) -> None:
    """A background task that ended by an error it did not handle: logged when it happens, not
    when the task is collected."""
    if not task.cancelled() and task.exception() is not None:
        log.error("background task %s stopped", task.get_name(), exc_info=task.exception())


@dataclass
class Services:
    settings: Settings
    metrics: Metrics
    keys: Keys
    # Set by open():
    query_client: Client = field(init=False)
    report_clients: db.ClientPool = field(init=False)
    stored_days: rollups.StoredDays = field(init=False)
    report_cache: DayCache = field(init=False)
    console: QueryService = field(init=False)
    clickhouse_queries: QueryService = field(init=False)
    pipeline: Pipeline = field(init=False)
    ingest: Ingest = field(init=False)
    visitors: Visitors = field(init=False)
    _refresher: asyncio.Task[None] | None = field(init=False, default=None)
    _rollup_job: asyncio.Task[None] | None = field(init=False, default=None)
    stitch_job: StitchJob | None = field(init=False, default=None)
    _stitcher: asyncio.Task[None] | None = field(init=False, default=None)
    _rollup_round: threading.Lock = field(init=False, default_factory=threading.Lock)  # held by a round
    _stopping: threading.Event = field(init=False, default_factory=threading.Event)
    # Monotonic time of the job's last cleanup: the first comes CLEANUP_SECONDS after start, not in
    # the first round (`seed-demo` and `analytics-api rollups` clean up after their round).
    _cleaned: float = field(init=False, default_factory=time.monotonic)
    _trimmer: asyncio.Task[None] | None = field(init=False, default=None)
    _resumer: asyncio.Task[None] | None = field(init=False, default=None)
    _trim_wanted: asyncio.Event | None = field(init=False, default=None)
    body_deadlines: BodyDeadlines = field(default_factory=BodyDeadlines)
    # The engine process of a group (server/process/group.py): the HTTP workers' logs it inserts.
    worker_dirs: list[Path] = field(default_factory=list)
    _clients: list[Client] = field(init=False, default_factory=list)

    async def open(self) -> None:
        settings = self.settings
        applied = await asyncio.to_thread(db.migrate, settings)
        if applied:
            log.info("migrations applied: %s", ", ".join(applied))
        self.query_client = self._connect()
        # Reports run for clients too: the same time and memory limits as client SQL; several
        # clients so that a report's queries run in parallel.
        limits: dict[str, Any] = {"max_execution_time": settings.sql_timeout_seconds,
                                  "max_memory_usage": settings.sql_max_memory_bytes, **NO_JIT}
        self.report_clients = db.ClientPool(lambda: self._connect(limits), REPORT_CLIENTS)
        self.stored_days = rollups.StoredDays(settings.zones)
        self.report_cache = DayCache(self.stored_days, self.report_clients.spare)

        def readonly_session(client_settings: dict[str, Any]) -> Client:
            return db.connect(settings, client_settings=client_settings)

        self.console = QueryService(readonly_session, console.console_limits(settings), settings.sql_concurrency)
        self.clickhouse_queries = QueryService(readonly_session, clickhouse_http.http_limits(settings),
                                               settings.sql_concurrency)
        # The salts' refresh (every 10 min) and the activities' inserts (seed 003's rare clients)
        # share the query client with /readyz: each client opened costs ~7 ms at start.
        self.visitors = Visitors(self.query_client)
        await asyncio.to_thread(self.visitors.refresh)
        self._refresher = asyncio.create_task(self._refresh_salts())
        self._refresher.add_done_callback(_log_unexpected_end)
        self.pipeline = Pipeline(settings, self.metrics, self.worker_dirs)
        self.pipeline.open()
        self.ingest = Ingest(
            settings=settings,
            limits=Limits.from_settings(settings),
            sink=self.pipeline.sink,
            activity_writer=EventWriter([self.query_client], "activities"),
            metrics=self.metrics,
            keys=self.keys,
            dedup=self.pipeline.dedup(),
            enricher=Enricher(self.visitors, settings.max_string_length),
            logged_ids=self.pipeline.logged_ids,
            limiter=RateLimiter.from_settings(settings),
        )
        self._resumer = asyncio.create_task(self._resume_erasures())
        self._resumer.add_done_callback(_log_unexpected_end)
        if settings.stitch_interval_seconds and settings.embedded:  # see STITCH_INTERVAL_SECONDS
            self.stitch_job = StitchJob(settings, self.metrics, self.pipeline, self._connect)
            self._stitcher = asyncio.create_task(self.stitch_job.run())
            self._stitcher.add_done_callback(_log_unexpected_end)
        if settings.rollup_interval_seconds:
            self._rollup_job = asyncio.create_task(self._run_rollups())
            self._rollup_job.add_done_callback(_log_unexpected_end)
        if settings.embedded:
            self._trim_wanted = asyncio.Event()
            self._trimmer = asyncio.create_task(self._trim_memory())
            self._trimmer.add_done_callback(_log_unexpected_end)

    def memory_freed(self) -> None:
        """A report request has ended: the memory its queries freed is given back soon if the
        process is large (MEMORY_TRIM_ABOVE_MB, see TRIM_SECONDS)."""
        if self._trim_wanted is not None:
            self._trim_wanted.set()

    async def _trim_memory(self) -> None:
        assert self._trim_wanted is not None
        while True:
            try:
                await asyncio.wait_for(self._trim_wanted.wait(), TRIM_SECONDS)
            except TimeoutError:
                pass
            self._trim_wanted.clear()
            if _rss_mb() < self.settings.memory_trim_above_mb:
                continue
            try:
                await asyncio.to_thread(self.query_client.command, "SYSTEM JEMALLOC PURGE")
            except ClickHouseError as exc:  # an engine built without jemalloc: nothing to give back this way
                log.warning("memory is not given back after queries: %s", first_line(exc))
                return
            self.metrics.memory_purges.inc()

    async def _resume_erasures(self) -> None:
        """Erasures a crash cut short are finished (server/data/erase.py), once the log's consumer
        has inserted what it held (the user's events among them), off the start's path."""
        try:
            # The query client for the look (one query at every start); a client of its own only
            # when there is an erasure to finish (its mutations outlast the report clients' limits).
            pending = await asyncio.to_thread(pending_erasures, self.query_client)
            if not pending:
                return
            client = await asyncio.to_thread(self._connect)
            async with self.pipeline.quiesced(QUIESCE_TIMEOUT_SECONDS):
                for user_id, app_id in pending:
                    erased = await asyncio.to_thread(erase_user, client, user_id, app_id)
                    log.info("an erasure cut short is finished: %s", erased.body())
        except (ClickHouseError, Unavailable) as exc:  # asked again, the erasure finishes it
            log.error("could not finish the erasures a crash cut short: %s", first_line(exc))

    async def _refresh_salts(self) -> None:
        while True:
            await asyncio.sleep(VISITOR_SALT_REFRESH_SECONDS)
            try:
                await asyncio.to_thread(self.visitors.refresh)
            except (ClickHouseError, Unavailable) as exc:  # the salts in memory go on; the next round tries again
                log.error("could not refresh the visitors' daily salts: %s", first_line(exc))

    async def _run_rollups(self) -> None:
        """The rollup job (server/reports/rollups.py): a first round ROLLUP_FIRST_DELAY_SECONDS
        after start (sooner at a shorter interval), then every ROLLUP_INTERVAL_SECONDS, on a
        report client (the reports' time and memory limits; never more report queries at once
        than REPORT_CLIENTS)."""
        delay = min(ROLLUP_FIRST_DELAY_SECONDS, self.settings.rollup_interval_seconds)
        while True:
            await asyncio.sleep(delay)
            delay = self.settings.rollup_interval_seconds
            try:
                done = await asyncio.to_thread(self._rollups_once)
            except ClickHouseError as exc:  # the reports compute what is not stored; the next round tries again
                log.error("the rollup job failed: %s", first_line(exc))
                continue
            self.metrics.rollup_days_stored.inc(done.days)
            self.metrics.rollup_last_success.set_to_current_time()
            if done.days or done.restamped:
                log.info("rollup job: %d days stored, %d stamped again", done.days, done.restamped)

    def _rollups_once(self) -> rollup_job.Refreshed:
        """A round of the job; on one node (not a cluster), every CLEANUP_SECONDS, the rows of
        stored days no marker names any more are deleted (~0.6 s at 10 M demo events)."""
        with self._rollup_round, self.report_clients.client() as client:
            done = rollup_job.refresh(client, self.settings.zones, self.settings.rollup_days,
                                   merge=not self.settings.clickhouse_cluster, stopping=self._stopping.is_set,
                                   memory=self.stored_days, more=self.stored_reports())
            if not self.settings.clickhouse_cluster and time.monotonic() - self._cleaned > CLEANUP_SECONDS:
                stored_rows.drop_unreferenced(client)
                self._cleaned = time.monotonic()
            return done

    def stored_reports(self) -> dict[str, Callable[[Client, ReportRange], dict[date, Any]]]:
        """The configured funnels' and breakdowns' days, as reports of the rollup job."""
        return configured.stored_reports(self.settings)

    def _connect(self, client_settings: dict[str, Any] | None = None) -> Client:
        client = db.connect(self.settings, client_settings=client_settings)
        self._clients.append(client)
        return client

    async def close(self) -> None:
        for task in (self._refresher, self._rollup_job, self._trimmer, self._resumer, self._stitcher):
            if task is not None:
                task.cancel()
        if self.stitch_job is not None:
            await self.stitch_job.close()
        # A round of the rollup job runs on in its thread after the task is cancelled: it is told
        # to stop and waited for (it ends before its next report key) before the clients close.
        self._stopping.set()
        if await asyncio.to_thread(self._rollup_round.acquire, True, STOP_ROLLUP_TIMEOUT_SECONDS):
            self._rollup_round.release()
        await self.body_deadlines.close()
        await self.pipeline.close()
        self.clickhouse_queries.close()
        self.console.close()
        for client in self._clients:
            client.close()
        self.metrics.close()

