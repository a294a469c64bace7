"""GET /export and `analytics-api export`: events of a range out in NDJSON, CSV and Parquet,
streamed, and back in through POST /events with the same reports (a round trip)."""

from __future__ import annotations

import csv
import gzip
import io
import sys
from pathlib import Path

import orjson
import pytest

from server.process.app import create_app
from tests import forkserver
from tests.conftest import SettlingClient
from tests.reports import reference
from tests.servers import ROOT

FIRST, LAST = "2025-03-03", "2025-03-09"
RANGE = {"from": FIRST, "to": LAST}


@pytest.fixture
def stored(api):
    events = reference.generate(seed=3, first_day=reference.date(2025, 3, 3), days=7, users=15)
    for n in range(0, len(events), 100):
        assert api.post("/events", json=events[n:n + 100]).status_code == 202
    in_range = [e for e in events if reference.day_bounds(reference.date(2025, 3, 3), reference.date(2025, 3, 9),
                                                          "UTC")[0] <= e["dt"]]
    return api, events, in_range


def test_ndjson_export_is_every_event_of_the_range(stored):
    api, _, in_range = stored
    r = api.get("/export", params=RANGE)
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("application/x-ndjson")
    assert r.headers["content-disposition"] == f'attachment; filename="events-{FIRST}-{LAST}.ndjson"'
    rows = [orjson.loads(line) for line in r.content.splitlines()]
    assert len(rows) == len(in_range)
    assert sorted((row["user_id"], row["event"]) for row in rows) == sorted((e["user_id"], e["event"]) for e in in_range)
    assert {"event_id", "dt", "browser", "utm_source", "props", "is_bot"} <= set(rows[0])


def test_csv_has_a_header_and_gzip_when_asked(stored):
    api, _, in_range = stored
    r = api.get("/export", params={**RANGE, "format": "csv", "gzip": "1", "app_id": "a1"})
    assert r.status_code == 200 and r.headers["content-type"] == "application/gzip"
    assert r.headers["content-disposition"].endswith('.csv.gz"')
    text = gzip.decompress(r.content).decode()  # a .gz file to keep, not transport compression
    transport = api.get("/export", params={**RANGE, "format": "csv", "app_id": "a1"}, headers={"Accept-Encoding": "gzip"})
    assert transport.headers["content-encoding"] == "gzip"
    assert sorted(transport.content.decode().splitlines()) == sorted(text.splitlines())  # unsorted export
    table = list(csv.DictReader(io.StringIO(text)))
    assert len(table) == sum(1 for e in in_range if e["app_id"] == "a1")
    assert {row["app_id"] for row in table} == {"a1"}


def test_parquet_is_a_parquet_file(stored):
    api, _, in_range = stored
    r = api.get("/export", params={**RANGE, "format": "parquet"})
    assert r.status_code == 200
    assert r.content[:4] == b"PAR1" and r.content[-4:] == b"PAR1"
    counted = api.app.state.services.query_client.query(
        "SELECT count() FROM format(Parquet, {data:String})", parameters={"data": r.content}).result_rows
    assert counted == [(len(in_range),)]


def test_bad_parameters_are_named(api):
    assert api.get("/export", params={"format": "xml"}).json()["error"]["field"] == "format"
    assert api.get("/export", params={"from": "nope"}).status_code == 422


def test_export_then_import_gives_the_same_reports(stored, make_settings):
    api, _, _ = stored
    exported = api.get("/export", params={"from": "2025-02-01", "to": LAST}).content
    rows = [orjson.loads(line) for line in exported.splitlines()]
    before = api.get("/reports/daily", params=RANGE).json()
    with SettlingClient(create_app(make_settings())) as fresh:
        for n in range(0, len(rows), 200):
            assert fresh.post("/events", json=rows[n:n + 200]).status_code == 202
        assert fresh.get("/reports/daily", params=RANGE).json() == before
        again = fresh.post("/events", json=rows[:50]).json()
        assert again == {"accepted": 50, "duplicates": 50}  # event_ids came along: nothing doubles


def test_the_export_command_writes_a_gzipped_file(tmp_path: Path):
    data = tmp_path / "data"
    env = {"CLICKHOUSE_URL": f"chdb://{data}", "LOG_DIR": str(tmp_path / "wal"), "PATH": "/usr/bin:/bin"}
    forkserver.run([sys.executable, "-m", "server.cli", "seed-demo", "--events", "3000", "--days", "5"],
                   cwd=ROOT, env=env, check=True, capture_output=True)
    out = tmp_path / "events.ndjson.gz"
    done = forkserver.run([sys.executable, "-m", "server.cli", "export", str(out), "--from", "2000-01-01",
                           "--to", "2099-12-31"], cwd=ROOT, env=env, capture_output=True, text=True)
    assert done.returncode == 2 and "400 days" in done.stderr  # the reports' range limit holds here too
    done = forkserver.run([sys.executable, "-m", "server.cli", "export", str(out), "--bots", "include"],
                          cwd=ROOT, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    lines = gzip.decompress(out.read_bytes()).splitlines()
    assert len(lines) == 3000
