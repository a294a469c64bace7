"""POST /sql: the read-only SQL console behind the web page (and the read token). (The module is
named for what it is; the route keeps its path.)

The query runs through the read-only query service (server/query/service.py): parsed and checked
by ClickHouse's parser, then run on a `readonly=1` session with time and memory limits and
`max_result_rows` (with `result_overflow_mode=break`), cut to SQL_MAX_ROWS exactly.
"""

from __future__ import annotations

from typing import Protocol

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from server.config import Settings
from server.http.auth import read_protected
from server.http.bodies import read_decoded_body
from server.http.errors import ApiError, BadBody
from server.http.state import services
from server.query.service import Limits, QueryRefused, QueryService

MAX_SQL_BYTES = 100_000


class ConsoleServices(Protocol):
    settings: Settings
    console: QueryService


class SqlRefused(ApiError):
    """The query was refused or ClickHouse did not run it (syntax, unknown table, a write, a
    file, a limit): the analyst's error, shown as ClickHouse words it."""

    status = 400
    code = "sql_error"


def console_limits(settings: Settings) -> Limits:
    return Limits(
        max_execution_time=settings.sql_timeout_seconds,
        max_memory_usage=settings.sql_max_memory_bytes,
        max_result_rows=settings.sql_max_rows + 1,
        result_overflow_mode="break",
    )


async def post_sql(request: Request) -> Response:
    body = await read_decoded_body(request, MAX_SQL_BYTES)
    if (request.headers.get("content-type") or "").startswith("application/json"):
        try:
            document = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            raise BadBody(f"the body is not JSON: {exc}", field="body") from None
        sql = document.get("sql") if isinstance(document, dict) else None
    else:
        sql = body.decode("utf-8", errors="replace")
    if not isinstance(sql, str) or not sql.strip():
        raise BadBody('send the query as {"sql": "SELECT …"} or as text/plain', field="sql")
    found: ConsoleServices = services(request)
    try:
        answer = await found.console.run_rows(sql, found.settings.sql_max_rows)
    except QueryRefused as refused:
        raise SqlRefused(refused.text.splitlines()[0][:1000], field="sql") from None
    # Dates, UUIDs, decimals, IPs: as text; orjson does the rest natively.
    return Response(orjson.dumps(answer, default=str, option=orjson.OPT_NON_STR_KEYS),
                    media_type="application/json")


def routes() -> list[Route]:
    return [Route("/sql", read_protected(post_sql), methods=["POST"])]
