"""Stopping loses nothing: a real server process, real signals, the data reopened afterwards."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(data_dir: Path, port: int, **env: str) -> subprocess.Popen:
    environ = {
        **os.environ,
        "CLICKHOUSE_URL": f"chdb://{data_dir}",
        # Thresholds no test run reaches: rows stay in the Buffer table until the server flushes it.
        "BUFFER_MIN_SECONDS": "3000", "BUFFER_MAX_SECONDS": "3600",
        **env,
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "server.cli", "serve", "--port", str(port)],
        cwd=ROOT, env=environ, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError("server exited at start:\n" + process.stdout.read().decode())
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200:
                return process
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    process.kill()
    raise RuntimeError("server did not become ready in 60 s")


def count_in_events(data_dir: Path) -> int:
    """Open the data directory in a fresh process (one chDB engine per process) and count."""
    code = (
        "import clickhouse_connect, sys;"
        f"c = clickhouse_connect.get_client(dsn='chdb://{data_dir}');"
        "print(c.command('SELECT count() FROM events'))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    return int(out.stdout.strip().splitlines()[-1])


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
