"""Finished days of the per-day reports, computed once and stored (`report_days`, 014_report_days.sql).

The rollup job (server/reports/rollup_job.py, every ROLLUP_INTERVAL_SECONDS) computes, for each zone of ROLLUP_ZONES
and for all apps and each app (no country or event filter, bots left out), the finished days of
active users (DAU/WAU/MAU), new users, session length, revenue and total users (as of each day's
end), with the same queries the reports run (server/reports/queries.py), and stores each day's
value. A report over such a key (`stored`) takes the days stored, and computes the others.

A stored day is used only while it is true:
- it was stored less than MAX_AGE_HOURS ago (changes are kept two days); the job stamps a day
  again once its row is RESTAMP_HOURS old and still true (the same value, a new stamp taken
  before that check), so a day is computed once, and again only when an event touches it;
- no block inserted into `events` since it was stored can have changed it: the blocks stamped
  after it, and those stamped in the CHANGES_MARGIN_SECONDS before it when their count there
  differs from the count the row saw (a block stamped by its view before its INSERT committed).
  A block's earliest and latest event bound the days it can change, per report (REACH,
  `touched`); an erasure adds a block that reaches every later day (server/data/erase.py).
Days are finished when the zone's today has passed them (and yesterday, for session length):
today's values change with every event, so they are always computed.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import orjson
from clickhouse_connect.driver.client import Client

from server.reports import queries
from server.reports.params import ReportRange

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
# A configured funnel's days (server/reports/funnels.py) are named FUNNEL_PREFIX + steps@window,
# a configured breakdown's (server/reports/breakdowns.py) BREAKDOWN_PREFIX + column: their values
# are batches of per-user rows in a table of their own.
FUNNEL_PREFIX = "funnel:"
BREAKDOWN_PREFIX = "breakdown:"
ROW_PREFIXES = (FUNNEL_PREFIX, BREAKDOWN_PREFIX)
MAX_AGE_HOURS = 20
RESTAMP_HOURS = 12
CHANGES_MARGIN_SECONDS = 120


@dataclass(frozen=True)
class Span:
    """The earliest and the latest event time of blocks a stored or remembered value has not seen."""

    first: datetime
    last: datetime

    def join(self, other: Span | None) -> Span:
        return self if other is None else Span(min(self.first, other.first), max(self.last, other.last))


def funnel_name(steps: Iterable[str], window: int) -> str:
    return f"{FUNNEL_PREFIX}{','.join(steps)}@{window}"


def reach(name: str) -> tuple[int, int | None]:
    """REACH of a report; a funnel's chains begun on a day end up to its window after the day
    (an hour more: a day of a DST change may be 23 hours long), so an event changes the days
    before it that far back, and none after."""
    if name.startswith(FUNNEL_PREFIX):
        window = int(name.rpartition("@")[2])
        return -(-(window + 3600) // 86400), 0
    if name.startswith(BREAKDOWN_PREFIX):
        return 0, 0
    return REACH.get(name, DEFAULT_REACH)


def touched(name: str, span: Span | None, tz: str) -> Callable[[date], bool]:
    """Whether a day of the report (in zone `tz`) may have changed with the blocks of `span`."""
    if span is None:
        return lambda day: False
    back, forward = reach(name)
    zone = ZoneInfo(tz)
    low = span.first.astimezone(zone).date() - timedelta(days=back)
    if forward is None:
        return lambda day: day >= low
    high = span.last.astimezone(zone).date() + timedelta(days=forward)
    return lambda day: low <= day <= high


def key(name: str, report: ReportRange, zones: Iterable[str]) -> str | None:
    """The stored key of a report's days, or None when the job does not store them."""
    stored = name in REPORTS or name.startswith(ROW_PREFIXES)
    if not stored or report.country or report.event or report.group_id or report.bots or report.tz not in zones:
        return None
    return key_of(report)


def key_of(report: ReportRange) -> str:
    """The key of report_days (and of the per-user rows) for a report's zone and app."""
    return f"{report.tz}|{report.app_id}"


def _decode(value: str) -> Any:
    found = orjson.loads(value)
    return tuple(found) if isinstance(found, list) else found


@dataclass(frozen=True)
class _Row:
    value: str  # JSON
    stamp: datetime  # when it was stored (`stored`)
    seen: int  # blocks stamped in the margin before `stamp`, when it was stored


@dataclass(frozen=True)
class _Watch:
    """What arrived in `events` after a stamp: the event times of the blocks not in its rows,
    complete through `through` (the newest block read since; blocks stamped before
    through - CHANGES_MARGIN_SECONDS had committed when it was read)."""

    span: Span | None
    through: datetime

    def settled(self, stamp: datetime) -> bool:
        """Whether every block stamped in the margin before `stamp` was visible when it was read."""
        return self.through - timedelta(seconds=CHANGES_MARGIN_SECONDS) >= stamp


