"""Configured funnels and breakdowns from the rollup job's per-user rows of stored days
(server/reports/funnels.py, breakdowns.py): the answers equal the Python reference in UTC, +5:30 and a
DST zone, for all apps and one, over ranges that end on any day; the stored rows are what is
read; a late event makes the stored days it touches computed again (for a funnel, the day a chain
it extends began on); a funnel or column not configured, or a filter, is computed from events."""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, date, datetime, time, timedelta
from time import sleep
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from server.process.app import create_app
from server.reports import rollup_job, rollups, stored_rows
from server.store import db
from tests.conftest import SettlingClient
from tests.reports import reference
from tests.reports.test_rollups import NO_CACHE, memory_of, post

FIRST, LAST = date(2025, 3, 3), date(2025, 3, 16)
ZONES = ("UTC", "Asia/Kolkata", "America/New_York")  # +5:30; New York changes to DST on 2025-03-09
STEPS = ["view", "start_task", "finish_task", "pay"]
CONFIGURED = "view,start_task,finish_task,pay@3600;view,start_task@600"
COLUMNS = "country,event"

# In each zone, a chain begun at 23:50 on 9 March that goes on at 00:05 on the 10th.
ACROSS_MIDNIGHT = [
    {"user_id": f"midnight-{tz}", "app_id": "a1", "country": "FR", "event": name,
     "dt": int(datetime.combine(date(2025, 3, 9) + timedelta(days=day), time(hour, minute), ZoneInfo(tz)).timestamp())}
    for tz in ZONES for name, day, hour, minute in (("view", 0, 23, 50), ("start_task", 1, 0, 5))]


def stored_app(make_settings, zones: tuple[str, ...]):
    """An app with generated events (sessions near midnight: chains that cross it) and every
    finished day of the configured funnels and breakdowns stored for `zones`."""
    events = reference.generate(seed=29, first_day=FIRST, days=14, users=40) + ACROSS_MIDNIGHT
    settings = make_settings(rollup_zones=",".join(zones), report_funnels=CONFIGURED, report_breakdowns=COLUMNS)
    with SettlingClient(create_app(settings)) as api:
        post(api, events)
        client = db.connect(settings)
        assert store(api, client) > 0
        yield api, client, events
        client.close()


@pytest.fixture
def stored(make_settings):
    """Stored in the three zones (UTC, +5:30, DST)."""
    yield from stored_app(make_settings, ZONES)


@pytest.fixture
def stored_utc(make_settings):
    """Stored in UTC only: for the tests that change the data (one zone is enough, and quicker)."""
    yield from stored_app(make_settings, ("UTC",))


def store(api, client) -> int:
    """One round of the rollup job, with the server's configured funnels; the days stored."""
    return rollup_job.refresh(client, api.app.state.services.settings.zones, keep_days=(date.today() - FIRST).days + 40,
                           memory=memory_of(api), more=api.app.state.services.stored_reports()).days


def answer(api, first: date, last: date, tz: str, steps: list[str], window: int, **extra: str) -> list[int]:
    query = {"from": first.isoformat(), "to": last.isoformat(), "tz": tz, "steps": ",".join(steps),
             "window": str(window), **extra}
    r = api.get("/reports/funnel", params=query, headers=NO_CACHE)
    assert r.status_code == 200, r.text
    return [step["users"] for step in r.json()["steps"]]


def rows_in(client, table: str) -> int:
    return client.query(f"SELECT count() FROM {table}").result_rows[0][0]


def breakdown(api, first: date, last: date, tz: str, by: str, limit: int, **extra: str) -> dict:
    query = {"from": first.isoformat(), "to": last.isoformat(), "tz": tz, "by": by, "limit": str(limit), **extra}
    r = api.get("/reports/breakdown", params=query, headers=NO_CACHE)
    assert r.status_code == 200, r.text
    return r.json()


def breakdown_reference(events: list[dict], first: date, last: date, tz: str, by: str, limit: int) -> dict:
    start, end = reference.day_bounds(first, last, tz)
    users: dict[str, set[str]] = defaultdict(set)
    counts: dict[str, int] = defaultdict(int)
    for e in events:
        if start <= e["dt"] < end:
            users[e[by]].add(e["user_id"])
            counts[e[by]] += 1
    ranked = sorted(users, key=lambda v: (-len(users[v]), -counts[v], v))
    rest = ranked[limit:]
    return {"by": by, "values": [{"value": v, "visitors": len(users[v]), "events": counts[v]} for v in ranked[:limit]],
            "other": {"visitors": len(set().union(*(users[v] for v in rest))), "events": sum(counts[v] for v in rest)}}


