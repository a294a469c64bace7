"""Crashes lose nothing acknowledged and double nothing: real server processes under load, killed
with SIGKILL at random moments, and a SIGTERM in the middle of a long replay; the data reopened
afterwards. (Split from test_lifecycle.py so that the two run in parallel.)"""

from __future__ import annotations

import random
import signal
import threading
import time
from pathlib import Path

import httpx
import pytest

from tests.servers import count_in_events, free_port, local_http, queries_in_process, query_in_process, start_server

CHECK = (
    "SELECT count(), uniqExact(user_id, props['seq']), (SELECT sum(events) FROM event_counts_hourly), "
    "sum(amount), (SELECT sum(revenue) FROM revenue_15m) FROM events"
)


class Load:
    """Clients (four unless told) posting 20-event batches with unique keys and amounts, counting what was
    acknowledged (by key) and what was sent. Each client waits `pause` seconds after each answer: a
    steady stream with requests always in flight (4 clients: ~3,300 events a second here, ~25,000
    without pauses) rather than the machine's ceiling, which took both cores from the tests running
    beside (make test-slow's kill loops go at the ceiling)."""

    def __init__(self, port: int, run: int, clients: int = 4, pause: float = 0.02):
        self.port, self.run, self.pause = port, run, pause
        self.acknowledged: set[tuple[str, int]] = set()
        self.sent = 0
        self.amount_acknowledged = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self.keep_going = False
        self._threads = [threading.Thread(target=self._client, args=(n,)) for n in range(clients)]

    def __enter__(self) -> Load:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=60)

    def _client(self, number: int) -> None:
        with local_http(timeout=10, base_url=f"http://127.0.0.1:{self.port}") as http:
            n = 0
            while not self._stop.is_set():
                user = f"r{self.run}-c{number}-{n}"
                batch = [{"dt": 1735689600 + i, "event": "pay", "user_id": user, "seq": i, "amount": i}
                         for i in range(20)]
                with self._lock:
                    self.sent += 20
                try:
                    response = http.post("/events", json=batch)
                except httpx.HTTPError:
                    if self.keep_going:  # a group: another worker takes the next request
                        n += 1
                        continue
                    return  # the server is gone: this request was never acknowledged
                if response.status_code == 202:
                    with self._lock:
                        self.acknowledged.update((user, i) for i in range(20))
                        self.amount_acknowledged += sum(range(20))
                n += 1
                if self.pause:
                    self._stop.wait(self.pause)


def kill_loop(tmp_path: Path, kills: int, cpus: int = 0, pause: float = 0.02, **env: str) -> None:
    """SIGKILL under load at random moments (before, during and after the consumer's INSERTs and
    checkpoints, and during the recovery of the previous kill), each start right after the kill,
    then every acknowledged event is in `events` once, and each rollup counts it once."""
    data_dir = tmp_path / "clickhouse"
    port = free_port()
    rng = random.Random(kills)
    acknowledged: set[tuple[str, int]] = set()
    sent = amount = 0
    for run in range(kills):
        server = start_server(data_dir, port, cpus, LOG_BATCH_SECONDS=str(rng.choice([0, 0.05, 0.2])), **env)
        try:
            with Load(port, run, pause=pause) as load:
                time.sleep(rng.uniform(0.05, 1.2))
                server.kill()
                server.wait(timeout=30)
        finally:
            if server.poll() is None:
                server.kill()
        acknowledged |= load.acknowledged
        sent += load.sent
        amount += load.amount_acknowledged
    server = start_server(data_dir, port)  # recovers, then drains at the stop below
    server.terminate()
    server.wait(timeout=120)
    rows, [[count, unique, counted, amount_sum, revenue]] = queries_in_process(
        data_dir, "SELECT user_id, props['seq'] FROM events", CHECK)
    stored = {(user, int(seq)) for user, seq in rows}
    assert acknowledged and acknowledged <= stored, f"{len(acknowledged - stored)} acknowledged events lost"
    assert count == unique == len(stored) <= sent, "an event was stored twice"
    assert counted == count and revenue == amount_sum >= amount, "a rollup counted an event twice or not at all"


def test_sigkill_under_load_loses_nothing_acknowledged_and_doubles_nothing(tmp_path):
    kill_loop(tmp_path, kills=4)


@pytest.mark.slow
def test_sigkill_25_times_under_load(tmp_path):
    kill_loop(tmp_path, kills=25, pause=0)


def test_sigterm_during_a_long_replay_loses_nothing(tmp_path):
    data_dir = tmp_path / "clickhouse"
    port = free_port()
    # 1. 20,000 events in 1,000 requests acknowledged into the log and never inserted (an hour's
    # gathering), then SIGKILL.
    server = start_server(data_dir, port, LOG_BATCH_SECONDS="3600", LOG_BATCH_MAX_ROWS="1000000000")
    with httpx.Client(base_url=f"http://127.0.0.1:{port}") as client:
        for n in range(1000):
            batch = [{"dt": 1735689600 + i, "event": "pay", "user_id": f"u{n}", "seq": i, "amount": 1} for i in range(20)]
            assert client.post("/events", json=batch).status_code == 202
    server.kill()
    server.wait(timeout=30)
    assert count_in_events(data_dir) == 0
    # 2. The replay goes one request's record (20 rows) an INSERT; SIGTERM with 0.3 s to go on
    # stops it part-way.
    server = start_server(data_dir, port, LOG_BATCH_MAX_ROWS="20", STOP_TIMEOUT_SECONDS="0.3")
    server.send_signal(signal.SIGTERM)
    server.wait(timeout=60)
    part = count_in_events(data_dir)
    # 3. The next start finishes it.
    server = start_server(data_dir, port)
    server.terminate()
    server.wait(timeout=60)
    assert part < 20_000
    assert query_in_process(data_dir, CHECK) == [[20_000, 20_000, 20_000, 20_000, 20_000]]
