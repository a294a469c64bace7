"""Plausible's and Umami's browser scripts' posts, as their scripts send them, and hostile bodies
on every peer route: a 4xx in the peer's shape, naming the field, and nothing stored."""

from __future__ import annotations

import gzip
import time
from collections.abc import Iterator

import pytest
from starlette.testclient import TestClient

from server.http.cors import INGEST_PATHS
from server.http.openapi import document
from server.process.app import create_app
from server.sdks.routes import PEER_PATHS
from tests.conftest import SettlingClient

BROWSER = {"User-Agent": "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 Chrome/121.0 Safari/537.36",
           "Content-Type": "text/plain"}


# A browser's address (its country and visitor id come from it; GB in iptocc's data).
BROWSER_ADDRESS = ("81.2.69.142", 50000)


@pytest.fixture
def api(settings) -> Iterator[TestClient]:
    """As the suite's `api`, with a browser's address as the client's."""
    with SettlingClient(create_app(settings), client=BROWSER_ADDRESS) as client:
        yield client


def consumed(api) -> None:
    """Until the write-ahead log's consumer has inserted what was acknowledged (the peers' routes
    answer 200, after which SettlingClient does not wait)."""
    deadline = time.monotonic() + 30
    while api.app.state.services.pipeline.status().get("log_bytes") and time.monotonic() < deadline:
        time.sleep(0.02)


def events(api) -> list[tuple]:
    consumed(api)
    return api.app.state.services.query_client.query(
        "SELECT event, user_id, app_id, screen, referrer_domain, amount, props FROM events_buffer ORDER BY dt, event"
    ).result_rows


def test_a_plausible_pageview_and_custom_event_with_revenue(api):
    page = {"n": "pageview", "u": "https://blog.example/post?utm_source=x", "d": "blog.example",
            "r": "https://social.example/feed"}
    assert api.post("/api/event", json=page, headers=BROWSER).status_code == 202
    custom = {"name": "Purchase", "url": "https://blog.example/buy", "domain": "blog.example",
              "props": '{"plan": "pro"}', "revenue": {"amount": "12.50", "currency": "EUR"}}
    response = api.post("/api/event", json=custom, headers=BROWSER)
    assert (response.status_code, response.text) == (202, "ok")
    [view, purchase] = events(api)
    assert view[0] == "pageview" and view[1].startswith("v:") and view[2:5] == ("blog.example", "/post", "social.example")
    assert purchase[0] == "Purchase" and purchase[1] == view[1]  # the same visitor
    assert purchase[5] == 1250 and purchase[6]["currency"] == "EUR" and purchase[6]["plan"] == "pro"


def test_umami_events_and_identify_join_the_visitor_to_the_user(api):
    site = "4fb7fa4c-5b46-438d-94b3-3a8fb9bc2e8b"
    view = {"type": "event", "payload": {"website": site, "hostname": "app.example", "url": "/start?x=1",
                                         "referrer": "https://ref.example/", "title": "Start", "language": "en"}}
    assert api.post("/api/send", json=view, headers=BROWSER).status_code == 200
    click = {"type": "event", "payload": {"website": site, "hostname": "app.example", "url": "/start",
                                          "name": "signup-click", "data": {"button": "top"}}}
    assert api.post("/api/send", json=click, headers=BROWSER).status_code == 200
    identify = {"type": "identify", "payload": {"website": site, "id": "user-42", "data": {"plan": "pro"}}}
    assert api.post("/api/send", json=identify, headers=BROWSER).status_code == 200
    rows = events(api)
    assert [row[0] for row in rows] == ["pageview", "signup-click", "$identify"]
    visitor = rows[0][1]
    assert visitor.startswith("v:") and rows[1][1] == visitor and rows[2][1] == "user-42"
    assert rows[0][2:5] == (site, "/start", "ref.example") and rows[0][6]["url"] == "https://app.example/start?x=1"
    assert rows[2][6] == {"plan": "pro", "anonymous_id": visitor}
    client = api.app.state.services.query_client
    assert client.query("SELECT anonymous_id, user_id FROM identities FINAL").result_rows == [(visitor, "user-42")]


