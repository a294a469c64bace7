"""Finished days of the per-day reports, computed once and stored (`report_days`, 014_report_days.sql).

The rollup job (`refresh`, every ROLLUP_INTERVAL_SECONDS) computes, for each zone of ROLLUP_ZONES
and for all apps and each app (no country or event filter, bots left out), the finished days of
active users (DAU/WAU/MAU), new users, session length, revenue and total users (as of each day's
end), with the same queries the reports run (server/reports/queries.py), and stores each day's
value. A report over such a key (`stored`) takes the days stored, and computes the others.

A stored day is used only while it is true:
- it was stored less than MAX_AGE_HOURS ago (changes are kept two days, and the job stores
  days again once they are older: each day is computed about once a day);
- no block inserted into `events` since it was stored can have changed it: the blocks stamped
  after it, and those stamped in the CHANGES_MARGIN_SECONDS before it when their count there
  differs from the count the row saw (a block stamped by its view before its INSERT committed).
  A block's earliest and latest event bound the days it can change, per report (REACH,
  `touched`); an erasure adds a block that reaches every later day (server/erase.py).
Days are finished when the zone's today has passed them (and yesterday, for session length):
today's values change with every event, so they are always computed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import orjson
from clickhouse_connect.driver.client import Client

from server.reports import queries
from server.reports.params import LOOKBACK_DAYS, ReportRange

# name -> the report's per-day query; every value is a number or a tuple of numbers.
REPORTS: dict[str, Callable[[Client, ReportRange], dict[date, Any]]] = {
    "active_users": queries.active_users,
    "new_users": queries.new_users,
    "session_durations": queries.session_durations,
    "revenue": queries.revenue,
    "total_users": queries.totals,
}
# name -> (days before a change's earliest event, days after its latest) whose values it can
# change; None: every later day. A day's count or sum: only its own. WAU/MAU: the 29 days after
# (their windows reach back). New and total users: any later day (a user's first event moves
# earlier, from whatever day it was on). Session length: the day before (a session begun then
# lasts into the event's day) and after (two sessions joined into one begun the day before);
# the reports cut sessions longer than a day, so no further. Any other report: (1, None).
REACH = {"active_users": (0, 29), "new_users": (0, None), "total_users": (0, None), "revenue": (0, 0),
         "session_durations": (1, 1)}
DEFAULT_REACH: tuple[int, int | None] = (1, None)
MAX_AGE_HOURS = 20
CHANGES_MARGIN_SECONDS = 120
# Days computed by one query of the job: active users' mask holds 35; session length's query
# holds a piece's spans per user in memory (~127 MB for 30 days at 10 M demo events), so smaller.
PIECE_DAYS = {"active_users": 35, "session_durations": 7}


@dataclass(frozen=True)
class Span:
    """The earliest and the latest event time of blocks a stored or remembered value has not seen."""

    first: datetime
    last: datetime

    def join(self, other: Span | None) -> Span:
        return self if other is None else Span(min(self.first, other.first), max(self.last, other.last))


def touched(name: str, span: Span | None, tz: str) -> Callable[[date], bool]:
    """Whether a day of the report (in zone `tz`) may have changed with the blocks of `span`."""
    if span is None:
        return lambda day: False
    back, forward = REACH.get(name, DEFAULT_REACH)
    zone = ZoneInfo(tz)
    low = span.first.astimezone(zone).date() - timedelta(days=back)
    if forward is None:
        return lambda day: day >= low
    high = span.last.astimezone(zone).date() + timedelta(days=forward)
    return lambda day: low <= day <= high


def key(name: str, report: ReportRange, zones: Iterable[str]) -> str | None:
    """The stored key of a report's days, or None when the job does not store them."""
    if name not in REPORTS or report.country or report.event or report.bots or report.tz not in zones:
        return None
    return f"{report.tz}|{report.app_id}"


def _decode(value: str) -> Any:
    found = orjson.loads(value)
    return tuple(found) if isinstance(found, list) else found


def stored(client: Client, name: str, report: ReportRange, zones: Iterable[str]) -> dict[date, Any]:
    """The days of `report` stored and still true (see the module's text); others are absent.
    A day with no value (no events) is there as None."""
    found_key = key(name, report, zones)
    if found_key is None:
        return {}
    rows = client.query(
        """
        SELECT day, value, stored, seen FROM report_days FINAL
        WHERE report = {report:String} AND key = {key:String} AND day >= {first:Date} AND day <= {last:Date}
        """, parameters={"report": name, "key": found_key, "first": report.first_day, "last": report.last_day}).result_rows
    oldest_allowed = datetime.now(UTC) - timedelta(hours=MAX_AGE_HOURS)
    rows = [row for row in rows if as_utc(row[2]) >= oldest_allowed]
    if not rows:
        return {}
    changed = {stamp: touched(name, span, report.tz)
               for stamp, span in _unseen(client, {(as_utc(row[2]), int(row[3])) for row in rows}).items()}
    return {day: _decode(value) for day, value, stamp, _ in rows if not changed[as_utc(stamp)](day)}


