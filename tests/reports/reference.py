"""Seeded event generator and every report computed in plain Python from the same events."""

from __future__ import annotations

import random
from collections import defaultdict
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

GAP_MS = 30 * 60 * 1000
STEPS = ["view", "start_task", "finish_task", "pay"]


def generate(seed: int, first_day: date, days: int, users: int = 40) -> list[dict]:
    """Users with sessions (named and unnamed) walking view → start_task → finish_task → pay."""
    rng = random.Random(seed)
    events = []
    base = datetime.combine(first_day, datetime.min.time(), UTC)
    for u in range(users):
        app_id, country = rng.choice(["a1", "a2"]), rng.choice(["TR", "DE"])
        # Some users start before the range; session starts are whole hours apart (> 30 min gaps),
        # some near midnight in the zones the tests use.
        day_offsets = sorted(rng.sample(range(-10, days), k=rng.randint(1, 6)))
        for day in day_offsets:
            hour = rng.choice([0, 3, 4, 9, 13, 18, 22, 23])
            start = base + timedelta(days=day, hours=hour, minutes=rng.choice([0, 20, 45, 50]))
            named = rng.random() < 0.5
            session_id = f"s-{u}-{day}-{hour}" if named else ""
            t = start
            for step, name in enumerate(STEPS):
                if step > 0 and rng.random() < 0.35:
                    break
                for _ in range(rng.randint(1, 2)):
                    event = {"dt": int(t.timestamp()), "event": name, "user_id": f"u{u}",
                             "app_id": app_id, "country": country}
                    if session_id:
                        event["session_id"] = session_id
                    if name == "pay":
                        event["amount"] = rng.choice([100, 250, 500])
                    events.append(event)
                    t += timedelta(seconds=rng.randint(10, 25 * 60))
    rng.shuffle(events)  # out-of-order arrival
    return events


def local_day(epoch_seconds: int, tz: str) -> date:
    return datetime.fromtimestamp(epoch_seconds, ZoneInfo(tz)).date()


def day_bounds(first: date, last: date, tz: str) -> tuple[int, int]:
    zone = ZoneInfo(tz)
    start = datetime.combine(first, datetime.min.time(), zone).timestamp()
    end = datetime.combine(last + timedelta(days=1), datetime.min.time(), zone).timestamp()
    return int(start), int(end)


def days(first: date, last: date) -> list[date]:
    return [first + timedelta(days=n) for n in range((last - first).days + 1)]


def active_users(events, first, last, tz):
    by_day = defaultdict(set)
    for e in events:
        by_day[local_day(e["dt"], tz)].add(e["user_id"])

    def window(d, n):
        return len(set().union(*(by_day.get(d - timedelta(days=k), set()) for k in range(n))))

    return [{"date": d.isoformat(), "dau": window(d, 1), "wau": window(d, 7), "mau": window(d, 30)}
            for d in days(first, last)]


def first_seen(events) -> dict[str, int]:
    first = {}
    for e in events:
        first[e["user_id"]] = min(first.get(e["user_id"], e["dt"]), e["dt"])
    return first


def sessions(events) -> list[tuple[int, int]]:
    named = defaultdict(list)
    unnamed = defaultdict(list)
    for e in events:
        if e.get("session_id"):
            named[(e["session_id"], e["user_id"])].append(e["dt"])
        else:
            unnamed[e["user_id"]].append(e["dt"])
    found = [(min(ts), max(ts)) for ts in named.values()]
    for times in unnamed.values():
        times.sort()
        begin = previous = times[0]
        for t in times[1:]:
            if (t - previous) * 1000 > GAP_MS:
                found.append((begin, previous))
                begin = t
            previous = t
        found.append((begin, previous))
    return found


def daily(events, first, last, tz):
    start, end = day_bounds(first, last, tz)
    firsts = first_seen(events)
    new = defaultdict(int)
    for t in firsts.values():
        if start <= t < end:
            new[local_day(t, tz)] += 1
    durations = defaultdict(list)
    for begin, finish in sessions(events):
        if start <= begin < end:
            durations[local_day(begin, tz)].append(finish - begin)
    active = {row["date"]: row["dau"] for row in active_users(events, first, last, tz)}
    return {
        "total_users": sum(1 for t in firsts.values() if t < end),
        "daily_stats": [
            {"date": d.isoformat(), "active_user_count": active[d.isoformat()], "new_user_count": new[d],
             "average_session_duration": round(sum(durations[d]) / len(durations[d]), 3) if durations[d] else 0.0}
            for d in days(first, last)
        ],
    }


def funnel(events, first, last, tz, steps, window):
    start, end = day_bounds(first, last, tz)
    per_user = defaultdict(list)
    for e in events:
        if start <= e["dt"] < end and e["event"] in steps:
            per_user[e["user_id"]].append((e["dt"], steps.index(e["event"])))
    reached = [0] * len(steps)
    for items in per_user.values():
        chain_start = [None] * len(steps)
        level = 0
        for t, k in sorted(items):
            if k == 0:
                chain_start[0] = t
            elif chain_start[k - 1] is not None and t <= chain_start[k - 1] + window:
                chain_start[k] = chain_start[k - 1]
            if chain_start[k] is not None:
                level = max(level, k + 1)
        for n in range(level):
            reached[n] += 1
    return reached


def ratio(events, first, last, tz, numerator, denominator):
    start, end = day_bounds(first, last, tz)
    counts = defaultdict(lambda: [0, 0])
    for e in events:
        if start <= e["dt"] < end:
            key = (local_day(e["dt"], tz), e["user_id"])
            if e["event"] == numerator:
                counts[key][0] += 1
            elif e["event"] == denominator:
                counts[key][1] += 1
    per_day = defaultdict(list)
    for (d, _), (num, den) in counts.items():
        if den > 0:
            per_day[d].append(num / den)
    return {d.isoformat(): (sum(v) / len(v), len(v)) for d, v in per_day.items()}


def revenue(events, first, last, tz):
    totals, payers = defaultdict(int), defaultdict(set)
    for e in events:
        d = local_day(e["dt"], tz)
        totals[d] += e.get("amount", 0)
        if e.get("amount", 0) > 0:
            payers[d].add(e["user_id"])
    active = {row["date"]: row["dau"] for row in active_users(events, first, last, tz)}
    return [
        {"date": d.isoformat(), "revenue": totals[d], "paying_users": len(payers[d]),
         "paying_share": round(len(payers[d]) / active[d.isoformat()], 6) if active[d.isoformat()] else 0.0}
        for d in days(first, last)
    ]


def retention(events, first, last, tz, period):
    start, end = day_bounds(first, last, tz)

    def period_of(d: date) -> date:
        return d - timedelta(days=d.weekday()) if period == "week" else d

    step = 7 if period == "week" else 1
    firsts = first_seen(events)
    cohort_of = {u: period_of(local_day(t, tz)) for u, t in firsts.items() if start <= t < end}
    active = defaultdict(set)
    for e in events:
        if e["user_id"] in cohort_of and start <= e["dt"] < end:
            cohort = cohort_of[e["user_id"]]
            active[(cohort, (period_of(local_day(e["dt"], tz)) - cohort).days // step)].add(e["user_id"])
    last_period = period_of(last)
    result = []
    for cohort in sorted(set(cohort_of.values())):
        periods = (last_period - cohort).days // step
        result.append({"cohort": cohort.isoformat(), "users": len(active[(cohort, 0)]),
                       "retained": [len(active[(cohort, n)]) for n in range(1, periods + 1)]})
    return result
