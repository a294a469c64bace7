"""Report latency from the rollup views next to the same report scanning raw `events`.

    python -m loadgen.bench_reports --events 10000000

Fills a fresh embedded database (under a temporary directory) with demo data, then times each
report through the API's own query functions and a raw-scan equivalent written after seed 004's
queries, and prints both and the ratio. A benchmark, not a test: it prints, it asserts nothing.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from datetime import date, timedelta

from server import db
from server.config import Settings
from server.reports import queries
from server.reports.params import ReportRange

RAW_ACTIVE_USERS = """
SELECT date,
       uniqExactMerge(s) OVER (ORDER BY date RANGE BETWEEN CURRENT ROW AND CURRENT ROW) AS dau,
       uniqExactMerge(s) OVER (ORDER BY date RANGE BETWEEN 6 PRECEDING AND CURRENT ROW) AS wau,
       uniqExactMerge(s) OVER (ORDER BY date RANGE BETWEEN 29 PRECEDING AND CURRENT ROW) AS mau
FROM (SELECT toDate(dt, {tz:String}) AS date, uniqExactState(user_id) AS s FROM events
      WHERE dt >= fromUnixTimestamp64Milli({lookback_ms:Int64}, 'UTC') AND dt < fromUnixTimestamp64Milli({end_ms:Int64}, 'UTC')
      GROUP BY date)
ORDER BY date
"""
RAW_NEW_USERS = """
SELECT toDate(first, {tz:String}) AS date, count() FROM (SELECT user_id, min(dt) AS first FROM events GROUP BY user_id)
WHERE first >= fromUnixTimestamp64Milli({start_ms:Int64}, 'UTC') AND first < fromUnixTimestamp64Milli({end_ms:Int64}, 'UTC')
GROUP BY date
"""
RAW_TOTAL_USERS = "SELECT uniqExact(user_id) FROM events WHERE dt < fromUnixTimestamp64Milli({end_ms:Int64}, 'UTC')"
RAW_REVENUE = """
SELECT toDate(dt, {tz:String}) AS date, sum(amount), uniqExactIf(user_id, amount > 0) FROM events
WHERE dt >= fromUnixTimestamp64Milli({start_ms:Int64}, 'UTC') AND dt < fromUnixTimestamp64Milli({end_ms:Int64}, 'UTC')
GROUP BY date
"""


def best_of(runs: int, work) -> float:
    timings = []
    for _ in range(runs):
        started = time.perf_counter()
        work()
        timings.append(time.perf_counter() - started)
    return min(timings), statistics.median(timings)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=10_000_000)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-reports-") as directory:
        settings = Settings.from_env({}, clickhouse_url=f"chdb://{directory}")
        db.migrate(settings)
        client = db.connect(settings)
        started = time.perf_counter()
        added = db.seed_demo(client, args.events)
        seconds = time.perf_counter() - started
        print(f"seed-demo: {added:,} events in {seconds:.1f} s ({added / seconds * 60:,.0f} rows/minute)")
        client.command("OPTIMIZE TABLE events FINAL")
        today = date.today()
        report = ReportRange(today - timedelta(days=29), today, "UTC")
        params = report.parameters()
        cases = [
            ("active users (DAU/WAU/MAU)", lambda: queries.active_users(client, report),
             lambda: client.query(RAW_ACTIVE_USERS, parameters=params)),
            ("new users per day", lambda: queries.new_users(client, report),
             lambda: client.query(RAW_NEW_USERS, parameters=params)),
            ("total users", lambda: queries.total_users(client, report),
             lambda: client.query(RAW_TOTAL_USERS, parameters=params)),
            ("revenue per day", lambda: queries.revenue(client, report),
             lambda: client.query(RAW_REVENUE, parameters=params)),
        ]
        print(f"{'report (last 30 days)':32} {'views ms':>10} {'raw ms':>10} {'raw/views':>10}   (best of {args.runs})")
        for name, from_views, from_raw in cases:
            views, _ = best_of(args.runs, from_views)
            raw, _ = best_of(args.runs, from_raw)
            print(f"{name:32} {views * 1000:10.1f} {raw * 1000:10.1f} {raw / views:10.1f}")
        client.close()


if __name__ == "__main__":
    main()
