"""Erase one user everywhere (GDPR art. 17): `DELETE /users/{user_id}` (ADMIN_TOKEN) and
`analytics-api erase --user-id U [--app-id A]`.

With the ingest pipeline quiesced (server/ingest/pipeline.py: everything acknowledged is in
`events`, the log's consumer waits), clickhouse/erase/erase_user.sql deletes the user's rows from
`events` and every table keyed by user, and rebuilds, from what `events` then holds, the buckets
of the rollups that hold only counts and user sets. After it no table holds the user's rows and
no report counts them. An audit line is logged: the user id, the app and the rows removed per
table, nothing of the events. Events the user sends after the erasure are new and are stored.

With a ClickHouse server and several API replicas, the others keep inserting: an event of an
earlier time that reaches a rebuilt bucket between its delete and its rebuild would be counted
twice in that rollup (run erasures when late events are unlikely, or stop ingest).
"""

from __future__ import annotations

import asyncio
import hmac
import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from clickhouse_connect.driver.client import Client
from clickhouse_connect.driver.exceptions import ClickHouseError
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from server.config import Settings
from server.http.errors import ApiError, Unavailable, first_line
from server.http.responses import json_response
from server.http.state import services
from server.ingest.pipeline import Pipeline
from server.store import db

log = logging.getLogger(__name__)

# Every table that holds the user, and how its rows name them (the others hold sipHash64(user_id)).
BY_USER = {"events": "user_id = {user_id:String}", "user_first_seen": "user_id = {user_id:String}",
           "sessions": "user_id = {user_id:String}", "user_hours": "user = sipHash64({user_id:String})",
           "session_spans": "user = sipHash64({user_id:String})", "users_first": "user = sipHash64({user_id:String})",
           "users_last": "user = sipHash64({user_id:String})",
           "user_days": "user = sipHash64({user_id:String})",
           "session_spans_v2": "user = sipHash64({user_id:String})",
           "identities": "(user_id = {user_id:String} OR anonymous_id = {user_id:String})",
           "person_traits": "user_id = {user_id:String}", "group_members": "user_id = {user_id:String}"}
# Tables whose rows mix apps (a key of all apps): the user's rows of every app go. The erasure's
# change (erase_user.sql) reaches back to the user's first event in any app, so the rollup job
# stores every day that held them again.
ANY_APP = {"funnel_days": "user = sipHash64({user_id:String})", "breakdown_days": "user = sipHash64({user_id:String})"}
APP = "({app_id:String} = '' OR app_id = {app_id:String})"
QUIESCE_TIMEOUT_SECONDS = 60.0


class AdminRequired(ApiError):
    status = 403
    code = "forbidden"


@dataclass(frozen=True)
class Erased:
    user_id: str
    app_id: str
    removed: dict[str, int]
    ids: tuple[str, ...] = ()  # the anonymous ids joined to the user, erased with them

    def body(self) -> dict[str, Any]:
        return {"user_id": self.user_id, "app_id": self.app_id or None, "removed": self.removed,
                "anonymous_ids": list(self.ids)}


def erase_person(client: Client, user_id: str, app_id: str = "") -> Erased:
    """The user and every anonymous id an identity call joined to them (`identities`, 020): each
    id's rows as `erase_user` erases them, the counts added up. Call with the pipeline quiesced."""
    linked = tuple(str(row[0]) for row in client.query(
        f"SELECT DISTINCT anonymous_id FROM identities WHERE user_id = {{user_id:String}} AND {APP} ORDER BY 1",
        parameters={"user_id": user_id, "app_id": app_id}).result_rows)
    removed = dict(erase_user(client, user_id, app_id).removed)
    for anonymous_id in linked:
        for table, rows in erase_user(client, anonymous_id, app_id).removed.items():
            removed[table] += rows
    return Erased(user_id, app_id, removed, linked)


