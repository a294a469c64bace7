"""WEB_CONCURRENCY > 1 on the embedded engine (server/process/group.py): HTTP workers acknowledging into
logs of their own, one engine process inserting them. Real processes, real SIGKILLs."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx
import pytest

from server.process.lifeline import SERVE_PID_ENV
from tests.servers import count_in_events, free_port, local_http, output, queries_in_process, query_in_process, start_server
from tests.test_crashes import CHECK, Load, kill_loop


def children(pid: int) -> dict[int, str]:
    """The processes whose parent is `pid`, with their command lines."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
            found[int(entry.name)] = command
    return found


def engine_and_workers(server_pid: int) -> tuple[int | None, list[int]]:
    found = children(server_pid)
    engine = [pid for pid, command in found.items() if "server.cli engine" in command]
    workers = [pid for pid, command in found.items() if "spawn_main" in command]
    return (engine[0] if len(engine) == 1 else None), workers


def wait_ready(port: int, server: subprocess.Popen, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    with local_http(timeout=2) as http:
        while time.monotonic() < deadline:
            try:
                if http.get(f"http://127.0.0.1:{port}/readyz").status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
    raise AssertionError(f"not ready again in {seconds} s:\n" + output(server)[-5000:])


def test_two_workers_store_each_acknowledged_event_once_through_sigkills_of_a_worker_and_the_engine(tmp_path):
    data_dir = tmp_path / "clickhouse"
    port = free_port()
    server = start_server(data_dir, port, WEB_CONCURRENCY="2", LOG_BATCH_SECONDS="0.2")
    try:
        engine, workers = engine_and_workers(server.pid)
        assert engine is not None and len(workers) == 2
        with Load(port, run=0, clients=64, pause=0.1) as load:  # 64 connections, ~640 requests a second at most
            load.keep_going = True
            time.sleep(1.0)
            os.kill(engine, signal.SIGKILL)  # the workers keep acknowledging; the engine comes back
            time.sleep(0.1)
            os.kill(workers[0], signal.SIGKILL)  # uvicorn starts another (it waits for the engine) on the same log
            time.sleep(2.0)
        deadline = time.monotonic() + 60  # uvicorn replaces the worker, this server the engine
        while time.monotonic() < deadline:
            new_engine, new_workers = engine_and_workers(server.pid)
            if new_engine != engine and len(new_workers) == 2 and workers[0] not in new_workers:
                break
            time.sleep(0.2)
        assert new_engine != engine and len(new_workers) == 2 and workers[0] not in new_workers, output(server)[-3000:]
        wait_ready(port, server)

        # Retries with event_ids, each on a new connection (any worker may take it): stored once.
        batch = [{"dt": 1735689600, "event": "retry", "user_id": "r", "seq": i, "event_id": str(uuid.uuid4())}
                 for i in range(50)]
        with local_http() as http:  # `Connection: close`: a new connection a request
            answers = [http.post(f"http://127.0.0.1:{port}/events", json=batch, headers={"Connection": "close"}).json()
                       for _ in range(6)]
        assert answers[0] == {"accepted": 50} and all(a == {"accepted": 50, "duplicates": 50} for a in answers[1:])
        # /metrics from any worker covers the group: the workers' requests and the engine's inserts.
        metrics = httpx.get(f"http://127.0.0.1:{port}/metrics").text
        inserted = [line for line in metrics.splitlines() if line.startswith("events_inserted_total ")]
        accepted = [line for line in metrics.splitlines() if line.startswith("events_accepted_total ")]
        assert inserted and float(inserted[0].split()[1]) > 0, metrics[:2000]
        assert accepted and float(accepted[0].split()[1]) >= 100
        # Reports and SQL come from the engine, through whichever worker answers.
        r = httpx.get(f"http://127.0.0.1:{port}/clickhouse/", params={"query": "SELECT 1"})
        assert r.status_code == 200 and r.text == "1\n"
        server.terminate()
        server.wait(timeout=120)
    finally:
        if server.poll() is None:
            server.kill()
    assert server.returncode == 0, output(server)
    assert sorted(p.name for p in (tmp_path / "clickhouse-wal" / "workers").iterdir()) == ["0", "1"]
    paid, [[count, unique, counted, amount_sum, revenue]] = queries_in_process(
        data_dir, "SELECT user_id, props['seq'] FROM events WHERE event = 'pay'", CHECK)
    stored = {(user, int(seq)) for user, seq in paid}
    acknowledged = load.acknowledged
    assert len(acknowledged) > 1000 and acknowledged <= stored, f"{len(acknowledged - stored)} acknowledged events lost"
    assert count == unique == len(stored) + 50 <= load.sent + 50, "an event was stored twice"
    assert counted == count and revenue == amount_sum, "a rollup counted an event twice or not at all"


def test_what_a_group_left_in_its_workers_logs_is_inserted_by_a_single_process_later(tmp_path):
    data_dir = tmp_path / "clickhouse"
    port = free_port()
    # The engine inserts nothing while running (an hour's gathering) and nothing at the stop.
    server = start_server(data_dir, port, WEB_CONCURRENCY="2", LOG_BATCH_SECONDS="3600", STOP_TIMEOUT_SECONDS="0")
    try:
        with local_http() as http:
            for n in range(20):
                batch = [{"dt": 1735689600, "event": "left", "user_id": f"u{n}", "seq": i} for i in range(10)]
                assert http.post(f"http://127.0.0.1:{port}/events", json=batch,
                                 headers={"Connection": "close"}).status_code == 202  # new connections
        server.terminate()
        server.wait(timeout=120)
    finally:
        if server.poll() is None:
            server.kill()
    left = query_in_process(data_dir, "SELECT count() FROM events")[0][0]
    server = start_server(data_dir, port)  # one process: it reads the workers' logs too
    server.terminate()
    server.wait(timeout=120)
    assert left < 200
    assert query_in_process(data_dir, "SELECT count(), uniqExact(user_id, props['seq']) FROM events") == [[200, 200]]


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="WEB_CONCURRENCY=auto on 2 CPUs needs 2")
def test_the_default_on_two_cores_is_one_worker_and_the_engine_and_loses_nothing_to_sigkills(tmp_path):
    """WEB_CONCURRENCY=auto on 2 CPUs: the server's process is the one HTTP worker, in front of the
    engine's process; it takes the peers' SDK routes itself (their rate limit applies), and a
    SIGTERM stops the engine after it, which inserts what the worker's log holds. SIGKILLed under
    load (the engine dies with it) and started again at once, three times: every acknowledged
    event is stored once."""
    port = free_port()
    server = start_server(tmp_path / "shape", port, cpus=2, WEB_CONCURRENCY="auto", LOG_BATCH_SECONDS="3600",
                          RATE_LIMIT_IP_PER_SECOND="0.1", RATE_LIMIT_IP_BURST="2")
    try:
        engine, workers = engine_and_workers(server.pid)
        assert engine is not None and workers == [], output(server)[-2000:]
        # The worker never opened the engine (its preflight leaves that to the engine's process).
        assert "/chdb" in Path(f"/proc/{engine}/maps").read_text()
        assert "/chdb" not in Path(f"/proc/{server.pid}/maps").read_text()
        with local_http(base_url=f"http://127.0.0.1:{port}") as http:
            flood = {"X-Forwarded-For": "203.0.113.5"}  # trusted from 127.0.0.1 (FORWARDED_ALLOW_IPS)
            assert [http.post("/v1/track", json={"userId": "u", "event": "e"}, headers=flood).status_code
                    for _ in range(3)] == [200, 200, 429]
            for n in range(5):
                batch = [{"dt": 1735689600 + i, "event": "e", "user_id": f"u{n}"} for i in range(100)]
                assert http.post("/events", json=batch).status_code == 202
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=60)
    finally:
        if server.poll() is None:
            server.kill()
    assert server.returncode == 0 and "the log is synced" in output(server), output(server)[-3000:]
    assert count_in_events(tmp_path / "shape") == 2 + 500
    kill_loop(tmp_path, kills=3, cpus=2, WEB_CONCURRENCY="auto")


