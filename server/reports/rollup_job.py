"""The rollup job: one round (`refresh`) stores every finished day of the stored reports that is
missing or no longer true (the rules of which days are stored and trusted: server/reports/rollups.py),
for each zone of ROLLUP_ZONES and all apps and each app; the server runs a round every
ROLLUP_INTERVAL_SECONDS (server/process/services.py), `analytics-api rollups` and `seed-demo` one."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import orjson
from clickhouse_connect.driver.client import Client

from server.reports import rollups
from server.reports.params import LOOKBACK_DAYS, ReportRange
from server.reports.rollups import CHANGES_MARGIN_SECONDS, ROW_PREFIXES, StoredDays, as_utc, finished_through, key_of
from server.store import db

# Days computed by one query of the job: active users' mask holds 35; session length's query
# holds a piece's spans per user in memory (~127 MB for 30 days at 10 M demo events), so smaller.
# A funnel's query holds a piece's step times per user and day, a breakdown's its (value, user)
# pairs: at 10 M demo events, 7 days took the job's process up by 61 and 95 MB, 3 days by 29 and
# 33 MB (~60 ms a query), so 3. Those are the fewest days a piece holds; where days hold fewer
# events, a piece holds as many days as PIECE_EVENTS events on the busiest UTC day (10 M demo
# events' busiest day holds ~117k: 7 and 3 days), up to 35. A query costs ~15-40 ms however few
# its rows: at 1 M demo events (busiest day 11.7k) the job's first round over 180 days took
# 31.1-33.1 s in 3- and 7-day pieces, 10.1 s in these (UTC and Kolkata, the funnel and a breakdown;
# the process peaked at 432 MB either way).
PIECE_DAYS = {"active_users": 35, "session_durations": 7}
ROWS_PIECE_DAYS = 3
MOST_PIECE_DAYS = 35
PIECE_EVENTS = {"session_durations": 7 * 117_000, "rows": 3 * 117_000}


@dataclass(frozen=True)
class Refreshed:
    keys: int  # (report, zone, app) keys looked at
    days: int  # days computed and stored
    restamped: int = 0  # days still true stamped again


# Tables of a row per user that today's values read whole (new users, active users): kept in one
# part by the job where it can (`merge`), so a query reads each user once instead of once per
# part the inserts left (at 10 M demo events two parts of 247k rows each stay unmerged for long:
# today's active users 31 -> 29 ms, daily 94 -> 85 ms after merging; ~40 ms a table to merge).
PER_USER_TABLES = ("users_first", "users_last")
# Tables partitioned by month whose current month today's reports read (session length's spans,
# retention's active days): the job merges that partition into one part, so today's queries read
# few parts (at 10 M demo events four parts a month stay unmerged after a load: today's and
# yesterday's sessions 43 -> 36 ms once merged; ~0.3 s a round for the month's 600k span rows).
CURRENT_MONTH_TABLES = ("session_spans_v2", "user_days")


def refresh(client: Client, zones: Iterable[str], keep_days: int, merge: bool = False,
            stopping: Callable[[], bool] = lambda: False, memory: StoredDays | None = None,
            more: Mapping[str, Callable[[Client, ReportRange], dict[date, Any]]] | None = None) -> Refreshed:
    """Store every finished day of the last `keep_days` that is missing or no longer true, for
    each report of REPORTS, zone, and all apps and each app; first, with `merge` (one node: not
    a cluster's Distributed tables), merge each of PER_USER_TABLES into one part and the current
    month of CURRENT_MONTH_TABLES. When
    `stopping()` turns true (the server stops), the round ends before its next report key (well
    under a second at 10 M demo events) and stores nothing: the next round computes it again.
    `memory`: the server's StoredDays, which the rows stored are added to. `more`: the configured
    funnels' and breakdowns' days, by name (`funnels.stored`, `breakdowns.stored`), stored as
    the reports' are."""
    zones = tuple(zones)
    if memory is None:
        memory = StoredDays(zones)
    if merge:
        _merge(client)
    apps = ["", *sorted(str(row[0]) for row in client.query("SELECT DISTINCT app_id FROM users_first").result_rows)]
    if not apps[1:]:
        return Refreshed(0, 0)
    earliest, latest = client.query("SELECT min(first), (SELECT max(last) FROM users_last) FROM users_first").result_rows[0]
    pieces = piece_days(client)
    keys = restamped = 0
    rows: list[list[Any]] = []
    for tz in zones:
        now = as_utc(client.query("SELECT now64(3, 'UTC')").result_rows[0][0])
        first_data_day = as_utc(earliest).astimezone(ZoneInfo(tz)).date()
        # Days after the latest event have no value (active users: after its MAU window): not stored.
        last_data_day = as_utc(latest).astimezone(ZoneInfo(tz)).date()
        for app_id in apps:
            for name, compute in {**rollups.REPORTS, **(more or {})}.items():
                keys += 1
                windows = timedelta(days=LOOKBACK_DAYS if name == "active_users" else 0)
                last = min(finished_through(name, tz, now), last_data_day + windows)
                first = max(first_data_day, last - timedelta(days=keep_days - 1))
                if first > last:
                    continue
                if stopping():
                    return Refreshed(keys, 0)
                whole = ReportRange(first, last, tz, app_id=app_id)
                have = memory.days(client, name, whole)
                missing = [d for d in whole.days() if d not in have]
                again = _restamped(client, memory, name, whole, {d: v for d, v in memory.aging(name, whole).items()
                                                                 if d in have}, missing)
                restamped += len(again)
                rows += again + _computed(client, name, whole, sorted(missing), compute, pieces)
    if rows and not stopping():  # one part per round: a report reads the table with FINAL, fast over few parts
        db.insert_rows(client, "report_days", ["report", "key", "day", "value", "stored", "seen"], rows)
        memory.add(rows)
    return Refreshed(keys, len(rows) - restamped, restamped)


def _merge(client: Client) -> None:
    """Each of PER_USER_TABLES into one part, and the current UTC month of CURRENT_MONTH_TABLES."""
    month = datetime.now(UTC).strftime("%Y%m")
    for table, partition in [*((t, None) for t in PER_USER_TABLES), *((t, month) for t in CURRENT_MONTH_TABLES)]:
        parts = client.query("SELECT count() FROM system.parts WHERE database = currentDatabase() AND table = {t:String} "
                             "AND active AND ({p:String} = '' OR partition_id = {p:String})",
                             parameters={"t": table, "p": partition or ""}).result_rows[0][0]
        if parts > 1:
            where = f" PARTITION ID '{partition}'" if partition else ""
            client.command(f"OPTIMIZE TABLE {table}{where} FINAL")


def _stamp(client: Client) -> tuple[datetime, int]:
    """The database's time now, and the blocks stamped in the margin before it."""
    began, seen = client.query(
        "WITH now64(3, 'UTC') AS t SELECT t, (SELECT count() FROM event_changes "
        "WHERE inserted > t - toIntervalSecond({margin:UInt32}) AND inserted <= t)",
        parameters={"margin": CHANGES_MARGIN_SECONDS}).result_rows[0]
    return began, int(seen)


def _restamped(client: Client, memory: StoredDays, name: str, whole: ReportRange, aging: dict[date, str],
               missing: list[date]) -> list[list[Any]]:
    """Rows of report_days that stamp the `aging` days again with their values, for those still
    true when looked at after the new stamp was taken (so no block before it is unseen); the
    others are added to `missing`, to be computed."""
    if not aging:
        return []
    began, seen = _stamp(client)
    true = memory.days(client, name, replace(whole, first_day=min(aging), last_day=max(aging)))
    missing += [d for d in aging if d not in true]
    return [[name, key_of(whole), d, value, began, seen] for d, value in aging.items() if d in true]


def piece_days(client: Client) -> Callable[[str], int]:
    """The days of a report's piece (PIECE_DAYS, ROWS_PIECE_DAYS, more where days hold fewer
    events than PIECE_EVENTS), from the busiest UTC day's events in the hourly counts."""
    busiest = max(1, db.scalar(client, "SELECT max(n) FROM (SELECT sum(events) AS n FROM event_counts_hourly "
                                       "GROUP BY toDate(hour))"))

    def days(name: str) -> int:
        fewest, events = ((ROWS_PIECE_DAYS, PIECE_EVENTS["rows"]) if name.startswith(ROW_PREFIXES)
                          else (PIECE_DAYS.get(name, MOST_PIECE_DAYS), PIECE_EVENTS.get(name, 0)))
        return max(fewest, min(MOST_PIECE_DAYS, events // busiest))
    return days


def _computed(client: Client, name: str, whole: ReportRange, missing: list[date],
              compute: Callable[[Client, ReportRange], dict[date, Any]],
              pieces: Callable[[str], int]) -> list[list[Any]]:
    """The missing days computed in pieces of at most `pieces(name)` days, as rows of report_days
    (only the missing ones: a piece's query may cover stored days between them; a funnel's or
    breakdown's piece is days in a row, as its query stores rows for each), each piece stamped
    with the database's time before its query ran and the blocks seen then."""
    rows: list[list[Any]] = []
    while missing:
        start = missing[0]
        if name.startswith(ROW_PREFIXES):  # rows of every day of the piece: no stored day between
            run = [d for n, d in enumerate(missing[:pieces(name)]) if d == start + timedelta(days=n)]
        else:
            run = [d for d in missing if d < start + timedelta(days=pieces(name))]
        piece = ReportRange(start, run[-1], whole.tz, app_id=whole.app_id)
        missing = missing[len(run):]
        began, seen = _stamp(client)
        values = compute(client, piece)
        rows += [[name, key_of(whole), d, orjson.dumps(values.get(d)).decode(), began, seen]
                 for d in run]
    return rows
