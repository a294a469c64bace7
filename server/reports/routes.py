"""GET /reports/* and the seed clients' report routes: parameters → queries → JSON."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from typing import Any, Protocol, TypeVar, cast
from zoneinfo import ZoneInfo

from clickhouse_connect.driver.exceptions import ClickHouseError
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from server.config import BREAKDOWN_COLUMNS, Settings
from server.http.auth import read_protected
from server.http.bodies import read_decoded_body
from server.http.errors import BadBody, Unavailable, first_line
from server.http.responses import json_response
from server.http.state import services
from server.ingest.parse import parse_json
from server.reports import breakdowns, funnels, queries
from server.reports.cache import DayCache
from server.reports.params import BadParameter, ReportRange, parse_day, parse_tz, report_range
from server.reports.rollups import StoredDays
from server.store.db import ClientPool


class ReportServices(Protocol):
    settings: Settings
    report_clients: ClientPool
    report_cache: DayCache
    stored_days: StoredDays

    def memory_freed(self) -> None: ...


def _services(request: Request) -> ReportServices:
    found: ReportServices = services(request)
    return found


T = TypeVar("T")
MAX_WINDOW_SECONDS = 30 * 86400


async def _run(request: Request, query: Callable[..., T], *args: object) -> T:
    """Run one report query off the event loop, on a free client of the pool; a database failure
    is a 503, not a 500."""
    pool = _services(request).report_clients

    def run() -> T:
        with pool.client() as client:
            return query(client, *args)

    try:
        return await asyncio.to_thread(run)
    except ClickHouseError as exc:
        raise Unavailable(f"the report query failed: {first_line(exc)}") from None
    finally:
        _services(request).memory_freed()


async def _per_day(request: Request, name: str, query: Callable[..., dict[date, T]], report: ReportRange,
                   *extra: str) -> dict[date, T]:
    """A per-day report through the cache of finished days in memory (server/reports/cache.py)
    and the days the rollup job stored (server/reports/rollups.py). `Cache-Control: no-cache`
    skips the memory: the stored days still true are used, the others computed now."""
    memory = "no-cache" not in request.headers.get("cache-control", "")

    def compute(client: Any, piece: ReportRange) -> dict[date, T]:
        return query(client, piece, *extra)

    cache = _services(request).report_cache

    def days(client: Any) -> dict[date, T]:
        return cache.days(client, name, report, compute, *extra, memory=memory)

    return await _run(request, days)


async def _whole(request: Request, name: str, query: Callable[..., T], report: ReportRange, *extra: Any) -> T:
    """A report over the whole range (retention, funnel, breakdown) through the day cache: its
    answer is kept as the value of the range's last day, so any event touching the range (or the
    day after) makes it computed again; an unchanged range (last month) comes from memory."""
    if "no-cache" in request.headers.get("cache-control", ""):
        return await _run(request, query, report, *extra)

    def compute(client: Any, last_day: ReportRange) -> dict[date, T]:
        return {report.last_day: query(client, report, *extra)}

    found = await _run(request, _services(request).report_cache.days, name, replace(report, first_day=report.last_day),
                       compute, report.first_day.isoformat(), *(repr(value) for value in extra))
    return cast(T, found[report.last_day])


async def _total(request: Request, report: ReportRange) -> int:
    """Users seen up to the end of the range."""
    last = replace(report, first_day=report.last_day)
    return (await _per_day(request, "total_users", queries.totals, last)).get(report.last_day, 0)


async def _total_before(request: Request, report: ReportRange) -> int:
    """Users seen up to the end of the day before the range's last (stored by the rollup job once
    finished): daily adds the last day's new users, which it has, to make the total."""
    before = report.last_day - timedelta(days=1)
    previous = replace(report, first_day=before, last_day=before)
    return (await _per_day(request, "total_users", queries.totals, previous)).get(before, 0)


def _day(d: date) -> str:
    return d.isoformat()


