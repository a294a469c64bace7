"""POST /sql: the read-only SQL console behind the web page (and the read token).

Queries run on a client of their own whose session has `readonly=1`, so ClickHouse itself
refuses anything that writes, changes a setting or reads files and URLs; nothing here looks at
the SQL text. `max_execution_time` bounds the time and `max_result_rows` (with
`result_overflow_mode=break`) the rows, which are then cut to SQL_MAX_ROWS exactly.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import orjson
from clickhouse_connect.driver.client import Client
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from server import db
from server.auth import read_protected
from server.config import Settings
from server.errors import ApiError, BadBody, first_line
from server.ingest.routes import read_decoded_body

MAX_SQL_BYTES = 100_000


class SqlRefused(ApiError):
    """ClickHouse did not run the query (syntax, unknown table, readonly, time limit): the
    analyst's error, shown as ClickHouse worded it."""

    status = 400
    code = "sql_error"


def connect_readonly(settings: Settings) -> Client:
    # readonly goes last: once it is set, the session may change no other setting.
    return db.connect(settings, client_settings={
        "max_execution_time": settings.sql_timeout_seconds,
        "max_result_rows": settings.sql_max_rows + 1,
        "result_overflow_mode": "break",
        "readonly": 1,
    })


def run(client: Client, sql: str, max_rows: int) -> dict[str, Any]:
    started = time.perf_counter()
    result = client.query(sql)
    rows = result.result_rows
    return {
        "columns": list(result.column_names),
        "types": [t.name for t in result.column_types],
        "rows": rows[:max_rows],
        "truncated": len(rows) > max_rows,
        "elapsed_ms": round((time.perf_counter() - started) * 1000, 1),
    }


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
    state = request.app.state
    try:
        answer = await asyncio.to_thread(run, state.sql_client, sql, state.settings.sql_max_rows)
    except Exception as exc:
        raise SqlRefused(first_line(exc, limit=1000), field="sql") from None
    # Dates, UUIDs, decimals, IPs: as text; orjson does the rest natively.
    return Response(orjson.dumps(answer, default=str, option=orjson.OPT_NON_STR_KEYS), media_type="application/json")


def routes() -> list[Route]:
    return [Route("/sql", read_protected(post_sql), methods=["POST"])]
