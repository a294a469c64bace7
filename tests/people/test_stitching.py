"""One person per human in every report: visitors browse anonymously (one id, two devices, an id
later aliased, a shared browser), then sign in; after the stitch job's round every report, on
the days computed from `events` and on the days the rollup job stored before the joins, equals
the Python reference with the joins applied by the rule (a refused join counted); events of an
anonymous id sent after its join follow it; every event is stored once, through a move cut
short too; erasing the person erases every id of theirs."""

from __future__ import annotations

import time
import uuid
from collections import defaultdict
from datetime import date, timedelta

import pytest

from server.data.erase import remove_ids
from server.people import stitch
from server.process.app import create_app
from server.reports import rollup_job
from tests.conftest import SettlingClient
from tests.reports import every_report, reference
from tests.test_erase import rows_of

# Every event in one month (one partition of the monthly tables: a mutation over several takes ~1 s
# on the embedded engine, even on a few rows).
FIRST, DAYS = date(2025, 3, 12), 14
LAST = FIRST + timedelta(days=DAYS - 1)
ZONES = ("UTC", "Asia/Kolkata")
ADMIN = "admin-token-for-people-tests"
IDENTITY = ("$identify", "$alias")


def scenario() -> tuple[list[dict], list[dict]]:
    """(events as sent before any sign-in, the identity calls in the order they happen). Users
    by n % 4: 0 browse under one anonymous id then sign in; 1 under two (two devices), each
    signing in; 2 are renamed (an alias of their old id), and a device that knew the old id
    signs in with it afterwards; 3 are left alone, but their first two share a browser: an
    anonymous id signs in as the one, then as the other (refused)."""
    events = [{**e, "event_id": str(uuid.uuid4())} for e in
              reference.generate(seed=31, first_day=FIRST, days=DAYS, users=32)]
    by_user: dict[str, list[dict]] = defaultdict(list)
    for event in events:
        by_user[event["user_id"]].append(event)
    calls: list[dict] = []

    def call(like: dict, name: str, user_id: str, anonymous_id: str, dt: int) -> None:
        calls.append({"event_id": str(uuid.uuid4()), "dt": dt, "event": name, "user_id": user_id,
                      "anonymous_id": anonymous_id, "app_id": like["app_id"], "country": like["country"]})

    alone = []
    for n, user in enumerate(sorted(by_user, key=lambda u: int(u[1:]))):
        own = sorted(by_user[user], key=lambda e: e["dt"])
        cut = own[len(own) // 2]["dt"]
        early = [e for e in own if e["dt"] < cut]
        if n % 4 == 0:
            for e in early:
                e["user_id"] = f"v:{user}"
            call(own[-1], "$identify", user, f"v:{user}", cut)
        elif n % 4 == 1:
            for k, e in enumerate(early):
                e["user_id"] = f"v:{user}-{k % 2}"
            call(own[-1], "$identify", user, f"v:{user}-0", cut)
            call(own[-1], "$identify", user, f"v:{user}-1", cut + 7)
        elif n % 4 == 2:
            for e in early:
                e["user_id"] = f"old-{user}"
            call(own[-1], "$alias", user, f"old-{user}", cut)  # alias(previousId=old, userId=user)
            device = [e for e in own if e["dt"] >= cut][:2]
            for e in device:
                e["user_id"] = f"v:{user}"
            call(own[-1], "$identify", f"old-{user}", f"v:{user}", own[-1]["dt"] + 60)
        else:
            alone.append(own)
    first = alone[0]
    second = next(own for own in alone[1:] if own[0]["app_id"] == first[0]["app_id"])  # joins are per app
    shared = [{**first[-1], "event_id": str(uuid.uuid4()), "user_id": "v:shared", "dt": first[-1]["dt"] + 60 * k}
              for k in (1, 2)]
    events += shared
    call(first[-1], "$identify", first[-1]["user_id"], "v:shared", first[-1]["dt"] + 300)
    call(second[-1], "$identify", second[-1]["user_id"], "v:shared", first[-1]["dt"] + 600)
    return events, sorted(calls, key=lambda c: c["dt"])


def as_people(events: list[dict], calls: list[dict]) -> tuple[list[dict], dict[str, int]]:
    """The reference: the joins applied one by one in time order (a join is refused when the
    anonymous id's person already has another id joined to them), and the events under each id's
    person, the identity calls among them (they are events of their user)."""
    parent: dict[str, str] = {}

    def person(one: str) -> str:
        while one in parent:
            one = parent[one]
        return one

    outcomes: dict[str, int] = defaultdict(int)
    for c in calls:
        source, target = person(c["anonymous_id"]), person(c["user_id"])
        if source == target:
            outcomes["same"] += 1
        elif any(person(one) == source for one in parent):
            outcomes["refused"] += 1
        else:
            parent[source] = target
            outcomes["joined"] += 1
    everything = [{k: v for k, v in e.items() if k != "anonymous_id"} for e in events + calls]
    return [{**e, "user_id": person(e["user_id"])} for e in everything], dict(outcomes)


def store(api) -> int:
    services = api.app.state.services
    return rollup_job.refresh(services.query_client, ZONES, keep_days=(date.today() - FIRST).days + 40,
                              memory=services.stored_days, more=services.stored_reports()).days


def post(api, events: list[dict]) -> None:
    for n in range(0, len(events), 200):
        assert api.post("/events", json=events[n:n + 200]).status_code == 202


def stored_once(api, count: int) -> None:
    client = api.app.state.services.query_client
    assert client.query("SELECT count(), uniqExact(event_id) FROM events").result_rows[0] == (count, count)


@pytest.fixture
def people(make_settings):
    settings = make_settings(admin_token=ADMIN, stitch_interval_seconds=3600, rollup_zones=",".join(ZONES),
                             report_breakdowns="country")
    with SettlingClient(create_app(settings), client=("127.0.0.1", 40000)) as api:  # an address: visitor ids
        yield api


def test_every_report_counts_people_on_computed_and_on_stored_days(people):
    events, calls = scenario()
    post(people, events)
    assert store(people) > 0  # the days stored while the visitors were still anonymous
    assert every_report.reports(people, FIRST, LAST, ZONES) == every_report.expected(events, FIRST, LAST, ZONES)

    post(people, calls)
    done = people.portal.call(people.app.state.services.stitch_job.round)
    joined, outcomes = as_people(events, calls)
    assert done.decided == outcomes and outcomes["refused"] == 1
    assert every_report.expected(joined, FIRST, LAST, ZONES) != every_report.expected(events + calls, FIRST, LAST, ZONES)
    # The stored days the joins touched are computed again, from `events` ...
    assert every_report.reports(people, FIRST, LAST, ZONES) == every_report.expected(joined, FIRST, LAST, ZONES)
    # ... and stored again by the next round, then read from storage (and through the cache).
    assert store(people) > 0
    assert every_report.reports(people, FIRST, LAST, ZONES) == every_report.expected(joined, FIRST, LAST, ZONES)
    assert every_report.reports(people, FIRST, LAST, ZONES, headers={}) == every_report.expected(
        joined, FIRST, LAST, ZONES)
    stored_once(people, len(events) + len(calls))
    metrics = people.get("/metrics").text
    assert 'identity_merges_total{outcome="refused"} 1.0' in metrics

    # A device still anonymous after its join sends more: moved by the next round.
    later = [{**events[0], "event_id": str(uuid.uuid4()), "user_id": calls[0]["anonymous_id"], "dt": events[0]["dt"] + 5}]
    post(people, later)
    again = people.portal.call(people.app.state.services.stitch_job.round)
    # (The moves copied identity calls under their persons: `same` joins, nothing new.)
    assert (set(again.decided) - {"same"}, again.moved) == (set(), 1)
    joined, _ = as_people(events + later, calls)
    assert every_report.reports(people, FIRST, LAST, ZONES) == every_report.expected(joined, FIRST, LAST, ZONES)
    stored_once(people, len(events) + len(calls) + 1)


def test_a_move_cut_short_stores_every_event_once(people):
    """What a crash leaves at each step of a move: the copies made and the originals still there,
    then the removal recorded and the originals' events gone but the tables keyed by user not yet
    cleaned. The next round finishes; every report equals the reference."""
    events, calls = scenario()
    post(people, events + calls)
    client = people.app.state.services.query_client
    stitch.decide(client)
    found = stitch.movers(client)
    app_id, pairs = sorted(found.items())[0]
    ids, persons = [one for one, _ in pairs], [person for _, person in pairs]
    client.command(stitch.sql("copy_events"), parameters={"app_id": app_id, "ids": ids, "persons": persons})
    assert client.query("SELECT count() FROM events").result_rows[0][0] > len(events) + len(calls)  # doubled now
    other_app, other = sorted(found.items())[1]
    other_ids = [one for one, _ in other]
    client.command(stitch.sql("copy_events"), parameters={"app_id": other_app, "ids": other_ids,
                                                           "persons": [person for _, person in other]})
    remove_ids(client, [(other_app, other_ids[0])], stitched=True)  # one id's removal done
    people.portal.call(people.app.state.services.stitch_job.round)
    stored_once(people, len(events) + len(calls))
    joined, _ = as_people(events, calls)
    assert every_report.reports(people, FIRST, LAST, ZONES) == every_report.expected(joined, FIRST, LAST, ZONES)
    assert client.query("SELECT count() FROM erasures").result_rows[0][0] == 0


def test_a_copy_cut_short_before_the_views_took_it_is_made_again(people):
    """What a crash during a move's copy leaves: `events` holds the copies (its part is written
    before the views'), some views do not (here: every view but the counts of `sessions` and
    `event_counts_hourly`, which then count them twice once the copy is made again); one app's
    move then cut after its sessions' rows were deleted, before they were rebuilt. The next round
    takes the copies out and makes them again, and rebuilds the sessions the record names: every
    report equals the reference, and each session's and each hour's counts equal those of `events`."""
    events, calls = scenario()
    post(people, events + calls)
    client = people.app.state.services.query_client
    stitch.decide(client)
    found = stitch.movers(client)
    views = [str(row[0]) for row in client.query(
        "SELECT name FROM system.tables WHERE database = currentDatabase() AND engine = 'MaterializedView' "
        "AND name NOT IN ('sessions_mv', 'event_counts_hourly_mv')").result_rows]
    assert "user_hours_mv" in views and "users_first_mv" in views
    for view in views:
        client.command(f"DETACH TABLE {view}")
    try:
        for app_id, pairs in found.items():
            client.command(stitch.sql("copy_events"), parameters={
                "app_id": app_id, "ids": [one for one, _ in pairs], "persons": [person for _, person in pairs]})
    finally:
        for view in views:
            client.command(f"ATTACH TABLE {view}")
    # One app's move goes on to its removal, then a crash between the rebuild's DELETE of its
    # sessions' rows and their INSERT: the next round rebuilds them from what the record holds.
    app_id = sorted(found)[0]
    stitch.begin_move(client, {app_id: found[app_id]})
    client.command("ALTER TABLE sessions DELETE WHERE (app_id, session_id) IN (SELECT arrayJoin(sessions) FROM erasures) "
                   "SETTINGS mutations_sync = 2")
    people.portal.call(people.app.state.services.stitch_job.round)
    stored_once(people, len(events) + len(calls))
    joined, _ = as_people(events, calls)
    assert every_report.reports(people, FIRST, LAST, ZONES) == every_report.expected(joined, FIRST, LAST, ZONES)
    sessions = "SELECT session_id, user_id, sum(events) FROM sessions GROUP BY ALL HAVING sum(events) > 0 ORDER BY ALL"
    from_events = "SELECT session_id, user_id, count() FROM events WHERE session_id != '' GROUP BY ALL ORDER BY ALL"
    assert client.query(sessions).result_rows == client.query(from_events).result_rows
    hours = "SELECT toStartOfHour(toDateTime(dt, 'UTC')) AS h, count() FROM events GROUP BY h ORDER BY h"
    assert client.query("SELECT hour, sum(events) FROM event_counts_hourly GROUP BY hour HAVING sum(events) > 0 "
                        "ORDER BY hour").result_rows == client.query(hours).result_rows


def test_erasing_a_person_erases_every_id_of_theirs(people):
    events, calls = scenario()
    post(people, events + calls)
    people.portal.call(people.app.state.services.stitch_job.round)
    user = next(c["user_id"] for c in calls if c["anonymous_id"].endswith("-1"))  # two devices
    late = [{**events[0], "event_id": str(uuid.uuid4()), "user_id": f"v:{user}-0"}]  # not moved yet
    post(people, late)
    answer = people.delete(f"/users/{user}", headers={"Authorization": f"Bearer {ADMIN}"})
    assert answer.status_code == 200
    assert sorted(answer.json()["anonymous_ids"]) == [f"v:{user}-0", f"v:{user}-1"]
    client = people.app.state.services.query_client
    for one in (user, f"v:{user}-0", f"v:{user}-1"):
        assert set(rows_of(client, one).values()) == {0}, one
    assert client.query("SELECT count() FROM persons WHERE person = {u:String}", parameters={"u": user}).result_rows == [(0,)]
    joined, _ = as_people(events, calls)
    rest = [e for e in joined if e["user_id"] != user]
    assert every_report.reports(people, FIRST, LAST, ZONES) == every_report.expected(rest, FIRST, LAST, ZONES)


def test_the_trackers_identify_joins_the_visitor_it_came_from(people):
    """t.js's `analytics.identify(id)` sends `$identify` with anonymous_id "$visitor": the server
    puts the sender's cookieless visitor id there, so the visitor's pageviews become the user's."""
    browser = {"User-Agent": "Mozilla/5.0 (X11; Linux x86_64) Firefox/120.0"}
    now = int(time.time())
    post_as = [{"event": "pageview", "app_id": "site", "dt": now - 60}, {"event": "pageview", "app_id": "site", "dt": now}]
    assert people.post("/events", json=post_as, headers=browser).status_code == 202
    identify = {"event": "$identify", "app_id": "site", "dt": now, "user_id": "ann", "props": {"anonymous_id": "$visitor"}}
    assert people.post("/events", json=identify, headers=browser).status_code == 202
    other = {**identify, "user_id": "ben"}  # no User-Agent: no visitor to name, no join
    assert people.post("/events", json=other, headers={"User-Agent": ""}).status_code == 202
    done = people.portal.call(people.app.state.services.stitch_job.round)
    assert (done.decided, done.moved) == ({"joined": 1}, 1)
    client = people.app.state.services.query_client
    assert client.query("SELECT user_id, count() FROM events GROUP BY 1 ORDER BY 1").result_rows == [("ann", 3), ("ben", 1)]
    assert client.query("SELECT count() FROM events WHERE has(mapKeys(props), 'anonymous_id') AND "
                        "props['anonymous_id'] NOT LIKE 'v:%'").result_rows == [(0,)]


def test_the_reports_of_a_group_count_its_members(people):
    """`group` calls (Segment group, `$group`) make users members of a group; every report with
    `group_id` counts its members' events only, whichever day they joined, stored days and the
    cache of finished days notwithstanding."""
    events = [{**e, "event_id": str(uuid.uuid4())} for e in
              reference.generate(seed=41, first_day=FIRST, days=DAYS, users=24)]
    users = sorted({e["user_id"] for e in events}, key=lambda u: int(u[1:]))
    like = {e["user_id"]: e for e in events}
    joins = [{"event_id": str(uuid.uuid4()), "event": "$group", "user_id": user, "dt": like[user]["dt"] + 1,
              "app_id": like[user]["app_id"], "country": like[user]["country"],
              "props": {"group_id": "acme" if n % 3 == 0 else "globex", "group_type": "company"}}
             for n, user in enumerate(users) if n % 3 != 2]
    post(people, events)
    assert store(people) > 0
    post(people, joins)
    everything = events + joins
    for group in ("acme", "globex", "nobody"):
        members = {j["user_id"] for j in joins if j["props"]["group_id"] == group}
        theirs = [e for e in everything if e["user_id"] in members]
        expected = every_report.expected(theirs, FIRST, LAST, ZONES)
        assert every_report.reports(people, FIRST, LAST, ZONES, group_id=group) == expected, group
        assert every_report.reports(people, FIRST, LAST, ZONES, headers={}, group_id=group) == expected, group
    assert every_report.expected(everything, FIRST, LAST, ZONES) == every_report.reports(people, FIRST, LAST, ZONES)
