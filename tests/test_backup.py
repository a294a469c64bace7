"""Backup of a running server under ingest load, restore into a new directory: every report of
the restored data equals the reference, every event acknowledged before the backup is in it, and
nothing is in it that the original does not hold."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from datetime import date

import httpx
import pytest

from tests import forkserver
from tests.reports import reference
from tests.servers import ROOT, free_port, queries_in_process, query_in_process, start_server, wait_consumed
from tests.test_crashes import Load

ADMIN = "admin-token-0123456789abcdef"
FIRST, LAST = date(2025, 3, 3), date(2025, 3, 16)
EVENTS = reference.generate(seed=41, first_day=FIRST, days=14, users=25)
APP = "a1"  # the load's events have no app: reports of APP are the reference's alone


def cli(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return forkserver.run([sys.executable, "-m", "server.cli", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=300, env={**os.environ, **env})


def reports(port: int) -> dict[str, object]:
    """Every per-user report of APP over the range, in UTC and a +5:30 zone."""
    found: dict[str, object] = {}
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as http:
        for tz in ("UTC", "Asia/Kolkata"):
            query = {"from": FIRST.isoformat(), "to": LAST.isoformat(), "tz": tz, "app_id": APP}
            found[f"daily {tz}"] = http.get("/reports/daily", params=query).json()
            found[f"active {tz}"] = http.get("/reports/active-users", params=query).json()
            found[f"revenue {tz}"] = http.get("/reports/revenue", params=query).json()
            found[f"retention {tz}"] = http.get("/reports/retention", params={**query, "period": "day"}).json()["cohorts"]
            funnel = http.get("/reports/funnel", params={**query, "steps": ",".join(reference.STEPS), "window": "3600"})
            found[f"funnel {tz}"] = [step["users"] for step in funnel.json()["steps"]]
    return found


def expected() -> dict[str, object]:
    events = [e for e in EVENTS if e["app_id"] == APP]
    found: dict[str, object] = {}
    for tz in ("UTC", "Asia/Kolkata"):
        found[f"daily {tz}"] = reference.daily(events, FIRST, LAST, tz)
        found[f"active {tz}"] = reference.active_users(events, FIRST, LAST, tz)
        found[f"revenue {tz}"] = reference.revenue(events, FIRST, LAST, tz)
        found[f"retention {tz}"] = reference.retention(events, FIRST, LAST, tz, "day")
        found[f"funnel {tz}"] = reference.funnel(events, FIRST, LAST, tz, reference.STEPS, 3600)
    return found


def test_a_backup_under_load_restores_every_report_and_every_event_acknowledged_before_it(tmp_path):
    data, port = tmp_path / "data", free_port()
    server = start_server(data, port, ADMIN_TOKEN=ADMIN, BACKUP_DIR=str(tmp_path / "backups"))
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as http:
            for n in range(0, len(EVENTS), 500):
                assert http.post("/events", json=EVENTS[n:n + 500]).status_code == 202
            with Load(port, run=0) as load:
                while len(load.acknowledged) < 2000:  # the load is under way
                    threading.Event().wait(0.02)
                with load._lock:
                    before = set(load.acknowledged)
                answer = http.post("/admin/backup", json={"name": "b1"}, headers={"Authorization": f"Bearer {ADMIN}"})
                after = len(load.acknowledged)
                threading.Event().wait(0.3)  # and goes on after it
            assert answer.status_code == 200, answer.text
            manifest = answer.json()
            assert http.post("/admin/backup", json={"name": "../escape"},
                             headers={"Authorization": f"Bearer {ADMIN}"}).status_code == 400
            assert http.post("/admin/backup", json={"name": "b1"}).status_code == 403
            wait_consumed(port)
    finally:
        server.terminate()
        server.wait(timeout=120)
    assert after > len(before)  # events were acknowledged while the backup ran
    restored = tmp_path / "restored"
    result = cli("restore", manifest["path"], CLICKHOUSE_URL=f"chdb://{restored}", LOG_DIR=f"{restored}-wal")
    assert result.returncode == 0, result.stderr
    seq = "SELECT user_id, toUInt32(props['seq']) FROM events WHERE app_id = ''"
    backed_up, [[count]] = queries_in_process(restored, seq, "SELECT count() FROM events")
    in_backup = {(user, int(n)) for user, n in backed_up}
    in_original = {(user, int(n)) for user, n in query_in_process(data, seq)}
    assert before <= in_backup <= in_original and in_backup != in_original
    assert count == manifest["tables"]["events"] == len(in_backup) + len(EVENTS)
    port = free_port()
    server = start_server(restored, port, ROLLUP_INTERVAL_SECONDS="300")
    try:
        assert reports(port) == expected()
    finally:
        server.terminate()
        server.wait(timeout=120)


def test_restore_refuses_a_database_that_holds_events_and_a_directory_that_is_not_a_backup(tmp_path):
    data, port = tmp_path / "data", free_port()
    server = start_server(data, port)
    httpx.post(f"http://127.0.0.1:{port}/events", json=EVENTS[:10])
    server.terminate()
    server.wait(timeout=120)
    env = {"CLICKHOUSE_URL": f"chdb://{data}", "LOG_DIR": f"{data}-wal"}
    made = cli("backup", str(tmp_path / "offline"), **env)  # the server stopped: the command does it itself
    assert made.returncode == 0, made.stderr
    refused = cli("restore", str(tmp_path / "offline"), **env)
    assert refused.returncode == 2 and "already holds events" in refused.stderr
    not_one = cli("restore", str(tmp_path), **env)
    assert not_one.returncode == 2 and "manifest.json" in not_one.stderr
    again = cli("backup", str(tmp_path / "offline"), **env)
    assert again.returncode == 2 and "not empty" in again.stderr


@pytest.mark.parametrize("name", ["", ".hidden", "a/b", "x" * 101, "../up"])
def test_backup_names_cannot_reach_outside_the_backup_directory(name):
    from server.data.backup import NAME
    assert not NAME.fullmatch(name)
