"""HTTP → parse → validate → log (or batch): the ingest routes, including every seed client's path.

Each handler reads the body within its limit, parses and validates it, hands the encoded rows
to the sink and answers 202 only once they are durable: fdatasync'd in the write-ahead log
(ACK=log, server/ingest/committer.py), or in the Buffer table (ACK=insert, server/ingest/batcher.py).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import dataclass
from typing import Any, Protocol

import orjson
from clickhouse_connect.driver.exceptions import ClickHouseError
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from server.config import Settings
from server.http.auth import Keys, check_apps, write_apps
from server.http.bodies import read_decoded_body
from server.http.errors import (
    INTERNAL_ERROR,
    ApiError,
    BadBody,
    BodyTooLarge,
    Unavailable,
    ValidationFailed,
    first_line,
    log_unexpected,
)
from server.http.headers import header
from server.http.responses import json_response
from server.http.state import services
from server.ingest.activities import validate_activities
from server.ingest.batcher import InsertFailed, QueueFull, ShuttingDown
from server.ingest.dedup import Dedup, LoggedIds
from server.ingest.enrich import Enricher, Sender
from server.ingest.parse import parse_body, parse_json
from server.ingest.pipeline import Sink
from server.ingest.rate_limit import RateLimiter
from server.ingest.validate import Limits, Row, validate_events
from server.ingest.wal import LogFull, LogWriteFailed
from server.ingest.writer import EventWriter, encode_rows
from server.metrics import Metrics


@dataclass
class Ingest:
    """What the ingest routes need, built once at start-up (see server/process/app.py)."""

    settings: Settings
    limits: Limits
    sink: Sink
    activity_writer: EventWriter | None  # None in a group's HTTP worker: the engine process takes activities
    metrics: Metrics
    keys: Keys
    dedup: Dedup
    enricher: Enricher
    logged_ids: LoggedIds | None  # ACK=log: ids in the log, not yet in ClickHouse
    limiter: RateLimiter

    def admit(self, request: Request, apps: frozenset[str] | None) -> None:
        """The request's rate limits (server/ingest/rate_limit.py): 429 past them."""
        client = request.scope.get("client")
        self.limiter.admit(client[0] if client else "", apps)


@dataclass
class Stored:
    """What happened to one request's events: all are stored (now, or earlier for
    `duplicates` of them)."""

    rows: list[Row]
    duplicates: int = 0

    def body(self) -> dict[str, Any]:
        body: dict[str, Any] = {"accepted": len(self.rows) + self.duplicates}
        if self.duplicates:
            body["duplicates"] = self.duplicates
        return body


class IngestServices(Protocol):
    ingest: Ingest


def ingest_of(request: Request) -> Ingest:
    found: IngestServices = services(request)
    return found.ingest


async def read_items(request: Request, ingest: Ingest) -> list[Any]:
    body = await read_decoded_body(request, ingest.settings.max_body_bytes)
    items = await parse_body(body, header(request, b"content-type") or None)
    if not items:
        raise BadBody("the body holds no events", field="body")
    if len(items) > ingest.settings.max_events_per_request:
        limit = ingest.settings.max_events_per_request
        raise BodyTooLarge(f"{len(items)} events in one request; at most {limit}", field="body")
    return items


async def store_events(request: Request, with_event_ids: bool = False) -> Stored:
    """The ingest pipeline shared by every event route.

    `with_event_ids`: give every row an `event_id` here (for routes that answer with it);
    otherwise rows without one get it from the column's DEFAULT in ClickHouse. Events that
    carry their own event_id and are stored already are not stored again (server/ingest/dedup.py).
    """
    ingest = ingest_of(request)
    try:
        apps = write_apps(request, ingest.keys)
        ingest.admit(request, apps)
        items = await read_items(request, ingest)
    except ApiError as exc:
        ingest.metrics.events_rejected.labels(exc.code).inc()
        raise
    return await store_items(ingest, items, apps, Sender.of(request), with_event_ids=with_event_ids)


async def store_items(ingest: Ingest, items: list[Any], apps: frozenset[str] | None, sender: Sender,
                      senders: dict[int, Sender] | None = None, with_event_ids: bool = False) -> Stored:
    """Validate, enrich, deduplicate and store items (all or nothing); on return they are durable.
    `senders`: for the items at these indexes, the sender their message names (an SDK's
    `context.ip` and `context.userAgent`) instead of the request's."""
    try:
        rows, errors = validate_events(items, ingest.limits, anonymous=sender.can_be_visitor)
        if errors:
            ingest.metrics.events_rejected.labels("validation").inc(len(items))
            raise ValidationFailed(errors)
        check_apps(rows, apps)
        if senders:
            own = [row for index, row in enumerate(rows) if index not in senders]
            ingest.enricher.enrich(own, sender)
            for index, named in senders.items():
                ingest.enricher.enrich([rows[index]], named)
        else:
            ingest.enricher.enrich(rows, sender)
        claim = await ingest.dedup.claim(rows)
        try:
            if with_event_ids:
                give_event_ids(claim.rows)
            if claim.rows:
                await _submit(ingest, claim.rows)
        finally:
            claim.release()
    except ApiError as exc:
        if not isinstance(exc, ValidationFailed):
            ingest.metrics.events_rejected.labels(exc.code).inc()
        raise
    ingest.metrics.events_accepted.inc(len(claim.rows))
    bots = sum(1 for row in claim.rows if "is_bot" in row)  # stored now (duplicates were counted before)
    if bots:
        ingest.metrics.events_bot.inc(bots)
    if claim.duplicates:
        ingest.metrics.events_duplicate.inc(claim.duplicates)
    return Stored(claim.rows, claim.duplicates)


