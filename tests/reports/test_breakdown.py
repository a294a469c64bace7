"""GET /reports/breakdown: visitors and events per value of one column, top N and the rest,
against a count in Python of what was posted (browsers from real User-Agents, countries from the
events and the client IP, sources from referrers and UTM)."""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Iterator

import pytest

from server.config import Settings
from server.process.app import create_app
from tests.conftest import SettlingClient

AGENTS = {
    "Chrome": "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36",
    "Firefox": "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:133.0) Gecko/20100101 Firefox/133.0",
    "Mobile Safari": ("Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 "
                      "(KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1"),
}
SOURCES = ["https://www.google.com/", "https://news.example/a", "", "https://t.co/x"]
COUNTRIES = ["DE", "FR", ""]  # '' : from the client IP (GB)


@pytest.fixture
def posted(settings: Settings) -> Iterator[tuple[SettlingClient, list[dict[str, str]]]]:
    rng = random.Random(5)
    expected: list[dict[str, str]] = []
    by_agent: dict[str, list[dict[str, str]]] = defaultdict(list)
    with SettlingClient(create_app(settings), client=("81.2.69.160", 1)) as client:
        for n in range(120):
            browser = rng.choice(list(AGENTS))
            source, country = rng.choice(SOURCES), rng.choice(COUNTRIES)
            event = {"dt": f"2025-03-0{1 + n % 5}T10:00:00Z", "event": rng.choice(["pageview", "signup"]),
                     "user_id": f"u{rng.randrange(30)}", "url": f"https://shop.example/?utm_source=s{n % 4}"}
            if source:
                event["referrer"] = source
            if country:
                event["country"] = country
            by_agent[browser].append(event)
            expected.append({"browser": browser, "country": country or "GB", "user_id": event["user_id"],
                             "referrer_domain": (source.split("/")[2].removeprefix("www.") if source else ""),
                             "utm_source": f"s{n % 4}", "event": event["event"]})
        for browser, events in by_agent.items():
            assert client.post("/events", json=events, headers={"User-Agent": AGENTS[browser]}).status_code == 202
        bot = {"dt": "2025-03-02T10:00:00Z", "event": "pageview", "referrer": "https://spam.example/"}
        assert client.post("/events", json=bot, headers={"User-Agent": "Googlebot/2.1"}).status_code == 202
        yield client, expected


def reference(expected: list[dict[str, str]], by: str, limit: int) -> dict[str, object]:
    users: dict[str, set[str]] = defaultdict(set)
    events: dict[str, int] = defaultdict(int)
    for row in expected:
        users[row[by]].add(row["user_id"])
        events[row[by]] += 1
    ranked = sorted(users, key=lambda v: (-len(users[v]), -events[v], v))
    top, rest = ranked[:limit], ranked[limit:]
    return {"by": by,
            "values": [{"value": v, "visitors": len(users[v]), "events": events[v]} for v in top],
            "other": {"visitors": len(set().union(*(users[v] for v in rest))), "events": sum(events[v] for v in rest)}}


@pytest.mark.parametrize(("by", "limit"), [("browser", 10), ("country", 2), ("referrer_domain", 2),
                                           ("utm_source", 3), ("event", 1)])
def test_breakdown_matches_a_recount(posted, by, limit):
    client, expected = posted
    r = client.get(f"/reports/breakdown?by={by}&limit={limit}&from=2025-03-01&to=2025-03-05")
    assert r.status_code == 200, r.text
    assert r.json() == reference(expected, by, limit)


def test_bots_only_with_bots_include(posted):
    client, _ = posted
    values = client.get("/reports/breakdown?by=referrer_domain&from=2025-03-01&to=2025-03-05").json()["values"]
    assert "spam.example" not in [v["value"] for v in values]
    included = client.get("/reports/breakdown?by=referrer_domain&from=2025-03-01&to=2025-03-05&bots=include").json()
    assert {"value": "spam.example", "visitors": 1, "events": 1} in included["values"]


@pytest.mark.parametrize(("query", "field"), [("by=user_id", "by"), ("by=props", "by"), ("", "by"),
                                              ("by=os&limit=0", "limit"), ("by=os&limit=x", "limit"),
                                              ("by=os&limit=101", "limit")])
def test_bad_parameters_are_named(api, query, field):
    r = api.get(f"/reports/breakdown?{query}")
    assert r.status_code == 422
    assert r.json()["error"]["field"] == field
