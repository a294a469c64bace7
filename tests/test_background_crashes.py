"""Crash consistency of the background work the reports rest on: SIGKILL at random moments of the
rollup job's first round over 60 days (its stored days, markers and per-user funnel and breakdown
rows), of rounds with late events arriving (days stored again, restamped), of `analytics-api
rollups` (a round and the cleanup of unreferenced rows), of the stitch job moving signed-in
visitors' events to their user, of an erasure, of an import, and of a migration's backfill;
after each restart (and the interrupted erasure or import run again, as a client would), every
report over the whole range, read past the cache, equals the Python reference in
UTC and in Asia/Kolkata (+5:30), and `events` holds every acknowledged event once. (`make
test-slow`: 32 kills, a few minutes.)"""

from __future__ import annotations

import itertools
import os
import random
import subprocess
import sys
import threading
import time
import uuid
from datetime import date, timedelta
from pathlib import Path

import httpx
import orjson
import pytest

from tests import forkserver
from tests.reports import every_report, reference
from tests.servers import ROOT, free_port, query_in_process, start_server, wait_consumed

FIRST, DAYS = date(2025, 1, 6), 60
LAST = FIRST + timedelta(days=DAYS - 1)
ZONES = ("UTC", "Asia/Kolkata")
ADMIN = "admin-token-for-crash-tests"
ENV = {"ROLLUP_INTERVAL_SECONDS": "0.3", "ROLLUP_ZONES": ",".join(ZONES), "REPORT_BREAKDOWNS": "country",
       "ADMIN_TOKEN": ADMIN, "RATE_LIMIT_IP_PER_SECOND": "0", "STITCH_INTERVAL_SECONDS": "0.3"}
KILLS = 32


def with_ids(events: list[dict]) -> list[dict]:
    return [{**event, "event_id": str(uuid.uuid4())} for event in events]


def expected(events: list[dict]) -> dict[str, object]:
    return every_report.expected(events, FIRST, LAST, ZONES)


def reports(http: httpx.Client) -> dict[str, object]:
    return every_report.reports(http, FIRST, LAST, ZONES)


class Run:
    """The data directory, the events acknowledged so far, and the server's starts and kills."""

    def __init__(self, tmp_path: Path, seed: int) -> None:
        self.tmp_path, self.data, self.port = tmp_path, tmp_path / "data", free_port()
        self.rng = random.Random(seed)
        self.events: dict[str, dict] = {}  # event_id -> event, every acknowledged one
        self.kills = 0

    def start(self) -> forkserver.Started:
        return start_server(self.data, self.port, **ENV)

    def kill_after(self, server: forkserver.Started, low: float, high: float) -> None:
        time.sleep(self.rng.uniform(low, high))
        server.kill()
        server.wait(timeout=30)
        self.kills += 1

    def post(self, http: httpx.Client, events: list[dict]) -> None:
        """Post in batches; a batch answered 202 is acknowledged (a refused or cut one may be
        stored or not: sent again until acknowledged, as a client does, it is stored once)."""
        for n in range(0, len(events), 200):
            batch = events[n:n + 200]
            try:
                if http.post("/events", json=batch).status_code == 202:
                    self.events.update((e["event_id"], e) for e in batch)
            except httpx.HTTPError:
                return

    def check(self) -> None:
        """After a restart, once the log's consumer has inserted what the kill left in the log
        (acknowledged events are in the reports from then on): every report equals the
        reference; every acknowledged event is stored once."""
        server = self.start()
        try:
            with httpx.Client(base_url=f"http://127.0.0.1:{self.port}", timeout=60) as http:
                wait_consumed(self.port)
                stitched(http)
                found, wanted = reports(http), expected(list(self.events.values()))
                if found != wanted:  # kept for a look afterwards (pytest keeps a failed test's tmp_path)
                    (self.tmp_path / "acknowledged.json").write_bytes(orjson.dumps(list(self.events.values())))
                    (self.tmp_path / "reports.json").write_bytes(orjson.dumps({"found": found, "wanted": wanted}))
                assert found == wanted, f"after kill {self.kills}: {differences(found, wanted)}"
        finally:
            server.terminate()
            server.wait(timeout=120)
        [[count, unique]] = query_in_process(self.data, "SELECT count(), uniqExact(event_id) FROM events")
        stored = {str(row[0]) for row in query_in_process(self.data, "SELECT toString(event_id) FROM events")}
        assert set(self.events) <= stored, f"{len(set(self.events) - stored)} acknowledged events lost"
        assert count == unique, "an event was stored twice"


