"""Stopping loses nothing: a real server process, real signals, the data reopened afterwards."""

from __future__ import annotations

import signal

import httpx
import pytest

from tests.servers import count_in_events, free_port, start_server


@pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGINT])
def test_acknowledged_events_survive_a_stop_by_signal(tmp_path, stop_signal):
    data_dir = tmp_path / "clickhouse"
    port = free_port()
    server = start_server(data_dir, port)
    try:
        acknowledged = 0
        with httpx.Client(base_url=f"http://127.0.0.1:{port}") as client:
            r = client.post("/events/", data={"dt": "2025-03-01T11:11:11Z", "event": "test", "userid": "1"})
            assert r.status_code == 202
            acknowledged += r.json()["accepted"]
            for n in range(5):
                batch = [{"dt": 1735689600 + i, "event": "e", "user_id": f"u{n}"} for i in range(100)]
                r = client.post("/events", json=batch)
                assert r.status_code == 202
                acknowledged += r.json()["accepted"]
        server.send_signal(stop_signal)
        output = server.communicate(timeout=60)[0].decode()
    finally:
        if server.poll() is None:
            server.kill()
    assert server.returncode in (0, -stop_signal), output
    assert "events_buffer flushed into events" in output
    assert acknowledged == 501
    assert count_in_events(data_dir) == acknowledged


def test_insert_table_events_keeps_acknowledged_events_through_sigkill(tmp_path):
    data_dir = tmp_path / "clickhouse"
    port = free_port()
    server = start_server(data_dir, port, INSERT_TABLE="events")
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}") as client:
            batch = [{"dt": 1735689600 + i, "event": "e", "user_id": "u"} for i in range(40)]
            assert client.post("/events", json=batch).status_code == 202
        server.kill()  # SIGKILL: no shutdown, no Buffer flush
        server.wait(timeout=30)
    finally:
        if server.poll() is None:
            server.kill()
    assert count_in_events(data_dir) == 40
