"""Erase one user everywhere (GDPR art. 17): `DELETE /users/{user_id}` (ADMIN_TOKEN) and
`analytics-api erase --user-id U [--app-id A]`.

With the ingest pipeline quiesced (server/ingest/pipeline.py: everything acknowledged is in
`events`, the log's consumer waits), clickhouse/erase/erase_user.sql deletes the user's rows from
`events` and every table keyed by user, and erase_rebuild.sql rebuilds, from what `events` then holds, the buckets
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
import re
from dataclasses import dataclass, replace
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

IDS = "{user_ids:Array(String)}"
PAIRS = "{pairs:Array(Tuple(String, String))}"  # (app_id, id): the rows a removal takes
# Every table that holds the ids, and how its rows name them (the others hold sipHash64(user_id)),
# for the erasure's audit counts (erase_user.sql deletes them by PAIRS).
BY_USER = {**{table: f"user_id IN {IDS}" for table in ("events", "user_first_seen", "sessions", "person_traits",
                                                        "group_members", "ids_seen")},
           **{table: f"user IN arrayMap(id -> sipHash64(id), {IDS})"
              for table in ("user_hours", "session_spans", "users_first", "users_last", "user_days", "session_spans_v2")}}
# Who the ids are (020, 022): kept when a stitch moves an anonymous id's events to its person.
IDENTITY = {"identities": f"(user_id IN {IDS} OR anonymous_id IN {IDS})",
            "identity_merges": f"(user_id IN {IDS} OR anonymous_id IN {IDS})",
            "persons": f"(id IN {IDS} OR person IN {IDS})"}
# Tables whose rows mix apps (a key of all apps): the ids' rows of every app go. The erasure's
# change (erase_user.sql) reaches back to their first event in any app, so the rollup job
# stores every day that held them again.
ANY_APP = {"funnel_days": f"user IN arrayMap(id -> sipHash64(id), {IDS})",
           "breakdown_days": f"user IN arrayMap(id -> sipHash64(id), {IDS})"}
APP = "({app_id:String} = '' OR app_id = {app_id:String})"
# A removal's records (021): by pair, or (an erasure of every app) with the app left empty.
RECORDS = f"((app_id, user_id) IN {PAIRS} OR (app_id = '' AND user_id IN {IDS}))"
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
    """The user and every id joined to them: the anonymous ids of identity calls (`identities`,
    020) and the ids whose person they are (`persons`, 022), erased together, the counts added
    up. Call with the pipeline quiesced."""
    linked = tuple(str(row[0]) for row in client.query(
        f"SELECT DISTINCT id FROM (SELECT anonymous_id AS id FROM identities WHERE user_id = {{user_id:String}} AND {APP} "
        f"UNION ALL SELECT id FROM persons WHERE person = {{user_id:String}} AND {APP}) WHERE id != {{user_id:String}} "
        "ORDER BY 1", parameters={"user_id": user_id, "app_id": app_id}).result_rows)
    return replace(erase_user(client, user_id, app_id, linked), ids=linked)


def erase_user(client: Client, user_id: str, app_id: str = "", linked: tuple[str, ...] = ()) -> Erased:
    """Delete the user's rows and those of the `linked` ids (of one app, or all), their identity
    links included, and rebuild the rollups they counted in. Call with the pipeline quiesced."""
    ids = [user_id, *linked]
    params: dict[str, Any] = {"user_ids": ids, "app_id": app_id}
    removed = {table: db.scalar(client, f"SELECT count() FROM {table} WHERE {match} AND {APP}", params)
               for table, match in {**BY_USER, **IDENTITY}.items()}
    removed.update({table: db.scalar(client, f"SELECT count() FROM {table} WHERE {match}", params)
                    for table, match in ANY_APP.items()})
    apps = [app_id] if app_id else [str(row[0]) for row in client.query("SELECT DISTINCT app_id FROM users_first").result_rows]
    if remove_ids(client, [(app, one) for app in apps for one in ids], stitched=False, found=any(removed.values())):
        for table, match in IDENTITY.items():
            client.command(f"ALTER TABLE {table} DELETE WHERE {match} AND {APP} SETTINGS mutations_sync = 2", parameters=params)
    log.info("audit: erased user_id %r (app_id %s): rows removed %s", user_id, repr(app_id) if app_id else "all",
             removed)
    return Erased(user_id, app_id, removed)


def remove_ids(client: Client, pairs: list[tuple[str, str]], *, stitched: bool, found: bool = True) -> bool:
    """The rows of each (app_id, id) pair deleted from `events` and every table keyed by user (not
    the identity links), and the rollups' buckets they fell in rebuilt (erase_user.sql, then
    erase_rebuild.sql), when `found` or an earlier removal of any of them was cut short (its
    record, 021, names the buckets and hours their deleted events fell in). Whether anything was
    done. Call with the pipeline quiesced."""
    removal = begin_removal(client, pairs, stitched=stitched, found=found)
    if removal is not None:
        finish_removal(client, removal)
    return removal is not None


def by_pair(triples: list[tuple[str, str, Any]]) -> dict[tuple[str, str], list[Any]]:
    """(app_id, id, value) rows as each (app_id, id)'s values."""
    found: dict[tuple[str, str], list[Any]] = {}
    for app, one, value in triples:
        found.setdefault((app, one), []).append(value)
    return found