async def daily(request: Request) -> Response:
    report = report_range(request.query_params)
    # Four parts at once on the report clients (two): session length first, the longest (today's
    # and yesterday's sessions, ~21 ms at 10 M demo events), while the others run one after
    # another on the other client (today's active users ~15 ms, new users ~12, the total's stored
    # day ~1.5); starting session length last made no difference beyond the noise (±6 ms).
    # The total is the day before's (stored once finished) plus the last day's new users.
    durations, active, new, total_before = await asyncio.gather(
        _per_day(request, "session_durations", queries.session_durations, report),
        _per_day(request, "active_users", queries.active_users, report),
        _per_day(request, "new_users", queries.new_users, report),
        _total_before(request, report))
    total = total_before + new.get(report.last_day, 0)
    stats = [
        {
            "date": _day(d),
            "active_user_count": active.get(d, (0, 0, 0))[0],
            "new_user_count": new.get(d, 0),
            "average_session_duration": round(durations.get(d, 0.0), 3),
        }
        for d in report.days()
    ]
    return json_response({"total_users": total, "daily_stats": stats})


async def active_users(request: Request) -> Response:
    report = report_range(request.query_params)
    active = await _per_day(request, "active_users", queries.active_users, report)
    return json_response(
        [{"date": _day(d), "dau": v[0], "wau": v[1], "mau": v[2]}
         for d, v in ((d, active.get(d, (0, 0, 0))) for d in report.days())]
    )


async def total_users(request: Request) -> Response:
    report = report_range(request.query_params)
    return json_response({"total_users": await _total(request, report)})


def funnel_steps(text: str | None) -> list[str]:
    steps = [s.strip() for s in (text or "").split(",") if s.strip()]
    if not 2 <= len(steps) <= 10:
        raise BadParameter("steps", f"must name 2 to 10 events separated by commas, got {len(steps)}")
    if len(set(steps)) != len(steps):
        raise BadParameter("steps", "must not repeat an event")
    return steps


def window_seconds(text: str | None) -> int:
    try:
        value = int(text or "3600")
    except ValueError:
        raise BadParameter("window", f"must be a whole number of seconds, got {str(text)[:40]!r}") from None
    if not 1 <= value <= MAX_WINDOW_SECONDS:
        raise BadParameter("window", f"must be between 1 and {MAX_WINDOW_SECONDS} seconds (30 days)")
    return value


async def funnel(request: Request) -> Response:
    report = report_range(request.query_params)
    steps = funnel_steps(request.query_params.get("steps"))
    window = window_seconds(request.query_params.get("window"))
    found = _services(request)

    def query(client: Any, report: ReportRange, steps: list[str], window: int) -> list[int]:
        return funnels.funnel(client, report, steps, window, found.stored_days, found.settings.funnels)

    reached = await _whole(request, "funnel", query, report, steps, window)
    first = reached[0]
    body = [
        {"step": step, "users": users, "conversion": round(users / first, 6) if first else 0.0}
        for step, users in zip(steps, reached, strict=True)
    ]
    return json_response({"window": window, "steps": body})


async def ratio(request: Request) -> Response:
    report = report_range(request.query_params)
    names = {}
    for name in ("numerator", "denominator"):
        value = request.query_params.get(name, "")
        if not value or len(value) > 1024:
            raise BadParameter(name, "must name an event")
        names[name] = value
    values = await _per_day(request, "ratio", queries.ratio, report, names["numerator"], names["denominator"])
    return json_response(
        [{"date": _day(d), "ratio": values[d][0], "users": values[d][1]} for d in report.days() if d in values]
    )


async def retention(request: Request) -> Response:
    report = report_range(request.query_params)
    period = request.query_params.get("period", "day")
    if period not in ("day", "week"):
        raise BadParameter("period", "must be day or week")
    period_days = 7 if period == "week" else 1
    cohorts = await _whole(request, "retention", queries.retention, report, period_days)
    last = report.last_day - timedelta(days=report.last_day.weekday()) if period == "week" else report.last_day
    body = []
    for cohort in sorted(cohorts):
        periods = (last - cohort).days // period_days
        counts = cohorts[cohort]
        body.append({"cohort": _day(cohort), "users": counts.get(0, 0),
                     "retained": [counts.get(n, 0) for n in range(1, periods + 1)]})
    return json_response({"period": period, "cohorts": body})


async def revenue(request: Request) -> Response:
    report = report_range(request.query_params)
    money, active = await asyncio.gather(_per_day(request, "revenue", queries.revenue, report),
                                         _per_day(request, "active_users", queries.active_users, report))
    body = []
    for d in report.days():
        total, payers = money.get(d, (0, 0))
        dau = active.get(d, (0, 0, 0))[0]
        body.append({"date": _day(d), "revenue": total, "paying_users": payers,
                     "paying_share": round(payers / dau, 6) if dau else 0.0})
    return json_response(body)


