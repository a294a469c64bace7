"""Stopping loses nothing: a real server process, real signals, the data reopened afterwards."""

from __future__ import annotations

import signal
import threading
import time

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


def test_insert_table_events_keeps_acknowledged_events_through_sigkill_under_load(tmp_path):
    data_dir = tmp_path / "clickhouse"
    port = free_port()
    server = start_server(data_dir, port, INSERT_TABLE="events")
    acknowledged, sent, stop = [0], [0], threading.Event()
    lock = threading.Lock()

    def client(number: int) -> None:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as http:
            n = 0
            while not stop.is_set():
                batch = [{"dt": 1735689600 + i, "event": "e", "user_id": f"c{number}-{n}"} for i in range(20)]
                with lock:
                    sent[0] += 20
                try:
                    response = http.post("/events", json=batch)
                except httpx.HTTPError:
                    return  # the server is gone: this request was never acknowledged
                if response.status_code == 202:
                    with lock:
                        acknowledged[0] += response.json()["accepted"]
                n += 1

    clients = [threading.Thread(target=client, args=(n,)) for n in range(4)]
    try:
        for thread in clients:
            thread.start()
        while acknowledged[0] < 2000:
            time.sleep(0.05)
        server.kill()  # SIGKILL under load: no shutdown, no Buffer flush
        server.wait(timeout=30)
        stop.set()
        for thread in clients:
            thread.join(timeout=30)
    finally:
        stop.set()
        if server.poll() is None:
            server.kill()
    # Restarted on the same data, the server serves again; every acknowledged event is there
    # (requests cut by the kill may be stored too: never more than were sent).
    server = start_server(data_dir, port, INSERT_TABLE="events")
    assert httpx.post(f"http://127.0.0.1:{port}/events", json={"dt": 1735689600, "event": "e", "user_id": "after"}).status_code == 202
    server.terminate()
    server.wait(timeout=60)
    stored = count_in_events(data_dir) - 1
    assert acknowledged[0] <= stored <= sent[0], (acknowledged[0], stored, sent[0])
