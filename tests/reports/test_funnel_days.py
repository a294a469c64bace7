"""Configured funnels from the rollup job's stored days (server/reports/funnels.py): the answer
equals the Python reference in UTC and a DST zone, for all apps and one, over ranges that end on
any day; the stored rows are what is read; a late event that extends a chain begun on a stored
day makes that day computed again; a funnel not configured is computed from events."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest

from server import db
from server.app import create_app
from server.reports import funnels, rollups
from tests.conftest import SettlingClient
from tests.reports import reference
from tests.reports.test_rollups import NO_CACHE, memory_of, post

FIRST, LAST = date(2025, 3, 3), date(2025, 3, 16)
ZONES = ("UTC", "America/New_York")  # New York changes to DST on 2025-03-09
STEPS = ["view", "start_task", "finish_task", "pay"]
CONFIGURED = "view,start_task,finish_task,pay@3600;view,start_task@600"

# In each zone, a chain begun at 23:50 on 9 March that goes on at 00:05 on the 10th.
ACROSS_MIDNIGHT = [
    {"user_id": f"midnight-{tz}", "app_id": "a1", "country": "DE", "event": name,
     "dt": int(datetime.combine(date(2025, 3, 9) + timedelta(days=day), time(hour, minute), ZoneInfo(tz)).timestamp())}
    for tz in ZONES for name, day, hour, minute in (("view", 0, 23, 50), ("start_task", 1, 0, 5))]


@pytest.fixture
def stored(make_settings):
    """An app with generated events (sessions near midnight: chains that cross it) and every
    finished day of the configured funnels stored."""
    events = reference.generate(seed=29, first_day=FIRST, days=14, users=40) + ACROSS_MIDNIGHT
    settings = make_settings(rollup_zones=",".join(ZONES), report_funnels=CONFIGURED)
    with SettlingClient(create_app(settings)) as api:
        post(api, events)
        client = db.connect(settings)
        assert store(api, client) > 0
        yield api, client, events
        client.close()


def store(api, client) -> int:
    """One round of the rollup job, with the server's configured funnels; the days stored."""
    settings = api.app.state.services.settings
    return rollups.refresh(client, ZONES, keep_days=(date.today() - FIRST).days + 40, memory=memory_of(api),
                           funnels=funnels.stored(settings.funnels)).days


def answer(api, first: date, last: date, tz: str, steps: list[str], window: int, **extra: str) -> list[int]:
    query = {"from": first.isoformat(), "to": last.isoformat(), "tz": tz, "steps": ",".join(steps),
             "window": str(window), **extra}
    r = api.get("/reports/funnel", params=query, headers=NO_CACHE)
    assert r.status_code == 200, r.text
    return [step["users"] for step in r.json()["steps"]]


def stored_levels(client) -> int:
    return client.query("SELECT count() FROM funnel_days").result_rows[0][0]


@pytest.mark.parametrize("tz", ZONES)
def test_configured_funnels_from_stored_days_equal_the_reference(stored, tz):
    api, client, events = stored
    assert stored_levels(client) > 0
    a1 = [e for e in events if e["app_id"] == "a1"]
    # Whole range, a range ending on 9 March (chains begun that day are cut at its end, though
    # the stored day's rows reach past it: ACROSS_MIDNIGHT), and one starting mid-way.
    last_before = date(2025, 3, 9)
    cut = reference.funnel(events, FIRST, last_before, tz, STEPS, 3600)
    assert cut[1] < reference.funnel(events, FIRST, last_before + timedelta(days=1), tz, STEPS, 3600)[1]
    for first, last in ((FIRST, LAST), (FIRST, last_before), (FIRST + timedelta(days=5), LAST)):
        for steps, window in ((STEPS, 3600), (STEPS[:2], 600)):
            assert answer(api, first, last, tz, steps, window) == reference.funnel(events, first, last, tz, steps, window)
            assert answer(api, first, last, tz, steps, window, app_id="a1") == reference.funnel(a1, first, last, tz,
                                                                                                 steps, window)


def test_the_stored_rows_are_what_is_read(stored):
    """With the stored days' first steps deleted from `events` underneath (no change recorded),
    the configured funnel still answers as before: from the rows. A funnel not configured (the
    same steps, another window) is computed from what `events` holds."""
    api, client, events = stored
    before = answer(api, FIRST, LAST, "UTC", STEPS, 3600)
    assert before == reference.funnel(events, FIRST, LAST, "UTC", STEPS, 3600)
    cut = datetime.combine(FIRST + timedelta(days=7), datetime.min.time(), UTC)
    client.command("ALTER TABLE events DELETE WHERE event = 'view' AND dt < {cut:DateTime64(3, 'UTC')} "
                   "SETTINGS mutations_sync = 2", parameters={"cut": cut})
    rest = [e for e in events if not (e["event"] == "view" and e["dt"] < cut.timestamp())]
    assert reference.funnel(rest, FIRST, LAST, "UTC", STEPS, 3600) != before
    assert answer(api, FIRST, LAST, "UTC", STEPS, 3600) == before
    assert answer(api, FIRST, LAST, "UTC", STEPS, 3599) == reference.funnel(rest, FIRST, LAST, "UTC", STEPS, 3599)


def test_a_late_step_after_midnight_recomputes_the_stored_day_its_chain_began_on(stored):
    """A new user views at 23:40 on 10 March (stored) and, arriving late, starts a task at 00:10
    on the 11th: the chain began on the 10th, whose stored rows did not have it."""
    api, client, events = stored
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


def test_funnels_are_configured_by_report_funnels(make_settings):
    from server.config import ConfigError

    assert make_settings(report_funnels="a,b@60; c,d,e@86400").funnels == ((("a", "b"), 60), (("c", "d", "e"), 86400))
    assert make_settings(report_funnels="none").funnels == ()
    for bad in ("a,b", "a,b@0", "a,b@86401", "a@60", "a,a@60", "a,,b@60", "a,b@x"):
        with pytest.raises(ConfigError, match="REPORT_FUNNELS"):
            make_settings(report_funnels=bad)
