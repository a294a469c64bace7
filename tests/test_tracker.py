"""The page tracker (/t.js), CORS on the ingest routes and the write key in the query string,
over the real app. The tracker's behaviour in a browser is in tests/test_browser_tracker.py."""

from __future__ import annotations

import gzip

from server.process.app import create_app
from server.web.routes import TRACKER
from tests.conftest import SettlingClient

EVENT = {"dt": "2025-03-01T10:00:00Z", "event": "pageview", "user_id": "u"}


def test_the_tracker_is_served_gzipped_under_2_kb(api):
    r = api.get("/t.js", headers={"Accept-Encoding": "gzip"})
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/javascript")
    assert r.headers["content-encoding"] == "gzip"
    assert int(r.headers["content-length"]) <= 2048, r.headers["content-length"]
    assert r.content == TRACKER and b"sendBeacon" in TRACKER
    plain = api.get("/t.js", headers={"Accept-Encoding": "identity"})
    assert "content-encoding" not in plain.headers and plain.content == TRACKER
    assert len(gzip.compress(TRACKER)) <= 2048


def test_preflight_from_any_origin_by_default(api):
    for path in ("/events", "/api/v1/event/save", "/analytics/event"):
        r = api.options(path, headers={"Origin": "https://shop.example", "Access-Control-Request-Method": "POST",
                                       "Access-Control-Request-Headers": "content-type"})
        assert r.status_code == 204, (path, r.text)
        assert r.headers["access-control-allow-origin"] == "*"
        assert "POST" in r.headers["access-control-allow-methods"]
        assert "Content-Type" in r.headers["access-control-allow-headers"]


def test_posts_from_a_page_carry_the_cors_header(api):
    for path in ("/events", "/events/", "/api/v1/event/save"):
        r = api.post(path, json=EVENT, headers={"Origin": "https://shop.example"})
        assert r.status_code == 202
        assert r.headers["access-control-expose-headers"] == "Retry-After"  # the tracker reads it
        assert r.headers["access-control-allow-origin"] == "*"
    refused = api.post("/events", json={"event": "x"}, headers={"Origin": "https://shop.example"})
    assert refused.status_code == 422 and refused.headers["access-control-allow-origin"] == "*"
    assert "access-control-allow-origin" not in api.post("/events", json=EVENT).headers  # not from a page
    assert "access-control-allow-origin" not in api.get("/reports/daily", headers={"Origin": "https://x.example"}).headers


def test_listed_origins_only(make_settings):
    settings = make_settings(cors_origins="https://shop.example, https://blog.example/")
    with SettlingClient(create_app(settings)) as client:
        ok = client.post("/events", json=EVENT, headers={"Origin": "https://blog.example"})
        assert ok.headers["access-control-allow-origin"] == "https://blog.example"
        assert ok.headers["vary"] == "Origin"
        other = client.post("/events", json=EVENT, headers={"Origin": "https://evil.example"})
        assert other.status_code == 202 and "access-control-allow-origin" not in other.headers
        preflight = client.options("/events", headers={"Origin": "https://evil.example",
                                                       "Access-Control-Request-Method": "POST"})
        assert preflight.status_code == 403
        assert preflight.json()["error"]["field"] == "Origin"


def test_a_write_key_in_the_query_string_for_beacons(make_settings):
    settings = make_settings(write_keys="shop:shop-key-123")
    with SettlingClient(create_app(settings)) as client:
        body = {**EVENT, "app_id": "shop"}
        assert client.post("/events?key=shop-key-123", json=body).status_code == 202
        assert client.post("/events?key=wrong-key-123", json=body).status_code == 401
        other = client.post("/events?key=shop-key-123", json={**body, "app_id": "blog"})
        assert other.status_code == 403
        missing = client.post("/events", json=body)
        assert missing.status_code == 401 and "?key=" in missing.json()["error"]["message"]
