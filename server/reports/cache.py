"""Per-day report results kept between requests, and dropped for the days new or late events touch.

A report that is a value per day (active users, new users, session length, revenue, ratio) asks
`DayCache.days`: the days of its range already known are taken from memory, the others computed
by one query over the smallest range that covers them. Before that, `event_changes`
(011_event_changes.sql: a row per block inserted into `events`, with its earliest `dt`) says
whether anything arrived since the entry was last checked, and from which day: those days and
later ones are dropped (a day before, too: a session can cross midnight, and a WAU/MAU window
reaches forward). So a dashboard refreshing every few seconds recomputes today (and yesterday),
not the whole range, and a quiet server answers from memory.

A block's view runs (and stamps `inserted`) before the INSERT commits, so a block may become
visible after a check that saw later ones: each entry also keeps how many changes it saw in the
CHANGES_MARGIN_SECONDS before its check, and a different count there later means such a block
arrived. Beyond that margin, an entry lives at most MAX_AGE_SECONDS; at most MAX_ENTRIES entries
(least recently used dropped).
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from concurrent.futures import ThreadPoolExecutor, wait
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from typing import Any, TypeVar

from clickhouse_connect.driver.client import Client

from server.reports import rollups
from server.reports.params import ReportRange

T = TypeVar("T")
CHANGES_MARGIN_SECONDS = 30
MAX_AGE_SECONDS = 600
MAX_ENTRIES = 256
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_ABSENT = object()  # a day computed that has no value (no events)


@dataclass
class Entry:
    checked: datetime  # the newest change seen when the entry was last brought up to date
    window: int  # changes seen then in the CHANGES_MARGIN_SECONDS up to `checked`
    created: float = field(default_factory=time.monotonic)
    days: dict[date, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Changes:
    newest: datetime
    window: int  # changes in the margin up to `newest`
    unseen: rollups.Span | None  # the event times of the changes the entry has not seen


def changes_since(client: Client, entry: Entry | None) -> Changes:
    """What arrived in `events` since the entry was checked: changes after its `checked`, and any
    that committed late inside the margin before it (their count there has grown). For an
    entry, the blocks since its check less the margin are read and counted here: a query that
    aggregates them costs the engine ~3 ms of planning, reading them ~1 ms (a block a second of
    ingest is a few hundred rows over the entry's ten minutes)."""
    margin = timedelta(seconds=CHANGES_MARGIN_SECONDS)
    if entry is None:
        newest, window = client.query(
            """
            WITH (SELECT max(inserted) FROM event_changes) AS newest
            SELECT newest, count() FROM event_changes WHERE inserted > newest - toIntervalSecond({margin:UInt32})
            """, parameters={"margin": CHANGES_MARGIN_SECONDS}).result_rows[0]
        return Changes(rollups.as_utc(newest), int(window), None)
    blocks = rollups.blocks_since(client, entry.checked - margin)
    newest = max([entry.checked, *(inserted for inserted, _, _ in blocks)])
    window = sum(1 for inserted, _, _ in blocks if inserted > newest - margin)
    unseen = rollups.span_of([(first, last) for inserted, first, last in blocks if inserted > entry.checked])
    in_margin = [(first, last) for inserted, first, last in blocks if inserted <= entry.checked]
    late = rollups.span_of(in_margin) if len(in_margin) != entry.window else None
    return Changes(newest, window, late.join(unseen) if late else unseen)


Spare = Callable[[], AbstractContextManager[Client | None]]


def _no_spare() -> AbstractContextManager[Client | None]:
    return nullcontext(None)


class DayCache:
    def __init__(self, stored: rollups.StoredDays | None = None, spare: Spare = _no_spare) -> None:
        # The rollup job's days (server/reports/rollups.py).
        self._stored = stored if stored is not None else rollups.StoredDays(())
        # A second client, if one is free, for the days the job cannot have stored (today's),
        # computed while the stored ones are looked up (server/store/db.py ClientPool.spare).
        self._spare = spare
        self._alongside = ThreadPoolExecutor(max_workers=2, thread_name_prefix="report-days")
        self._entries: OrderedDict[Hashable, Entry] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0  # days answered from memory
        self.stored = 0  # days taken from the rollup job's table
        self.computed = 0  # days computed
        self.alongside = 0  # lookups of stored days run on a spare client while today's are computed

    def days(self, client: Client, name: str, report: ReportRange,
             compute: Callable[[Client, ReportRange], dict[date, T]], *extra: Hashable,
             memory: bool = True) -> dict[date, T]:
        """The report's days: from memory, else stored by the rollup job, else computed now.
        `memory=False` (a request's `Cache-Control: no-cache`) neither reads nor keeps the entry, nor
        does a `group_id` filter (a `group` call of any time changes its members' every day)."""
        if not memory or report.group_id:
            known: dict[date, Any] = {}
            self._fill(client, name, report, known, compute)
            return {d: known[d] for d in report.days() if known[d] is not _ABSENT}
        key = (name, report.tz, report.app_id, report.country, report.event, report.group_id, report.bots, *extra)
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None and time.monotonic() - entry.created > MAX_AGE_SECONDS:
                entry = None
        changes = changes_since(client, entry)
        known = dict(entry.days) if entry else {}
        if entry is not None:
            changed = rollups.touched(name, changes.unseen, report.tz)
            known = {d: v for d, v in known.items() if not changed(d)}
        wanted = report.days()
        hits = sum(d in known for d in wanted)
        self._fill(client, name, report, known, compute)
        with self._lock:
            self.hits += hits
            self._entries[key] = Entry(changes.newest, changes.window,
                                       entry.created if entry else time.monotonic(), known)
            self._entries.move_to_end(key)
            while len(self._entries) > MAX_ENTRIES:
                self._entries.popitem(last=False)
        return {d: known[d] for d in wanted if known[d] is not _ABSENT}

    def _fill(self, client: Client, name: str, report: ReportRange, known: dict[date, Any],
              compute: Callable[[Client, ReportRange], dict[date, Any]]) -> None:
        """Add the report's days missing from `known`: those the rollup job stored, then the
        others computed by one query over the smallest range that covers them. When some days
        are after the last the job can have stored (today's) and the others are held in memory,
        the stored ones are looked up on a spare client, if one is free, while those are
        computed on this one: the lookup (~1.5 ms at 10 M demo events) gives the spare back at
        once to the request's other parts (today's DAU/WAU/MAU ~15 ms)."""
        missing = [d for d in report.days() if d not in known]
        recent: list[date] = []
        if missing and rollups.key(name, report, self._stored.zones) is not None:
            last_stored = rollups.finished_through(name, report.tz, datetime.now(UTC))
            recent = [d for d in missing if d > last_stored]
            missing = [d for d in missing if d <= last_stored]
        # Alongside only when the stored days are in memory already: else they may well be
        # missing (the job off, or not run yet), and one query over all days is cheaper than
        # today's and then the others' one after the other.
        held = bool(recent and missing) and self._stored.held(name, report, missing)
        if not held:
            if missing or recent:
                known.update(self._stored_then_computed(client, name, report, missing + recent, compute))
            return
        # The lookup takes a spare client in its own thread and gives it back as soon as it is done.
        looked_up = self._alongside.submit(self._looked_up_on_spare, name, report, missing)
        try:
            known.update(self._computed(client, report, recent, compute))
        finally:  # a spare client goes back to the pool only once its query has ended
            wait([looked_up])
        found = looked_up.result()  # its error, if any, is raised here
        if found is None:  # no spare client was free
            found = self._looked_up(client, name, report, missing)
        known.update(found)
        rest = [d for d in missing if d not in found]
        if rest:
            known.update(self._computed(client, report, rest, compute))

    def _looked_up_on_spare(self, name: str, report: ReportRange, days: list[date]) -> dict[date, Any] | None:
        with self._spare() as spare:
            if spare is None:
                return None
            with self._lock:
                self.alongside += 1
            return self._looked_up(spare, name, report, days)

    def _looked_up(self, client: Client, name: str, report: ReportRange, days: list[date]) -> dict[date, Any]:
        """The `days` the rollup job stored and are still true."""
        found = self._stored.days(client, name, replace(report, first_day=days[0], last_day=days[-1]))
        looked = {d: _ABSENT if found[d] is None else found[d] for d in days if d in found}
        with self._lock:
            self.stored += len(looked)
        return looked

    def _stored_then_computed(self, client: Client, name: str, report: ReportRange, missing: list[date],
                              compute: Callable[[Client, ReportRange], dict[date, Any]]) -> dict[date, Any]:
        days = self._looked_up(client, name, report, missing)
        rest = [d for d in missing if d not in days]
        return {**days, **self._computed(client, report, rest, compute)} if rest else days

    def _computed(self, client: Client, report: ReportRange, missing: list[date],
                  compute: Callable[[Client, ReportRange], dict[date, Any]]) -> dict[date, Any]:
        """The `missing` days (in order), by one query over the range that covers them."""
        fresh = compute(client, replace(report, first_day=missing[0], last_day=missing[-1]))
        with self._lock:
            self.computed += len(missing)
        return {d: fresh.get(d, _ABSENT) for d in missing}
