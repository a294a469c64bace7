"""`make bench`: the ingest server against its ceiling, on this machine, in one run.

    python -m loadgen.bench [--seconds 10] [--connections 32] [--compare loadgen/results/OLD.json]

(a) a bare Starlette endpoint (loadgen/bare_app.py) under the same uvicorn settings,
(b) POST /events with one event per request, (c) with 100-event arrays, all driven by wrk;
(d) the storage engine alone: the same JSONEachRow INSERTs, of the size the server's batches
had in (c), issued directly with no HTTP. For each: events/s, p50/p99, server CPU seconds per
1,000 events and peak RSS (from /proc). Then the ratios b/a and c/d. Results go to
loadgen/results/bench-<time>.json; --compare prints the change against an earlier file.
A benchmark: it prints figures, it asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "loadgen" / "results"
WRK_SCRIPT = ROOT / "loadgen" / "post_event.lua"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
ONE_EVENT = {"dt": "2025-03-01T11:11:11Z", "event": "view", "user_id": "u1", "screen": "main", "elem": "screen", "amount": 0}


@dataclass
class Result:
    name: str
    events_per_second: float
    requests_per_second: float | None = None
    p50_ms: float | None = None
    p99_ms: float | None = None
    errors: int = 0
    cpu_seconds_per_1000_events: float | None = None
    peak_rss_mb: float | None = None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServerProcess:
    """A server in its own process, with its CPU time and peak RSS read from /proc."""

    def __init__(self, command: list[str], env: dict[str, str], port: int, ready_path: str):
        self.port = port
        self.process = subprocess.Popen(command, cwd=ROOT, env={**os.environ, **env},
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"http://127.0.0.1:{port}{ready_path}", timeout=1).status_code < 500:
                    return
            except httpx.HTTPError:
                time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"{command} did not answer on port {port}")

    def cpu_seconds(self) -> float:
        fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime + stime

    def peak_rss_mb(self) -> float:
        status = Path(f"/proc/{self.process.pid}/status").read_text()
        return int(re.search(r"VmHWM:\s+(\d+) kB", status).group(1)) / 1024

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.process.kill()


def run_wrk(url: str, connections: int, seconds: int, batch: int) -> dict:
    out = subprocess.run(
        ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency", "-s", str(WRK_SCRIPT), url],
        capture_output=True, text=True, env={**os.environ, "BATCH": str(batch)}, check=True,
    ).stdout

    def latency(percent: str) -> float:
        value, unit = re.search(rf"^\s+{percent}%\s+([\d.]+)(us|ms|s)\s*$", out, re.MULTILINE).groups()
        return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]

    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    socket_errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    errors = int(non_2xx.group(1)) if non_2xx else 0
    errors += sum(int(n) for n in socket_errors.groups()) if socket_errors else 0
    return {"rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),
            "p50": latency("50"), "p99": latency("99"), "errors": errors}


def measure_http(name: str, server: ServerProcess, path: str, batch: int, connections: int, seconds: int) -> Result:
    cpu_before = server.cpu_seconds()
    figures = run_wrk(f"http://127.0.0.1:{server.port}{path}", connections, seconds, batch)
    cpu = server.cpu_seconds() - cpu_before
    events = figures["rps"] * batch * seconds
    return Result(name, figures["rps"] * batch, figures["rps"], figures["p50"], figures["p99"], figures["errors"],
                  round(cpu / events * 1000, 4) if events else None, round(server.peak_rss_mb(), 1))


def batch_totals(port: int) -> tuple[float, float]:
    """(rows, INSERTs) so far, from the server's batch_rows histogram."""
    text = httpx.get(f"http://127.0.0.1:{port}/metrics").text
    total = float(re.search(r"^batch_rows_sum ([\d.e+]+)$", text, re.MULTILINE).group(1))
    count = float(re.search(r"^batch_rows_count ([\d.e+]+)$", text, re.MULTILINE).group(1))
    return total, count


