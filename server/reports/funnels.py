"""The configured funnels (REPORT_FUNNELS) over stored days: each user's level, per finished day.

A funnel over a range is, per user, the furthest step reached by a chain of the steps in order
that begins with a first step in the range and ends within the window after it (ClickHouse's
`windowFunnel`: per user it keeps the chain with the latest start at each level, so its answer is
the furthest level of any chain). Every chain begins on one day, and needs no event after that
day's end plus the window. So the rollup job stores, for each finished day of a configured funnel,
every user's furthest level in the chains begun that day (`funnel_days`, 018_funnel_days.sql:
~20k users a day at 10 M demo events), and a report takes each user's highest level over the
stored days and over the chains begun on the other days (today's, yesterday's, any a late event
touched), computed at once in the same query: the other days' first steps and every later step
from the first of them (funnel_stored.sql). At 10 M demo events, 30 days: 164 -> 31 ms
in-process, 188 -> 41 ms through the API (make bench-reports).

A day is taken from storage only when its chains end inside the range (its end plus the window
is not after the range's end) and its rows are still true (the rules of server/reports/rollups.py;
an event changes the days before it as far back as the window reaches, `rollups.reach`).
Ad-hoc funnels (other steps or window), filters the job does not store (country, bots) and zones
outside ROLLUP_ZONES are computed from `events` (reports/funnel.sql).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import date
from typing import Any

from clickhouse_connect.driver.client import Client

from server.reports import queries, rollups, stored_rows
from server.reports.params import ReportRange


def stored(funnels: Iterable[tuple[tuple[str, ...], int]]) -> dict[str, Callable[[Client, ReportRange], dict[date, Any]]]:
    """The configured funnels as reports of the rollup job: name -> what stores a piece's days."""
    found = {}
    for steps, window in funnels:
        text, params = queries.with_steps("funnel_days", list(steps))
        name = rollups.funnel_name(steps, window)
        found[name] = stored_rows.storer(text, name, window=window, **params)
    return found


def funnel(client: Client, report: ReportRange, steps: list[str], window: int, memory: rollups.StoredDays,
           configured: Iterable[tuple[tuple[str, ...], int]]) -> list[int]:
    """Users reaching each step, in step order: from the stored days where the funnel is
    configured and they are stored, else (and for the other days) from `events`."""
    name = rollups.funnel_name(steps, window)
    found = stored_rows.batches(client, memory, name, report) if (tuple(steps), window) in set(configured) else None
    if found is None:
        return queries.funnel(client, report, steps, window)
    text, params = queries.with_steps("funnel_stored", steps)
    levels = client.query(text, parameters={**report.parameters(), **params, **found, "window": window}).result_rows
    return queries.reached(steps, [tuple(row) for row in levels])