def give_event_ids(rows: list[Row]) -> None:
    """An event_id for every row without one (the others keep the client's)."""
    for row in rows:
        row.setdefault("event_id", str(uuid.uuid4()))


async def _submit(ingest: Ingest, rows: list[Row]) -> None:
    """Store the rows; on return they are durable. Every failure is a 503: nothing was stored."""
    try:
        position = await ingest.sink.submit(encode_rows(rows), len(rows))
    except (QueueFull, LogFull) as exc:
        raise Unavailable(f"the server is overloaded ({exc}); retry later", retry_after_seconds=5) from None
    except LogWriteFailed as exc:
        raise Unavailable(f"{exc}; nothing was stored", retry_after_seconds=5) from None
    except InsertFailed as exc:
        raise Unavailable(f"ClickHouse did not store the events ({exc}); nothing was stored") from None
    except ShuttingDown:
        raise Unavailable("the server is shutting down; retry later") from None
    if ingest.logged_ids is not None and position is not None:
        ids = [row["event_id"] for row in rows if "event_id" in row]
        if ids:
            ingest.logged_ids.add(position, ids)


async def post_events(request: Request) -> Response:
    stored = await store_events(request)
    return json_response(stored.body(), 202)


async def post_event_save(request: Request) -> Response:
    """Seed 000's `/api/v1/event/save`: its clients read back a `message_id`."""
    stored = await store_events(request, with_event_ids=True)
    ids = [row["event_id"] for row in stored.rows]
    return json_response({"message_id": ids[0] if ids else None, "message_ids": ids, **stored.body()}, 202)


async def post_activities(request: Request) -> Response:
    """Seed 003's `/api-log/v1/`: database activity records into the `activities` table."""
    ingest = ingest_of(request)
    ingest.admit(request, write_apps(request, ingest.keys))  # any valid key: activities belong to no app
    data = parse_json(await read_decoded_body(request, ingest.settings.max_body_bytes))
    document = data[0] if len(data) == 1 and isinstance(data[0], dict) else data
    rows, errors = validate_activities(
        document, ingest.settings.max_events_per_request, ingest.settings.max_string_length, int(time.time() * 1000)
    )
    if errors:
        raise ValidationFailed(errors)
    if ingest.activity_writer is None:
        raise Unavailable("this process does not store activities; retry later")
    try:
        await asyncio.to_thread(ingest.activity_writer.insert, encode_rows(rows))
    except ClickHouseError as exc:
        raise Unavailable(f"ClickHouse did not store the activities (nothing was stored): {first_line(exc)}") from None
    return json_response({"accepted": len(rows)}, 202)


def routes() -> list[Route]:
    paths = ["/events", "/events/", "/event", "/event/", "/analytics/event", "/analytics/event/"]
    return [
        *(Route(path, post_events, methods=["POST"]) for path in paths),
        Route("/api/v1/event/save", post_event_save, methods=["POST"]),
        Route("/api-log/v1/", post_activities, methods=["POST"]),
        Route("/api-log/v1", post_activities, methods=["POST"]),
    ]


class EventsFastPath:
    """`POST /events` (and `/events/`), the hottest route, answered before Starlette's middleware
    stack, router and request/response wrappers (server/process/app.py calls it first): the same
    pipeline as `post_events`, its metrics recorded here, ApiErrors answered as their JSON, and
    anything else logged with its traceback and answered 500, as the one handler does.
    Measured: 11,299 -> 13,894 requests/s inside the middleware stack; see docs/performance.md."""

    PATHS = frozenset({"/events", "/events/"})

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics

    @classmethod
    def takes(cls, scope: Scope) -> bool:
        return scope["type"] == "http" and scope["method"] == "POST" and scope["path"] in cls.PATHS

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = time.perf_counter()
        headers: dict[str, str] | None = None
        try:
            stored = await store_events(Request(scope, receive))
            status, body = 202, orjson.dumps(stored.body())
        except ApiError as error:
            status, body, headers = error.status, orjson.dumps(error.body()), error.headers
        except Exception:
            log_unexpected(scope["method"], scope["path"])
            status, body = 500, orjson.dumps(INTERNAL_ERROR)
        raw_headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
        raw_headers += [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
        await send({"type": "http.response.start", "status": status, "headers": raw_headers})
        await send({"type": "http.response.body", "body": body})
        self.metrics.observe_request("/events", status, time.perf_counter() - started)