def measure_storage(rows_per_insert: int, seconds: int) -> Result:
    """(d): the same INSERTs with no HTTP, in this process, into a fresh embedded database."""
    from server import db
    from server.config import Settings
    from server.ingest.validate import Limits, validate_events
    from server.ingest.writer import EventWriter, encode_rows

    with tempfile.TemporaryDirectory(prefix="bench-storage-") as directory:
        settings = Settings.from_env({}, clickhouse_url=f"chdb://{directory}")
        db.migrate(settings)
        client = db.connect(settings, client_settings=db.INSERT_SETTINGS)
        rows, _ = validate_events([ONE_EVENT] * rows_per_insert, Limits.from_settings(settings))
        body = encode_rows(rows)
        writer = EventWriter([client], settings.insert_table)
        inserted, cpu_before, started = 0, time.process_time(), time.perf_counter()
        while time.perf_counter() - started < seconds:
            writer.insert(body)
            inserted += rows_per_insert
        elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu_before
        client.close()
    return Result("(d) storage engine alone, no HTTP", inserted / elapsed,
                  cpu_seconds_per_1000_events=round(cpu / inserted * 1000, 4))


def main() -> None:
    parser = argparse.ArgumentParser(description="Benchmark the ingest server against its ceiling.")
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--compare", type=Path, help="an earlier results file to compare with")
    args = parser.parse_args()
    if not shutil.which("wrk"):
        sys.exit("wrk is not installed: `apt-get install wrk` (make bench does it)")

    uvicorn = [sys.executable, "-m", "uvicorn", "--no-access-log", "--log-level", "warning"]
    results: list[Result] = []
    port = free_port()
    bare = ServerProcess([*uvicorn, "loadgen.bare_app:app", "--port", str(port)], {}, port, "/")
    try:
        results.append(measure_http("(a) bare Starlette endpoint", bare, "/events", 1, args.connections, args.seconds))
    finally:
        bare.stop()

    with tempfile.TemporaryDirectory(prefix="bench-server-") as directory:
        port = free_port()
        env = {"CLICKHOUSE_URL": f"chdb://{directory}"}
        server = ServerProcess([sys.executable, "-m", "server.cli", "serve", "--port", str(port)], env, port, "/readyz")
        try:
            results.append(measure_http("(b) POST /events, 1 event", server, "/events", 1, args.connections, args.seconds))
            rows_before, inserts_before = batch_totals(port)
            results.append(measure_http("(c) POST /events, 100 events", server, "/events", 100, args.connections, args.seconds))
            rows_after, inserts_after = batch_totals(port)
        finally:
            server.stop()
    batch_rows = (rows_after - rows_before) / max(1.0, inserts_after - inserts_before)
    print(f"(c) averaged {batch_rows:,.0f} rows per INSERT; (d) issues INSERTs of that size")
    results.append(measure_storage(max(1, round(batch_rows)), args.seconds))

    a, b, c, d = (r.events_per_second for r in results)
    ratios = {"b/a": round(b / a, 3), "c/d": round(c / d, 3)}
    report = {"time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "connections": args.connections,
              "seconds": args.seconds, "results": [asdict(r) for r in results], "ratios": ratios}
    print_report(report, json.loads(args.compare.read_text()) if args.compare else None)
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"bench-{report['time'].replace(':', '')}.json"
    path.write_text(json.dumps(report, indent=2))
    print(f"\nwritten: {path.relative_to(ROOT)}")


def print_report(report: dict, earlier: dict | None) -> None:
    print(f"{'':34} {'events/s':>10} {'p50 ms':>8} {'p99 ms':>8} {'errors':>7} {'CPU s/1k ev':>11} {'RSS MB':>7}")
    before = {r["name"]: r for r in earlier["results"]} if earlier else {}
    for r in report["results"]:
        cells = [f"{r['events_per_second']:10,.0f}"]
        cells += [f"{r[k]:8.2f}" if r[k] is not None else f"{'':8}" for k in ("p50_ms", "p99_ms")]
        cells += [f"{r['errors']:7d}", f"{r['cpu_seconds_per_1000_events'] or 0:11.4f}",
                  f"{r['peak_rss_mb']:7.1f}" if r["peak_rss_mb"] else f"{'':7}"]
        change = ""
        if r["name"] in before:
            change = f"  ({r['events_per_second'] / before[r['name']]['events_per_second'] - 1:+.1%} vs earlier)"
        print(f"{r['name'][:34]:34} {' '.join(cells)}{change}")
    ratios = report["ratios"]
    print(f"\nb/a = {ratios['b/a']:.3f} (target >= 0.7)   c/d = {ratios['c/d']:.3f}")
    c_rate = report["results"][2]["events_per_second"]
    print(f"(c) {c_rate:,.0f} events/s (target >= 150,000)")


if __name__ == "__main__":
    main()
