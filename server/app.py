"""Assembly: the routes, the middleware, and the lifespan that owns ClickHouse clients and the batcher.

Start-up migrates the schema and starts the batcher. Shutdown (SIGTERM/SIGINT through uvicorn,
after in-flight requests finish) drains the batcher and then flushes the Buffer table, because
rows still held in a Buffer table are lost when an embedded engine's process exits.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from pathlib import Path
from typing import Any, AsyncIterator

from clickhouse_connect.driver.client import Client

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from server import clickhouse_http, db, openapi, sql, web
from server.auth import Keys
from server.config import Settings
from server.errors import first_line, install_error_handlers
from server.ingest import routes as ingest_routes
from server.ingest.batcher import Batcher
from server.ingest.dedup import Dedup, stored_ids
from server.ingest.replay import Replayer, replay_spool
from server.ingest.spool import Spool
from server.ingest.routes import Ingest
from server.ingest.validate import Limits
from server.ingest.writer import EventWriter
from server.reports import routes as report_routes
from server.metrics import Metrics, MetricsMiddleware, metrics_endpoint
from server.openapi import openapi_endpoint
from server.query_service import QueryService
from server.responses import json_response

log = logging.getLogger(__name__)


async def healthz(request: Request) -> Response:
    return json_response({"status": "ok"})


async def readyz(request: Request) -> Response:
    state = request.app.state
    try:
        pending = await asyncio.to_thread(db.pending_migrations, state.query_client)
    except Exception as exc:
        return json_response({"status": "unavailable", "reason": f"ClickHouse does not answer: {exc}"}, 503)
    if pending:
        names = [f"{m.version:03d}_{m.name}" for m in pending]
        return json_response({"status": "unavailable", "reason": "migrations pending", "pending": names}, 503)
    records, size = state.ingest.spool.depth()
    return json_response({"status": "ready", "queued_rows": state.ingest.batcher.queued_rows,
                          "spool": {"records": records, "bytes": size}})


def create_app_from_env() -> Starlette:
    """The factory each uvicorn worker calls when WEB_CONCURRENCY > 1 (settings from the environment)."""
    from server.logs import configure_logging

    settings = Settings.from_env()
    configure_logging(settings.log_level)
    return create_app(settings)


def create_app(settings: Settings) -> Starlette:
    metrics = Metrics()
    keys = Keys.parse(settings.write_keys, settings.read_token)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        applied = await asyncio.to_thread(db.migrate, settings)
        if applied:
            log.info("migrations applied: %s", ", ".join(applied))
        writer_clients = [
            db.connect(settings, client_settings=db.INSERT_SETTINGS) for _ in range(settings.insert_concurrency)
        ]
        activity_client = db.connect(settings)
        query_client = db.connect(settings)
        dedup_client = db.connect(settings)
        replay_client = db.connect(settings, client_settings=db.INSERT_SETTINGS)
        def readonly_session(client_settings: dict[str, Any]) -> Client:
            return db.connect(settings, client_settings=client_settings)

        app.state.console = QueryService(readonly_session, sql.console_limits(settings), settings.sql_concurrency)
        app.state.clickhouse_queries = QueryService(
            readonly_session, clickhouse_http.http_limits(settings), settings.sql_concurrency)
        spool = Spool(Path(settings.spool_dir), settings.spool_max_bytes)
        batcher = Batcher(
            EventWriter(writer_clients, settings.insert_table).insert,
            max_rows=settings.batch_max_rows,
            max_delay_seconds=settings.batch_max_delay_ms / 1000,
            concurrency=settings.insert_concurrency,
            max_queued_rows=settings.queue_max_rows,
            metrics=metrics,
        )
        batcher.start()
        app.state.query_client = query_client
        app.state.ingest = Ingest(
            settings=settings,
            limits=Limits.from_settings(settings),
            batcher=batcher,
            activity_writer=EventWriter([activity_client], "activities"),
            metrics=metrics,
            keys=keys,
            dedup=Dedup(lambda ids: stored_ids(dedup_client, ids)),
            spool=spool,
        )
        replayer = asyncio.create_task(
            replay_spool(spool, Replayer(replay_client, settings.insert_table, metrics), metrics))
        if keys.open_for_writes:
            log.warning("open for writes: no WRITE_KEYS configured, anyone who reaches the server can send events")
        if keys.open_for_reads:
            log.warning("open for reads: no READ_TOKEN configured, anyone who reaches the server can read reports")
        target = "embedded chDB" if settings.embedded else "ClickHouse server"
        log.info("ready: %s, database %s, inserting into %s", target, settings.database, settings.insert_table)
        try:
            yield
        finally:
            replayer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await replayer
            await batcher.close()
            try:
                await asyncio.to_thread(db.flush_buffer_table, query_client)
            except Exception as exc:  # ClickHouse refuses (an outage): what the Buffer holds is at risk
                log.error("could not flush events_buffer into events at stop: %s", first_line(exc))
            for client in [*writer_clients, activity_client, query_client, dedup_client, replay_client]:
                client.close()
            app.state.console.close()
            app.state.clickhouse_queries.close()
            metrics.close()
            log.info("stopped: batcher drained and events_buffer flushed into events")

    app = Starlette(
        routes=[
            *ingest_routes.routes(),
            *report_routes.routes(),
            *sql.routes(),
            *clickhouse_http.routes(),
            *web.routes(),
            Route("/healthz", healthz),
            Route("/readyz", readyz),
            Route("/metrics", metrics_endpoint),
            Route("/openapi.json", openapi_endpoint),
        ],
        middleware=[Middleware(MetricsMiddleware, metrics=metrics)],
        lifespan=lifespan,
    )
    app.state.metrics = metrics
    app.state.keys = keys
    app.state.openapi = openapi.document()
    app.state.settings = settings
    install_error_handlers(app)
    return app
