"""The report queries: SQL from clickhouse/reports/*.sql, run with bound parameters.

Each function takes a query client and a `ReportRange` and returns plain Python values; the
HTTP layer (routes.py) shapes them into JSON.
"""

from __future__ import annotations

import re
from dataclasses import replace
from datetime import date, datetime, time, timedelta
from functools import cache
from typing import Any
from zoneinfo import ZoneInfo

from clickhouse_connect.driver.client import Client

from server.reports.params import LOOKBACK_DAYS, ReportRange
from server.store.db import SQL_DIR, strip_comments

REPORTS_DIR = SQL_DIR / "reports"


@cache
def sql(name: str) -> str:
    return strip_comments((REPORTS_DIR / f"{name}.sql").read_text())


def _rows(client: Client, name: str, report: ReportRange, text: str | None = None, **extra: object) -> list[tuple[Any, ...]]:
    query = with_group(text or sql(name), report)
    rows = client.query(query, parameters={**report.parameters(), **extra}).result_rows
    return [tuple(row) for row in rows]


GROUP_PLACEHOLDER = re.compile(r"\{\{GROUP:([\w.]+)\}\}")
MEMBERS = ("SELECT {value} FROM group_members WHERE group_id = {{group_id:String}} "
           "AND ({{app_id:String}} = '' OR app_id = {{app_id:String}})")


def with_group(text: str, report: ReportRange) -> str:
    """The query's {{GROUP:column}} placeholders as `AND column IN (the group's members)` with a
    `group_id` filter (by sipHash64 where the column holds hashed users), else removed."""
    def condition(found: re.Match[str]) -> str:
        if not report.group_id:
            return ""
        column = found.group(1)
        value = "user_id" if column.endswith("user_id") else "sipHash64(user_id)"
        return f"AND {column} IN ({MEMBERS.format(value=value)})"
    return GROUP_PLACEHOLDER.sub(condition, text)


MASK_DAYS = 35  # days a query of active users covers: 29 days of lookback + 35 = 64 bits of a mask


def active_users(client: Client, report: ReportRange) -> dict[date, tuple[int, int, int]]:
    """DAU/WAU/MAU per day, from the hourly activity table when the zone's days start on whole
    UTC hours and no event is filtered, else from `events`; in pieces of at most MASK_DAYS days."""
    whole_hours = whole_hour_days(report)
    if report.first_day == report.last_day and not report.country and not report.event:
        found_day = _active_users_day(client, report, whole_hours)
        if found_day is not None:
            return found_day
    name = "active_users" if not report.event and whole_hours else "active_users_raw"
    found: dict[date, tuple[int, int, int]] = {}
    first = report.first_day
    while first <= report.last_day:
        last = min(report.last_day, first + timedelta(days=MASK_DAYS - 1))
        piece = replace(report, first_day=first, last_day=last)
        for d, dau, wau, mau in _rows(client, name, piece, report_days=(last - first).days + 1):
            found[d] = (int(dau), int(wau), int(mau))
        first = last + timedelta(days=1)
    return found


def _active_users_day(client: Client, report: ReportRange, whole_hours: bool) -> dict[date, tuple[int, int, int]] | None:
    """One day's DAU/WAU/MAU from each user's latest event (active_users_day*.sql); None where
    that cannot answer: users with events after the day in a zone whose days do not start on
    whole UTC hours (their latest activity before the day's end is looked up by the hour)."""
    day = report.first_day
    week_ms, month_ms = report.day_start_ms(day - timedelta(days=6)), report.day_start_ms(day - timedelta(days=LOOKBACK_DAYS))
    rows = _rows(client, "active_users_day", report, week_ms=week_ms, month_ms=month_ms)
    if rows and rows[0][4]:  # users with events after the day: their latest activity before it is looked up
        if not whole_hours:
            return None
        rows = _rows(client, "active_users_day_ahead", report, week_ms=week_ms, month_ms=month_ms)
    return {d: (int(dau), int(wau), int(mau)) for d, dau, wau, mau, *_ in rows if mau}


def _day_start_offsets(report: ReportRange, first: date) -> list[timedelta | None]:
    """The zone's UTC offset at the start of each day from `first` to the day after the range."""
    zone = ZoneInfo(report.tz)
    return [datetime.combine(first + timedelta(days=n), time(0), zone).utcoffset()
            for n in range((report.last_day - first).days + 2)]


def whole_hour_days(report: ReportRange) -> bool:
    """Whether every day of the report's zone, lookback included, starts on a whole UTC hour."""
    return all(offset is not None and not offset.total_seconds() % 3600
               for offset in _day_start_offsets(report, report.first_day - timedelta(days=LOOKBACK_DAYS)))


def _first_seen(name: str, report: ReportRange) -> str:
    """The query of `name` straight from `users_first` when no country or event is filtered."""
    return f"{name}_first" if not report.country and not report.event else name


