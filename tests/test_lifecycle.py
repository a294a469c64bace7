"""Stops and full disks lose nothing acknowledged and double nothing: real server processes, real
signals, real tmpfs mounts filled to the last byte, the data reopened afterwards (crashes under
load: tests/test_crashes.py)."""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.servers import count_in_events, free_port, output, query_in_process, start_server


@pytest.mark.parametrize(("stop_signal", "ack"), [(signal.SIGTERM, "log"), (signal.SIGINT, "log"),
                                                  (signal.SIGTERM, "insert")])
def test_acknowledged_events_survive_a_stop_by_signal(tmp_path, stop_signal, ack):
    data_dir = tmp_path / "clickhouse"
    port = free_port()
    # An hour's gathering: only the stop itself makes the consumer insert.
    # WEB_CONCURRENCY=auto with ACK=insert: one process (uvicorn must not read `auto` itself).
    server = start_server(data_dir, port, ACK=ack, LOG_BATCH_SECONDS="3600",
                          WEB_CONCURRENCY="auto" if ack == "insert" else "1")
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
        server.wait(timeout=60)
    finally:
        if server.poll() is None:
            server.kill()
    logged = output(server)
    assert server.returncode in (0, -stop_signal), logged
    assert ("the log is synced" if ack == "log" else "events_buffer flushed into events") in logged
    assert acknowledged == 501
    assert count_in_events(data_dir) == acknowledged


@contextlib.contextmanager
def tmpfs(path: Path, size: str) -> Iterator[Path]:
    path.mkdir(parents=True)
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                             capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {mounted.stderr.strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def fill(directory: Path) -> Path:
    """Take every free byte of the file system holding `directory`."""
    filler = directory / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        for size in (65536, 4096, 1):
            while True:
                try:
                    os.write(fd, b"\0" * size)
                except OSError as error:
                    assert error.errno == errno.ENOSPC
                    break
    finally:
        os.close(fd)
    return filler


def test_a_full_log_disk_answers_503_and_loses_nothing_acknowledged(tmp_path):
    data_dir = tmp_path / "clickhouse"
    port = free_port()
    with tmpfs(tmp_path / "waldisk", "4m") as disk:
        server = start_server(data_dir, port, LOG_DIR=str(disk / "wal"), LOG_BATCH_SECONDS="3600")
        try:
            with httpx.Client(base_url=f"http://127.0.0.1:{port}") as client:
                batch = lambda n: [{"dt": 1735689600, "event": "e", "user_id": f"u{n}", "seq": i} for i in range(50)]  # noqa: E731
                acknowledged = sum(50 for n in range(10) if client.post("/events", json=batch(n)).status_code == 202)
                filler = fill(disk)
                refused = [client.post("/events", json=batch(100 + n)) for n in range(5)]
                ready = client.get("/readyz")
                filler.unlink()
                after = client.post("/events", json=batch(200))
                ready_after = client.get("/readyz")
        finally:
            server.terminate()
            server.wait(timeout=60)
    assert acknowledged == 500
    assert {r.status_code for r in refused} == {503}, output(server)
    assert "No space left on device" in refused[0].json()["error"]["message"]
    assert ready.status_code == 503 and "No space left" in ready.json()["reason"]
    assert after.status_code == 202 and ready_after.status_code == 200
    assert query_in_process(data_dir, "SELECT count(), uniqExact(user_id, props['seq']) FROM events") == [[550, 550]]


def test_a_full_data_disk_keeps_events_in_the_log_until_clickhouse_can_write(tmp_path):
    port = free_port()
    with tmpfs(tmp_path / "datadisk", "64m") as disk:
        data_dir = disk / "clickhouse"
        server = start_server(data_dir, port, LOG_DIR=str(tmp_path / "wal"), LOG_BATCH_SECONDS="0")
        try:
            with httpx.Client(base_url=f"http://127.0.0.1:{port}") as client:
                filler = fill(disk)
                batch = lambda n: [{"dt": 1735689600, "event": "e", "user_id": f"u{n}", "seq": i} for i in range(50)]  # noqa: E731
                during = [client.post("/events", json=batch(n)).status_code for n in range(20)]
                deadline = time.monotonic() + 30
                while not (client.get("/readyz").json().get("insert_failure")) and time.monotonic() < deadline:
                    time.sleep(0.1)
                failing = client.get("/readyz").json()
                filler.unlink()
                deadline = time.monotonic() + 60
                while client.get("/readyz").json().get("insert_failure") and time.monotonic() < deadline:
                    time.sleep(0.2)
        finally:
            server.terminate()
            server.wait(timeout=60)
        stored = query_in_process(data_dir, "SELECT count(), uniqExact(user_id, props['seq']) FROM events")
    assert during == [202] * 20
    assert failing["insert_failure"] and failing["log_bytes"] > 0
    assert stored == [[1000, 1000]]
    assert os.path.exists(tmp_path / "wal")
