"""An HTTP worker of a process group on the embedded engine (server/process/group.py: WEB_CONCURRENCY > 1,
or `auto` on 2 or more cores).

It takes events the way one process does — parse, validate, enrich, deduplicate — and
acknowledges them after the fdatasync of its own write-ahead log (`LOG_DIR/workers/<k>`,
server/ingest/worker_logs.py). It never opens the engine: the engine process inserts the log,
answers every other request (reports, SQL, /clickhouse/, exports, the page) through this
worker's proxy over a unix socket, and answers the two questions a worker has for it: which of
these event_ids are stored (in ClickHouse or in another worker's log), and the visitors' salts.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import date

import httpx
from starlette.applications import Starlette
from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from server.config import Settings
from server.http.auth import Keys
from server.http.errors import Unavailable
from server.http.responses import json_response
from server.ingest import routes as ingest_routes
from server.ingest import useragent, worker_logs
from server.ingest.committer import GroupCommit
from server.ingest.consumer import Checkpoint
from server.ingest.dedup import Dedup, LoggedIds, LookupFailed
from server.ingest.enrich import Enricher
from server.ingest.rate_limit import RateLimiter
from server.ingest.validate import Limits
from server.ingest.visitors import Visitors, utc_today
from server.ingest.wal import Position, WriteAheadLog
from server.metrics import Metrics
from server.process.app import assemble, healthz, settle_collector
from server.process.lifeline import die_with, serve_pid
from server.process.services import Services
from server.sdks import routes as sdk_routes

log = logging.getLogger(__name__)

ENGINE_SOCKET_ENV = "ANALYTICS_API_ENGINE_SOCKET"  # set by `serve` for its workers; not a setting
PRUNE_SECONDS = 1.0
ENGINE_WAIT_SECONDS = 120  # as long as the engine may take to start (server/process/group.py)
# Not passed on by the proxy (hop-by-hop, or recomputed).
HOP_HEADERS = frozenset({"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade", "host",
                         "proxy-connection", "content-length"})


class EngineClient:
    """The engine process over its unix socket."""

    def __init__(self, socket_path: str) -> None:
        self.socket_path = socket_path
        # A unix socket speaks no TLS: verify=False spares loading the CA bundle (~27 ms a transport).
        self.sync = httpx.Client(transport=httpx.HTTPTransport(uds=socket_path, verify=False), base_url="http://engine",
                                 timeout=10)
        self.proxy = httpx.AsyncClient(transport=httpx.AsyncHTTPTransport(uds=socket_path, verify=False),
                                       base_url="http://engine", timeout=httpx.Timeout(None, connect=5))

    def stored(self, ids: list[str]) -> set[str]:
        try:
            response = self.sync.post("/_engine/stored", json=ids)
            response.raise_for_status()
        except httpx.HTTPError as exc:
            raise LookupFailed(f"the engine process did not answer: {exc}") from None
        return set(response.json())

    def salts(self, today: date) -> dict[date, bytes]:
        try:
            response = self.sync.get("/_engine/salts", params={"today": today.isoformat()})
            response.raise_for_status()
        except httpx.HTTPError as exc:
            raise Unavailable(f"the engine process did not answer ({exc}); retry later") from None
        return {date.fromisoformat(day): bytes.fromhex(salt) for day, salt in response.json().items()}

    async def close(self) -> None:
        self.sync.close()
        await self.proxy.aclose()


class EngineVisitors(Visitors):
    """The visitors' daily salts, as the engine process keeps them (it makes and stores them)."""

    def __init__(self, engine: EngineClient) -> None:
        super().__init__(None)
        self._engine = engine

    def refresh(self, today: date | None = None) -> None:
        salts = self._engine.salts(today or utc_today())
        with self._lock:
            self._salts = salts