def erase_user(client: Client, user_id: str, app_id: str = "") -> Erased:
    """Delete the user's rows (of one app, or all) and rebuild the rollups they counted in.
    Call with the pipeline quiesced."""
    params: dict[str, Any] = {"user_id": user_id, "app_id": app_id}
    removed = {table: db.scalar(client, f"SELECT count() FROM {table} WHERE {match} AND {APP}", params)
               for table, match in BY_USER.items()}
    removed.update({table: db.scalar(client, f"SELECT count() FROM {table} WHERE {match}", params)
                    for table, match in ANY_APP.items()})
    pending = client.query("SELECT arrayDistinct(arrayFlatten(groupArray(buckets))), arrayDistinct(arrayFlatten("
                           "groupArray(hours))), min(first_dt), max(rows), count() FROM erasures WHERE user_id = "
                           "{user_id:String} AND app_id = {app_id:String}", parameters=params).result_rows
    pending = [row[:4] for row in pending if row[4]]
    if any(removed.values()) or pending:
        # One read of the user's events: the buckets and hours to rebuild, and the first day
        # changed (the user's first event in any app: see ANY_APP); with what an erasure cut by a
        # crash recorded before it deleted them (021_erasures.sql).
        buckets, hours, first_dt, rows = client.query(
            f"SELECT groupUniqArrayIf(toStartOfFifteenMinutes(toDateTime(dt, 'UTC')), {APP}), "
            f"groupUniqArrayIf(toStartOfHour(toDateTime(dt, 'UTC')), {APP}), min(dt), count() "
            f"FROM events WHERE {BY_USER['events']}", parameters=params).result_rows[0]
        if pending:
            earlier_buckets, earlier_hours, earlier_first, earlier_rows = pending[0]
            buckets, hours = sorted({*buckets, *earlier_buckets}), sorted({*hours, *earlier_hours})
            first_dt, rows = (min(first_dt, earlier_first) if rows else earlier_first), max(rows, earlier_rows)
        client.insert("erasures", [[user_id, app_id, buckets, hours, first_dt, rows, datetime.now(UTC)]],
                      column_names=["user_id", "app_id", "buckets", "hours", "first_dt", "rows", "begun"])
        for statement in db.sql_statements((db.SQL_DIR / "erase" / "erase_user.sql").read_text()):
            client.command(statement, parameters={**params, "buckets": buckets, "hours": hours, "first_dt": first_dt,
                                                  "rows": rows})
        client.command("ALTER TABLE erasures DELETE WHERE user_id = {user_id:String} AND app_id = {app_id:String} "
                       "SETTINGS mutations_sync = 2", parameters=params)
    log.info("audit: erased user_id %r (app_id %s): rows removed %s", user_id, repr(app_id) if app_id else "all",
             removed)
    return Erased(user_id, app_id, removed)


def pending_erasures(client: Client) -> list[tuple[str, str]]:
    """(user_id, app_id) of the erasures a crash cut short."""
    return [(str(user), str(app)) for user, app in client.query(
        "SELECT user_id, app_id FROM erasures GROUP BY user_id, app_id ORDER BY min(begun)").result_rows]


def require_admin(request: Request, admin_token: str, what: str = "erasing users") -> None:
    if not admin_token:
        raise AdminRequired(f"{what} is disabled: set ADMIN_TOKEN to enable it", field="authorization")
    scheme, _, value = request.headers.get("authorization", "").partition(" ")
    presented = value.strip() if scheme.lower() == "bearer" else request.headers.get("x-admin-token", "").strip()
    if not presented or not hmac.compare_digest(presented.encode(), admin_token.encode()):
        raise AdminRequired("the admin token is missing or wrong (Authorization: Bearer <ADMIN_TOKEN>)",
                            field="authorization")


class ErasureServices(Protocol):
    settings: Settings
    pipeline: Pipeline


async def delete_user(request: Request) -> Response:
    found: ErasureServices = services(request)
    require_admin(request, found.settings.admin_token)
    user_id = request.path_params["user_id"]
    app_id = request.query_params.get("app_id", "")
    # A client of its own: mutations of a large table outlast the report clients' time limit.
    client = await asyncio.to_thread(db.connect, found.settings)
    try:
        async with found.pipeline.quiesced(QUIESCE_TIMEOUT_SECONDS):
            erased = await asyncio.to_thread(erase_person, client, user_id, app_id)
    except ClickHouseError as exc:
        raise Unavailable(f"the erasure did not finish ({first_line(exc)}); run it again") from None
    finally:
        client.close()
    return json_response(erased.body())


def routes() -> list[Route]:
    return [Route("/users/{user_id}", delete_user, methods=["DELETE"])]