def differences(found: dict[str, object], wanted: dict[str, object]) -> list[str]:
    """The reports that differ, each by its first differing row (or value)."""
    lines = []
    for name, theirs in wanted.items():
        mine = found.get(name)
        if isinstance(mine, dict) and isinstance(theirs, dict):  # daily: total_users, daily_stats
            lines += differences({f"{name} {k}": v for k, v in mine.items()}, {f"{name} {k}": v for k, v in theirs.items()})
        elif isinstance(mine, list) and isinstance(theirs, list) and mine != theirs:
            row = next((n for n, (a, b) in enumerate(zip(mine, theirs, strict=False)) if a != b), min(len(mine), len(theirs)))
            lines.append(f"{name} row {row}: {mine[row:row + 1]} != {theirs[row:row + 1]}")
        elif mine != theirs:
            lines.append(f"{name}: {mine} != {theirs}")
    return lines


def stitched(http: httpx.Client, seconds: float = 120) -> None:
    """Until the stitch job has moved every joined anonymous id's events and finished its removal."""
    deadline = time.monotonic() + seconds
    left = "SELECT (SELECT count() FROM events WHERE user_id LIKE 'anon-%') + (SELECT count() FROM erasures)"
    while http.post("/sql", json={"sql": left}).json()["rows"][0][0]:
        assert time.monotonic() < deadline, "the stitch job did not finish"
        time.sleep(0.2)


def commands(run: Run, *statements: str) -> None:
    """Statements on the data directory, the server stopped (one engine per directory)."""
    forkserver.run([sys.executable, "-c", (
        "import clickhouse_connect, sys; c = clickhouse_connect.get_client(dsn=sys.argv[1]); "
        "[c.command(s) for s in sys.argv[2:]]"), f"chdb://{run.data}", *statements], check=True, timeout=120)


