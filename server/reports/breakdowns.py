"""The configured breakdowns (REPORT_BREAKDOWNS) over stored days: per day, value and user, the
user's events.

A breakdown counts, per value of a column, the distinct users and the events in the range: users
do not add up over days, so the rollup job stores, for each finished day of a configured column,
a row per value and user with their events that day (`breakdown_days`, 019_breakdown_days.sql:
~30k rows a day for `referrer_domain` at 10 M demo events), and a report counts each value's
users over the stored days' rows and today's events in one query (breakdown_stored.sql). At 10 M
demo events, 30 days by referrer: 54 -> 28 ms in-process, 60 -> 39 ms through the API.

Days are taken from storage under the rules of server/reports/rollups.py (an event changes only
its own day). With an `event` or `country` filter, `bots=include`, a zone outside ROLLUP_ZONES or a
column not configured, the breakdown is computed from `events` (reports/breakdown.sql).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import date
from typing import Any

from clickhouse_connect.driver.client import Client

from server.reports import queries, rollups, stored_rows
from server.reports.params import ReportRange


def stored(columns: Iterable[str]) -> dict[str, Callable[[Client, ReportRange], dict[date, Any]]]:
    """The configured columns as reports of the rollup job: name -> what stores a piece's days."""
    return {rollups.BREAKDOWN_PREFIX + by: stored_rows.storer(queries.sql("breakdown_days"), rollups.BREAKDOWN_PREFIX + by, by=by)
            for by in columns}


def breakdown(client: Client, report: ReportRange, by: str, limit: int, memory: rollups.StoredDays,
              configured: Iterable[str]) -> tuple[list[tuple[str, int, int]], tuple[int, int]]:
    """As `queries.breakdown`: from the stored days where the column is configured and they are stored."""
    found = stored_rows.batches(client, memory, rollups.BREAKDOWN_PREFIX + by, report) if by in configured else None
    if found is None:
        return queries.breakdown(client, report, by, limit)
    rows = client.query(queries.sql("breakdown_stored"),
                        parameters={**report.parameters(), **found, "by": by, "limit": limit}).result_rows
    return queries.ranked([tuple(row) for row in rows])
