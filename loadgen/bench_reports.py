"""Every report's latency through the HTTP API at 1 M and 10 M demo events (100 M opt-in), as a
scale curve, with DAU/WAU/MAU against a raw rolling-window scan of `events`.

    python -m loadgen.bench_reports --events 1000000,10000000      # make bench-reports
    EVENTS=100000000 make bench-reports                              # adds 100 M (long)

For each size: `analytics-api seed-demo` (180 days of demo data) into a fresh embedded data
directory, then each report over the last 30 days in UTC (one in Asia/Kolkata), three ways:
- "from events": a server with the rollup job off (ROLLUP_INTERVAL_SECONDS=0), requested RUNS
  times with `Cache-Control: no-cache`: every day computed from the rollup tables and `events`;
- "no-cache": the rollup job's first round (ROLLUP_ZONES: UTC and Asia/Kolkata; all apps and
  each; the default REPORT_FUNNELS and REPORT_BREAKDOWNS) by `analytics-api rollups` in its own
  process, as `seed-demo` does, then a server with the job on (its first round finds the days
  stored), RUNS times with `Cache-Control: no-cache`: stored days read, today (and yesterday for
  session length; yesterday too for the funnel) and every day of what the job does not store
  computed; what any request sees after a restart. (A round over all history inside the server
  leaves its process ~60 MB larger, memory no purge gives back, and its memory purges then slow
  reports ~20%.)
- "cached": then once to fill the reports' cache in memory (server/reports/cache.py) and RUNS
  times more (no events arrive meanwhile).
Each report is requested once before its no-cache runs, not counted (a server's first queries
of a kind are 2-3x slower), and each server measures once the engine has no merge running
(seeding leaves parts to merge for a while, which a server that has been up has long done). The raw scan is seed 004's
DAU/WAU/MAU query run through the same server's SQL console (`POST /sql`), so both sides pay the
same HTTP path. Writes loadgen/results/bench-reports-<time>.json and a PNG chart of latency
against event count. A benchmark: it prints, it asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import httpx

from tests.servers import free_port, start_server

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "loadgen" / "results"

RAW_ACTIVE_USERS = """
SELECT date,
       uniqExactMerge(s) OVER (ORDER BY date RANGE BETWEEN CURRENT ROW AND CURRENT ROW) AS dau,
       uniqExactMerge(s) OVER (ORDER BY date RANGE BETWEEN 6 PRECEDING AND CURRENT ROW) AS wau,
       uniqExactMerge(s) OVER (ORDER BY date RANGE BETWEEN 29 PRECEDING AND CURRENT ROW) AS mau
FROM (SELECT toDate(dt) AS date, uniqExactState(user_id) AS s FROM events
      WHERE dt >= toDateTime('{lookback}', 'UTC') AND dt < toDateTime('{end}', 'UTC') AND is_bot = 0
      GROUP BY date)
