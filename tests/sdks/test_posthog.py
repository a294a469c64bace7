"""PostHog's own Python SDK, unchanged, pointed at us by its host setting; and the body forms
posthog-js sends (gzip-js, base64 in a form)."""

from __future__ import annotations

import base64
import gzip
import uuid
from datetime import UTC, datetime, timedelta

import httpx
import orjson
from posthog import Posthog

from tests.ingest.test_batcher import Outage
from tests.sdks.conftest import end_after_first_refusal

API_KEY = "phc_project_key_1"


def test_capture_identify_alias_and_set_through_the_posthog_sdk(live):
    server = live(write_keys=f"web:{API_KEY}")
    posthog = Posthog(API_KEY, host=server.url, sync_mode=True)
    when = datetime.now(UTC) - timedelta(minutes=5)
    event_id = str(uuid.uuid4())
    posthog.capture("$pageview", distinct_id="anon-7", timestamp=when, uuid=event_id,
                    properties={"$current_url": "https://web.example/docs?utm_source=ph", "$pathname": "/docs",
                                "$referrer": "https://news.example/", "$session_id": "s-1", "plan": "free",
                                "$browser": "Chrome", "$insert_id": "x"})
    posthog.capture("$identify", distinct_id="user-7", timestamp=when + timedelta(seconds=1),
                    properties={"$anon_distinct_id": "anon-7", "$set": {"email": "u7@example.com"}})
    posthog.capture("signed up", distinct_id="user-7", properties={"step": 2})
    posthog.alias(previous_id="anon-8", distinct_id="user-7")
    posthog.set(distinct_id="user-7", properties={"plan": "team"})
    posthog.flush()
    rows = server.rows("SELECT event, user_id, app_id, screen, session_id, referrer_domain, utm_source, "
                       "toString(event_id), props FROM events ORDER BY dt, event")
    by_event = {row[0]: row for row in rows}
    assert set(by_event) == {"pageview", "$identify", "signed up", "$alias"} and len(rows) == 5
    assert by_event["pageview"][1:8] == ("anon-7", "web", "/docs", "s-1", "news.example", "ph", event_id)
    assert by_event["pageview"][8] == {"url": "https://web.example/docs?utm_source=ph", "plan": "free",
                                       "library": by_event["pageview"][8]["library"]}  # the $-properties left out
    assert by_event["pageview"][8]["library"].startswith("posthog-python/")
    assert by_event["signed up"][8]["step"] == "2"
    assert server.rows("SELECT anonymous_id, user_id FROM identities FINAL ORDER BY 1") == [("anon-7", "user-7"),
                                                                                        ("anon-8", "user-7")]
    [(traits,)] = server.rows("SELECT traits FROM person_traits FINAL WHERE user_id = 'user-7'")
    assert traits == {"plan": "team"}  # the latest identify's


def test_posthog_js_body_forms(live):
    """posthog-js sends `?compression=gzip-js` bodies and base64 `data=` forms; both are stored."""
    server = live()
    events = [{"event": "$pageview", "distinct_id": "js-1", "properties": {"token": API_KEY, "$current_url": "https://x.example/"},
               "uuid": str(uuid.uuid4())}]
    zipped = gzip.compress(orjson.dumps(events))
    assert httpx.post(f"{server.url}/e/", params={"compression": "gzip-js", "ver": "1.200.0"}, content=zipped,
                      headers={"Content-Type": "text/plain"}).json() == {"status": 1}
    form = {"data": base64.b64encode(orjson.dumps({**events[0], "uuid": str(uuid.uuid4()), "distinct_id": "js-2"})).decode()}
    assert httpx.post(f"{server.url}/capture/", data=form).json() == {"status": 1}
    assert httpx.post(f"{server.url}/decide/", params={"v": "3"}, json={"token": API_KEY}).json()["featureFlags"] == {}
    assert server.rows("SELECT user_id FROM events ORDER BY user_id") == [("js-1",), ("js-2",)]


def test_the_posthog_sdk_retries_a_503_and_each_event_is_stored_once(live):
    server = live(ack="insert")
    outage = Outage(server.settings)
    posthog = Posthog(API_KEY, host=server.url, flush_interval=0.05, max_retries=5)  # its consumer thread
    for n in range(5):
        posthog.capture("retried", distinct_id=f"p{n}")
    refused = end_after_first_refusal(server, outage)
    metrics = server.app.state.services.metrics
    posthog.flush()
    posthog.shutdown()
    assert refused in metrics.render().body.decode()
    assert server.rows("SELECT count(), uniqExact(user_id) FROM events WHERE event = 'retried'") == [(5, 5)]
