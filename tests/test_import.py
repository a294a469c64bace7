"""`analytics-api import`: seed-000-shaped history from NDJSON, CSV and Parquet into `events`
with the API's validation, bad lines set aside with their line numbers, nothing stored twice on
a rerun or after an interrupted run, and the reports counting imported events as posted ones."""

from __future__ import annotations

import csv
import gzip
import sys
import uuid
from pathlib import Path

import orjson
import pytest

from server.config import Settings
from server.data import importer
from tests import forkserver
from tests.reports import reference
from tests.servers import ROOT

FIRST, LAST = reference.date(2025, 3, 3), reference.date(2025, 3, 9)
EVENTS = reference.generate(seed=31, first_day=FIRST, days=7, users=40)


def seed_000_rows() -> list[dict[str, object]]:
    """The reference events as seed 000's BigQuery rows: event_name, event_time in ms, page."""
    rows = []
    for n, e in enumerate(EVENTS):
        row: dict[str, object] = {"user_id": e["user_id"], "app_id": e["app_id"], "type": "event",
                                  "event_name": e["event"], "event_time": int(e["dt"]) * 1000,
                                  "page": "/home", "country": e["country"], "region": "", "city": "",
                                  "event_id": str(uuid.UUID(int=n + 1))}
        for key in ("session_id", "amount"):
            if key in e:
                row[key] = e[key]
        rows.append(row)
    return rows


BAD = [b'{"event_name": "view", "event_time": 1741000000000}\n',  # no user_id
       b'{"user_id": "x", "event_name": "view", "event_time": "yesterday"}\n',  # not a time
       b'this is not json\n']


def write_ndjson(path: Path, bad_at: int | None = 5) -> Path:
    lines = [orjson.dumps(row) + b"\n" for row in seed_000_rows()]
    if bad_at is not None:
        lines[bad_at:bad_at] = BAD
    path.write_bytes(b"".join(lines))
    return path


def count(client, sql: str = "SELECT count() FROM events") -> int:
    return int(client.query(sql).result_rows[0][0])


def test_ndjson_with_bad_lines_then_a_rerun_stores_nothing_twice(settings: Settings, api, ch, tmp_path):
    path = write_ndjson(tmp_path / "history.ndjson")
    summary = importer.import_file(ch, settings, path, "ndjson", progress=False)
    assert summary.stored == len(EVENTS) == count(ch)
    assert sum(summary.rejected.values()) == 3 and summary.rejected["user_id"] == 1
    rejects = [orjson.loads(line) for line in summary.rejects_path.read_bytes().splitlines()]
    assert [r["line"] for r in rejects] == [6, 7, 8]
    assert rejects[0]["errors"][0]["field"] == "user_id" and rejects[2]["errors"][0]["field"] == "line"
    again = importer.import_file(ch, settings, path, "ndjson", progress=False)
    assert again.stored == 0 and again.skipped == len(EVENTS) + 3
    assert count(ch) == len(EVENTS)
    params = {"from": FIRST.isoformat(), "to": LAST.isoformat()}
    assert api.get("/reports/daily", params=params).json() == reference.daily(EVENTS, FIRST, LAST, "UTC")
    assert api.get("/reports/revenue", params=params).json() == reference.revenue(EVENTS, FIRST, LAST, "UTC")


def test_an_interrupted_import_resumes_without_doubles(settings: Settings, api, ch, tmp_path, monkeypatch):
    path = write_ndjson(tmp_path / "history.ndjson.gz", bad_at=None)
    path.write_bytes(gzip.compress(path.read_bytes()))
    monkeypatch.setattr(importer, "BATCH_LINES", 50)
    real_store = importer._store

    def crash_after_the_third_insert(client, file_sha, name, number, *args):  # type: ignore[no-untyped-def]
        if number == 3:  # the INSERT reached ClickHouse, the batch was not recorded: a crash
            client.raw_insert("events", insert_block=args[2], fmt="JSONEachRow", settings={
                "insert_deduplication_token": f"import:{file_sha}:{number}",
                "deduplicate_blocks_in_dependent_materialized_views": 1})
            raise KeyboardInterrupt
        real_store(client, file_sha, name, number, *args)

    monkeypatch.setattr(importer, "_store", crash_after_the_third_insert)
    with pytest.raises(KeyboardInterrupt):
        importer.import_file(ch, settings, path, "ndjson", progress=False)
    assert count(ch) == 200
    monkeypatch.setattr(importer, "_store", real_store)
    importer.import_file(ch, settings, path, "ndjson", progress=False)
    assert count(ch) == len(EVENTS) == count(ch, "SELECT uniqExact(event_id) FROM events")
    assert count(ch, "SELECT sum(events) FROM event_counts_hourly") == len(EVENTS)  # the views too


def test_csv_and_parquet(settings: Settings, api, ch, tmp_path):
    rows = seed_000_rows()
    half = len(rows) // 2
    csv_path = tmp_path / "part1.csv"
    with open(csv_path, "w", newline="") as out:
        writer = csv.DictWriter(out, fieldnames=sorted({k for row in rows for k in row}))
        writer.writeheader()
        writer.writerows(rows[:half])
        writer.writerow({"user_id": "", "event_name": "view", "event_time": "1741000000000"})
    parquet_path = tmp_path / "part2.parquet"
    ndjson = b"".join(orjson.dumps(row) + b"\n" for row in rows[half:])
    parquet = ch.raw_query("SELECT * FROM format(JSONEachRow, {data:String})", parameters={"data": ndjson.decode()},
                           fmt="Parquet")
    parquet_path.write_bytes(parquet)
    first = importer.import_file(ch, settings, csv_path, "csv", progress=False)
    assert first.stored == half and first.rejected == {"user_id": 1}
    assert orjson.loads(first.rejects_path.read_bytes().splitlines()[0])["line"] == half + 2
    second = importer.import_file(ch, settings, parquet_path, "parquet", parquet_client=ch, progress=False)
    assert second.stored == len(rows) - half
    params = {"from": FIRST.isoformat(), "to": LAST.isoformat()}
    assert api.get("/reports/daily", params=params).json() == reference.daily(EVENTS, FIRST, LAST, "UTC")


def test_the_import_command(tmp_path):
    path = write_ndjson(tmp_path / "history.ndjson")
    env = {"CLICKHOUSE_URL": f"chdb://{tmp_path / 'data'}", "LOG_DIR": str(tmp_path / "wal"), "PATH": "/usr/bin:/bin"}
    done = forkserver.run([sys.executable, "-m", "server.cli", "import", str(path), "--app-id", "legacy"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert f"{len(EVENTS):,} events stored" in done.stdout and "3 rejected" in done.stdout
    unknown = forkserver.run([sys.executable, "-m", "server.cli", "import", str(tmp_path / "x.txt")],
                             cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert unknown.returncode == 2 and "no such file" in unknown.stderr