NO_TIME = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class MovedSessions:
    """The sessions of a stitch's moved events, (app_id, session_id), and the times of every event
    of them (by any user, from the rows of `sessions`, read before their rebuild deletes them):
    rebuild_sessions.sql reads `events` in that span only, not whole."""

    ids: list[tuple[str, str]]
    first: datetime = NO_TIME
    last: datetime = NO_TIME

    @classmethod
    def of(cls, client: Client, ids: list[tuple[str, str]]) -> MovedSessions:
        if not ids:
            return cls([])
        first, last = client.query("SELECT min(started), max(ended) FROM sessions WHERE (app_id, session_id) IN "
                                   "{sessions:Array(Tuple(String, String))}", parameters={"sessions": ids}).result_rows[0]
        return cls(ids, first, last)

    def join(self, other: MovedSessions) -> MovedSessions:
        if not other.ids:
            return self
        ids = sorted({*self.ids, *((str(app), str(session)) for app, session in other.ids)})
        if not self.ids:
            return MovedSessions(ids, other.first, other.last)
        return MovedSessions(ids, min(self.first, other.first), max(self.last, other.last))


@dataclass(frozen=True)
class Removal:
    params: dict[str, Any]
    first_dt: datetime
    rows: int


def begin_removal(client: Client, pairs: list[tuple[str, str]], *, stitched: bool, found: bool = True) -> Removal | None:
    """The part of `remove_ids` that needs the pipeline quiesced: the record, the deletes made (a
    stitch's: patch parts, at once; the others: mutations, in the background) and the rollups'
    buckets rebuilt from `events`. None when there is nothing to remove."""
    params: dict[str, Any] = {"pairs": pairs, "user_ids": sorted({one for _, one in pairs})}
    pending = client.query("SELECT arrayDistinct(arrayFlatten(groupArray(buckets))), arrayDistinct(arrayFlatten("
                           "groupArray(hours))), min(first_dt), max(rows), arrayDistinct(arrayFlatten(groupArray(sessions))), "
                           f"minIf(sessions_from, notEmpty(sessions)), maxIf(sessions_to, notEmpty(sessions)), count() "
                           f"FROM erasures WHERE {RECORDS}",
                           parameters=params).result_rows
    pending = [row[:7] for row in pending if row[7]]
    if not found and not pending:
        return None
    # One read of the ids' events: the buckets and hours to rebuild, the first day changed (their
    # first event in any app: see ANY_APP) and, for a stitch, the sessions (rebuilt too), each id's
    # own in its row of the record (every id's in every row grew with ids x buckets); with what a
    # removal cut by a crash recorded before it deleted them (021_erasures.sql, 025).
    taken = f"(app_id, user_id) IN {PAIRS}"
    in_buckets, in_hours, first_dt, rows, in_sessions = client.query(
        f"SELECT groupUniqArrayIf((toString(app_id), user_id, toStartOfFifteenMinutes(toDateTime(dt, 'UTC'))), {taken}), "
        f"groupUniqArrayIf((toString(app_id), user_id, toStartOfHour(toDateTime(dt, 'UTC'))), {taken}), min(dt), "
        f"countIf({taken}), groupUniqArrayIf((toString(app_id), user_id, (toString(app_id), session_id)), {taken} "
        f"AND session_id != '' AND {{stitched:UInt8}}) FROM events WHERE user_id IN {IDS}",
        parameters={**params, "stitched": int(stitched)}).result_rows[0]
    own = {"buckets": by_pair(in_buckets), "hours": by_pair(in_hours), "sessions": by_pair(in_sessions)}
    buckets, hours = (sorted({one for listed in own[name].values() for one in listed}) for name in ("buckets", "hours"))
    sessions = MovedSessions.of(client, sorted({tuple(one) for listed in own["sessions"].values() for one in listed}))
    if pending:
        earlier_buckets, earlier_hours, earlier_first, earlier_rows, *earlier_sessions = pending[0]
        buckets, hours = sorted({*buckets, *earlier_buckets}), sorted({*hours, *earlier_hours})
        first_dt, rows = (min(first_dt, earlier_first) if rows else earlier_first), max(rows, earlier_rows)
        sessions = sessions.join(MovedSessions(*earlier_sessions))
    begun = datetime.now(UTC)
    db.insert_rows(client, "erasures", ["user_id", "app_id", "buckets", "hours", "first_dt", "rows", "begun", "stitch",
                                        "sessions", "sessions_from", "sessions_to"],
                   [[one, app, *(own[name].get((app, one), []) for name in ("buckets", "hours")), first_dt, rows, begun,
                     int(stitched), own["sessions"].get((app, one), []), sessions.first, sessions.last]
                    for app, one in pairs])
    statement_params = {**params, "buckets": buckets, "hours": hours}
    for statement in db.sql_statements((db.SQL_DIR / "erase" / "erase_user.sql").read_text()):
        client.command(lightweight(statement) if stitched else statement, parameters=statement_params)
    if not stitched:  # the rebuilds read `events`: its mutation done first (a stitch's patch parts are at once)
        db.wait_mutations(client)
    for statement in db.sql_statements((db.SQL_DIR / "erase" / "erase_rebuild.sql").read_text()):
        client.command(statement, parameters=statement_params)
    if sessions.ids:  # a stitch's: its sessions' rows counted once, whatever a copy cut short left (stitch.py)
        for statement in db.sql_statements((db.SQL_DIR / "people" / "rebuild_sessions.sql").read_text()):
            client.command(statement, parameters={"sessions": sessions.ids, "from": sessions.first, "to": sessions.last})
    return Removal(params, first_dt, rows)