RECENT_DAYS = 3  # new users over at most this many days: only the users first seen in them looked up


def new_users(client: Client, report: ReportRange) -> dict[date, int]:
    name = _first_seen("new_users", report)
    if name == "new_users_first" and (report.last_day - report.first_day).days < RECENT_DAYS:
        name = "new_users_recent"
    return dict(_rows(client, name, report))


def total_users(client: Client, report: ReportRange) -> int:
    return int(_rows(client, _first_seen("total_users", report), report)[0][0])


def totals(client: Client, report: ReportRange) -> dict[date, int]:
    """Users seen up to the end of each day: for one day, counted; for more, the count before the
    first day plus each day's new users (the same users, the same filters)."""
    if report.first_day == report.last_day:
        return {report.last_day: total_users(client, report)}
    before = report.first_day - timedelta(days=1)
    running = total_users(client, replace(report, first_day=before, last_day=before))
    new = new_users(client, report)
    found = {}
    for d in report.days():
        running += new.get(d, 0)
        found[d] = running
    return found


def session_durations(client: Client, report: ReportRange) -> dict[date, float]:
    return {d: float(avg) for d, avg, _ in _rows(client, "session_durations", report)}


def revenue(client: Client, report: ReportRange) -> dict[date, tuple[int, int]]:
    name = "revenue_raw" if report.group_id else "revenue"  # the rollup holds no user to filter
    return {d: (int(total), int(payers)) for d, total, payers in _rows(client, name, report)}


def ratio(client: Client, report: ReportRange, numerator: str, denominator: str) -> dict[date, tuple[float, int]]:
    rows = _rows(client, "ratio", report, numerator=numerator, denominator=denominator)
    return {d: (float(value), int(users)) for d, value, users in rows}


def funnel(client: Client, report: ReportRange, steps: list[str], window_seconds: int) -> list[int]:
    """Users reaching each step (at least that far along), in step order."""
    text, params = with_steps("funnel", steps)
    return reached(steps, _rows(client, "funnel", report, text, window=window_seconds, **params))


def with_steps(name: str, steps: list[str]) -> tuple[str, dict[str, object]]:
    """A funnel's SQL with its {{STEP_CONDITIONS}} (`event = {step0:String}, …`: placeholders
    only, the names are bound), and the steps' parameters."""
    conditions = ", ".join(f"event = {{step{i}:String}}" for i in range(len(steps)))
    return sql(name).replace("{{STEP_CONDITIONS}}", conditions), {
        "steps": steps, **{f"step{i}": step for i, step in enumerate(steps)}}


def reached(steps: list[str], levels: list[tuple[Any, ...]]) -> list[int]:
    """Users per furthest level as users reaching each step (at least that far along)."""
    found = dict(levels)
    return [sum(users for level, users in found.items() if level >= n) for n in range(1, len(steps) + 1)]


def event_counts(client: Client, report: ReportRange) -> list[tuple[Any, ...]]:
    return _rows(client, "event_counts_raw" if report.group_id else "event_counts", report)


def utc_days(report: ReportRange) -> bool:
    """Whether every day of the report's zone in its range is a UTC day (offset 0)."""
    return all(offset == timedelta(0) for offset in _day_start_offsets(report, report.first_day))


def retention(client: Client, report: ReportRange, period_days: int) -> dict[date, dict[int, int]]:
    """Cohorts from the daily activity table in zones of UTC days without a country filter, else
    the hourly one where days start on whole hours, else from `events`; with an event filter
    from `events`."""
    cohorts: dict[date, dict[int, int]] = {}
    name = "retention" if not report.event and whole_hour_days(report) else "retention_raw"
    if name == "retention" and not report.country and utc_days(report):
        name = "retention_days"
    for cohort, later, users in _rows(client, name, report, period_days=period_days):
        cohorts.setdefault(cohort, {})[int(later)] = int(users)
    return cohorts


def breakdown(client: Client, report: ReportRange, by: str, limit: int) -> tuple[list[tuple[str, int, int]], tuple[int, int]]:
    """The top `limit` values of column `by` as (value, visitors, events), and (visitors, events) of the rest."""
    return ranked(_rows(client, "breakdown", report, by=by, limit=limit))


def ranked(rows: list[tuple[Any, ...]]) -> tuple[list[tuple[str, int, int]], tuple[int, int]]:
    """breakdown.sql's rows (value, visitors, events, whether the rest) as the top values, in
    order, and (visitors, events) of the rest."""
    top: list[tuple[str, int, int]] = []
    rest = (0, 0)
    for value, visitors, events, is_rest in rows:
        if is_rest:
            rest = (int(visitors), int(events))
        else:
            top.append((str(value), int(visitors), int(events)))
    top.sort(key=lambda row: (-row[1], -row[2], row[0]))  # GROUP BY keeps no order
    return top, rest
