"""The reports' cache of finished days: a quiet server answers from memory, and an event arriving
late for an old day brings that day (and the later ones) up to date at the next request."""

from __future__ import annotations

from datetime import date

from server.process.app import create_app
from tests.conftest import SettlingClient
from tests.reports import reference

FIRST, LAST = date(2025, 3, 3), date(2025, 3, 9)
EVENTS = reference.generate(seed=41, first_day=FIRST, days=7, users=20)
RANGE = {"from": FIRST.isoformat(), "to": LAST.isoformat()}


def test_days_come_from_memory_until_an_event_touches_them(settings):
    with SettlingClient(create_app(settings)) as api:
        for n in range(0, len(EVENTS), 100):
            assert api.post("/events", json=EVENTS[n:n + 100]).status_code == 202
        cache = api.app.state.services.report_cache
        first = api.get("/reports/daily", params=RANGE).json()
        assert first == reference.daily(EVENTS, FIRST, LAST, "UTC")
        computed = cache.computed
        assert api.get("/reports/daily", params=RANGE).json() == first
        assert cache.computed == computed  # nothing computed again: all from memory
        # A late event on 5 March (a new user, a payment): the days it can change are computed again.
        late = {"dt": "2025-03-05T12:00:00Z", "event": "pay", "user_id": "late-user", "amount": 700,
                "app_id": "a1", "country": "DE"}
        assert api.post("/events", json=late).status_code == 202
        after = api.get("/reports/daily", params=RANGE).json()
        assert after == reference.daily([*EVENTS, {**late, "dt": 1741176000}], FIRST, LAST, "UTC")
        recomputed = cache.computed - computed
        # Active and new users 5 to 9 March (an event changes no earlier day of theirs), session
        # length 4 to 6 March (a session begun the day before, or one joined to it from the day
        # after), total users as of the 9th.
        assert recomputed == 5 + 5 + 3 + 1
        revenue = api.get("/reports/revenue", params=RANGE).json()
        assert revenue == reference.revenue([*EVENTS, {**late, "dt": 1741176000}], FIRST, LAST, "UTC")


def test_whole_range_reports_are_kept_until_an_event_touches_their_range(settings):
    with SettlingClient(create_app(settings)) as api:
        assert api.post("/events", json=EVENTS).status_code == 202
        cache = api.app.state.services.report_cache
        query = {**RANGE, "steps": "view,start_task,finish_task", "window": "3600"}
        before = api.get("/reports/funnel", params=query).json()
        computed = cache.computed
        later = {"dt": "2025-04-20T10:00:00Z", "event": "view", "user_id": "april", "app_id": "a1"}
        assert api.post("/events", json=later).status_code == 202  # after the range: nothing to redo
        assert api.get("/reports/funnel", params=query).json() == before
        assert cache.computed == computed
        inside = {"dt": "2025-03-04T10:00:00Z", "event": "view", "user_id": "march", "app_id": "a1"}
        assert api.post("/events", json=inside).status_code == 202
        after = api.get("/reports/funnel", params=query).json()
        assert cache.computed == computed + 1
        assert after["steps"][0]["users"] == before["steps"][0]["users"] + 1
        assert after == api.get("/reports/funnel", params=query, headers={"Cache-Control": "no-cache"}).json()


def test_a_block_that_commits_after_a_check_stamped_before_it_is_still_seen(settings):
    """A block's view stamps `inserted` before its INSERT commits, so a check can see later
    blocks and not it; the entry's count of blocks in the margin before its check tells."""
    with SettlingClient(create_app(settings)) as api:
        assert api.post("/events", json=EVENTS).status_code == 202
        first = api.get("/reports/daily", params=RANGE).json()  # the entry, checked now
        client = api.app.state.services.query_client
        checked = client.query("SELECT max(inserted) FROM event_changes").result_rows[0][0]
        late = {"dt": "2025-03-05T12:00:00Z", "event": "view", "user_id": "late-commit", "app_id": "a1"}
        assert api.post("/events", json=late).status_code == 202
        # Its block as if stamped 5 s before the check: moved back in event_changes.
        client.command("ALTER TABLE event_changes DELETE WHERE inserted > {c:DateTime64(3, 'UTC')} "
                       "SETTINGS mutations_sync = 2", parameters={"c": checked})
        client.command("INSERT INTO event_changes (inserted, first_dt, last_dt, rows) VALUES "
                       "({c:DateTime64(3, 'UTC')} - INTERVAL 5 SECOND, '2025-03-05 12:00:00', '2025-03-05 12:00:00', 1)",
                       parameters={"c": checked})
        after = api.get("/reports/daily", params=RANGE).json()
        assert after != first
        assert after == reference.daily([*EVENTS, {**late, "dt": 1741176000}], FIRST, LAST, "UTC")
