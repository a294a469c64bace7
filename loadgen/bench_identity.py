"""What one person per human costs (issue #26) at 10 M demo events and 1 M identities.

    python -m loadgen.bench_identity --events 10000000 --identities 1000000 --joins 1000

Into a fresh embedded data directory: `seed-demo` (180 days), then `identities`, `identity_merges`
and `persons` filled with `--identities` joins already decided (anonymous ids of demo users, their
events already theirs), then the rollup job's first round (`analytics-api rollups`). Measured:

- a stitch round with nothing new (decide + the look for ids to move): what every
  STITCH_INTERVAL_SECONDS costs at this size, and the full look of the first round and of one an
  hour (medians of 5);
- `--joins` new anonymous histories (up to 20 views each in the last 30 days, as new events of
  `v:new-<user>`) and their `$identify`: the round that decides them and moves their events
  (copy, removal, bucket rebuilds), then the rollup round that stores the touched days again,
  against a round with nothing to do;
- every 30-day report through a server before the joins, after them, and after the cleanup of the
  stored per-user rows no day names any more (the hourly cleanup, then their merge) (`Cache-Control:
  no-cache`, stored days read), as bench_reports measures them;
- the engine's cost per ingested event of the identity views (020: identities, person_traits,
  group_members; 023: ids_seen): the same 100 k-event INSERT into a database with them and one without,
  interleaved, 5 rounds.

Writes loadgen/results/bench-identity-<time>.json. A benchmark: it prints, it asserts nothing.
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
from collections.abc import Callable
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import httpx

from loadgen.bench_reports import REPORTS, timings_ms, wait_for_merges, wait_for_rollups
from server.config import Settings
from server.data.erase import finish_removal
from server.people import stitch
from server.people.job import MARGIN_SECONDS, db_now
from server.reports import configured, rollup_job, stored_rows
from server.store import db
from tests.servers import free_port, start_server

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "loadgen" / "results"
ZONES = ("UTC", "Asia/Kolkata")
IDENTITY_VIEWS = ("identities_mv", "person_traits_mv", "group_members_mv", "ids_seen_mv")

DECIDED = """
INSERT INTO {table}
SELECT app_id, concat('v:old-', toString(k), '-', user_id) AS anonymous_id, user_id, {rest}
FROM (SELECT DISTINCT app_id, user_id FROM events WHERE user_id LIKE 'demo-u%')
ARRAY JOIN range(toUInt64(ceil({count} / (SELECT uniqExact(user_id) FROM events WHERE user_id LIKE 'demo-u%')))) AS k
LIMIT {count}
"""
ANONYMOUS = """
INSERT INTO events
SELECT * REPLACE (concat('v:new-', user_id) AS user_id, generateUUIDv4() AS event_id)
FROM (SELECT * FROM events
      WHERE user_id IN (SELECT DISTINCT user_id FROM events WHERE user_id LIKE 'demo-u%' AND dt >= now() - INTERVAL 30 DAY
                        ORDER BY cityHash64(user_id) LIMIT {joins})
        AND dt >= now() - INTERVAL 30 DAY AND event = 'view'
      LIMIT 20 BY user_id)
"""
IDENTIFY = """
INSERT INTO events (dt, received_at, event, user_id, app_id, props)
SELECT now64(3), now64(3), '$identify', substring(user_id, 7), app_id, map('anonymous_id', user_id)
FROM (SELECT DISTINCT user_id, app_id FROM events WHERE user_id LIKE 'v:new-%')
"""
INGEST = """
INSERT INTO events (dt, received_at, event, user_id, app_id, country, props)
SELECT now64(3) - number, now64(3), if(number % 50 = 0, '$identify', 'view'), concat('bench-u', toString(number % 5000)),
       'web', 'US', if(number % 50 = 0, map('anonymous_id', concat('v:', toString(number))), map())
