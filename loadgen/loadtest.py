"""`analytics-api loadtest`: the locust scenario (loadgen/locustfile.py) against a running server.

Runs locust headless at a held rate, passing its progress lines through, then reports achieved
requests/s and events/s, p50/p95/p99 latency, errors, and the events the server acknowledged
next to the events of this run stored in ClickHouse (counted through GET /reports/events, after
waiting for the log's consumer or the Buffer table). A difference is a failure: exit status 1.
"""

from __future__ import annotations

import csv
import json
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

LOCUSTFILE = Path(__file__).resolve().parent / "locustfile.py"


def run(host: str, rps: float, seconds: int, users: int | None, settle_seconds: float = 30.0) -> int:
    run_id = "loadtest-" + datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    users = users or max(3, min(200, int(rps // 20) + 3))
    with tempfile.TemporaryDirectory(prefix="loadtest-") as directory:
        ack_file, csv_prefix = Path(directory) / "ack.json", Path(directory) / "stats"
        command = [
            sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--headless", "-u", str(users), "-r", str(users),
            "-t", f"{seconds}s", "--host", host, "--rps", str(rps), "--run-id", run_id,
            "--ack-file", str(ack_file), "--csv", str(csv_prefix), "--stop-timeout", "10",
        ]
        print(f"loadtest {run_id}: {rps:g} requests/s for {seconds} s from {users} simulated users against {host}")
        subprocess.run(command, check=False)
        if not ack_file.exists():
            print("FAILURE: locust ended without writing its acknowledged count")
            return 1
        acknowledged = json.loads(ack_file.read_text())["events"]
        aggregated, errors = read_stats(csv_prefix)
    stored = count_stored(host, run_id, acknowledged, settle_seconds)
    print()
    print(f"achieved:   {aggregated['rps']:,.1f} requests/s, {acknowledged / seconds:,.1f} events/s")
    print(f"latency:    p50 {aggregated['p50']} ms, p95 {aggregated['p95']} ms, p99 {aggregated['p99']} ms")
    print(f"requests:   {aggregated['requests']:,} sent, {aggregated['failures']:,} failed")
    for error, count in errors:
        print(f"  error:    {count:,} × {error}")
    print(f"events:     {acknowledged:,} acknowledged, {stored:,} stored in ClickHouse (app_id {run_id})")
    if stored != acknowledged:
        print(f"FAILURE: {acknowledged - stored:+,} acknowledged events are not stored")
        return 1
    print("OK: every acknowledged event is stored")
    return 0


def read_stats(prefix: Path) -> tuple[dict[str, Any], list[tuple[str, int]]]:
    with open(f"{prefix}_stats.csv") as f:
        rows = {row["Name"]: row for row in csv.DictReader(f)}
    total = rows["Aggregated"]
    aggregated = {
        "requests": int(total["Request Count"]), "failures": int(total["Failure Count"]),
        "rps": float(total["Requests/s"]), "p50": total["50%"], "p95": total["95%"], "p99": total["99%"],
    }
    errors = []
    failures = Path(f"{prefix}_failures.csv")
    if failures.exists():
        with open(failures) as f:
            errors = [(f"{row['Name']}: {row['Error']}", int(row["Occurrences"])) for row in csv.DictReader(f)]
    return aggregated, errors


def count_stored(host: str, run_id: str, expected: int, settle_seconds: float) -> int:
    """Events of this run in ClickHouse; waits up to `settle_seconds` for them to get there."""
    today = datetime.now(UTC).date()
    params = {"app_id": run_id, "from": (today - timedelta(days=1)).isoformat(), "to": (today + timedelta(days=1)).isoformat()}
    deadline = time.monotonic() + settle_seconds
    stored = -1
    while True:
        response = httpx.get(f"{host.rstrip('/')}/reports/events", params=params, timeout=30)
        response.raise_for_status()
        stored = sum(row["events"] for row in response.json())
        if stored == expected or time.monotonic() > deadline:
            return stored
        time.sleep(1)