def finish_removal(client: Client, removal: Removal) -> None:
    """The rest, which needs no pause: the deletes waited for, then a change for the reports' cache
    of finished days and the rollup job (the days from the ids' first event on are computed
    again: after the deletes, so that none is stored from rows half gone), then the record gone."""
    db.wait_mutations(client)
    client.command("INSERT INTO event_changes (inserted, first_dt, rows) VALUES (now64(3, 'UTC'), "
                   "{first_dt:DateTime64(3, 'UTC')}, {rows:UInt64})",
                   parameters={"first_dt": removal.first_dt, "rows": removal.rows})
    client.command(f"ALTER TABLE erasures DELETE WHERE {RECORDS} SETTINGS mutations_sync = 2", parameters=removal.params)


PATCH_DELETES = {"events"}  # 024_patch_deletes.sql
ALTER_DELETE = re.compile(r"^ALTER TABLE (\w+) DELETE WHERE (.*)\s+SETTINGS mutations_sync = 0;?$", re.DOTALL)


def lightweight(statement: str) -> str:
    """erase_user.sql's `ALTER TABLE t DELETE …` as a lightweight `DELETE FROM t …`: in `events` a
    patch part, written and visible at once (024_patch_deletes.sql), elsewhere a mutation of a
    mask in the background (not every column of every part rewritten): for a stitch, whose rows
    live on under the person. An erasure keeps ALTER … DELETE: the rows leave the disk."""
    found = ALTER_DELETE.match(db.strip_comments(statement).strip())
    if found is None:
        return statement
    table, condition = found.groups()
    mode = "lightweight_update" if table in PATCH_DELETES else "alter_update"
    return f"DELETE FROM {table} WHERE {condition} SETTINGS lightweight_delete_mode = '{mode}', lightweight_deletes_sync = 0"


def pending_erasures(client: Client) -> list[tuple[str, str]]:
    """(user_id, app_id) of the erasures a crash cut short (a stitch's: server/people/stitch.py)."""
    return [(str(user), str(app)) for user, app in client.query(
        "SELECT user_id, app_id FROM erasures WHERE stitch = 0 GROUP BY user_id, app_id ORDER BY min(begun)").result_rows]


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
