"""Assembly: the routes and the middleware around one `Services` (server/process/services.py), opened by
the lifespan.

Start-up migrates the schema and opens the services. Shutdown (SIGTERM/SIGINT through uvicorn,
after in-flight requests finish) closes them: the log is synced and its consumer inserts what it
can in STOP_TIMEOUT_SECONDS (ACK=log), or the batcher drains and the Buffer table is flushed
(ACK=insert).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
from collections.abc import AsyncIterator
from typing import Any

from clickhouse_connect.driver.client import Client
from clickhouse_connect.driver.exceptions import ClickHouseError
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from server.config import Settings
from server.data import backup, erase, export
from server.data.backup import BackupServices
from server.data.erase import ErasureServices
from server.data.export import ExportServices
from server.http.auth import Keys, KeyServices
from server.http.bodies import BodyServices
from server.http.cors import Cors
from server.http.errors import first_line, install_error_handlers
from server.http.openapi import openapi_endpoint
from server.http.responses import json_response
from server.ingest import routes as ingest_routes
from server.ingest import useragent, worker_logs
from server.ingest.routes import IngestServices
from server.metrics import Metrics, MetricsMiddleware
from server.process import engine_routes
from server.process.services import Services
from server.query import clickhouse_http, console
from server.query.clickhouse_http import ClickHouseHttpServices
from server.query.console import ConsoleServices
from server.reports import routes as report_routes
from server.reports.routes import ReportServices
from server.sdks import routes as sdk_routes
from server.store import db
from server.web import routes as web_routes

log = logging.getLogger(__name__)


async def healthz(request: Request) -> Response:
    return json_response({"status": "ok"})


async def readyz(request: Request) -> Response:
    found: Services = request.app.state.services
    try:
        pending = await asyncio.to_thread(db.pending_migrations, found.query_client)
    except ClickHouseError as exc:
        return json_response({"status": "unavailable", "reason": f"ClickHouse does not answer: {first_line(exc)}"}, 503)
    if pending:
        names = [f"{m.version:03d}_{m.name}" for m in pending]
        return json_response({"status": "unavailable", "reason": "migrations pending", "pending": names}, 503)
    pipeline = found.pipeline
    if pipeline.wal is not None and pipeline.wal.failure and not await asyncio.to_thread(pipeline.wal.probe):
        return json_response({"status": "unavailable", "reason": pipeline.wal.failure, **pipeline.status()}, 503)
    return json_response({"status": "ready", **pipeline.status()})


class AnalyticsApp(Starlette):
    """Starlette, with CORS on the ingest routes (server/http/cors.py) and `POST /events` answered
    before its middleware stack (EventsFastPath)."""

    def __init__(self, fast_path: ingest_routes.EventsFastPath, cors: Cors, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.fast_path = fast_path
        self.cors = cors

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.cors.applies(scope):
            with_cors = await self.cors(scope, receive, send)
            if with_cors is None:  # a preflight, answered
                return
            send = with_cors
        if self.fast_path.takes(scope):
            scope["app"] = self  # as Starlette sets it: handlers reach their services through it
            await self.fast_path(scope, receive, send)
            return
        await super().__call__(scope, receive, send)


def assemble(opened: Services, routes: list[Route], lifespan: Any, count_requests: bool = True) -> AnalyticsApp:
    """The app around its services: the fast path and CORS first, then the routes, the requests'
    metrics (unless another process counts them), the one error handler."""
    metrics = opened.metrics
    app = AnalyticsApp(
        ingest_routes.EventsFastPath(metrics),
        Cors(opened.settings.cors_origins),
        routes=routes,
        middleware=[Middleware(MetricsMiddleware, metrics=metrics)] if count_requests else [],
        lifespan=lifespan,
    )
    app.state.services = opened
    # The handlers read app.state.services through their rooms' Protocols (server/http/state.py):
    # this line has mypy check that the services give every room what it asks.
    _rooms: tuple[KeyServices, BodyServices, IngestServices, ReportServices, ConsoleServices, ClickHouseHttpServices,
                  ErasureServices, ExportServices, BackupServices] = (opened,) * 9
    install_error_handlers(app)
    return app


def create_app_from_env() -> Starlette:
    """The factory each uvicorn worker calls when WEB_CONCURRENCY > 1 (settings from the environment)."""
    from server.logs import configure_logging

    settings = Settings.from_env()
    configure_logging(settings.log_level)
    return create_app(settings, freeze_after_start=True)


# The collector's thresholds once the server runs: a young pass every 50,000 net new container
# objects (Python's default: 700), a full pass every 20 × 100 of those. Requests make few
# cycles (refcounting frees their objects), so passes found little; at 700 they ran ~20 times a
# second under load, and the full ones set the p99 (make bench, one event a request: 13,569 ->
# 14,513 requests/s, p99 19.9 -> 11.2 ms, three runs each).
GC_THRESHOLDS = (50_000, 20, 100)


def settle_collector() -> None:
    """After start-up (`serve` and a group's workers, not tests): what start-up made lives as long
    as the process, so it is frozen out of the collector's passes (~68k tracked objects, ~22 ms a
    full pass), and the passes run less often (GC_THRESHOLDS)."""
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


def create_app(settings: Settings, freeze_after_start: bool = False, group_workers: int = 0,
               held: Client | None = None) -> Starlette:
    """The whole server in one process; or, with `group_workers`, the engine process of a group
    (server/process/group.py): it also inserts the logs of that many HTTP workers and answers their
    questions on /_engine/ (its socket is reachable by them only), and leaves the requests'
    metrics to them (each request it answers came through a worker, which counted it). `held`: a
    client opened before (`serve`'s preflight), closed once the app's own are open: the embedded
    engine then stays up instead of shutting down and starting again in between."""
    metrics = Metrics()
    opened = Services(settings, metrics, Keys.parse(settings.write_keys, settings.read_token))
    if settings.ack_mode == "log":  # a group's logs: its engine's, or what an earlier group left
        opened.worker_dirs = (worker_logs.prepare(settings.log_dir, group_workers) if group_workers
                              else worker_logs.existing(settings.log_dir))

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await opened.open()
        if not group_workers:  # a group's engine takes no events: its workers do (front.py)
            useragent.warm()  # once a process (~0.11 s): not in the time of its first event
        if held is not None:
            held.close()
        if opened.keys.open_for_writes:
            log.warning("open for writes: no WRITE_KEYS configured, anyone who reaches the server can send events")
        if opened.keys.open_for_reads:
            log.warning("open for reads: no READ_TOKEN configured, anyone who reaches the server can read reports")
        target = "embedded chDB" if settings.embedded else "ClickHouse server"
        acknowledged = (f"after fdatasync of the log in {settings.log_dir}" if opened.pipeline.mode == "log"
                        else "after the INSERT into events_buffer")
        log.info("ready: %s, database %s, events acknowledged %s", target, settings.database, acknowledged)
        if freeze_after_start:
            settle_collector()
        try:
            yield
        finally:
            await opened.close()
            log.info("stopped: %s", "the log is synced; what its consumer did not insert stays in it"
                     if opened.pipeline.mode == "log" else "batcher drained and events_buffer flushed into events")

    routes = [
        *ingest_routes.routes(),
        *sdk_routes.routes(),
        *report_routes.routes(),
        *console.routes(),
        *export.routes(),
        *erase.routes(),
        *backup.routes(),
        *clickhouse_http.routes(),
        *web_routes.routes(),
        Route("/healthz", healthz),
        Route("/readyz", readyz),
        Route("/metrics", metrics.endpoint),
        Route("/openapi.json", openapi_endpoint),
        *(engine_routes.routes() if group_workers else []),
    ]
    app = assemble(opened, routes, lifespan, count_requests=not group_workers)
    return app
