"""Prometheus metrics: one registry per app, so several apps (tests) never collide.

With PROMETHEUS_MULTIPROC_DIR set (`serve` sets it when WEB_CONCURRENCY > 1), prometheus-client
keeps every value in a file in that directory and `/metrics` reads them all: any worker answers
for the whole process group, not for itself.
"""

from __future__ import annotations

import os
import time

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest, multiprocess
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
BATCH_BUCKETS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000, 50000)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter("http_requests", "HTTP requests by route and status", ["route", "status"], registry=r)
        self.request_seconds = Histogram(
            "http_request_duration_seconds", "HTTP request latency by route", ["route"], buckets=LATENCY_BUCKETS, registry=r
        )
        self.events_accepted = Counter("events_accepted", "Events stored and acknowledged", registry=r)
        self.events_bot = Counter("events_bot", "Events stored flagged is_bot (left out of reports)", registry=r)
        self.events_rejected = Counter("events_rejected", "Events refused, by reason", ["reason"], registry=r)
        self.batch_rows = Histogram("batch_rows", "Rows per INSERT (group commit batch size)", buckets=BATCH_BUCKETS, registry=r)
        self.insert_seconds = Histogram("insert_duration_seconds", "Latency of one INSERT", buckets=LATENCY_BUCKETS, registry=r)
        self.insert_failures = Counter("insert_failures", "INSERTs that failed", registry=r)
        self.events_duplicate = Counter("events_duplicate", "Events not stored again: their event_id was stored", registry=r)
        self.events_inserted = Counter("events_inserted", "Events the log's consumer inserted into ClickHouse", registry=r)
        self.log_write_failures = Counter("log_write_failures", "Writes or syncs of the write-ahead log that failed",
                                          registry=r)
        self.log_sync_seconds = Histogram("log_sync_duration_seconds", "One group's write and fdatasync",
                                          buckets=LATENCY_BUCKETS, registry=r)
        self.log_group_records = Histogram("log_group_records", "Requests per fdatasync (group commit size)",
                                           buckets=BATCH_BUCKETS, registry=r)
        self.log_bytes = Gauge("log_bytes", "Bytes of the write-ahead log not yet inserted into ClickHouse", registry=r,
                               multiprocess_mode="livesum")
        # livesum: the rows queued in the workers alive now, summed.
        self.queue_rows = Gauge("batcher_queue_rows", "Rows waiting for an INSERT", registry=r,
                                multiprocess_mode="livesum")
        self.rollup_days_stored = Counter("rollup_days_stored", "Report days the rollup job computed and stored",
                                          registry=r)
        # mostrecent: in a group only the engine process runs the job.
        self.rollup_last_success = Gauge("rollup_last_success_timestamp_seconds",
                                         "When the rollup job last finished a round", registry=r,
                                         multiprocess_mode="mostrecent")
        self.identity_merges = Counter("identity_merges", "Identity joins the stitch job decided, by outcome "
                                       "(joined, refused: the anonymous side already identified, same)", ["outcome"],
                                       registry=r)
        self.identity_ids_moved = Counter("identity_ids_moved", "Ids whose events the stitch job moved to their person",
                                          registry=r)
        self.memory_purges = Counter("engine_memory_purges", "Times the embedded engine gave freed memory back "
                                     "to the system (SYSTEM JEMALLOC PURGE)", registry=r)
        self.multiprocess = bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))
        self._request_children: dict[tuple[str, int], tuple[Counter, Histogram]] = {}

    def observe_request(self, route: str, status: int, seconds: float) -> None:
        # labels() validates and locks on every call; the labelled children are kept instead.
        children = self._request_children.get((route, status))
        if children is None:
            children = (self.requests.labels(route, str(status)), self.request_seconds.labels(route))
            self._request_children[(route, status)] = children
        children[0].inc()
        children[1].observe(seconds)

    def render(self) -> Response:
        registry = self.registry
        if self.multiprocess:
            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    async def endpoint(self, request: Request) -> Response:
        """GET /metrics."""
        return self.render()

    def close(self) -> None:
        """A stopping worker: its live gauges leave the sums (its counters stay counted)."""
        if self.multiprocess:
            multiprocess.mark_process_dead(os.getpid())  # type: ignore[no-untyped-call]


class MetricsMiddleware:
    """Counts every request by route template (not raw path: bounded label values) and status."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_with_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_with_status)
        finally:
            route = scope.get("route")
            self.metrics.observe_request(getattr(route, "path", None) or "unmatched", status,
                                         time.perf_counter() - started)