WHERE date >= '{first}'
ORDER BY date
"""

REPORTS = {
    "active users (DAU/WAU/MAU)": "/reports/active-users",
    "active users, Asia/Kolkata": "/reports/active-users?tz=Asia/Kolkata",
    "daily (seed 001/002)": "/reports/daily",
    "new + total users": "/reports/total-users",
    "revenue": "/reports/revenue",
    "retention (weekly)": "/reports/retention?period=week",
    "funnel (4 steps, 1 h)": "/reports/funnel?steps=view,start_task,finish_task,pay&window=3600",
    "ratio": "/reports/ratio?numerator=finish_task&denominator=start_task",
    "events per hour": "/reports/events",
    "breakdown by referrer": "/reports/breakdown?by=referrer_domain",
}
RAW = "raw rolling scan (DAU/WAU/MAU)"
# The zones the rollup server stores: the default's UTC, and the one zone the bench also asks for
# (a deployment lists the zones its dashboards use).
ROLLUP_ZONES = "UTC,Asia/Kolkata"


def median_ms(client: httpx.Client, method: str, path: str, runs: int, **kwargs: Any) -> float:
    timings = []
    for _ in range(runs):
        started = time.perf_counter()
        response = client.request(method, path, **kwargs)
        timings.append(time.perf_counter() - started)
        response.raise_for_status()
    return statistics.median(timings) * 1000


def timings_ms(client: httpx.Client, method: str, path: str, runs: int, **kwargs: Any) -> tuple[float, float]:
    """(the median with `Cache-Control: no-cache`; the median once a first request has filled
    the reports' cache in memory)."""
    # One request first, not counted: a server's first queries of a kind pay its warm-up (2-3x).
    client.request(method, path, headers={"Cache-Control": "no-cache"}, **kwargs).raise_for_status()
    computed = median_ms(client, method, path, runs, headers={"Cache-Control": "no-cache"}, **kwargs)
    client.request(method, path, **kwargs).raise_for_status()
    return computed, median_ms(client, method, path, runs, **kwargs)


def wait_for_rollups(url: str, timeout: float = 1800) -> float:
    """Seconds until the server's rollup job has finished its first round (/metrics)."""
    started = time.perf_counter()
    while time.perf_counter() - started < timeout:
        text = httpx.get(f"{url}/metrics", timeout=10).text
        stamp = next((line.split()[-1] for line in text.splitlines()
                      if line.startswith("rollup_last_success_timestamp_seconds ")), "0")
        if float(stamp) > 0:
            return time.perf_counter() - started
        time.sleep(0.2)
    raise RuntimeError("the rollup job did not finish a round")


def wait_for_merges(client: httpx.Client, timeout: float = 600) -> float:
    """Seconds until the engine has no merge running (seeding leaves many parts to merge, which
    a server that has been up a while has long done), asked through the console."""
    started = quiet = time.perf_counter()
    while time.perf_counter() - started < timeout:
        response = client.post("/sql", json={"sql": "SELECT count() FROM system.merges"})
        response.raise_for_status()
        if response.json()["rows"][0][0] != 0:
            quiet = time.perf_counter()
        elif time.perf_counter() - quiet > 2:
            return time.perf_counter() - started
        time.sleep(0.2)
    raise RuntimeError("merges did not settle")


def measure(events: int, runs: int) -> dict[str, tuple[float, float, float]]:
    with tempfile.TemporaryDirectory(prefix="bench-reports-") as directory:
        data = Path(directory) / "clickhouse"
        env = {**os.environ, "CLICKHOUSE_URL": f"chdb://{data}", "LOG_DIR": f"{directory}/wal"}
        started = time.perf_counter()
        subprocess.run([sys.executable, "-m", "server.cli", "seed-demo", "--events", str(events), "--no-rollups"],
                       cwd=ROOT, env=env, check=True, capture_output=True)
        print(f"\n{events:,} demo events seeded in {time.perf_counter() - started:.0f} s")
        figures: dict[str, tuple[float, float, float]] = {}
        today = date.today()
        first, lookback = today - timedelta(days=29), today - timedelta(days=58)
        span = f"from={first}&to={today}"
        raw = RAW_ACTIVE_USERS.format(lookback=lookback, end=today + timedelta(days=1), first=first)
        from_events: dict[str, float] = {}
        for rollups_on in (False, True):
            if rollups_on:  # the job's first round in its own process, as seed-demo does (see the module's text)
                started = time.perf_counter()
                subprocess.run([sys.executable, "-m", "server.cli", "rollups"], cwd=ROOT,
                               env={**env, "ROLLUP_ZONES": ROLLUP_ZONES}, check=True, capture_output=True)
                print(f"  the rollup job's first round (analytics-api rollups): {time.perf_counter() - started:.1f} s")
            port = free_port()
            server = start_server(data, port, LOG_DIR=f"{directory}/wal", SQL_TIMEOUT_SECONDS="600",
                                  ROLLUP_INTERVAL_SECONDS="300" if rollups_on else "0", ROLLUP_ZONES=ROLLUP_ZONES)
            try:
                url = f"http://127.0.0.1:{port}"
                if rollups_on:
                    print(f"  the server's first round: {wait_for_rollups(url):.1f} s")
                with httpx.Client(base_url=url, timeout=600) as client:
                    print(f"  merges settled after {wait_for_merges(client):.1f} s")
                    for name, path in REPORTS.items():
                        joiner = "&" if "?" in path else "?"
                        if not rollups_on:
                            from_events[name] = timings_ms(client, "GET", f"{path}{joiner}{span}", runs)[0]
                            continue
                        computed, cached = timings_ms(client, "GET", f"{path}{joiner}{span}", runs)
                        figures[name] = (from_events[name], computed, cached)
                        print(f"  {name:32} from events {from_events[name]:8.1f} ms   no-cache {computed:8.1f} ms"
                              f"   cached {cached:8.1f} ms")
                    if rollups_on:
                        scan = timings_ms(client, "POST", "/sql", runs, json={"sql": raw})[0]
                        figures[RAW] = (scan, scan, scan)
                        print(f"  {RAW:32} {scan:8.1f} ms")
            finally:
                server.terminate()
                server.wait(timeout=120)
        return figures


def draw(results: dict[int, dict[str, tuple[float, float, float]]], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sizes = sorted(results)
    figure, axes = plt.subplots(figsize=(9, 5.5))
    for name in [*REPORTS, RAW]:
        axes.plot(sizes, [results[n][name][1] for n in sizes], marker="o", label=name,
                  linestyle="--" if name == RAW else "-")
    axes.axhline(50, color="grey", linewidth=0.8, linestyle=":")
    axes.set_xscale("log")
    axes.set_yscale("log")
    axes.set_xlabel("events stored (demo data, 180 days)")
    axes.set_ylabel("median through the API, no-cache, ms (30 days)")
    axes.set_title("Reports against events stored (embedded engine, 2 cores); dotted: 50 ms")
    axes.legend(fontsize=7, loc="upper left")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", default="1000000,10000000", help="comma-separated sizes")
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    sizes = [int(float(size)) for size in args.events.split(",") if size.strip()]
    results = {size: measure(size, args.runs) for size in sizes}
    print(f"\n{'report (last 30 days), ms: from events / no-cache / cached':60}" + "".join(f"{n:>26,}" for n in sizes))
    for name in [*REPORTS, RAW]:
        print(f"{name:60}" + "".join(f"{results[n][name][0]:10.1f} /{results[n][name][1]:7.1f} /{results[n][name][2]:6.1f}"
                                     for n in sizes))
    stamp = time.strftime("%Y-%m-%dT%H%M%SZ", time.gmtime())
    RESULTS.mkdir(parents=True, exist_ok=True)
    stem = RESULTS / f"bench-reports-{stamp}"
    stem.with_suffix(".json").write_text(json.dumps({"time": stamp, "runs": args.runs,
                                                     "results": {str(n): r for n, r in results.items()}}, indent=2))
    print(f"\nwritten: {stem.with_suffix('.json').relative_to(ROOT)}")
    try:
        print(f"chart:   {draw(results, stem.with_suffix('.png')).relative_to(ROOT)}")
    except ImportError:
        print("chart: matplotlib is not installed (pip install -e '.[bench]')")


if __name__ == "__main__":
    main()
