"""ClickHouse's HTTP interface at /clickhouse/, read-only, on the embedded engine (or the server).

What ClickHouse clients send works as they send it: the query in `query=` (GET or POST) and/or
the POST body (joined by a newline, as ClickHouse does), `database`, `default_format`,
`query_id`, `param_<name>` for `{name:Type}` placeholders, and settings as URL parameters (those
the query service allows: tightening limits, output settings). Credentials as ClickHouse takes
them: HTTP basic auth, `X-ClickHouse-User` / `X-ClickHouse-Key`, or `user` / `password`
parameters; the user is CLICKHOUSE_HTTP_USER and the password READ_TOKEN (any password while no
READ_TOKEN is set, like the other read routes).

Answers as ClickHouse gives them: the output bytes of the format with `X-ClickHouse-Format`,
`X-ClickHouse-Query-Id`, `X-ClickHouse-Summary` and `X-ClickHouse-Timezone`; errors as a
`Code: N. DB::Exception: … (NAME)` text with `X-ClickHouse-Exception-Code` and ClickHouse's HTTP
status for that code (4xx for every refusal: a client query never gets a 5xx here).
Every query runs through the read-only query service (server/query/service.py).
"""

from __future__ import annotations

import hmac
import uuid
from typing import Protocol

import orjson
from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response
from starlette.routing import Route

from server.config import Settings
from server.http.auth import basic_credentials
from server.http.bodies import read_decoded_body
from server.http.state import services
from server.query.service import Limits, QueryRefused, QueryService

MAX_QUERY_BYTES = 262_144  # ClickHouse's own max_query_size
# Parameters of ClickHouse's HTTP interface that are not settings. Sessions, compression of the
# answer and progress headers are transport matters the answer does without.
TRANSPORT_PARAMETERS = frozenset({
    "query", "database", "default_format", "query_id", "user", "password", "session_id", "session_timeout",
    "session_check", "compress", "decompress", "buffer_size", "wait_end_of_query", "enable_http_compression",
    "send_progress_in_http_headers", "http_headers_progress_interval_ms", "client_protocol_version", "quota_key",
    "role", "add_http_cors_header", "http_response_buffer_size", "http_wait_end_of_query",
})
STATUS_BY_CODE = {
    62: 400, 36: 400, 42: 400, 43: 400, 44: 400, 53: 400, 456: 400, 457: 400, 27: 400, 26: 400, 6: 400,
    164: 403, 497: 403, 516: 403, 192: 403, 193: 403,
    60: 404, 46: 404, 47: 404, 50: 404, 56: 404, 63: 404, 73: 404, 81: 404, 115: 404,
    159: 408, 209: 408,
    202: 429,
    241: 400, 396: 400,
}
CONTENT_TYPES = {
    "tabseparated": "text/tab-separated-values; charset=UTF-8", "tsv": "text/tab-separated-values; charset=UTF-8",
    "csv": "text/csv; charset=UTF-8; header=absent", "csvwithnames": "text/csv; charset=UTF-8; header=present",
    "native": "application/octet-stream", "rowbinary": "application/octet-stream",
    "rowbinarywithnamesandtypes": "application/octet-stream", "parquet": "application/octet-stream",
    "arrow": "application/octet-stream", "arrowstream": "application/octet-stream",
}


class ClickHouseHttpServices(Protocol):
    settings: Settings
    clickhouse_queries: QueryService


def http_limits(settings: Settings) -> Limits:
    return Limits(
        max_execution_time=settings.sql_timeout_seconds,
        max_memory_usage=settings.sql_max_memory_bytes,
        max_result_bytes=settings.sql_max_result_bytes,
        result_overflow_mode="throw",
    )


def _error(request: Request, code: int, name: str, text: str) -> Response:
    headers = {"X-ClickHouse-Exception-Code": str(code), "X-ClickHouse-Query-Id": _query_id(request),
               **_cors(request)}
    return PlainTextResponse(text.rstrip("\n") + "\n", STATUS_BY_CODE.get(code, 400), headers)


def _query_id(request: Request) -> str:
    """The client's query_id when it can go back in a header (printable ASCII), else a new one."""
    if "query_id" not in request.scope:
        given = request.query_params.get("query_id", "")
        printable = given.isascii() and given.isprintable() and 0 < len(given) <= 256
        request.scope["query_id"] = given if printable else str(uuid.uuid4())
    return str(request.scope["query_id"])


def _cors(request: Request) -> dict[str, str]:
    return {"Access-Control-Allow-Origin": "*"} if request.query_params.get("add_http_cors_header") == "1" else {}