def test_configured_funnels_and_breakdowns_from_stored_days_equal_the_reference(stored):
    api, client, events = stored
    assert rows_in(client, "funnel_days") > 0 and rows_in(client, "breakdown_days") > 0
    a1 = [e for e in events if e["app_id"] == "a1"]
    last_before = date(2025, 3, 9)
    for tz in ZONES:
        # Whole range, a range ending on 9 March (chains begun that day are cut at its end,
        # though the stored day's rows reach past it: ACROSS_MIDNIGHT), and one starting mid-way.
        cut = reference.funnel(events, FIRST, last_before, tz, STEPS, 3600)
        assert cut[1] < reference.funnel(events, FIRST, last_before + timedelta(days=1), tz, STEPS, 3600)[1]
        for first, last in ((FIRST, LAST), (FIRST, last_before), (FIRST + timedelta(days=5), LAST)):
            for steps, window in ((STEPS, 3600), (STEPS[:2], 600)):
                assert answer(api, first, last, tz, steps, window) == reference.funnel(events, first, last, tz, steps,
                                                                                       window)
                assert answer(api, first, last, tz, steps, window, app_id="a1") == reference.funnel(
                    a1, first, last, tz, steps, window)
            for by in ("country", "event"):
                for limit in (1, 10):
                    assert breakdown(api, first, last, tz, by, limit) == breakdown_reference(events, first, last, tz, by,
                                                                                             limit)
                    assert breakdown(api, first, last, tz, by, limit, app_id="a1") == breakdown_reference(
                        a1, first, last, tz, by, limit)


def test_the_stored_rows_are_what_is_read(stored_utc):
    """With the stored days' first steps deleted from `events` underneath (no change recorded),
    the configured funnel still answers as before: from the rows. A funnel not configured (the
    same steps, another window) is computed from what `events` holds."""
    api, client, events = stored_utc
    before = answer(api, FIRST, LAST, "UTC", STEPS, 3600)
    assert before == reference.funnel(events, FIRST, LAST, "UTC", STEPS, 3600)
    cut = datetime.combine(FIRST + timedelta(days=7), datetime.min.time(), UTC)
    client.command("ALTER TABLE events DELETE WHERE event = 'view' AND dt < {cut:DateTime64(3, 'UTC')} "
                   "SETTINGS mutations_sync = 2", parameters={"cut": cut})
    rest = [e for e in events if not (e["event"] == "view" and e["dt"] < cut.timestamp())]
    assert reference.funnel(rest, FIRST, LAST, "UTC", STEPS, 3600) != before
    assert answer(api, FIRST, LAST, "UTC", STEPS, 3600) == before
    assert answer(api, FIRST, LAST, "UTC", STEPS, 3599) == reference.funnel(rest, FIRST, LAST, "UTC", STEPS, 3599)


def test_a_late_step_after_midnight_recomputes_the_stored_day_its_chain_began_on(stored_utc):
    """A new user views at 23:40 on 10 March (stored) and, arriving late, starts a task at 00:10
    on the 11th: the chain began on the 10th, whose stored rows did not have it."""
    api, client, events = stored_utc
    assert answer(api, FIRST, LAST, "UTC", STEPS, 3600) == reference.funnel(events, FIRST, LAST, "UTC", STEPS, 3600)
    base = {"user_id": "late-user", "app_id": "a1", "country": "TR"}
    view = {**base, "event": "view", "dt": int(datetime(2025, 3, 10, 23, 40, tzinfo=UTC).timestamp())}
    post(api, [view])
    assert store(api, client) > 0  # the days the view touched, stored again with it (level 1)
    start = {**base, "event": "start_task", "dt": int(datetime(2025, 3, 11, 0, 10, tzinfo=UTC).timestamp())}
    post(api, [start])
    everything = [*events, view, start]
    expected = reference.funnel(everything, FIRST, LAST, "UTC", STEPS, 3600)
    assert expected[1] == reference.funnel(events, FIRST, LAST, "UTC", STEPS, 3600)[1] + 1
    assert answer(api, FIRST, LAST, "UTC", STEPS, 3600) == expected
    assert store(api, client) > 0
    assert answer(api, FIRST, LAST, "UTC", STEPS, 3600) == expected


def test_the_stored_breakdown_rows_are_what_is_read_and_a_late_event_is_counted(stored_utc):
    """With the first week's events deleted from `events` underneath (no change recorded), a
    configured column still answers as before; one not configured (app_id), or with an event
    filter, from what `events` holds. Then a late event on a stored day: counted at once."""
    api, client, events = stored_utc
    before = breakdown(api, FIRST, LAST, "UTC", "country", 10)
    assert before == breakdown_reference(events, FIRST, LAST, "UTC", "country", 10)
    cut = datetime.combine(FIRST + timedelta(days=7), datetime.min.time(), UTC)
    client.command("ALTER TABLE events DELETE WHERE dt < {cut:DateTime64(3, 'UTC')} SETTINGS mutations_sync = 2",
                   parameters={"cut": cut})
    rest = [e for e in events if e["dt"] >= cut.timestamp()]
    assert breakdown_reference(rest, FIRST, LAST, "UTC", "country", 10) != before
    assert breakdown(api, FIRST, LAST, "UTC", "country", 10) == before
    assert breakdown(api, FIRST, LAST, "UTC", "app_id", 10) == breakdown_reference(rest, FIRST, LAST, "UTC", "app_id", 10)
    only_views = breakdown(api, FIRST, LAST, "UTC", "country", 10, event="view")
    assert only_views == breakdown_reference([e for e in rest if e["event"] == "view"], FIRST, LAST, "UTC", "country", 10)
    late = {"user_id": "late-user", "app_id": "a2", "country": "NZ", "event": "view",
            "dt": int(datetime(2025, 3, 12, 12, tzinfo=UTC).timestamp())}
    post(api, [late])
    after = breakdown(api, FIRST, LAST, "UTC", "country", 10)
    assert {"value": "NZ", "visitors": 1, "events": 1} in after["values"]
    assert [v for v in after["values"] if v["value"] != "NZ"] == before["values"]


