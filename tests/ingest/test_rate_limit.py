"""Abuse resistance on ingest: token buckets per client address and per write key (429 with
Retry-After, nothing stored), and a thousand idle connections that cost the server nothing."""

from __future__ import annotations

import socket
import time

import httpx
import pytest
from starlette.testclient import TestClient

from server.ingest import rate_limit
from server.ingest.rate_limit import TokenBuckets
from server.process.app import create_app
from tests.servers import count_in_events, free_port, local_http, start_server, wait_consumed

EVENT = {"dt": "2026-12-01T10:00:00Z", "event": "view", "user_id": "u1"}


def test_a_bucket_gives_its_burst_then_its_rate():
    buckets = TokenBuckets(rate=2.0, burst=3.0)
    assert [buckets.take("a", 100.0) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert buckets.take("a", 100.0) == pytest.approx(0.5)  # a token every half second
    assert buckets.take("b", 100.0) == 0.0  # another client has its own
    assert buckets.take("a", 100.5) == 0.0 and buckets.take("a", 100.5) > 0
    assert [buckets.take("a", 110.0) for _ in range(4)][:3] == [0.0, 0.0, 0.0]  # refilled to the burst, not past


def test_the_buckets_stay_bounded_under_a_flood_of_addresses(monkeypatch):
    monkeypatch.setattr(rate_limit, "MAX_BUCKETS", 100)
    buckets = TokenBuckets(rate=1.0, burst=1.0)
    for n in range(1000):
        buckets.take(f"10.0.{n // 256}.{n % 256}", 5.0)
    assert len(buckets) <= 100


def from_address(address: str) -> dict[str, str]:
    """A request as from `address`: the server trusts X-Forwarded-For from 127.0.0.1, its default
    FORWARDED_ALLOW_IPS (as behind a local proxy)."""
    return {"X-Forwarded-For": address}


def test_a_flood_from_one_address_gets_429_while_another_is_served(tmp_path):
    port = free_port()
    server = start_server(tmp_path / "data", port, RATE_LIMIT_IP_PER_SECOND="1", RATE_LIMIT_IP_BURST="3")
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
            flood = from_address("203.0.113.5")
            statuses = [client.post("/events", json=EVENT, headers=flood).status_code for _ in range(10)]
            assert statuses[:3] == [202] * 3 and set(statuses[3:]) == {429}
            refused = client.post("/events", json=EVENT, headers=flood)
            assert refused.headers["Retry-After"] == "1" and refused.json()["error"]["code"] == "rate_limited"
            track = {"userId": "u", "event": "e"}
            assert client.post("/v1/track", json=track, headers=flood).status_code == 429  # every ingest route
            assert client.post("/events", json=EVENT, headers=from_address("198.51.100.7")).status_code == 202
            assert {client.post("/events", json=EVENT).status_code for _ in range(10)} == {202}  # loopback: not limited
            time.sleep(1.1)
            assert client.post("/events", json=EVENT, headers=flood).status_code == 202  # a token a second
            wait_consumed(port)
    finally:
        server.terminate()
        server.wait(timeout=60)
    assert count_in_events(tmp_path / "data") == 3 + 1 + 10 + 1  # nothing of the refused requests


def test_a_write_key_over_its_rate_gets_429_and_the_other_keys_do_not(make_settings):
    settings = make_settings(write_keys="a:key-of-app-a,b:key-of-app-b", rate_limit_key_per_second=0.5,
                             rate_limit_key_burst=2)
    with TestClient(create_app(settings), client=("127.0.0.1", 40000)) as api:
        a = {"Authorization": "Bearer key-of-app-a"}
        statuses = [api.post("/events", json={**EVENT, "app_id": "a"}, headers=a).status_code for _ in range(3)]
        assert statuses == [202, 202, 429]
        assert api.post("/events", json={**EVENT, "app_id": "b"}, headers={"X-Write-Key": "key-of-app-b"}).status_code == 202
        assert api.post("/v1/track", json={"userId": "u", "event": "e"}, auth=("key-of-app-a", "")).status_code == 429


def rss_kb(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmRSS:"))


def test_a_thousand_idle_connections_leave_the_server_answering_and_its_memory_flat(tmp_path):
    port = free_port()
    server = start_server(tmp_path / "data", port)
    try:
        base = f"http://127.0.0.1:{port}"
        with local_http() as http:  # warm: the request path's first allocations are not the connections'
            for _ in range(20):
                assert http.post(f"{base}/events", json=EVENT, headers={"Connection": "close"}).status_code == 202
        before = rss_kb(server.pid)
        idle = []
        for n in range(1000):
            connection = socket.create_connection(("127.0.0.1", port))
            if n % 2:
                connection.sendall(b"POST /events HTTP/1.1\r\nHost: x\r\n")  # slowloris: headers never finished
            idle.append(connection)
        time.sleep(0.5)
        with httpx.Client(base_url=base, timeout=10) as client:
            assert client.get("/healthz").status_code == 200
            assert [client.post("/events", json=EVENT).status_code for _ in range(20)] == [202] * 20
        grown_mb = (rss_kb(server.pid) - before) / 1024
        assert grown_mb < 40, f"1,000 idle connections took {grown_mb:.1f} MB"
        for connection in idle:
            connection.close()
    finally:
        server.terminate()
        server.wait(timeout=60)
