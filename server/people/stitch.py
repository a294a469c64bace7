"""The stitch job: one person per human in `events` and everything built from it.

A round (every STITCH_INTERVAL_SECONDS in the server, before `analytics-api rollups` and
`seed-demo`'s round) does two things:

1. `decide`: the joins of `identities` (020) not yet decided, oldest first, by the rule of
   server/people/merges.py; each decision goes to `identity_merges`, each id whose person
   changed to `persons` (022).
2. `move` (the log's consumer paused, so no event of theirs arrives meanwhile): the events of
   each joined id still stored under its own id are copied under its person
   (clickhouse/people/copy_events.sql: every view over `events` counts the copies for the
   person; copies a crash left in `events`, which the views may lack, are taken out and made
   again: copied.sql, uncopy.sql), then the originals are removed from `events` and every
   table keyed by user, and the rollups' buckets and the sessions they fell in rebuilt, as an
   erasure does (server/data/erase.py `remove_ids`, recorded first so that a crash between is
   finished by the next round). The removal adds a change to `event_changes` reaching back to
   the id's first event: the rollup job stores every day from then on again, so the stored days
   count the person too.

Events an anonymous id sends after its join are stored under it and moved by the next round.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from time import time_ns

from clickhouse_connect.driver.client import Client

from server.data.erase import Removal, begin_removal, finish_removal
from server.people.merges import People
from server.store import db
from server.store.db import SQL_DIR, strip_comments

BATCH = 10_000  # joins decided, and ids moved, at most per round


@cache
def sql(name: str) -> str:
    return strip_comments((SQL_DIR / "people" / f"{name}.sql").read_text())


@dataclass(frozen=True)
class Stitched:
    decided: dict[str, int]  # joins decided, by outcome (joined, refused, same)
    moved: int  # ids whose events were moved to their person


EVERYTHING = datetime(1970, 1, 1, tzinfo=UTC)  # `since` of a full look


@dataclass(frozen=True)
class Decided:
    outcomes: dict[str, int]
    changed: list[tuple[str, str]]  # (app_id, id) of the ids whose person changed
    complete: bool  # every join inserted since `since` decided (fewer than the limit found)


def decide(client: Client, allow_identified: bool = False, since: datetime = EVERYTHING, limit: int = BATCH) -> Decided:
    """Decide the joins inserted since `since` and not yet decided (at most `limit`, oldest first)."""
    by_app: dict[str, list[tuple[str, str, datetime]]] = {}
    found = client.query(sql("candidates"), parameters={"since": since, "limit": limit}).result_rows
    for app_id, anonymous_id, user_id, first in found:
        by_app.setdefault(str(app_id), []).append((str(anonymous_id), str(user_id), first))
    outcomes: Counter[str] = Counter()
    merges: list[list[object]] = []
    persons: list[list[object]] = []
    now, version = datetime.now(UTC), time_ns()
    for app_id, joins in by_app.items():
        ids = sorted({one for anonymous_id, user_id, _ in joins for one in (anonymous_id, user_id)})
        people = People.of((str(one), str(person)) for one, person in client.query(
            sql("known"), parameters={"app_id": app_id, "ids": ids}).result_rows)
        for anonymous_id, user_id, first in joins:
            outcome = people.join(anonymous_id, user_id, allow_identified)
            outcomes[outcome] += 1
            merges.append([app_id, anonymous_id, user_id, first, outcome, now])
        persons += [[app_id, one, person, version] for one, person in people.changed()]
    # The persons first: a crash before the decisions are written decides them again (`same`).
    if persons:
        db.insert_rows(client, "persons", ["app_id", "id", "person", "version"], persons)
    if merges:
        db.insert_rows(client, "identity_merges",
                       ["app_id", "anonymous_id", "user_id", "first_seen", "outcome", "decided"], merges)
    return Decided(dict(outcomes), [(str(row[0]), str(row[1])) for row in persons], len(found) < limit)


def movers(client: Client, since: datetime = EVERYTHING, changed: list[tuple[str, str]] | None = None,
           limit: int = BATCH) -> dict[str, list[tuple[str, str]]]:
    """Per app, (id, person) of the joined ids with events still under their own id: among the
    ids of events inserted since `since` and the `changed` ones, or (`since` EVERYTHING) all;
    with those of a move a crash cut short."""
    name, params = ("movers_all", {}) if since == EVERYTHING else ("movers", {"since": since, "changed": changed or []})
    found: dict[str, list[tuple[str, str]]] = {}
    for app_id, one, person in client.query(sql(name), parameters={**params, "limit": limit}).result_rows:
        found.setdefault(str(app_id), []).append((str(one), str(person)))
    return found


def move(client: Client, found: dict[str, list[tuple[str, str]]]) -> int:
    """Move the `found` ids' events to their persons (see the module's doc); the ids moved.
    Call with the pipeline quiesced."""
    removal = begin_move(client, found)
    if removal is not None:
        finish_removal(client, removal)
    return sum(len(pairs) for pairs in found.values())


def begin_move(client: Client, found: dict[str, list[tuple[str, str]]]) -> Removal | None:
    """The part of a move that needs the pipeline quiesced: the copies, the deletes of the
    originals made (patch parts in `events`, at once) and the rollups' buckets rebuilt;
    `finish_removal` (server/data/erase.py) waits for the rest without the pause."""
    everyone = sorted({(app_id, one) for app_id, pairs in found.items() for pair in pairs for one in pair})
    cut = {str(row[0]) for row in client.query(sql("copied"), parameters={"pairs": everyone}).result_rows}
    for app_id, pairs in found.items():
        params = {"app_id": app_id, "ids": [one for one, _ in pairs], "persons": [person for _, person in pairs]}
        if app_id in cut:  # a move a crash cut short: the views may lack its copies
            client.command(sql("uncopy"), parameters=params)
        client.command(sql("copy_events"), parameters=params)
    taken = [(app_id, one) for app_id, pairs in found.items() for one, _ in pairs]
    # One removal for every app: its mutations' cost hardly grows with the rows.
    return begin_removal(client, taken, stitched=True) if taken else None


def stitch(client: Client, allow_identified: bool = False) -> Stitched:
    """A whole round looking at everything, for a caller that has quiesced the pipeline (the CLI's
    offline work)."""
    outcomes: Counter[str] = Counter()
    while True:
        decided = decide(client, allow_identified)
        outcomes.update(decided.outcomes)
        if decided.complete:
            break
    moved = 0
    while found := movers(client):
        moved += move(client, found)
    return Stitched(dict(outcomes), moved)
