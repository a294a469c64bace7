"""`make bench`: the ingest server against its ceiling, on this machine, in one run.

    python -m loadgen.bench [--seconds 10] [--connections 64] [--compare loadgen/results/OLD.json]

(a) a bare Starlette endpoint (loadgen/bare_app.py) under the same uvicorn settings,
(b) POST /events with one event per request with the default ACK=log (202 after fdatasync of
the write-ahead log), (b2) the same with ACK=insert (202 after the INSERT into the Buffer
table), (c) 100-event arrays with ACK=log, all driven by wrk; (d) the storage engine alone:
the consumer's INSERTs into `events` (with their dedup token), of the size its batches had in
(c), issued directly with no HTTP; (e) (b) with 10 M events stored; (f) a log of 1 M events that
were never inserted, drained by the next start. For each: events/s, p50/p99, server CPU seconds per 1,000
events and peak RSS (from /proc). Then the ratios b/a, b2/a and c/d. Results go to
loadgen/results/bench-<time>.json; --compare prints the change against an earlier file.
A benchmark: it prints figures, it asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import httpx

from loadgen import capacity
from loadgen.harness import RESULTS, ROOT, ServerProcess, bare_server, embedded_server, free_port, run_wrk

REPORTS = ["/reports/daily", "/reports/active-users", "/reports/funnel?steps=main,course,start_task,finish_task,pay",
           "/reports/ratio?numerator=finish_task&denominator=start_task", "/reports/retention?period=week",
           "/reports/revenue", "/reports/events", "/reports/total-users"]
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


def measure_http(name: str, server: ServerProcess, path: str, batch: int, connections: int, seconds: int) -> Result:
    cpu_before = server.cpu_seconds()
    figures = run_wrk(server.url + path, connections, seconds, batch)
    cpu = server.cpu_seconds() - cpu_before
    events = figures.rps * batch * seconds
    return Result(name, figures.rps * batch, figures.rps, figures.latency_ms["50"], figures.latency_ms["99"], figures.errors,
                  round(cpu / events * 1000, 4) if events else None, round(server.peak_rss_mb(), 1))


def batch_totals(port: int) -> tuple[float, float]:
    """(rows, INSERTs) so far, from the server's batch_rows histogram."""
    text = httpx.get(f"http://127.0.0.1:{port}/metrics").text
    total = float(re.search(r"^batch_rows_sum ([\d.e+]+)$", text, re.MULTILINE).group(1))
    count = float(re.search(r"^batch_rows_count ([\d.e+]+)$", text, re.MULTILINE).group(1))
    return total, count


def measure_storage(rows_per_insert: int, seconds: int) -> Result:
    """(d): the consumer's INSERTs with no HTTP, in this process, into a fresh embedded database."""
    from server.config import Settings
    from server.ingest.validate import Limits, validate_events
    from server.ingest.writer import encode_rows
    from server.store import db

    with tempfile.TemporaryDirectory(prefix="bench-storage-") as directory:
        settings = Settings.from_env({}, clickhouse_url=f"chdb://{directory}")
        db.migrate(settings)
        client = db.connect(settings, client_settings=db.INSERT_SETTINGS)
        rows, _ = validate_events([ONE_EVENT] * rows_per_insert, Limits.from_settings(settings))
        body = encode_rows(rows)
        inserted, cpu_before, started = 0, time.process_time(), time.perf_counter()
        while time.perf_counter() - started < seconds:
            client.raw_insert("events", insert_block=body, fmt="JSONEachRow", settings={
                "insert_deduplication_token": f"bench:{inserted}",
                "deduplicate_blocks_in_dependent_materialized_views": 1})
            inserted += rows_per_insert
        elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu_before
        client.close()
    return Result("(d) storage engine alone, no HTTP", inserted / elapsed,
                  cpu_seconds_per_1000_events=round(cpu / inserted * 1000, 4))