RELOAD_SECONDS = 10.0  # a key's rows are read from the table again at most this often


class StoredDays:
    """The rows of `report_days` this process has read or stored, and for each of their stamps
    what arrived in `events` since: a report's stored days cost one small read of the blocks
    since the last look (~1.5 ms at 10 M demo events) instead of the rows' query and an
    aggregation over `event_changes` (~9 ms). Rows are read from the table when a day that
    could be stored is not in memory or no longer true (at most every RELOAD_SECONDS a key:
    another server's job may have stored it); this server's job adds the rows it stores. A row
    in memory that the table has replaced is still true while no block has touched its day."""

    def __init__(self, zones: Iterable[str]) -> None:
        self.zones = tuple(zones)
        self._rows: dict[tuple[str, str], dict[date, _Row]] = {}
        self._loaded: dict[tuple[str, str], float] = {}  # monotonic time of each key's last read
        self._watches: dict[datetime, _Watch] = {}
        self._lock = threading.Lock()

    def add(self, rows: Iterable[list[Any]]) -> None:
        """Rows as inserted into report_days (report, key, day, value, stored, seen)."""
        with self._lock:
            for name, found_key, day, value, stamp, seen in rows:
                self._keep((name, found_key), day, _Row(value, as_utc(stamp), int(seen)))

    def _keep(self, where: tuple[str, str], day: date, row: _Row) -> None:
        days = self._rows.setdefault(where, {})
        if day not in days or days[day].stamp < row.stamp:
            days[day] = row

    def forget(self) -> None:
        """Drop every row and watch: the next look reads the table (tests that write it directly)."""
        with self._lock:
            self._rows.clear()
            self._loaded.clear()
            self._watches.clear()

    def days(self, client: Client, name: str, report: ReportRange) -> dict[date, Any]:
        """The days of `report` stored and still true (see the module's text); others are absent.
        A day with no value (no events) is there as None."""
        found_key = key(name, report, self.zones)
        if found_key is None:
            return {}
        found = self._true(client, name, found_key, report)
        last = finished_through(name, report.tz, datetime.now(UTC))
        if any(d not in found for d in report.days() if d <= last) and self._due((name, found_key)):
            self._load(client, name, found_key)
            found = self._true(client, name, found_key, report)
        return found

    def held(self, name: str, report: ReportRange, days: list[date]) -> bool:
        """Whether each of `days` of `report`'s key has a row in memory (true or not: nothing is read)."""
        kept = self._kept(name, report)
        return all(d in kept for d in days)

    def aging(self, name: str, report: ReportRange) -> dict[date, str]:
        """The days of `report`'s key whose rows in memory were stored more than RESTAMP_HOURS
        ago: their values as stored (JSON). Whether they are still true is not looked at."""
        oldest = datetime.now(UTC) - timedelta(hours=RESTAMP_HOURS)
        kept = self._kept(name, report)
        return {d: row.value for d in report.days() if (row := kept.get(d)) is not None and row.stamp < oldest}

    def _kept(self, name: str, report: ReportRange) -> dict[date, _Row]:
        """The rows in memory of `report`'s key (a copy; none when the job does not store it)."""
        found_key = key(name, report, self.zones)
        with self._lock:
            return dict(self._rows.get((name, found_key), {})) if found_key else {}

    def _due(self, where: tuple[str, str]) -> bool:
        now = time.monotonic()
        with self._lock:
            if now - self._loaded.get(where, -RELOAD_SECONDS) < RELOAD_SECONDS:
                return False
            self._loaded[where] = now
            return True

    def _load(self, client: Client, name: str, found_key: str) -> None:
        rows = client.query(
            """
            SELECT day, value, stored, seen FROM report_days FINAL
            WHERE report = {report:String} AND key = {key:String} AND stored > now64(3, 'UTC') - toIntervalHour({hours:UInt32})
            """, parameters={"report": name, "key": found_key, "hours": MAX_AGE_HOURS}).result_rows
        with self._lock:
            for day, value, stamp, seen in rows:
                self._keep((name, found_key), day, _Row(value, as_utc(stamp), int(seen)))

    def _true(self, client: Client, name: str, found_key: str, report: ReportRange) -> dict[date, Any]:
        oldest_allowed = datetime.now(UTC) - timedelta(hours=MAX_AGE_HOURS)
        with self._lock:
            kept = self._rows.get((name, found_key), {})
            rows = {d: row for d in report.days() if (row := kept.get(d)) is not None and row.stamp >= oldest_allowed}
        if not rows:
            return {}
        spans = self._unseen(client, {(row.stamp, row.seen) for row in rows.values()})
        changed = {stamp: touched(name, span, report.tz) for stamp, span in spans.items()}
        return {d: _decode(row.value) for d, row in rows.items() if not changed[row.stamp](d)}

    def _unseen(self, client: Client, stamps: set[tuple[datetime, int]]) -> dict[datetime, Span | None]:
        """For each stamp, the event times of the blocks its rows did not include (None: none).
        A stamp first seen is looked up by one aggregation over the blocks since it; then every
        look reads the blocks since the stamps' watches were last brought up to date."""
        margin = timedelta(seconds=CHANGES_MARGIN_SECONDS)
        with self._lock:
            new = {(stamp, seen) for stamp, seen in stamps if stamp not in self._watches}
        if new:
            watches = _watches(client, new)
            with self._lock:
                for stamp, watch in watches.items():
                    self._watches.setdefault(stamp, watch)
        seen_at = dict(stamps)
        with self._lock:
            watched = {stamp: self._watches[stamp] for stamp in seen_at}
        since = min(stamp - margin if not watch.settled(stamp) else watch.through - margin
                    for stamp, watch in watched.items())
        blocks = blocks_since(client, since)
        newest = max((inserted for inserted, _, _ in blocks), default=None)
        found: dict[datetime, Span | None] = {}
        with self._lock:
            for stamp, read_from in watched.items():
                watch = self._watches.get(stamp, read_from)
                span = span_of([(first, last) for inserted, first, last in blocks if inserted > stamp])
                span = span.join(watch.span) if span else watch.span
                if not watch.settled(stamp):  # a block stamped in the margin before it that committed later
                    in_margin = [(first, last) for inserted, first, last in blocks if stamp - margin < inserted <= stamp]
                    late = span_of(in_margin) if len(in_margin) != seen_at[stamp] else None
                    span = late.join(span) if late else span
                through = max(watch.through, newest) if newest else watch.through
                self._watches[stamp] = _Watch(span, through)
                found[stamp] = span
            unused = datetime.now(UTC) - timedelta(hours=MAX_AGE_HOURS + 1)  # no row this old is used
            for stamp in [stamp for stamp in self._watches if stamp < unused]:
                del self._watches[stamp]
        return found