def cli(run: Run, *args: str) -> forkserver.Started:
    env = {**os.environ, **ENV, "CLICKHOUSE_URL": f"chdb://{run.data}", "LOG_DIR": f"{run.data}-wal",
           "SPOOL_DIR": f"{run.data}-spool"}
    return forkserver.popen([sys.executable, "-m", "server.cli", *args], cwd=ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def first_round(run: Run) -> None:
    """Stored days dropped (the server stopped), then a kill during the first round over them all."""
    commands(run, *(f"TRUNCATE TABLE {table}" for table in ("report_days", "funnel_days", "breakdown_days")))
    run.kill_after(run.start(), 0.2, 3.0)


def cli_round(run: Run) -> None:
    """The markers dropped (their per-user rows left unreferenced), then `analytics-api rollups`,
    a round and the cleanup of unreferenced rows in its own process, killed part-way."""
    commands(run, "TRUNCATE TABLE report_days")
    run.kill_after(cli(run, "rollups"), 0.5, 4.0)


def migration(run: Run) -> None:
    """Migration 017 (user_days, which retention reads: a view and its backfill) undone, then
    `analytics-api migrate` killed part-way; the server's start migrates again."""
    commands(run, "DROP VIEW IF EXISTS user_days_mv", "DROP TABLE IF EXISTS user_days",
             "ALTER TABLE schema_migrations DELETE WHERE version = 17 SETTINGS mutations_sync = 2")
    run.kill_after(cli(run, "migrate"), 0.05, 1.5)


def late_events(run: Run) -> None:
    """Events on days already stored arrive while rounds store them again; a kill among them."""
    server = run.start()
    late = with_ids(reference.generate(seed=run.rng.randrange(10**6), first_day=FIRST, days=DAYS, users=4))
    for event in late:
        event["user_id"] = f"late-{event['user_id']}-{run.kills}"
    with httpx.Client(base_url=f"http://127.0.0.1:{run.port}", timeout=10) as http:
        run.post(http, late)
    run.kill_after(server, 0.0, 1.5)


def erasure(run: Run) -> None:
    """An erasure killed part-way, then run again to its end after the restart."""
    users = sorted({e["user_id"] for e in run.events.values()})
    user = run.rng.choice(users)
    server = run.start()
    with httpx.Client(base_url=f"http://127.0.0.1:{run.port}", timeout=60) as http:
        threading.Thread(target=_delete, args=(http, user), daemon=True).start()
        run.kill_after(server, 0.05, 1.5)
    server = run.start()
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{run.port}", timeout=120) as http:
            assert _delete(http, user) == 200
    finally:
        server.terminate()
        server.wait(timeout=120)
    run.events = {key: e for key, e in run.events.items() if e["user_id"] != user}


def _delete(http: httpx.Client, user: str) -> int:
    try:
        return http.delete(f"/users/{user}", headers={"Authorization": f"Bearer {ADMIN}"}).status_code
    except httpx.HTTPError:
        return 0


def stitching(run: Run) -> None:
    """Visitors' anonymous events and then their sign-ins (each joins a known user), the stitch job
    killed part-way through moving them; after the restart the job finishes, and the reference
    holds the events under their user."""
    users = sorted({e["user_id"] for e in run.events.values() if not e["user_id"].startswith("anon-")})
    visits = with_ids(reference.generate(seed=run.rng.randrange(10**6), first_day=FIRST, days=DAYS, users=6))
    joined: dict[str, tuple[str, str]] = {}  # visitor -> (user, the visitor's app: joins are per app)
    for event in visits:
        joined.setdefault(event["user_id"], (run.rng.choice(users), event["app_id"]))
        event["user_id"] = f"anon-{event['user_id']}-{run.kills}"
    calls = [{"event_id": str(uuid.uuid4()), "dt": max(e["dt"] for e in visits) + 60, "event": "$identify",
              "user_id": user, "anonymous_id": f"anon-{visitor}-{run.kills}", "app_id": app, "country": "TR"}
             for visitor, (user, app) in joined.items()]
    server = run.start()
    with httpx.Client(base_url=f"http://127.0.0.1:{run.port}", timeout=10) as http:
        run.post(http, visits)
        run.post(http, calls)
    run.kill_after(server, 0.2, 2.5)
    person = {call["anonymous_id"]: call["user_id"] for call in calls}
    for event_id, event in run.events.items():
        if event["user_id"] in person:
            run.events[event_id] = {**event, "user_id": person[event["user_id"]]}
        if "anonymous_id" in event:
            run.events[event_id] = {k: v for k, v in event.items() if k != "anonymous_id"}


def an_import(run: Run) -> None:
    """`analytics-api import` killed part-way, then run again (it resumes without doubles)."""
    events = with_ids(reference.generate(seed=run.rng.randrange(10**6), first_day=FIRST, days=DAYS, users=60))
    for event in events:
        event["user_id"] = f"imp-{event['user_id']}-{run.kills}"
    path = run.tmp_path / f"import-{run.kills}.ndjson"
    path.write_bytes(b"\n".join(orjson.dumps(e) for e in events) + b"\n")
    run.kill_after(cli(run, "import", str(path), "--quiet"), 0.3, 2.0)
    assert cli(run, "import", str(path), "--quiet").wait(timeout=300) == 0
    run.events.update((e["event_id"], e) for e in events)


@pytest.mark.slow
def test_kills_during_the_background_jobs_leave_every_report_equal_to_the_reference(tmp_path):
    run = Run(tmp_path, seed=29)
    server = run.start()
    with httpx.Client(base_url=f"http://127.0.0.1:{run.port}", timeout=30) as http:
        run.post(http, with_ids(reference.generate(seed=5, first_day=FIRST, days=DAYS, users=40)))
        wait_consumed(run.port)
    server.terminate()
    server.wait(timeout=120)
    for phase in itertools.cycle([first_round, late_events, stitching, cli_round, erasure, late_events, an_import,
                                  stitching, first_round, migration]):
        if run.kills >= KILLS:
            break
        phase(run)
        run.check()
