"""The engine process's answers to a group's HTTP workers (server/process/group.py), on `/_engine/`: its
unix socket is reachable by them only, and the workers never pass `/_engine/` on."""

from __future__ import annotations

import asyncio
from datetime import date

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from server.http.responses import json_response
from server.process.services import Services


def services(request: Request) -> Services:
    found: Services = request.app.state.services
    return found


async def engine_stored(request: Request) -> Response:
    """POST a JSON array of event_ids: those stored (ClickHouse, or any log not inserted yet)."""
    ids = [str(event_id) for event_id in orjson.loads(await request.body())]
    found = await asyncio.to_thread(services(request).pipeline.stored, ids)
    return json_response(sorted(found))


async def engine_salts(request: Request) -> Response:
    """The visitors' salts from `today` on (made when missing), as hex by ISO day."""
    visitors = services(request).visitors
    await asyncio.to_thread(visitors.refresh, date.fromisoformat(request.query_params["today"]))
    return json_response({day.isoformat(): salt.hex() for day, salt in visitors.salts().items()})


def routes() -> list[Route]:
    return [Route("/_engine/stored", engine_stored, methods=["POST"]), Route("/_engine/salts", engine_salts)]
