"""The single-event ratio (issue #11's target), paired: ROUNDS times (a) the bare endpoint then
(b) POST /events with one event a request (ACK=log, a fresh data directory), wrk -c64 for 10 s
each, and b/a per round. The bare endpoint alone varies by ~10% from run to run here, so one
pair says little.

    python -m loadgen.bench_ratio [--rounds 3]

A benchmark: it prints figures, it asserts nothing.
"""

from __future__ import annotations

import argparse
import tempfile

from loadgen.bench import measure_http
from loadgen.harness import bare_server, embedded_server


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    ratios = []
    for round_number in range(1, args.rounds + 1):
        bare = bare_server()
        try:
            a = measure_http("(a) bare", bare, "/events", 1, 64, 10)
        finally:
            bare.stop()
        with tempfile.TemporaryDirectory(prefix="bench-ratio-") as directory:
            server = embedded_server(directory)
            try:
                b = measure_http("(b) one event, ACK=log", server, "/events", 1, 64, 10)
            finally:
                server.stop()
        ratios.append(b.events_per_second / a.events_per_second)
        print(f"round {round_number}: (a) {a.events_per_second:,.0f}/s  (b) {b.events_per_second:,.0f}/s "
              f"p99 {b.p99_ms} ms  b/a {ratios[-1]:.3f}", flush=True)
    print(f"b/a: mean {sum(ratios) / len(ratios):.3f}, lowest {min(ratios):.3f} (target >= 0.5)")


if __name__ == "__main__":
    main()
