"""Stored days whose value is a batch of per-user rows in a table of their own (the configured
funnels' `funnel_days`, 018, and breakdowns' `breakdown_days`, 019): how the rollup job stores a
piece's rows, which days a report reads from them, and the cleanup of rows no day names.

A day's marker row in `report_days` holds its batch (a random 63-bit number), so the rows follow
the rules of freshness of every stored day (server/reports/rollups.py); a day stored again gets
a new batch, a day stamped again keeps its own.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from typing import Any

from clickhouse_connect.driver.client import Client

from server.reports import queries
from server.reports.params import ReportRange
from server.reports.rollups import (
    BREAKDOWN_PREFIX,
    FUNNEL_PREFIX,
    MAX_AGE_HOURS,
    StoredDays,
    finished_through,
    key,
    key_of,
    reach,
)


def storer(sql_text: str, name: str, **params: object) -> Callable[[Client, ReportRange], dict[date, Any]]:
    """The job's computation of a funnel's or breakdown's days: `sql_text` inserts a piece's
    per-user rows as one new batch ({batch}, under {name} and {key}); each day's value is the batch."""
    def store(client: Client, piece: ReportRange) -> dict[date, Any]:
        batch = secrets.randbits(63)
        client.command(sql_text, parameters={**piece.parameters(), **params, "batch": batch, "name": name,
                                             "key": key_of(piece)})
        return {d: batch for d in piece.days()}
    return store


def batches(client: Client, memory: StoredDays, name: str, report: ReportRange) -> dict[str, object] | None:
    """The parameters of a query over the batches of per-user rows stored for `report`'s days
    (funnel_stored.sql, breakdown_stored.sql): {batches} as (day, batch); {live_ms}, the start
    of the first day not stored (the range's end if none), and {stored_days}, those after it
    (usually none: a test per event of a list of 30 days costs a funnel ~4 ms at 10 M demo
    events); None when no day is stored. A day is looked up only when its rows need no event
    after the range's end."""
    last = min(report.last_day - timedelta(days=reach(name)[0]), finished_through(name, report.tz, datetime.now(UTC)))
    found_key = key(name, report, memory.zones)
    if found_key is None or last < report.first_day:
        return None
    found = memory.days(client, name, replace(report, last_day=last))
    if not found:
        return None
    live = [d for d in report.days() if d not in found]
    return {"name": name, "key": found_key, "batches": sorted(found.items()),
            "stored_days": sorted(d for d in found if live and d > live[0]),
            "live_ms": report.day_start_ms(live[0]) if live else report.end_ms}


# The tables of per-user rows of stored days, and the prefix of their reports' names.
ROW_TABLES = {"funnel_days": FUNNEL_PREFIX, "breakdown_days": BREAKDOWN_PREFIX}


def drop_unreferenced(client: Client, older_than_hours: int = MAX_AGE_HOURS + 1) -> None:
    """Delete the rows of batches no marker of report_days names, once older than any marker is
    used (reports/drop_unreferenced.sql); one node only (a lightweight DELETE of local tables)."""
    for table, prefix in ROW_TABLES.items():
        client.command(queries.sql("drop_unreferenced"),
                       parameters={"table": table, "prefix": prefix, "hours": older_than_hours})


