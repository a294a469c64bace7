"""The read-only query service: hostile SQL through both doors (`POST /sql` and `/clickhouse/`)
is refused, and nothing is written or read anywhere. The engine really runs everything here:
each statement below, unchecked, did write, truncate or read the file it names (chDB carries
out INTO OUTFILE and file() in-process, readonly=1 or not)."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from clickhouse_connect.driver.client import Client
from starlette.testclient import TestClient

from server.config import Settings
from server.process.app import create_app
from server.store import db
from tests.conftest import SettlingClient, count_events, drop_databases

SECRET = "secret-line-of-the-victim-file"

HOSTILE = [
    # INTO OUTFILE, in every spelling
    "SELECT 1 INTO OUTFILE '{target}/a.csv'",
    "SELECT 1 INTO OUTFILE '{victim}' APPEND",
    "SELECT 1 INTO OUTFILE '{victim}' TRUNCATE",
    "sElEcT 1 iNtO /* a comment */ OuTfIlE '{target}/b.csv' FoRmAt CSV",
    "SELECT 1 -- a comment\n INTO\n\tOUTFILE '{target}/c.csv'",
    "SELECT 1 INTO OUTFILE '{target}/d.gz' COMPRESSION 'gzip'",
    "SELECT 1 INTO OUTFILE '{target}/e.csv' AND STDOUT",
    "WITH x AS (SELECT 1) SELECT * FROM x INTO OUTFILE '{target}/f.csv'",
    "SELECT 1 UNION ALL SELECT 2 INTO OUTFILE '{target}/g.csv'",
    "EXPLAIN SELECT 1 INTO OUTFILE '{target}/h.csv'",
    "SELECT 1 INTO OUTFILE 'relative-outfile.csv'",
    # several statements
    "SELECT 1; SELECT 2 INTO OUTFILE '{target}/i.csv'",
    "SELECT 1; DROP TABLE events",
    "SELECT 1 /* ; */ ; TRUNCATE TABLE events",
    # reading files
    "SELECT file('{victim}')",
    "SELECT * FROM file('{victim}', 'LineAsString')",
    "DESCRIBE TABLE file('{victim}', 'LineAsString')",
    "DESC file('{victim}')",
    "SELECT * FROM numbers(1) WHERE 1 IN (SELECT count() FROM file('{victim}', 'LineAsString'))",
    "WITH t AS (SELECT * FROM file('{victim}', 'LineAsString')) SELECT * FROM t",
    "SELECT (SELECT any(line) FROM file('{victim}', 'LineAsString'))",
    "SELECT * FROM numbers(1) AS n JOIN file('{victim}', 'LineAsString') AS f ON 1",
    "SELECT * FROM `file`('{victim}', 'LineAsString')",
    "SELECT * FROM view(SELECT * FROM file('{victim}', 'LineAsString'))",
    "SELECT * FROM sqlite('{victim}', 't')",
    "SELECT * FROM filesystem('{target}')",
    "SELECT * FROM fileCluster('default', '{victim}', 'LineAsString')",
    "SELECT * FROM icebergLocal('{target}')",
    # the network and processes
    "SELECT * FROM url('http://127.0.0.1:1/', 'LineAsString')",
    "SELECT * FROM s3('http://127.0.0.1:1/bucket/key', 'LineAsString')",
    "SELECT * FROM remote('127.0.0.1:1', system.one)",
    "SELECT * FROM executable('x.sh', 'TSV', 'a String')",
    "SELECT * FROM mysql('127.0.0.1:1', 'db', 't', 'u', 'p')",
    "SELECT * FROM postgresql('127.0.0.1:1', 'db', 't', 'u', 'p')",
    "SELECT hasColumnInTable('127.0.0.1', 'db', 't', 'c')",
    "SELECT * FROM input('a String')",
    "SELECT * FROM python(secret)",
    # writes, DDL, administration
    "INSERT INTO FUNCTION file('{target}/j.csv', 'CSV', 'x UInt8') VALUES (1)",
    "INSERT INTO events (dt, event, user_id) VALUES (now(), 'x', 'y')",
    "CREATE TABLE t (x UInt8) ENGINE = File(CSV)",
    "ATTACH TABLE t FROM '{target}' (x UInt8) ENGINE = File(CSV)",
    "DROP TABLE events",
    "ALTER TABLE events DELETE WHERE 1",
    "TRUNCATE TABLE events",
    "OPTIMIZE TABLE events FINAL",
    "SYSTEM FLUSH LOGS",
    "KILL QUERY WHERE 1",
    "BACKUP TABLE events TO File('{target}/backup')",
    "USE system",
    # settings that loosen limits or name files
    "SET readonly = 0",
    "SELECT 1 SETTINGS max_execution_time = 1000",
    "SELECT 1 FORMAT Template SETTINGS format_template_resultset = '{victim}'",
    "SELECT 1 SETTINGS format_schema = '{victim}'",
    "SELECT count() FROM (SELECT 1 SETTINGS max_memory_usage = 0)",
]


@pytest.fixture(scope="module")
def served(chdb_dir: Path) -> Iterator[tuple[TestClient, Client]]:
    """One app for the module (the statements change nothing, which each test checks), holding
    one stored event."""
    database = "t_" + uuid.uuid4().hex[:12]
    settings = Settings.from_env({}, clickhouse_url=f"chdb://{chdb_dir}?database={database}",
                                 spool_dir=str(chdb_dir.parent / "spool" / database))
    with SettlingClient(create_app(settings)) as api:
        assert api.post("/events", json={"dt": 1735689600, "event": "view", "user_id": "u1"}).status_code == 202
        client = db.connect(settings)
        yield api, client
        client.close()
    drop_databases([settings])


@pytest.fixture
def files(tmp_path: Path) -> tuple[Path, Path]:
    target = tmp_path / "target"
    target.mkdir()
    victim = tmp_path / "victim.txt"
    victim.write_text(SECRET + "\n")
    return target, victim


def listing(directory: Path) -> set[str]:
    return set(os.listdir(directory))


@pytest.mark.parametrize("template", HOSTILE)
def test_a_hostile_statement_is_refused_on_both_doors_and_nothing_is_written_or_read(served, files, template):
    api, ch = served
    target, victim = files
    statement = template.format(target=target, victim=victim)
    working_directory = listing(Path.cwd())

    console = api.post("/sql", json={"sql": statement})
    assert console.status_code == 400, console.text
    assert console.json()["error"]["code"] == "sql_error"
    assert console.json()["error"]["message"].startswith("Code: ")

    http = api.post("/clickhouse/", content=statement.encode())
    assert 400 <= http.status_code < 500, http.text
    assert http.text.startswith("Code: ") and http.headers["X-ClickHouse-Exception-Code"].isdigit()
    via_get = api.get("/clickhouse/", params={"query": statement})
    assert 400 <= via_get.status_code < 500

    assert SECRET not in console.text + http.text + via_get.text
    assert listing(target) == set()
    assert victim.read_text() == SECRET + "\n"
    assert listing(Path.cwd()) == working_directory
    assert ch.command("EXISTS TABLE events") == 1
    assert count_events(ch) == 1


def test_what_is_refused_says_why_in_clickhouse_terms(served, files):
    api, _ = served
    target, victim = files
    cases = {
        f"SELECT 1 INTO OUTFILE '{target}/x.csv'": ("497", "INTO OUTFILE"),
        f"SELECT file('{victim}')": ("497", "function file"),
        "SELECT * FROM url('http://127.0.0.1:1/', 'CSV')": ("497", "url"),
        "DROP TABLE events": ("164", "readonly"),
        "SELECT 1 SETTINGS max_threads = 1": ("164", "max_threads"),
        "SELECT 1; SELECT 2": ("62", "Multi-statements"),
    }
    for statement, (code, words) in cases.items():
        answer = api.post("/clickhouse/", content=statement.encode())
        assert answer.headers["X-ClickHouse-Exception-Code"] == code, (statement, answer.text)
        assert words in answer.text, (statement, answer.text)
        assert "formatQuery" not in answer.text  # the service's own wrapper is not shown


def test_reads_still_work_through_the_same_checks(served):
    api, _ = served
    reads = [
        "SELECT count() FROM events_buffer",
        "WITH e AS (SELECT * FROM events_buffer) SELECT count() FROM e",
        "SELECT sum(number) FROM numbers(10)",
        "SELECT 1 UNION ALL SELECT 2",
        "SELECT 1 EXCEPT SELECT 2",
        "SELECT count() FROM events_buffer WHERE user_id IN (SELECT 'u1')",
        "SHOW TABLES",
        "SHOW DATABASES",
        "DESCRIBE TABLE events",
        "EXISTS TABLE events",
        "SHOW CREATE TABLE events",
        "EXPLAIN SELECT count() FROM events",
        "SELECT name FROM system.functions WHERE name = 'file'",  # the word alone is harmless
        "SELECT 'INTO OUTFILE' AS file",
    ]
    for statement in reads:
        console = api.post("/sql", json={"sql": statement})
        assert console.status_code == 200, (statement, console.text)
        http = api.get("/clickhouse/", params={"query": statement})
        assert http.status_code == 200, (statement, http.text)
