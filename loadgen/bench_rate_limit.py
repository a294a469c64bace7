"""What the ingest rate limits cost a request (issue #29: under 2 us): `RateLimiter.admit` for a
client address with tokens left, with a per-key bucket too, and a call that does nothing as the
baseline, timed in this process over interleaved rounds; prints the medians in ns.

    python -m loadgen.bench_rate_limit
"""

from __future__ import annotations

import statistics
import time

from server.ingest.rate_limit import RateLimiter

CALLS = 200_000
ROUNDS = 7


def nothing(ip: str, key: object) -> None:
    return None


def per_call_ns(function: object, ip: str, key: object) -> float:
    call = function  # local: the loop's lookups as the server's
    started = time.perf_counter_ns()
    for _ in range(CALLS):
        call(ip, key)  # type: ignore[operator]
    return (time.perf_counter_ns() - started) / CALLS


def main() -> None:
    # Rates no round reaches (a bucket never runs dry): the cost of a token taken.
    by_ip = RateLimiter(1e9, 1e9, 0, 0)
    both = RateLimiter(1e9, 1e9, 1e9, 1e9)
    apps = frozenset({"shop"})
    rounds: dict[str, list[float]] = {"baseline (a call that does nothing)": [], "per address": [],
                                      "per address and per key": [], "loopback (not limited)": []}
    for _ in range(ROUNDS):
        rounds["baseline (a call that does nothing)"].append(per_call_ns(nothing, "203.0.113.5", None))
        rounds["per address"].append(per_call_ns(by_ip.admit, "203.0.113.5", None))
        rounds["per address and per key"].append(per_call_ns(both.admit, "203.0.113.5", apps))
        rounds["loopback (not limited)"].append(per_call_ns(by_ip.admit, "127.0.0.1", None))
    baseline = statistics.median(rounds["baseline (a call that does nothing)"])
    print(f"rate limits, median of {ROUNDS} interleaved rounds of {CALLS:,} calls:")
    for name, values in rounds.items():
        median = statistics.median(values)
        print(f"  {name:38s} {median:7.0f} ns  (+{median - baseline:.0f} ns over the baseline; "
              f"rounds {min(values):.0f}-{max(values):.0f})")


if __name__ == "__main__":
    main()