def measure_replay(events: int) -> Result:
    """(f): a log holding `events` events that were never inserted (the server was killed with an
    hour's gathering set), drained by the next start with default settings: events/s from the
    start of the new process until the log is empty."""
    with tempfile.TemporaryDirectory(prefix="bench-replay-") as directory:
        env = {"CLICKHOUSE_URL": f"chdb://{directory}/clickhouse", "LOG_DIR": f"{directory}/wal"}
        command = [sys.executable, "-m", "server.cli", "serve"]
        port = free_port()
        holding = ServerProcess([*command, "--port", str(port)],
                                {**env, "LOG_BATCH_SECONDS": "3600", "LOG_BATCH_MAX_ROWS": "1000000000"}, port, "/readyz")
        batch = [dict(ONE_EVENT, user_id=f"u{i}") for i in range(1000)]
        with httpx.Client(base_url=holding.url, timeout=60) as client:
            for _ in range(events // 1000):
                client.post("/events", json=batch).raise_for_status()
        holding.process.kill()
        holding.process.wait()
        port = free_port()
        started = time.perf_counter()
        draining = ServerProcess([*command, "--port", str(port)], env, port, "/readyz")
        try:
            while httpx.get(draining.url + "/readyz", timeout=10).json().get("log_bytes"):
                time.sleep(0.05)
            elapsed = time.perf_counter() - started
            cpu = draining.cpu_seconds()
        finally:
            draining.stop()
    return Result(f"(f) replay of a {events / 1e6:g}M-event log", events / elapsed,
                  cpu_seconds_per_1000_events=round(cpu / events * 1000, 4))


def measure_with_stored(events: int, seconds: int, connections: int) -> Result:
    """(e): peak RSS of the embedded server with `events` demo events stored, under (b)'s load
    and then every report over the last 30 days."""
    with tempfile.TemporaryDirectory(prefix="bench-stored-") as directory:
        env = {"CLICKHOUSE_URL": f"chdb://{directory}/clickhouse", "LOG_DIR": f"{directory}/wal"}
        started = time.perf_counter()
        subprocess.run([sys.executable, "-m", "server.cli", "seed-demo", "--events", str(events)],
                       cwd=ROOT, env={**os.environ, **env}, check=True, capture_output=True)
        print(f"(e) {events:,} demo events stored in {time.perf_counter() - started:.0f} s", flush=True)
        server = embedded_server(directory)
        try:
            result = measure_http(f"(e) (b) with {events / 1e6:g}M events stored", server, "/events", 1,
                                  connections, seconds)
            for path in REPORTS:
                response = httpx.get(server.url + path, timeout=120)
                response.raise_for_status()
            result.peak_rss_mb = round(server.peak_rss_mb(), 1)
        finally:
            server.stop()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description="Benchmark the ingest server against its ceiling.")
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--compare", type=Path, help="an earlier results file to compare with")
    parser.add_argument("--stored", type=int, default=10_000_000, help="events stored for (e); 0 skips it")
    parser.add_argument("--replay", type=int, default=1_000_000, help="events in the log for (f); 0 skips it")
    parser.add_argument("--step", type=int, default=1000, help="capacity test: rate step, requests/s")
    parser.add_argument("--step-seconds", type=int, default=5, help="capacity test: seconds per step")
    args = parser.parse_args()
    if not shutil.which("wrk"):
        sys.exit("wrk is not installed: `apt-get install wrk` (make bench does it)")

    results: list[Result] = []
    bare = bare_server()
    try:
        results.append(measure_http("(a) bare Starlette endpoint", bare, "/events", 1, args.connections, args.seconds))
    finally:
        bare.stop()

    with tempfile.TemporaryDirectory(prefix="bench-server-") as directory:
        server = embedded_server(directory, ACK="insert")
        try:
            insert_mode = measure_http("(b2) 1 event, ACK=insert", server, "/events", 1, args.connections, args.seconds)
        finally:
            server.stop()
    with tempfile.TemporaryDirectory(prefix="bench-server-") as directory:
        server = embedded_server(directory)
        try:
            results.append(measure_http("(b) 1 event, ACK=log (default)", server, "/events", 1, args.connections, args.seconds))
            results.append(insert_mode)
            rows_before, inserts_before = batch_totals(server.port)
            results.append(measure_http("(c) 100 events, ACK=log", server, "/events", 100, args.connections, args.seconds))
            rows_after, inserts_after = batch_totals(server.port)
            print(f"capacity step test: one event a request, {args.step:,}/s steps of {args.step_seconds} s, "
                  f"64 connections, until p99 > {capacity.P99_LIMIT_MS:.0f} ms or errors", flush=True)
            steps = capacity.step_test(server, args.step, args.step, args.step_seconds, 64)
        finally:
            server.stop()
    batch_rows = (rows_after - rows_before) / max(1.0, inserts_after - inserts_before)
    print(f"(c) averaged {batch_rows:,.0f} rows per INSERT; (d) issues INSERTs of that size")
    results.append(measure_storage(max(1, round(batch_rows)), args.seconds))
    if args.stored > 0:
        results.append(measure_with_stored(args.stored, args.seconds, args.connections))
    if args.replay > 0:
        results.append(measure_replay(args.replay))

    a, b, b2, c, d = (r.events_per_second for r in results[:5])
    ratios = {"b/a": round(b / a, 3), "b2/a": round(b2 / a, 3), "c/d": round(c / d, 3)}
    report = {"time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "connections": args.connections,
              "seconds": args.seconds, "results": [asdict(r) for r in results], "ratios": ratios,
              "capacity": steps}
    print_report(report, json.loads(args.compare.read_text()) if args.compare else None)
    RESULTS.mkdir(parents=True, exist_ok=True)
    stem = RESULTS / f"bench-{report['time'].replace(':', '')}"
    stem.with_suffix(".json").write_text(json.dumps(report, indent=2))
    print(f"\nwritten: {stem.with_suffix('.json').relative_to(ROOT)}")
    chart = capacity.draw(steps, stem.with_suffix(".png"))
    print(f"chart:   {chart.relative_to(ROOT)}")


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
    print(f"\nb/a = {ratios['b/a']:.3f} (target >= 0.5, goal 0.7)   b2/a = {ratios.get('b2/a', 0):.3f}   "
          f"c/d = {ratios['c/d']:.3f}")
    c_rate = report["results"][3]["events_per_second"]
    print(f"(c) {c_rate:,.0f} events/s (target >= 150,000)")
    for r in report["results"][5:]:
        if r["peak_rss_mb"]:
            print(f"{r['name']}: peak RSS {r['peak_rss_mb']:.0f} MB (target <= 500 MB)")
    cap = report["capacity"]
    print(f"capacity (ACK=log): highest rate held {cap['highest_rate_held']:,.0f} requests/s "
          f"(p99 <= {cap['p99_limit_ms']:.0f} ms, no errors)", end="")
    if cap["half_rate"]:
        print(f"; p99 at half that rate {cap['half_rate']['latency_ms']['99']:.2f} ms (target <= 15 ms)")
    else:
        print()
    before = (earlier or {}).get("capacity", {}).get("highest_rate_held")
    if before:
        print(f"  earlier: {before:,.0f} requests/s ({cap['highest_rate_held'] / before - 1:+.1%})")


if __name__ == "__main__":
    main()