HOSTILE = [
    ("/v1/batch", b"{", "body"),
    ("/v1/batch", b"[1, 2]", "body"),
    ("/v1/batch", b'{"batch": {"type": "track"}}', "batch"),
    ("/v1/batch", b'{"batch": [{"type": "launch", "userId": "u"}]}', "type"),
    ("/v1/batch", b'{"batch": [{"type": "track", "event": "ok", "userId": "u"}, {"type": "track", "event": "x"}]}', "userId"),
    ("/v1/track", b'{"userId": "u"}', "event"),
    ("/v1/track", b'{"userId": "u", "event": "e", "properties": [1]}', "properties"),
    ("/v1/track", b'{"userId": "u", "event": "e", "timestamp": "yesterday"}', "timestamp"),
    ("/v1/track", b'{"userId": "u", "event": "e", "context": "x"}', "context"),
    ("/v1/alias", b'{"userId": "u"}', "previousId"),
    ("/v1/group", b'{"userId": "u"}', "groupId"),
    ("/v1/track", b'{"userId": "u", "event": "e", "properties": {"revenue": "lots"}}', "properties.revenue"),
    ("/v1/track", b'{"userId": "' + b"x" * 5000 + b'", "event": "e"}', "user_id"),
    ("/capture/", b"not json at all", "body"),
    ("/capture/", b'{"event": "e", "distinct_id": "d", "properties": 5}', "properties"),
    ("/batch/", b'{"api_key": "k", "batch": "x"}', "batch"),
    ("/batch/", b'{"api_key": "k", "batch": [{"distinct_id": "d"}]}', "event"),
    ("/e/", b'{"event": "e", "properties": {}}', "userId"),
    ("/e/", b'{"event": "$create_alias", "distinct_id": "d", "properties": {}}', "properties.alias"),
    ("/api/event", b'{"n": "pageview", "u": "https://x.example/"}', "domain"),
    ("/api/event", b'{"n": "pageview", "d": "x.example"}', "url"),
    ("/api/event", b'{"n": "p", "u": "https://x.example/", "d": "x.example", "p": "{oops"}', "props"),
    ("/api/send", b'{"type": "event", "payload": {}}', "payload.website"),
    ("/api/send", b'{"type": "party", "payload": {"website": "w"}}', "type"),
    ("/api/send", b'{"type": "identify", "payload": {"website": "w"}}', "payload.id"),
]


@pytest.mark.parametrize(("path", "body", "field"), HOSTILE)
def test_hostile_bodies_get_a_4xx_naming_the_field_and_store_nothing(api, path, body, field):
    response = api.post(path, content=body, headers=BROWSER)
    assert 400 <= response.status_code < 500, response.text
    error = response.json()["error"]
    named = [error.get("field"), *(e["field"] for e in error.get("errors", []))]
    assert field in named, response.text
    assert events(api) == []


def test_a_gzip_bomb_on_the_posthog_route_is_refused_without_inflating_it(api):
    bomb = gzip.compress(b"[" + b" " * 50_000_000 + b"]")
    response = api.post("/e/", params={"compression": "gzip-js"}, content=bomb, headers=BROWSER)
    assert response.status_code == 413 and response.json()["error"]["field"] == "body"


def test_the_error_shapes_are_the_peers(api):
    segment = api.post("/v1/track", json={"userId": "u"}).json()
    assert segment["success"] is False and "failed validation" in segment["message"]
    posthog = api.post("/capture/", content=b"{").json()
    assert posthog["type"] == "validation_error" and posthog["detail"]
    plausible = api.post("/api/event", json={"n": "x"}).json()
    assert list(plausible["errors"]) == ["domain"]


def test_keys_apply_to_every_peer_route(make_settings):
    settings = make_settings(write_keys="shop:segment-key-9,blog:blog.example,site:4fb7fa4c-5b46")
    with TestClient(create_app(settings), client=BROWSER_ADDRESS) as api:
        track = {"userId": "u", "event": "e"}
        assert api.post("/v1/track", json=track).status_code == 401
        assert api.post("/v1/track", json=track, auth=("segment-key-9", "")).json() == {"success": True}
        assert api.post("/v1/track", json={**track, "writeKey": "segment-key-9"}).status_code == 200
        assert api.post("/capture/", json={"event": "e", "distinct_id": "d"}).json()["type"] == "authentication_error"
        page = {"n": "pageview", "u": "https://other.example/", "d": "other.example"}
        assert api.post("/api/event", json=page, headers=BROWSER).status_code == 401
        assert api.post("/api/event", json={**page, "d": "blog.example"}, headers=BROWSER).status_code == 202
        umami = {"type": "event", "payload": {"website": "4fb7fa4c-5b46", "url": "/"}}
        assert api.post("/api/send", json=umami, headers=BROWSER).status_code == 200
        client = api.app.state.services.query_client
        consumed(api)
        assert sorted(client.query("SELECT app_id FROM events_buffer").result_rows) == [("blog",), ("shop",), ("shop",),
                                                                                       ("site",)]


def test_every_peer_route_has_cors_and_is_in_the_openapi_document():
    paths = document()["paths"]
    for path in PEER_PATHS:
        assert path in INGEST_PATHS and path in paths, path
