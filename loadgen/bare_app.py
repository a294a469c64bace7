"""The ceiling for the benchmark: a Starlette endpoint that reads the body, parses the JSON and
answers 202, under the same uvicorn settings as the real server. Nothing is stored."""

from __future__ import annotations

import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route


async def accept(request: Request) -> Response:
    events = orjson.loads(await request.body())
    count = len(events) if isinstance(events, list) else 1
    return Response(orjson.dumps({"accepted": count}), 202, media_type="application/json")


app = Starlette(routes=[Route("/events", accept, methods=["POST"])])
