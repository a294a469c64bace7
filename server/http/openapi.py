"""GET /openapi.json: every route the server has, described for clients and for fuzzing
(tests/test_fuzz.py runs schemathesis against this document). A test checks that every route of
the app appears here, so a new route cannot be left out."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from server.http.responses import json_response

SCALAR = {"oneOf": [{"type": "string"}, {"type": "number"}, {"type": "boolean"}, {"type": "null"}]}
EVENT = {
    "type": "object",
    "description": "One event. Required: dt (ISO 8601, epoch seconds or ms), event, user_id; aliases of "
                   "the seed clients are accepted (see docs/api.md). Unknown scalar fields go to props.",
    "properties": {
        "dt": {"oneOf": [{"type": "string"}, {"type": "number"}]},
        "event": {"type": "string"}, "user_id": {"type": "string"}, "session_id": {"type": "string"},
        "event_id": {"type": "string", "format": "uuid"}, "screen": {"type": "string"},
        "elem": {"type": "string"}, "amount": {"type": "integer"}, "app_id": {"type": "string"},
        "type": {"type": "string"}, "country": {"type": "string"}, "region": {"type": "string"},
        "city": {"type": "string"},
        "props": {"type": "object", "additionalProperties": SCALAR},
    },
    "additionalProperties": SCALAR,
}
ERROR = {
    "type": "object", "required": ["error"],
    "properties": {"error": {"type": "object", "required": ["code", "message"], "properties": {
        "code": {"type": "string"}, "message": {"type": "string"}, "field": {"type": "string"},
        "errors": {"type": "array", "items": {"type": "object"}}}}},
}
TEXT: dict[str, Any] = {"description": "text", "content": {"text/plain": {"schema": {"type": "string"}}}}
JSON_ANSWER: dict[str, Any] = {"content": {"application/json": {"schema": {"type": ["object", "array"]}}}}


def _errors(*codes: int) -> dict[str, Any]:
    reasons = {400: "bad body, or ClickHouse refused the SQL (its message)", 401: "missing or wrong key",
               403: "key not valid for an event's app_id, or no admin token", 404: "no such file", 408: "body too slow",
               413: "body or event count over the limit", 415: "content type not taken",
               422: "a field or parameter is not valid (named)", 429: "rate limited: retry after Retry-After",
               503: "not stored now; retry after Retry-After"}
    return {str(c): {"description": reasons[c], "content": {"application/json": {"schema": ERROR}}} for c in codes}


PREFLIGHT = {"summary": "CORS preflight from a page (CORS_ORIGINS)",
             "responses": {"204": {"description": "allowed"}, **_errors(403)}}


def _ingest(summary: str) -> dict[str, Any]:
    body = {"oneOf": [EVENT, {"type": "array", "items": EVENT}]}
    return {"options": PREFLIGHT, "post": {
        "summary": summary,
        "requestBody": {"required": True, "content": {
            "application/json": {"schema": body},
            # One event a line; described as the array of its lines.
            "application/x-ndjson": {"schema": {"type": "array", "items": EVENT}},
            "application/x-www-form-urlencoded": {"schema": {"type": "object", "additionalProperties": {"type": "string"}}},
            "text/plain": {"schema": {"type": "string"}},
        }},
        "responses": {"202": {"description": "durable (in the write-ahead log, or the Buffer table)", **JSON_ANSWER},
                      **_errors(400, 401, 403, 408, 413, 415, 422, 429, 503)},
    }}


def _param(name: str, description: str, required: bool = False, **schema: Any) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": required, "description": description,
            "schema": {"type": "string", **schema}}


RANGE = [
    _param("from", "first day, YYYY-MM-DD (default: 29 days before to)"),
    _param("to", "last day, YYYY-MM-DD (default: today)"),
    _param("tz", "IANA time zone of the days (default UTC)"),
    _param("app_id", "only this app"), _param("country", "only this country"), _param("event", "only this event's users"),
    _param("group_id", "only the members of this group (group calls)"),
    _param("bots", "exclude (default) or include the events flagged is_bot", enum=["exclude", "include"]),
]


def _report(summary: str, *extra: dict[str, Any], method: str = "get") -> dict[str, Any]:
    return {method: {"summary": summary, "parameters": [*RANGE, *extra],
                     "responses": {"200": {"description": "the report", **JSON_ANSWER}, **_errors(401, 422, 503)}}}


def _ingest_paths() -> dict[str, Any]:
    ingest = {path: _ingest("Send events") for path in
              ("/events", "/events/", "/event", "/event/", "/analytics/event", "/analytics/event/")}
    ingest["/api/v1/event/save"] = _ingest("Seed 000: send events, answered with message_id")
    activities = {"options": PREFLIGHT, "post": {"summary": "Seed 003: database activity records",
                           "requestBody": {"required": True, "content": {"application/json": {"schema": {"type": "object"}}}},
                           "responses": {"202": {"description": "stored", **JSON_ANSWER},
                                         **_errors(400, 401, 408, 413, 415, 422, 429, 503)}}}
    return {**ingest, "/api-log/v1/": activities, "/api-log/v1": activities}


def _report_paths(ingest: dict[str, Any]) -> dict[str, Any]:
    daily = _report("Active users, new users and session length per day; total users")
    return {
        "/reports/daily": daily, "/event": {**ingest["/event"], **daily}, "/event/": {**ingest["/event/"], **daily},
        "/analytics/daily": daily,
        "/reports/active-users": _report("DAU, WAU, MAU per day"),
        "/reports/total-users": _report("Users seen up to the end of the range"),
        "/reports/funnel": _report("Users reaching each step in order within a window",
                                   _param("steps", "2-10 event names, comma-separated", True),
                                   _param("window", "seconds, 1 to 2592000 (default 3600)")),
        "/reports/ratio": _report("Mean per-user ratio of two events' counts per day",
                                  _param("numerator", "event name", True), _param("denominator", "event name", True)),
        "/reports/retention": _report("Cohorts by first day or week and how many came back",
                                      _param("period", "day or week", enum=["day", "week"])),
        "/reports/revenue": _report("Revenue and paying users per day"),
        "/reports/events": _report("Events per hour and name"),
        "/reports/breakdown": _report(
            "Visitors and events per value of one column: the top N and the rest",
            _param("by", "the column", True, enum=["browser", "os", "device_type", "country", "referrer_domain",
                                                    "utm_source", "utm_medium", "utm_campaign", "screen", "event",
                                                    "app_id"]),
            _param("limit", "values listed, 1 to 100 (default 10)")),
        "/export": {"get": {
            "summary": "Events of the range as NDJSON, CSV or Parquet, streamed",
            "parameters": [*RANGE, _param("format", "ndjson (default), csv or parquet", enum=["ndjson", "csv", "parquet"]),
                           _param("gzip", "1 to gzip the stream (or Accept-Encoding: gzip)")],
            "responses": {"200": {"description": "the events (Content-Disposition: attachment)", "content": {
                "application/x-ndjson": {"schema": {"type": "string"}}, "text/csv": {"schema": {"type": "string"}},
                "application/vnd.apache.parquet": {"schema": {"type": "string", "format": "binary"}}}},
                **_errors(401, 422, 503)}}},
        "/users/{user_id}": {"delete": {
            "summary": "Erase a user's events everywhere, rollups included (ADMIN_TOKEN)",
            "parameters": [{"name": "user_id", "in": "path", "required": True, "schema": {"type": "string"}},
                           _param("app_id", "only this app's events (default: every app)")],
            "responses": {"200": {"description": "rows removed per table", **JSON_ANSWER}, **_errors(403, 503)}}},
        "/admin/backup": {"post": {
            "summary": "Back up the running server into BACKUP_DIR/name (ADMIN_TOKEN)",
            "requestBody": {"required": True, "content": {"application/json": {"schema": {
                "type": "object", "required": ["name"], "properties": {"name": {"type": "string"}}}}}},
            "responses": {"200": {"description": "the manifest: files and rows", **JSON_ANSWER},
                          "409": {"description": "a backup of that name exists", "content": {"application/json": {
                              "schema": ERROR}}},
                          **_errors(400, 403, 408, 413, 415, 503)}}},
        "/api/v1/crm/user-stat/total-user": _report("Seed 000: total users"),
        "/api/v1/crm/daily-stat/active-user": {"post": {
            "summary": "Seed 000: active users per day (JSON body with from/to)",
            "requestBody": {"content": {"application/json": {"schema": {"type": "object"}}}},
            "responses": {"200": {"description": "the report", **JSON_ANSWER}, **_errors(400, 401, 408, 413, 415, 422, 503)}}},
    }


def _clickhouse_paths() -> dict[str, Any]:
    clickhouse_parameters = [
        {"name": name, "in": "query", "required": False, "schema": {"type": "string"}}
        for name in ("query", "database", "default_format", "query_id", "user", "password")
    ]
    clickhouse_answers = {
        "200": {"description": "the result in the query's format", "content": {"*/*": {"schema": {"type": "string"}}}},
        **{str(code): {"description": "ClickHouse's error text (Code: N. DB::Exception: …)", **TEXT}
           for code in (400, 403, 404, 408, 429)},
        **_errors(413, 415),
    }
    clickhouse = {
        "get": {"summary": "ClickHouse's HTTP interface, read-only (the query in `query`)",
                "parameters": clickhouse_parameters, "responses": clickhouse_answers},
        "post": {"summary": "ClickHouse's HTTP interface, read-only (the query in the body and/or `query`)",
                 "parameters": clickhouse_parameters,
                 "requestBody": {"content": {"text/plain": {"schema": {"type": "string"}}}},
                 "responses": clickhouse_answers},
        "options": {"summary": "CORS preflight", "responses": {"204": {"description": "allowed"}}},
    }
    return {
        **{path: clickhouse for path in ("/clickhouse/", "/clickhouse")},
        "/clickhouse/ping": {"get": {"summary": "ClickHouse's ping: Ok.", "responses": {"200": TEXT}}},
        "/clickhouse/replicas_status": {"get": {"summary": "ClickHouse's replica check: Ok.", "responses": {"200": TEXT}}},
        "/play": {"get": {"summary": "The SQL console (ClickHouse's play page is not vendored)",
                          "responses": {"307": {"description": "to /#sql"}}}},
    }


def _ops_paths() -> dict[str, Any]:
    return {
        "/healthz": {"get": {"summary": "The process answers", "responses": {"200": {"description": "ok", **JSON_ANSWER}}}},
        "/readyz": {"get": {"summary": "Schema up to date and ClickHouse answering; what waits in the log or the queue",
                            "responses": {"200": {"description": "ready", **JSON_ANSWER}, **_errors(503)}}},
        "/metrics": {"get": {"summary": "Prometheus metrics", "responses": {"200": {"description": "text exposition",
                             "content": {"text/plain": {"schema": {"type": "string"}}}}}}},
        "/": {"get": {"summary": "The built-in page: Live, Reports, SQL", "responses": {"200": {
            "description": "HTML", "content": {"text/html": {"schema": {"type": "string"}}}}}}},
        "/t.js": {"get": {"summary": "The page tracker (plain JavaScript, gzipped when accepted)",
                          "responses": {"200": {"description": "JavaScript",
                                                "content": {"text/javascript": {"schema": {"type": "string"}}}}}}},
        "/static/{name}": {"get": {"summary": "The page's files", "parameters": [
            {"name": "name", "in": "path", "required": True, "schema": {"type": "string"}}],
            "responses": {"200": {"description": "the file", "content": {"*/*": {"schema": {"type": "string"}}}},
                          **_errors(404)}}},
        "/sql": {"post": {
            "summary": "Run read-only SQL (readonly=1, time and row limits)",
            "requestBody": {"required": True, "content": {
                "application/json": {"schema": {"type": "object", "required": ["sql"],
                                                 "properties": {"sql": {"type": "string"}}}},
                "text/plain": {"schema": {"type": "string"}}}},
            "responses": {"200": {"description": "columns, types, rows, truncated, elapsed_ms", **JSON_ANSWER},
                          **_errors(400, 401, 408, 413, 415)}}},
        "/openapi.json": {"get": {"summary": "This document",
                                  "responses": {"200": {"description": "OpenAPI 3.1", **JSON_ANSWER}}}},
    }


def _peer(summary: str, answer: dict[str, Any], status: str = "200") -> dict[str, Any]:
    body = {"type": ["object", "array"]}
    return {"options": PREFLIGHT, "post": {
        "summary": summary,
        "requestBody": {"required": True, "content": {"application/json": {"schema": body},
                                                      "text/plain": {"schema": {"type": "string"}}}},
        "responses": {status: answer, **_errors(400, 401, 403, 408, 413, 415, 422, 429, 503)}}}


def _sdk_paths() -> dict[str, Any]:
    """The peers' routes (server/sdks/routes.py): their SDKs' own answers, our errors inside theirs."""
    segment = _peer("Segment / RudderStack HTTP Tracking API (write key as the Basic user or writeKey)",
                    {"description": '{"success": true}', **JSON_ANSWER})
    posthog = _peer("PostHog capture (api_key in the body)", {"description": '{"status": 1}', **JSON_ANSWER})
    kinds = ("batch", "b", "import", "track", "t", "page", "p", "screen", "s", "identify", "i", "group", "g", "alias", "a")
    flags = {"summary": "PostHog feature flags: none", "responses": {"200": {"description": "no flags", **JSON_ANSWER}}}
    return {
        **{f"/v1/{kind}": segment for kind in kinds},
        **{path + end: posthog for path in ("/capture", "/batch", "/e", "/i/v0/e", "/track") for end in ("/", "")},
        **{path + end: {"get": flags, "post": flags, "options": PREFLIGHT} for path in ("/decide", "/flags")
           for end in ("/", "")},
        "/v1/projects/{write_key}/settings": {
            "parameters": [{"name": "write_key", "in": "path", "required": True, "schema": {"type": "string"}}],
            "options": PREFLIGHT,
            "get": {"summary": "analytics.js settings (cdnURL pointed here): the Segment.io destination sending here",
                    "responses": {"200": {"description": "settings", **JSON_ANSWER}}}},
        "/api/event": _peer("Plausible events API (domain: the site)", {"description": "ok", **TEXT}, "202"),
        "/api/send": _peer("Umami collect API (payload.website: the site)", {"description": "stored", **JSON_ANSWER}),
    }


def document() -> dict[str, Any]:
    ingest = _ingest_paths()
    paths = {**ingest, **_sdk_paths(), **_report_paths(ingest), **_clickhouse_paths(), **_ops_paths()}
    return {
        "openapi": "3.1.0",
        "info": {"title": "analytics-api", "version": "0.1.0",
                 "description": "Event ingest into ClickHouse, and reports from it. Every error is "
                                "{\"error\": {\"code\", \"message\", \"field\"?}}."},
        "components": {"securitySchemes": {
            "writeKey": {"type": "http", "scheme": "bearer", "description": "WRITE_KEYS (or header X-Write-Key)"},
            "readToken": {"type": "http", "scheme": "bearer", "description": "READ_TOKEN (or header X-Read-Token)"}}},
        "paths": paths,
    }


async def openapi_endpoint(request: Request) -> Response:
    return json_response(document())