MAX_BREAKDOWN_LIMIT = 100


async def breakdown(request: Request) -> Response:
    report = report_range(request.query_params)
    by = request.query_params.get("by", "")
    if by not in BREAKDOWN_COLUMNS:
        raise BadParameter("by", f"must be one of {', '.join(BREAKDOWN_COLUMNS)}, got {by[:40]!r}")
    text = request.query_params.get("limit", "10")
    if not text.isdigit() or not 1 <= int(text) <= MAX_BREAKDOWN_LIMIT:
        raise BadParameter("limit", f"must be a whole number from 1 to {MAX_BREAKDOWN_LIMIT}, got {text[:40]!r}")
    found = _services(request)

    def query(client: Any, report: ReportRange, by: str, limit: int) -> tuple[list[tuple[str, int, int]], tuple[int, int]]:
        return breakdowns.breakdown(client, report, by, limit, found.stored_days, found.settings.breakdowns)

    top, (rest_visitors, rest_events) = await _whole(request, "breakdown", query, report, by, int(text))
    return json_response({
        "by": by,
        "values": [{"value": value, "visitors": visitors, "events": events} for value, visitors, events in top],
        "other": {"visitors": rest_visitors, "events": rest_events},
    })


async def event_counts(request: Request) -> Response:
    report = report_range(request.query_params)
    rows = await _whole(request, "event_counts", queries.event_counts, report)
    zone = ZoneInfo(report.tz)
    return json_response(
        [{"hour": _hour(hour, zone), "event": event, "events": int(n)} for hour, event, n in rows]
    )


def _hour(hour: datetime, zone: ZoneInfo) -> str:
    """The UTC hour's start shown in the report's zone, with its offset."""
    return hour.replace(tzinfo=UTC).astimezone(zone).isoformat()


async def seed_total_user(request: Request) -> Response:
    """Seed 000: `GET /api/v1/crm/user-stat/total-user` → {"total_user": N}, all users ever."""
    report = ReportRange(date(1971, 1, 1), date(9998, 12, 30), "UTC")
    return json_response({"total_user": await _run(request, queries.total_users, report)})


async def seed_active_user(request: Request) -> Response:
    """Seed 000: `POST /api/v1/crm/daily-stat/active-user` {"date"} → {"distinct_user": N}."""
    items = parse_json(await read_decoded_body(request, _services(request).settings.max_body_bytes))
    if len(items) != 1 or not isinstance(items[0], dict):
        raise BadBody('body must be a JSON object: {"date": "YYYY-MM-DD"}', field="body")
    document = items[0]
    text = document.get("date")
    if not isinstance(text, str):
        raise BadParameter("date", "is required as YYYY-MM-DD")
    day = parse_day("date", text)
    tz = parse_tz(document.get("tz", "UTC")) if isinstance(document.get("tz", "UTC"), str) else "UTC"
    report = ReportRange(day, day, tz)
    active = await _run(request, queries.active_users, report)
    return json_response({"distinct_user": active.get(day, (0, 0, 0))[0]})


def routes() -> list[Route]:
    return [
        Route("/reports/daily", read_protected(daily)),
        Route("/event", read_protected(daily), methods=["GET"]),  # seed 001
        Route("/event/", read_protected(daily), methods=["GET"]),
        Route("/analytics/daily", read_protected(daily)),  # seed 002
        Route("/reports/active-users", read_protected(active_users)),
        Route("/reports/total-users", read_protected(total_users)),
        Route("/reports/funnel", read_protected(funnel)),
        Route("/reports/ratio", read_protected(ratio)),
        Route("/reports/retention", read_protected(retention)),
        Route("/reports/revenue", read_protected(revenue)),
        Route("/reports/events", read_protected(event_counts)),
        Route("/reports/breakdown", read_protected(breakdown)),
        Route("/api/v1/crm/user-stat/total-user", read_protected(seed_total_user)),
        Route("/api/v1/crm/daily-stat/active-user", read_protected(seed_active_user), methods=["POST"]),
    ]
