"""Segment's and RudderStack's own Python SDKs, unchanged, pointed at us by their host setting."""

from __future__ import annotations

import threading
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from rudderstack.analytics.client import Client as RudderClient
from segment.analytics.client import Client as SegmentClient
from segment.analytics.request import APIError

from tests.ingest.test_batcher import Outage
from tests.sdks.conftest import end_after_first_refusal

WRITE_KEY = "segment-write-key-1"


def segment(live, **kwargs) -> SegmentClient:
    return SegmentClient(WRITE_KEY, host=live.url, sync_mode=True, **kwargs)


def test_every_call_of_the_segment_sdk_is_stored_once_with_its_fields(live):
    server = live(write_keys=f"shop:{WRITE_KEY}")
    client = segment(server)
    when = datetime.now(UTC) - timedelta(hours=1)
    context = {"ip": "81.2.69.142", "userAgent": "Mozilla/5.0 (Windows NT 10.0; Win64; x64) Chrome/120.0 Safari/537.36",
               "page": {"url": "https://shop.example/pricing?utm_source=news", "referrer": "https://search.example/q",
                        "path": "/pricing"},
               "campaign": {"source": "news", "medium": "email", "name": "winter"}}
    client.page(anonymous_id="anon-1", name="Pricing", timestamp=when, context=context)
    client.track(anonymous_id="anon-1", event="Added to cart", properties={"sku": "A-1", "price": 9.5,
                 "product": {"size": "M"}, "tags": ["x", "y"]}, timestamp=when + timedelta(seconds=5), context=context)
    client.identify(user_id="u-1", anonymous_id="anon-1", traits={"email": "u1@example.com", "plan": "pro"},
                    timestamp=when + timedelta(seconds=10))
    client.track(user_id="u-1", event="Order Completed", properties={"revenue": 19.99, "currency": "EUR"},
                 timestamp=when + timedelta(seconds=20))
    client.group(user_id="u-1", group_id="acme", traits={"name": "Acme", "employees": 40})
    client.alias(previous_id="anon-2", user_id="u-1")
    client.screen(user_id="u-1", name="Settings")
    client.flush()

    rows = server.rows("SELECT event, user_id, app_id, screen, referrer_domain, utm_source, utm_medium, utm_campaign, "
                       "country, browser, amount, props FROM events ORDER BY dt, event")
    by_event = {row[0]: row for row in rows}
    assert sorted(by_event) == sorted(["pageview", "Added to cart", "$identify", "Order Completed", "$group", "$alias",
                                       "screenview"])
    assert len(rows) == 7 and {row[2] for row in rows} == {"shop"}
    page = by_event["pageview"]
    assert page[1:10] == ("anon-1", "shop", "Pricing", "search.example", "news", "email", "winter", "GB", "Chrome")
    assert page[11]["url"] == "https://shop.example/pricing?utm_source=news"
    cart = by_event["Added to cart"][11]
    assert (cart["sku"], cart["price"], cart["product.size"], cart["tags"]) == ("A-1", "9.5", "M", '["x","y"]')
    assert by_event["$identify"][11]["anonymous_id"] == "anon-1" and by_event["$identify"][11]["email"] == "u1@example.com"
    assert by_event["Order Completed"][10] == 1999 and by_event["Order Completed"][11]["currency"] == "EUR"
    assert by_event["screenview"][3] == "Settings"
    # The identity tables: anon-1 and anon-2 are u-1; the latest traits; the group.
    assert server.rows("SELECT anonymous_id, user_id FROM identities FINAL ORDER BY 1") == [("anon-1", "u-1"),
                                                                                        ("anon-2", "u-1")]
    [(traits,)] = server.rows("SELECT traits FROM person_traits FINAL WHERE user_id = 'u-1'")
    assert traits == {"email": "u1@example.com", "plan": "pro"}
    assert server.rows("SELECT group_type, group_id, user_id, traits FROM group_members FINAL") == [
        ("group", "acme", "u-1", {"name": "Acme", "employees": "40"})]


def test_the_sender_clock_is_corrected_by_sent_at(live):
    server = live()
    client = segment(server)
    # The sender's clock is an hour fast: it stamps the event and the batch with its time.
    fast = datetime.now(UTC) + timedelta(hours=1)
    from segment.analytics import request
    request.post(WRITE_KEY, host=server.url, batch=[{"type": "track", "event": "skewed", "userId": "u",
                 "timestamp": (fast - timedelta(seconds=30)).isoformat(), "messageId": "m-1"}], sentAt=fast.isoformat())
    client.flush()
    [(dt,)] = server.rows("SELECT dt FROM events WHERE event = 'skewed'")
    assert abs((datetime.now(UTC) - timedelta(seconds=30) - dt.replace(tzinfo=UTC)).total_seconds()) < 10


def test_a_message_sent_twice_is_stored_once(live):
    server = live()
    message = {"type": "track", "event": "resent", "userId": "u", "messageId": "ajs-next-1234"}
    from segment.analytics import request
    for _ in range(3):
        request.post(WRITE_KEY, host=server.url, batch=[message])
    assert server.rows("SELECT count(), any(toString(event_id)) FROM events WHERE event = 'resent'")[0][0] == 1


def test_a_wrong_write_key_is_refused_in_segments_shape_and_nothing_is_stored(live):
    server = live(write_keys=f"shop:{WRITE_KEY}")
    client = SegmentClient("not-the-key-000", host=server.url, sync_mode=True, max_retries=0)
    with pytest.raises(APIError) as raised:
        client.track(user_id="u", event="refused")
    assert raised.value.status == 401
    assert server.rows("SELECT count() FROM events") == [(0,)]


def test_the_sdk_retries_a_503_and_each_event_is_stored_once(live):
    """ClickHouse refuses the first INSERT (the Buffer table renamed away): 503 with Retry-After;
    the SDK's consumer thread waits and sends the batch again, which is stored once."""
    server = live(ack="insert")
    outage = Outage(server.settings)
    client = SegmentClient(WRITE_KEY, host=server.url, max_retries=5, upload_interval=0.05)  # its consumer thread
    for n in range(10):
        client.track(user_id=f"u{n}", event="retried", message_id=f"retry-{n}")
    refused = end_after_first_refusal(server, outage)
    metrics = server.app.state.services.metrics
    flushed = threading.Thread(target=client.flush)
    flushed.start()
    flushed.join(timeout=60)
    client.join()
    assert refused in metrics.render().body.decode()  # refused once, then taken
    assert server.rows("SELECT count(), uniqExact(user_id) FROM events WHERE event = 'retried'") == [(10, 10)]


def test_rudderstacks_sdk_through_the_same_routes(live):
    server = live(write_keys=f"*:{WRITE_KEY}")
    client = RudderClient(WRITE_KEY, host=server.url, sync_mode=True)  # gzips its batches
    client.track(user_id="r-1", event="rudder event", properties={"n": 1}, context={"sessionId": 1234})
    client.identify(user_id="r-1", anonymous_id=str(uuid.uuid4()), traits={"name": "R"})
    client.flush()
    rows = server.rows("SELECT event, user_id, session_id, props['n'] FROM events ORDER BY event")
    assert rows == [("$identify", "r-1", "", ""), ("rudder event", "r-1", "1234", "1")]