@dataclass
class FrontServices(Services):
    engine: EngineClient = field(init=False)
    wal: WriteAheadLog = field(init=False)
    committer: GroupCommit = field(init=False)
    logged_ids: LoggedIds = field(init=False)
    _pruner: asyncio.Task[None] | None = field(init=False, default=None)

    async def open(self) -> None:
        settings = self.settings
        self.engine = EngineClient(os.environ[ENGINE_SOCKET_ENV])
        self.wal = worker_logs.claim(settings.log_dir, settings.log_max_bytes)
        self.logged_ids = LoggedIds()
        self.logged_ids.add_from_log(self.wal, Position(0, 0))
        self.committer = GroupCommit(self.wal, self.metrics, lambda end: None)
        self.committer.start()
        visitors = EngineVisitors(self.engine)
        await self._first_salts(visitors)
        self.visitors = visitors
        self.ingest = ingest_routes.Ingest(
            settings=settings, limits=Limits.from_settings(settings), sink=self.committer, activity_writer=None,
            metrics=self.metrics, keys=self.keys, dedup=Dedup(self._stored),
            enricher=Enricher(visitors, settings.max_string_length), logged_ids=self.logged_ids,
            limiter=RateLimiter.from_settings(settings),
        )
        self._pruner = asyncio.create_task(self._prune())
        self._refresher = asyncio.create_task(self._refresh_salts())
        log.info("worker on the write-ahead log %s (the engine process inserts it)", self.wal.directory)

    async def _first_salts(self, visitors: EngineVisitors) -> None:
        """A worker (re)started while the engine process restarts waits for it, up to a bound."""
        deadline = time.monotonic() + ENGINE_WAIT_SECONDS
        while True:
            try:
                await asyncio.to_thread(visitors.refresh)
                return
            except Unavailable:
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.2)

    def _stored(self, ids: list[str]) -> set[str]:
        in_log = self.logged_ids.known(ids)
        rest = [event_id for event_id in ids if event_id not in in_log]
        return in_log | (self.engine.stored(rest) if rest else set())

    async def _prune(self) -> None:
        """Forget what the engine has inserted: the ids (its checkpoint in this log's directory)
        and the segments it deleted (for LOG_MAX_BYTES)."""
        while True:
            await asyncio.sleep(PRUNE_SECONDS)
            checkpoint = Checkpoint.load(self.wal.directory / "checkpoint.json")
            if checkpoint is not None:
                self.logged_ids.consumed_through(checkpoint.next_position if checkpoint.done
                                                 else Position(checkpoint.segment, checkpoint.start))
            self.wal.forget_deleted()
            self.metrics.log_bytes.set(self.wal.unconsumed_bytes())

    async def close(self) -> None:
        for task in (self._pruner, self._refresher):
            if task is not None:
                task.cancel()
        await self.committer.close()
        self.wal.close()
        await self.engine.close()
        self.metrics.close()


async def readyz(request: Request) -> Response:
    front: FrontServices = request.app.state.services
    if front.wal.failure and not await asyncio.to_thread(front.wal.probe):
        return json_response({"status": "unavailable", "reason": front.wal.failure}, 503)
    try:
        engine = await front.engine.proxy.get("/readyz")
    except httpx.HTTPError:
        return json_response({"status": "unavailable", "reason": "the engine process is not answering"}, 503)
    body = engine.json()
    return json_response({**body, "worker_log_bytes": front.wal.unconsumed_bytes()}, engine.status_code)


async def proxy(request: Request) -> Response:
    """Any other request, answered by the engine process (streamed both ways as it comes)."""
    if request.url.path.startswith("/_engine/"):
        return json_response({"error": {"code": "not_found", "message": "no such path"}}, 404)
    front: FrontServices = request.app.state.services
    headers = [(name, value) for name, value in request.headers.raw if name.decode().lower() not in HOP_HEADERS]
    outgoing = front.engine.proxy.build_request(request.method, request.url.path, params=request.url.query,
                                                headers=headers, content=await request.body())
    try:
        answer = await front.engine.proxy.send(outgoing, stream=True)
    except httpx.HTTPError:
        return json_response({"error": {"code": "unavailable", "message": "the engine process is not answering "
                                        "(restarting?); retry later"}}, 503, {"Retry-After": "1"})
    passed = {name: value for name, value in answer.headers.multi_items() if name.lower() not in HOP_HEADERS}
    return StreamingResponse(answer.aiter_raw(), status_code=answer.status_code, headers=passed,
                             background=BackgroundTask(answer.aclose))


def create_front_app_from_env() -> Starlette:
    """The factory each uvicorn worker of a group calls (settings from the environment)."""
    from server.logs import configure_logging

    settings = Settings.from_env()
    configure_logging(settings.log_level)
    logging.getLogger("httpx").setLevel(logging.WARNING)  # a line per call to the engine otherwise
    if settings.web_concurrency > 1:  # a process uvicorn started for `serve`: it dies with it
        die_with(serve_pid())
    return create_front_app(settings)


def create_front_app(settings: Settings) -> Starlette:
    metrics = Metrics()
    front = FrontServices(settings, metrics, Keys.parse(settings.write_keys, settings.read_token))

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await front.open()
        useragent.warm()  # once a process (~0.11 s): not in the time of its first event
        settle_collector()
        try:
            yield
        finally:
            await front.close()

    methods = ["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"]
    return assemble(front, [
        *(route for route in ingest_routes.routes() if route.endpoint is not ingest_routes.post_activities),
        *sdk_routes.routes(),  # the peers' SDKs' events are taken here too, not proxied to the engine
        Route("/healthz", healthz),
        Route("/readyz", readyz),
        Route("/metrics", metrics.endpoint),
        Route("/{path:path}", proxy, methods=methods),
    ], lifespan)