def _unseen(client: Client, stamps: set[tuple[datetime, int]]) -> dict[datetime, Span | None]:
    """For each stamp of stored rows (time stored, blocks seen in the margin before it), the
    event times of the blocks its rows did not include: those stamped after it, and those in the
    margin when their count there has changed (a block that committed after the rows were
    computed). None: nothing new."""
    seen = dict(stamps)
    found: dict[datetime, Span | None] = dict.fromkeys(seen)
    rows = client.query(
        """
        WITH toIntervalSecond({margin:UInt32}) AS margin
        SELECT s, countIf(inserted > s), minIf(first_dt, inserted > s), maxIf(last_dt, inserted > s),
               countIf(inserted > s - margin AND inserted <= s), minIf(first_dt, inserted > s - margin AND inserted <= s),
               maxIf(last_dt, inserted > s - margin AND inserted <= s)
        FROM event_changes
        ARRAY JOIN {stamps:Array(DateTime64(3, 'UTC'))} AS s
        WHERE inserted > {oldest:DateTime64(3, 'UTC')} - margin
        GROUP BY s
        """,
        parameters={"stamps": sorted(seen), "oldest": min(seen), "margin": CHANGES_MARGIN_SECONDS}).result_rows
    for stamp, after, first_after, last_after, in_margin, first_in_margin, last_in_margin in rows:
        stamp = as_utc(stamp)
        span = Span(as_utc(first_after), as_utc(last_after)) if after else None
        if in_margin != seen[stamp]:
            span = Span(as_utc(first_in_margin), as_utc(last_in_margin)).join(span)
        found[stamp] = span
    return found


def as_utc(value: datetime) -> datetime:
    """A time from the engine (naive when its column's zone is UTC) as an aware UTC time."""
    return value if value.tzinfo else value.replace(tzinfo=UTC)


@dataclass(frozen=True)
class Refreshed:
    keys: int  # (report, zone, app) keys looked at
    days: int  # days computed and stored


def finished_through(name: str, tz: str, now: datetime) -> date:
    """The last finished day of a report in a zone: before today, before yesterday where a day
    reaches back (today's events change it)."""
    return now.astimezone(ZoneInfo(tz)).date() - timedelta(days=1 + REACH.get(name, DEFAULT_REACH)[0])


# Tables of a row per user that today's values read whole (new users, active users): kept in one
# part by the job where it can (`merge`), so a query reads each user once instead of once per
# part the inserts left (at 10 M demo events two parts of 247k rows each stay unmerged for long:
# today's active users 31 -> 29 ms, daily 94 -> 85 ms after merging; ~40 ms a table to merge).
PER_USER_TABLES = ("users_first", "users_last")


def refresh(client: Client, zones: Iterable[str], keep_days: int, merge: bool = False,
            stopping: Callable[[], bool] = lambda: False) -> Refreshed:
    """Store every finished day of the last `keep_days` that is missing or no longer true, for
    each report of REPORTS, zone, and all apps and each app; first, with `merge` (one node: not
    a cluster's Distributed tables), merge each of PER_USER_TABLES into one part. When
    `stopping()` turns true (the server stops), the round ends before its next report key (well
    under a second at 10 M demo events) and stores nothing: the next round computes it again."""
    if merge:
        for table in PER_USER_TABLES:
            parts = client.query("SELECT count() FROM system.parts WHERE database = currentDatabase() "
                                 "AND table = {t:String} AND active", parameters={"t": table}).result_rows[0][0]
            if parts > 1:
                client.command(f"OPTIMIZE TABLE {table} FINAL")
    apps = ["", *sorted(str(row[0]) for row in client.query("SELECT DISTINCT app_id FROM users_first").result_rows)]
    if not apps[1:]:
        return Refreshed(0, 0)
    earliest, latest = client.query("SELECT min(first), (SELECT max(last) FROM users_last) FROM users_first").result_rows[0]
    keys = 0
    rows: list[list[Any]] = []
    for tz in zones:
        now = as_utc(client.query("SELECT now64(3, 'UTC')").result_rows[0][0])
        first_data_day = as_utc(earliest).astimezone(ZoneInfo(tz)).date()
        # Days after the latest event have no value (active users: after its MAU window): not stored.
        last_data_day = as_utc(latest).astimezone(ZoneInfo(tz)).date()
        for app_id in apps:
            for name, compute in REPORTS.items():
                keys += 1
                windows = timedelta(days=LOOKBACK_DAYS if name == "active_users" else 0)
                last = min(finished_through(name, tz, now), last_data_day + windows)
                first = max(first_data_day, last - timedelta(days=keep_days - 1))
                if first > last:
                    continue
                if stopping():
                    return Refreshed(keys, 0)
                whole = ReportRange(first, last, tz, app_id=app_id)
                have = stored(client, name, whole, zones)
                missing = [d for d in whole.days() if d not in have]
                rows.extend(_computed(client, name, whole, missing, compute))
    if rows and not stopping():  # one part per round: a report reads the table with FINAL, fast over few parts
        client.insert("report_days", rows, column_names=["report", "key", "day", "value", "stored", "seen"])
    return Refreshed(keys, len(rows))


def _computed(client: Client, name: str, whole: ReportRange, missing: list[date],
              compute: Callable[[Client, ReportRange], dict[date, Any]]) -> list[list[Any]]:
    """The missing days computed in pieces of at most PIECE_DAYS days, as rows of report_days
    (only the missing ones: a piece's query may cover stored days between them), each piece
    stamped with the database's time before its query ran and the blocks seen then."""
    rows: list[list[Any]] = []
    while missing:
        start = missing[0]
        run = [d for d in missing if d < start + timedelta(days=PIECE_DAYS.get(name, 35))]
        piece = ReportRange(start, run[-1], whole.tz, app_id=whole.app_id)
        missing = missing[len(run):]
        began, seen = client.query(
            "WITH now64(3, 'UTC') AS t SELECT t, (SELECT count() FROM event_changes "
            "WHERE inserted > t - toIntervalSecond({margin:UInt32}) AND inserted <= t)",
            parameters={"margin": CHANGES_MARGIN_SECONDS}).result_rows[0]
        values = compute(client, piece)
        rows += [[name, f"{whole.tz}|{whole.app_id}", d, orjson.dumps(values.get(d)).decode(), began, seen]
                 for d in run]
    return rows
