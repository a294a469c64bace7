"""The single-event ratio, the one harness its figure comes from (issue #28): ROUNDS interleaved
pairs, each (a) the bare endpoint (loadgen/bare_app.py: read the body, parse the JSON, 202) then
(b) `POST /events` with one event a request (ACK=log, a fresh data directory, the default
WEB_CONCURRENCY=auto: on 2 cores one HTTP worker in front of the engine's process), wrk -t1 -c64
for 10 s each; b/a per round, and the median and spread of the rounds. The machine is
described with the figures (cores, CPU, the log's file system and its fdatasync latency, how busy
other processes kept it, with a warning over 5%), in the output and in
loadgen/results/bench-ratio-<time>.json. Machines here differ by 2x and runs by ~15%: quote the
median of interleaved rounds, with the machine line. Then p99 at half the median rate of (b), paced,
for 20 s at 64 and at 256 connections on a fresh server (target <= 10 ms). `--single` adds (c), the
same server as one process (WEB_CONCURRENCY=1), to each round and to the half load.

    python -m loadgen.bench_ratio [--rounds 5] [--log-dir DIR] [--single]   # make bench-ratio ROUNDS=5

A benchmark: it prints figures, it asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

from loadgen.bench import measure_http
from loadgen.capacity import paced
from loadgen.harness import bare_server, embedded_server, embedded_shape
from loadgen.machine import describe, others_cpu_share

RESULTS = Path(__file__).resolve().parent / "results"
CONNECTIONS, SECONDS = 64, 10
HALF_LOAD_SECONDS, HALF_LOAD_CONNECTIONS, P99_TARGET_MS = 20, (64, 256), 10.0


def half_load(log_dir: str, rate: float, label: str = "", **env: str) -> list[dict]:
    """p50/p99 of POST /events paced at `rate` (half the highest), at 64 and 256 connections."""
    figures = []
    with tempfile.TemporaryDirectory(prefix="bench-ratio-half-", dir=log_dir) as directory:
        server = embedded_server(directory, **env)
        try:
            for connections in HALF_LOAD_CONNECTIONS:
                step = paced(server, rate, HALF_LOAD_SECONDS, connections)
                figures.append({"connections": connections, **asdict(step)})
                print(f"{label}half load {rate:,.0f}/s, {connections} connections: achieved {step.achieved_rps:,.0f}/s "
                      f"p50 {step.latency_ms['50']:.2f} ms p99 {step.latency_ms['99']:.2f} ms errors {step.errors} "
                      f"(target p99 <= {P99_TARGET_MS:.0f} ms)", flush=True)
        finally:
            server.stop()
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--log-dir", default=tempfile.gettempdir(),
                        help="where each round's data directory and write-ahead log go (default: the temp dir)")
    parser.add_argument("--single", action="store_true",
                        help="also (c) WEB_CONCURRENCY=1 (one process) in each round, and its half load at the same rate")
    args = parser.parse_args()
    before = others_cpu_share()
    _, _, shape = embedded_shape()
    print(f"(b) runs the default WEB_CONCURRENCY=auto here: {shape}", flush=True)
    rounds = []
    for number in range(1, args.rounds + 1):
        bare = bare_server()
        try:
            a = measure_http("(a) bare", bare, "/events", 1, CONNECTIONS, SECONDS)
        finally:
            bare.stop()
        with tempfile.TemporaryDirectory(prefix="bench-ratio-", dir=args.log_dir) as directory:
            server = embedded_server(directory)
            try:
                b = measure_http("(b) one event, ACK=log", server, "/events", 1, CONNECTIONS, SECONDS)
            finally:
                server.stop()
        rounds.append({"bare_per_second": a.events_per_second, "ours_per_second": b.events_per_second,
                       "ours_p50_ms": b.p50_ms, "ours_p99_ms": b.p99_ms, "errors": a.errors + b.errors,
                       "ratio": b.events_per_second / a.events_per_second})
        single = ""
        if args.single:
            with tempfile.TemporaryDirectory(prefix="bench-ratio-", dir=args.log_dir) as directory:
                server = embedded_server(directory, WEB_CONCURRENCY="1")
                try:
                    c = measure_http("(c) one event, one process", server, "/events", 1, CONNECTIONS, SECONDS)
                finally:
                    server.stop()
            rounds[-1].update(single_per_second=c.events_per_second, single_p99_ms=c.p99_ms,
                              single_ratio=c.events_per_second / a.events_per_second)
            single = f"  (c) one process {c.events_per_second:,.0f}/s p99 {c.p99_ms} ms c/a {rounds[-1]['single_ratio']:.3f}"
        print(f"round {number}: (a) {a.events_per_second:,.0f}/s  (b) {b.events_per_second:,.0f}/s "
              f"p99 {b.p99_ms} ms  b/a {rounds[-1]['ratio']:.3f}{single}", flush=True)
    rate = statistics.median(r["ours_per_second"] for r in rounds) / 2
    half = half_load(args.log_dir, rate)
    half_single = half_load(args.log_dir, rate, "(c) one process: ", WEB_CONCURRENCY="1") if args.single else []
    machine = describe(Path(args.log_dir), max(before, others_cpu_share()))
    ratios = [r["ratio"] for r in rounds]
    median = statistics.median(ratios)
    spread = (max(ratios) - min(ratios)) / 2
    print(f"b/a: median {median:.3f} over {len(ratios)} rounds, spread ±{spread:.3f} "
          f"(lowest {min(ratios):.3f}, highest {max(ratios):.3f}); target >= 0.7")
    if args.single:
        singles = [r["single_ratio"] for r in rounds]
        print(f"c/a (one process): median {statistics.median(singles):.3f} (lowest {min(singles):.3f}, "
              f"highest {max(singles):.3f})")
    print(machine.line())
    if machine.warning():
        print(machine.warning())
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"bench-ratio-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(json.dumps({"median": median, "spread": spread, "rounds": rounds, "connections": CONNECTIONS,
                                "seconds": SECONDS, "server": shape, "half_load": half, "half_load_single": half_single,
                                "machine": machine.as_dict(), "warning": machine.warning()}, indent=2))
    print(f"written {path}")


if __name__ == "__main__":
    main()