def span_of(times: list[tuple[datetime, datetime]]) -> Span | None:
    """The span of (earliest, latest) event times of some blocks; None for none."""
    return Span(min(first for first, _ in times), max(last for _, last in times)) if times else None


def blocks_since(client: Client, since: datetime) -> list[tuple[datetime, datetime, datetime]]:
    """The blocks of `event_changes` stamped after `since`: (inserted, earliest, latest event)."""
    return [(as_utc(inserted), as_utc(first), as_utc(last)) for inserted, first, last in client.query(
        "SELECT inserted, first_dt, last_dt FROM event_changes WHERE inserted > {since:DateTime64(3, 'UTC')}",
        parameters={"since": since}).result_rows]


def _watches(client: Client, stamps: set[tuple[datetime, int]]) -> dict[datetime, _Watch]:
    """For each stamp of stored rows (time stored, blocks seen in the margin before it), the
    event times of the blocks its rows did not include: those stamped after it, and those in the
    margin when their count there has changed (a block that committed after the rows were
    computed); through the newest block after it (or the stamp)."""
    seen = dict(stamps)
    found = {stamp: _Watch(None, stamp) for stamp in seen}
    rows = client.query(
        """
        WITH toIntervalSecond({margin:UInt32}) AS margin
        SELECT s, countIf(inserted > s), minIf(first_dt, inserted > s), maxIf(last_dt, inserted > s),
               maxIf(inserted, inserted > s), countIf(inserted > s - margin AND inserted <= s),
               minIf(first_dt, inserted > s - margin AND inserted <= s), maxIf(last_dt, inserted > s - margin AND inserted <= s)
        FROM event_changes
        ARRAY JOIN {stamps:Array(DateTime64(3, 'UTC'))} AS s
        WHERE inserted > {oldest:DateTime64(3, 'UTC')} - margin
        GROUP BY s
        """,
        parameters={"stamps": sorted(seen), "oldest": min(seen), "margin": CHANGES_MARGIN_SECONDS}).result_rows
    for stamp, after, first_after, last_after, newest, in_margin, first_in_margin, last_in_margin in rows:
        stamp = as_utc(stamp)
        span = Span(as_utc(first_after), as_utc(last_after)) if after else None
        if in_margin != seen[stamp]:
            span = Span(as_utc(first_in_margin), as_utc(last_in_margin)).join(span)
        found[stamp] = _Watch(span, as_utc(newest) if after else stamp)
    return found


def as_utc(value: datetime) -> datetime:
    """A time from the engine (naive when its column's zone is UTC) as an aware UTC time."""
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def finished_through(name: str, tz: str, now: datetime) -> date:
    """The last finished day of a report in a zone: before today, before yesterday where a day
    reaches back (today's events change it)."""
    return now.astimezone(ZoneInfo(tz)).date() - timedelta(days=1 + reach(name)[0])
