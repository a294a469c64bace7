"""Every report over a range, from the server and from the Python reference (reference.py), in
the same shape: daily, active users, revenue, weekly retention, the funnel and the breakdown by
country, per zone. Tests compare the two whole."""

from __future__ import annotations

from collections import defaultdict
from datetime import date

import httpx

from tests.reports import reference

NO_CACHE = {"Cache-Control": "no-cache"}


def breakdown(events: list[dict], first: date, last: date, tz: str) -> list[tuple[str, int, int]]:
    start, end = reference.day_bounds(first, last, tz)
    users: dict[str, set[str]] = defaultdict(set)
    counts: dict[str, int] = defaultdict(int)
    for event in events:
        if start <= event["dt"] < end:
            users[event["country"]].add(event["user_id"])
            counts[event["country"]] += 1
    return sorted((value, len(users[value]), counts[value]) for value in users)


def expected(events: list[dict], first: date, last: date, zones: tuple[str, ...]) -> dict[str, object]:
    found: dict[str, object] = {}
    for tz in zones:
        found[f"daily {tz}"] = reference.daily(events, first, last, tz)
        found[f"active {tz}"] = reference.active_users(events, first, last, tz)
        found[f"revenue {tz}"] = reference.revenue(events, first, last, tz)
        found[f"retention {tz}"] = reference.retention(events, first, last, tz, "week")
        found[f"funnel {tz}"] = reference.funnel(events, first, last, tz, reference.STEPS, 3600)
        found[f"breakdown {tz}"] = breakdown(events, first, last, tz)
    return found


def reports(http: httpx.Client, first: date, last: date, zones: tuple[str, ...],
            headers: dict[str, str] = NO_CACHE, **filters: str) -> dict[str, object]:
    found: dict[str, object] = {}
    for tz in zones:
        def get(path: str, tz: str = tz, **extra: str) -> dict:
            query = {"from": first.isoformat(), "to": last.isoformat(), "tz": tz, **filters, **extra}
            response = http.get(path, params=query, headers=headers)
            assert response.status_code == 200, response.text
            return response.json()

        found[f"daily {tz}"] = get("/reports/daily")
        found[f"active {tz}"] = get("/reports/active-users")
        found[f"revenue {tz}"] = get("/reports/revenue")
        found[f"retention {tz}"] = get("/reports/retention", period="week")["cohorts"]
        found[f"funnel {tz}"] = [s["users"] for s in get("/reports/funnel", steps=",".join(reference.STEPS),
                                                         window="3600")["steps"]]
        found[f"breakdown {tz}"] = sorted((v["value"], v["visitors"], v["events"])
                                          for v in get("/reports/breakdown", by="country")["values"])
    return found