def _credentials(request: Request) -> tuple[str, str]:
    user = request.headers.get("x-clickhouse-user") or request.query_params.get("user")
    password = request.headers.get("x-clickhouse-key") or request.query_params.get("password")
    basic = basic_credentials(request)
    if basic is not None:
        try:
            basic_user, basic_password = basic[0].decode(), basic[1].decode()
        except UnicodeDecodeError:
            basic_user, basic_password = "", ""
        user, password = user or basic_user, password or basic_password
    return user or "default", password or ""


def _authenticated(request: Request, settings: Settings) -> bool:
    user, password = _credentials(request)
    user_ok = hmac.compare_digest(user.encode(), settings.clickhouse_http_user.encode())
    if not settings.read_token:
        return user_ok
    return hmac.compare_digest(password.encode(), settings.read_token.encode()) and user_ok


async def _query_text(request: Request) -> str:
    text = request.query_params.get("query", "")
    if request.method == "POST":
        body = await read_decoded_body(request, MAX_QUERY_BYTES)  # too large, too slow: our JSON 413/408
        if body:
            text = f"{text}\n{body.decode('utf-8', 'replace')}" if text else body.decode("utf-8", "replace")
    return text


async def clickhouse(request: Request) -> Response:
    found: ClickHouseHttpServices = services(request)
    settings = found.settings
    if not _authenticated(request, settings):
        user, _ = _credentials(request)
        return _error(request, 516, "AUTHENTICATION_FAILED", f"Code: 516. DB::Exception: {user}: Authentication "
                      "failed: password is incorrect, or there is no user with such name. (AUTHENTICATION_FAILED)")
    service = found.clickhouse_queries
    try:
        sql = await _query_text(request)
        if not sql.strip():
            if request.method == "GET" and not request.query_params:
                return PlainTextResponse("Ok.\n", headers=_cors(request))  # ClickHouse's answer to a bare GET /
            raise QueryRefused(62, "SYNTAX_ERROR", "Code: 62. DB::Exception: Empty query. (SYNTAX_ERROR)")
        params = request.query_params
        answer = await service.run_raw(
            sql,
            default_format=params.get("default_format") or request.headers.get("x-clickhouse-format") or "TabSeparated",
            database=params.get("database") or request.headers.get("x-clickhouse-database") or settings.database,
            parameters={name[6:]: value for name, value in params.items() if name.startswith("param_")},
            settings={name: value for name, value in params.items()
                      if name not in TRANSPORT_PARAMETERS and not name.startswith("param_")},
        )
    except QueryRefused as refused:
        return _error(request, refused.code, refused.name, refused.text)
    summary = {"read_rows": "0", "read_bytes": "0", "written_rows": "0", "written_bytes": "0",
               "total_rows_to_read": "0", "result_bytes": str(len(answer.body)),
               "elapsed_ns": str(int(answer.elapsed_seconds * 1e9))}
    fmt = answer.output_format
    content_type = CONTENT_TYPES.get(fmt.lower(), "application/json; charset=UTF-8" if "json" in fmt.lower()
                                     else "text/plain; charset=UTF-8")
    headers = {
        "X-ClickHouse-Format": fmt, "X-ClickHouse-Query-Id": _query_id(request),
        "X-ClickHouse-Summary": orjson.dumps(summary).decode(), "X-ClickHouse-Timezone": "UTC",
        "X-ClickHouse-Server-Display-Name": "analytics-api", **_cors(request),
    }
    return Response(answer.body, 200, headers, media_type=content_type)


async def ping(request: Request) -> Response:
    return PlainTextResponse("Ok.\n")


async def options(request: Request) -> Response:
    """CORS preflight of a browser tool on another origin (ClickHouse answers these too)."""
    return Response(status_code=204, headers={
        "Access-Control-Allow-Origin": "*", "Access-Control-Allow-Methods": "GET, POST, OPTIONS",
        "Access-Control-Allow-Headers": "Authorization, Content-Type, X-ClickHouse-User, X-ClickHouse-Key, "
                                        "X-ClickHouse-Format, X-ClickHouse-Database",
        "Access-Control-Max-Age": "86400",
    })


async def play(request: Request) -> Response:
    """ClickHouse's play page is not vendored (see docs/api.md): the built-in SQL console instead."""
    return RedirectResponse("/#sql", 307)


def routes() -> list[Route]:
    return [
        Route("/clickhouse/", clickhouse, methods=["GET", "POST"]),
        Route("/clickhouse", clickhouse, methods=["GET", "POST"]),
        Route("/clickhouse/", options, methods=["OPTIONS"]),
        Route("/clickhouse", options, methods=["OPTIONS"]),
        Route("/clickhouse/ping", ping, methods=["GET", "HEAD"]),
        Route("/clickhouse/replicas_status", ping, methods=["GET"]),
        Route("/play", play, methods=["GET"]),
    ]