ASK_TO_DIE_WITH_SERVE = "from server.process.lifeline import die_with, serve_pid; die_with(serve_pid()); print('alive')"


def test_a_process_whose_serve_died_before_it_asked_to_die_with_it_dies_at_once():
    """A worker or engine that asks to die with `serve` after serve died (killed while they were still
    importing) is not serve's child any more: it dies at once instead of living on with the port.
    Here the serve is a process that has exited; the one that asks is started by this test."""
    gone = subprocess.Popen(["true"])
    gone.wait()
    orphan = subprocess.run([sys.executable, "-c", ASK_TO_DIE_WITH_SERVE], capture_output=True, text=True,
                            env={**os.environ, SERVE_PID_ENV: str(gone.pid)})
    assert orphan.returncode == -signal.SIGKILL and "alive" not in orphan.stdout, orphan.stderr
    child = subprocess.run([sys.executable, "-c", ASK_TO_DIE_WITH_SERVE], capture_output=True, text=True,
                           env={**os.environ, SERVE_PID_ENV: str(os.getpid())})
    assert child.returncode == 0 and child.stdout == "alive\n", child.stderr


def test_a_killed_serve_of_two_workers_takes_them_and_the_engine_with_it(tmp_path):
    """SIGKILL of `serve` itself (uvicorn's parent of the workers, the engine's parent) under load:
    the workers and the engine die with it (they would hold the port, the logs, the data
    directory), so a start right after takes over; twice, then every acknowledged event once."""
    kill_loop(tmp_path, kills=2, WEB_CONCURRENCY="2")


@pytest.mark.slow
def test_a_group_under_load_through_twelve_random_sigkills(tmp_path):
    """make test-slow: the engine or a worker killed at random moments, twelve times, under 16 clients."""
    data_dir = tmp_path / "clickhouse"
    port = free_port()
    rng = random.Random(12)
    server = start_server(data_dir, port, WEB_CONCURRENCY="2", LOG_BATCH_SECONDS=str(rng.choice([0.05, 0.2, 1])))
    try:
        with Load(port, run=0, clients=16, pause=0) as load:
            load.keep_going = True
            for _ in range(12):
                time.sleep(rng.uniform(0.3, 1.5))
                deadline = time.monotonic() + 30
                while True:  # none at an instant when the group is restarting them all: look again
                    engine, workers = engine_and_workers(server.pid)
                    alive = [pid for pid in [engine, *workers] if pid is not None]
                    if alive or time.monotonic() > deadline:
                        break
                    time.sleep(0.1)
                os.kill(rng.choice(alive), signal.SIGKILL)
            time.sleep(2)
        wait_ready(port, server)
        server.terminate()
        server.wait(timeout=120)
    finally:
        if server.poll() is None:
            server.kill()
    rows, [[count, unique, counted, amount_sum, revenue]] = queries_in_process(
        data_dir, "SELECT user_id, props['seq'] FROM events", CHECK)
    stored = {(user, int(seq)) for user, seq in rows}
    assert load.acknowledged and load.acknowledged <= stored, f"{len(load.acknowledged - stored)} acknowledged events lost"
    assert count == unique == len(stored), "an event was stored twice"
    assert counted == count and revenue == amount_sum, "a rollup counted an event twice or not at all"