FROM numbers(100000)
SETTINGS insert_deduplicate = 0
"""


def seconds(work: Callable[[], Any]) -> tuple[float, Any]:
    started = time.perf_counter()
    done = work()
    return time.perf_counter() - started, done


def views_cost(settings: Settings) -> dict[str, float]:
    """µs per ingested event of the identity views: one INSERT of 100 k events into a database
    with them and into one without, interleaved."""
    client = db.connect(settings)
    try:
        for name in ("bench_with", "bench_without"):
            db.migrate(Settings.from_env({}, clickhouse_url=f"{settings.clickhouse_url}?database={name}",
                                         log_dir=settings.log_dir))
        for view in IDENTITY_VIEWS:
            client.command(f"DROP VIEW bench_without.{view}")
        timings: dict[str, list[float]] = {"with": [], "without": []}
        for _ in range(5):
            for name in timings:
                text = INGEST.replace("INSERT INTO events", f"INSERT INTO bench_{name}.events")
                timings[name].append(seconds(lambda text=text: client.command(text))[0])
        with_us, without_us = (statistics.median(timings[k]) / 100_000 * 1e6 for k in ("with", "without"))
        return {"with identity views (µs/event)": with_us, "without (µs/event)": without_us,
                "identity views (µs/event)": with_us - without_us}
    finally:
        client.close()


def clean_stored_rows(client: Any) -> None:
    """What the hourly cleanup does once the old copies are no longer read, and the merges after it."""
    stored_rows.drop_unreferenced(client, older_than_hours=0)
    for table in stored_rows.ROW_TABLES:
        client.command(f"OPTIMIZE TABLE {table} FINAL")


def rollup_round(client: Any, settings: Settings) -> float:
    return seconds(lambda: rollup_job.refresh(client, ZONES, settings.rollup_days, merge=True,
                                              more=configured.stored_reports(settings)))[0]


def measure(events: int, identities: int, joins: int, runs: int) -> dict[str, Any]:
    found: dict[str, Any] = {"events": events, "identities": identities, "joins": joins}
    with tempfile.TemporaryDirectory(prefix="bench-identity-") as directory:
        data = Path(directory) / "clickhouse"
        env = {**os.environ, "CLICKHOUSE_URL": f"chdb://{data}", "LOG_DIR": f"{directory}/wal",
               "ROLLUP_ZONES": ",".join(ZONES)}
        took, _ = seconds(lambda: subprocess.run([sys.executable, "-m", "server.cli", "seed-demo", "--events", str(events),
                                                  "--no-rollups"], cwd=ROOT, env=env, check=True, capture_output=True))
        print(f"{events:,} demo events seeded in {took:.0f} s")
        settings = Settings.from_env(env)
        client = db.connect(settings, client_settings={"max_execution_time": 0})
        try:
            a_day_ago = "now64(3) - INTERVAL 1 DAY"  # not in a round's window
            client.command(DECIDED.format(table="identities", rest=f"{a_day_ago}, 'bench', {a_day_ago}", count=identities))
            client.command("INSERT INTO identity_merges SELECT app_id, anonymous_id, user_id, first_seen, 'joined', "
                           "now64(3) FROM identities")
            client.command("INSERT INTO persons SELECT app_id, anonymous_id, user_id, 1 FROM identities")
            print(f"{identities:,} decided identities in identities, identity_merges and persons")
        finally:
            client.close()
        took, _ = seconds(lambda: subprocess.run([sys.executable, "-m", "server.cli", "rollups"], cwd=ROOT, env=env,
                                                 check=True, capture_output=True))
        found["first rollup round (s)"] = took
        print(f"the rollup job's first round (analytics-api rollups): {took:.1f} s")
        print("the 30-day reports before the joins:")
        found["reports before the joins (ms, no-cache)"] = reports(data, directory, runs)
        client = db.connect(settings, client_settings={"max_execution_time": 0})
        try:
            full = [seconds(lambda: (stitch.decide(client), stitch.movers(client, limit=1)))[0] for _ in range(runs)]
            found["stitch round looking at everything, nothing new (ms)"] = statistics.median(full) * 1000
            since = db_now(client) - timedelta(seconds=MARGIN_SECONDS)
            idle = [seconds(lambda: (stitch.decide(client, since=since), stitch.movers(client, since, [], 1)))[0]
                    for _ in range(runs)]
            found["stitch round, nothing new (ms)"] = statistics.median(idle) * 1000
            print(f"a stitch round with nothing new: {found['stitch round, nothing new (ms)']:.0f} ms; looking at "
                  f"everything (at start, hourly): {found['stitch round looking at everything, nothing new (ms)']:.0f} ms "
                  f"(medians of {runs})")
            client.command(ANONYMOUS.format(joins=joins))
            client.command(IDENTIFY)
            found["anonymous events added"] = db.scalar(client, "SELECT count() FROM events WHERE user_id LIKE 'v:new-%'")
            took, decided = seconds(lambda: stitch.decide(client, since=since))
            found["decide (ms)"] = took * 1000
            took, movers = seconds(lambda: stitch.movers(client, since, decided.changed))
            found["find ids to move (ms)"] = took * 1000
            paused, removal = seconds(lambda: stitch.begin_move(client, movers))
            found["move, the log's consumer paused (s)"] = paused
            rest, _ = seconds(lambda: finish_removal(client, removal) if removal else None)
            found["move, the deletes waited for after (s)"] = rest
            moved = sum(len(pairs) for pairs in movers.values())
            print(f"{joins:,} new joins: decided {decided.outcomes} in {found['decide (ms)']:.0f} ms, ids to move found in "
                  f"{found['find ids to move (ms)']:.0f} ms, {moved:,} ids' {found['anonymous events added']:,} events "
                  f"moved: {paused:.1f} s with the log's consumer paused (copies, deletes, rollup buckets rebuilt), "
                  f"then {rest:.1f} s waiting for the other tables' deletes")
            found["rollup round after the joins (s)"] = rollup_round(client, settings)
            found["rollup round, nothing to do (s)"] = rollup_round(client, settings)
            print(f"the rollup round storing the touched days again: {found['rollup round after the joins (s)']:.1f} s "
                  f"(a round with nothing to do: {found['rollup round, nothing to do (s)']:.1f} s)")
        finally:
            client.close()
        print("the 30-day reports after the joins:")
        found["reports (ms, no-cache)"] = reports(data, directory, runs)
        client = db.connect(settings, client_settings={"max_execution_time": 0})
        try:
            took, _ = seconds(lambda: clean_stored_rows(client))
        finally:
            client.close()
        found["cleanup of unreferenced stored rows and their merge (s)"] = took
        print(f"the 30-day reports after the cleanup of the stored rows no day names ({took:.1f} s) and their merge:")
        found["reports after the cleanup (ms, no-cache)"] = reports(data, directory, runs)
        found.update(views_cost(settings))
        print(f"the identity views at ingest: {found['identity views (µs/event)']:.2f} µs per event "
              f"({found['with identity views (µs/event)']:.2f} with, {found['without (µs/event)']:.2f} without)")
    return found


def reports(data: Path, directory: str, runs: int) -> dict[str, float]:
    port = free_port()
    server = start_server(data, port, LOG_DIR=f"{directory}/wal", SQL_TIMEOUT_SECONDS="600",
                          ROLLUP_INTERVAL_SECONDS="300", ROLLUP_ZONES=",".join(ZONES))
    today = date.today()
    span = f"from={today - timedelta(days=29)}&to={today}"
    figures: dict[str, float] = {}
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=600) as http:
            wait_for_rollups(f"http://127.0.0.1:{port}")  # its first round (finds the days stored), as bench_reports
            wait_for_merges(http)
            for name, path in REPORTS.items():
                figures[name] = timings_ms(http, "GET", f"{path}{'&' if '?' in path else '?'}{span}", runs)[0]
                print(f"  {name:32} no-cache {figures[name]:8.1f} ms")
    finally:
        server.terminate()
        server.wait(timeout=120)
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=10_000_000)
    parser.add_argument("--identities", type=int, default=1_000_000)
    parser.add_argument("--joins", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    found = measure(args.events, args.identities, args.joins, args.runs)
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"bench-identity-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(json.dumps(found, indent=2))
    print(f"written {path}")


if __name__ == "__main__":
    main()