def test_days_still_true_are_stamped_again_and_rows_no_marker_names_are_deleted(stored_utc, monkeypatch):
    """Once rows are RESTAMP_HOURS old (0 here), a round stamps the days still true again with
    the same batch and computes only the days a late event touched (for the funnel, the day
    before too). The touched days' old batches are then named by no marker: the cleanup deletes
    them, and the answers stay equal to the reference."""
    api, client, events = stored_utc
    late = {"user_id": "late-user", "app_id": "a2", "country": "NZ", "event": "view",
            "dt": int(datetime(2025, 3, 12, 12, tzinfo=UTC).timestamp())}
    post(api, [late])
    everything = [*events, late]
    batches = "SELECT report, key, day, batch FROM {t:Identifier} GROUP BY ALL"
    before = {t: set(client.query(batches, parameters={"t": t}).result_rows) for t in ("funnel_days", "breakdown_days")}
    monkeypatch.setattr(rollups, "RESTAMP_HOURS", 0)
    # Another late event arrives during the round (on the 5th), after its first key (active
    # users) found the days true and before it stamps them again: the days it touches (the 5th
    # to the 11th there: WAU/MAU reach forward) must be computed, not stamped again.
    during = {**late, "user_id": "during-user", "dt": int(datetime(2025, 3, 5, 12, tzinfo=UTC).timestamp())}
    stamp = rollup_job._stamp

    def stamp_after_a_late_event(client_: Any) -> tuple[datetime, int]:
        if during not in everything:
            post(api, [during])
            everything.append(during)
        return stamp(client_)
    monkeypatch.setattr(rollup_job, "_stamp", stamp_after_a_late_event)
    done = rollup_job.refresh(client, ("UTC",), keep_days=(date.today() - FIRST).days + 40, memory=memory_of(api),
                           more=api.app.state.services.stored_reports())
    assert done.restamped > 0 and done.days > 0  # (new and total users: every day after the 12th)
    after = {t: set(client.query(batches, parameters={"t": t}).result_rows) for t in before}
    replaced: dict[str, set] = {}
    for table, old in before.items():
        new = after[table] - old
        # New batches for the days from the first late event to the last (the 5th to the 12th:
        # the blocks unseen by a stamp are one span), and for the funnels the day before (its
        # chains may reach the 5th), per zone and key with that day; other days keep theirs.
        first = date(2025, 3, 4) if table == "funnel_days" else date(2025, 3, 5)
        assert {day for _, _, day, _ in new} == {first + timedelta(days=n) for n in range((date(2025, 3, 12) - first).days + 1)}
        renewed = {row[:3] for row in new}
        assert len(renewed) == len(new)
        replaced[table] = {row for row in old if row[:3] in renewed}
        assert replaced[table]
    sleep(1.1)  # rows' `stored` is in whole seconds
    stored_rows.drop_unreferenced(client, older_than_hours=0)
    for table in before:
        assert set(client.query(batches, parameters={"t": table}).result_rows) == after[table] - replaced[table]
    assert api.get("/reports/active-users", params={"from": FIRST.isoformat(), "to": LAST.isoformat()},
                   headers=NO_CACHE).json() == reference.active_users(everything, FIRST, LAST, "UTC")
    assert answer(api, FIRST, LAST, "UTC", STEPS, 3600) == reference.funnel(everything, FIRST, LAST, "UTC", STEPS, 3600)
    assert breakdown(api, FIRST, LAST, "UTC", "country", 10) == breakdown_reference(everything, FIRST, LAST, "UTC",
                                                                                     "country", 10)


def test_funnels_are_configured_by_report_funnels(make_settings):
    from server.config import ConfigError

    assert make_settings(report_funnels="a,b@60; c,d,e@86400").funnels == ((("a", "b"), 60), (("c", "d", "e"), 86400))
    assert make_settings(report_funnels="none").funnels == ()
    for bad in ("a,b", "a,b@0", "a,b@86401", "a@60", "a,a@60", "a,,b@60", "a,b@x"):
        with pytest.raises(ConfigError, match="REPORT_FUNNELS"):
            make_settings(report_funnels=bad)
    assert make_settings(report_breakdowns="os, country,os").breakdowns == ("os", "country")
    assert make_settings(report_breakdowns="none").breakdowns == ()
    with pytest.raises(ConfigError, match="REPORT_BREAKDOWNS: 'user_id'"):
        make_settings(report_breakdowns="country,user_id")
