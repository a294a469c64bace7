"""/clickhouse/: ClickHouse's HTTP interface, read-only, on the embedded engine. First as the
protocol (TestClient), then with ClickHouse's own Python client and curl against a real server
process, where the process's memory can be read too."""

from __future__ import annotations

import datetime as dt
import re
import subprocess
import uuid
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import clickhouse_connect
import httpx
import orjson
import pytest
from clickhouse_connect.driver.exceptions import DatabaseError
from starlette.testclient import TestClient

from server.process.app import create_app
from tests.conftest import SettlingClient
from tests.servers import ROOT, free_port, start_server, wait_consumed


def query(api: TestClient, sql: str, **params: str) -> httpx.Response:
    return api.get("/clickhouse/", params={"query": sql, **params})


def test_a_query_answers_tab_separated_with_clickhouse_s_headers(api):
    answer = query(api, "SELECT 1")
    assert answer.status_code == 200 and answer.text == "1\n"
    assert answer.headers["X-ClickHouse-Format"] == "TabSeparated"
    assert answer.headers["Content-Type"].startswith("text/tab-separated-values")
    assert uuid.UUID(answer.headers["X-ClickHouse-Query-Id"])
    assert orjson.loads(answer.headers["X-ClickHouse-Summary"])["result_bytes"] == "2"
    assert query(api, "SELECT 1", query_id="mine").headers["X-ClickHouse-Query-Id"] == "mine"
    assert api.get("/clickhouse/ping").text == "Ok.\n"
    assert api.get("/clickhouse/").text == "Ok.\n"


def test_the_query_comes_in_the_body_or_the_url_or_both(api):
    assert api.post("/clickhouse/", content=b"SELECT 2").text == "2\n"
    both = api.post("/clickhouse/", params={"query": "SELECT number FROM numbers(4)"},
                    content=b"WHERE number > 1 ORDER BY number")
    assert both.text == "2\n3\n"


def test_formats_from_the_query_or_default_format(api):
    assert api.post("/events", json={"dt": 1735689600, "event": "view", "user_id": "u1", "amount": 7}).status_code == 202
    rows = query(api, "SELECT event, amount FROM events_buffer", default_format="JSONEachRow")
    assert rows.headers["X-ClickHouse-Format"] == "JSONEachRow"
    assert orjson.loads(rows.text) == {"event": "view", "amount": "7"} or orjson.loads(rows.text) == {
        "event": "view", "amount": 7}
    compact = query(api, "SELECT event FROM events_buffer FORMAT JSONCompact")
    assert compact.headers["X-ClickHouse-Format"] == "JSONCompact"
    assert compact.json()["data"] == [["view"]] and compact.headers["Content-Type"].startswith("application/json")
    csv = query(api, "SELECT 'a', 1 FORMAT CSV")
    assert csv.text == '"a",1\n' and csv.headers["Content-Type"].startswith("text/csv")
    native = query(api, "SELECT 1 AS one", default_format="Native")
    assert native.headers["X-ClickHouse-Format"] == "Native" and b"one" in native.content
    assert query(api, "SHOW TABLES FORMAT JSONEachRow").headers["X-ClickHouse-Format"] == "JSONEachRow"
    unknown = query(api, "SELECT 1", default_format="NoSuchFormat")
    assert unknown.status_code == 404 and unknown.headers["X-ClickHouse-Exception-Code"] == "73"


def test_query_parameters_database_and_settings(api):
    assert query(api, "SELECT {x:UInt8} + 1", param_x="41").text == "42\n"
    assert query(api, "SELECT {s:String}", param_s="it's").text == "it\\'s\n"
    assert query(api, "SELECT count() FROM one", database="system").text == "1\n"
    assert query(api, "SELECT currentDatabase()").text.strip().startswith("t_")
    # Limits may be tightened, never loosened; output settings apply.
    over = query(api, "SELECT number FROM numbers(100)", max_result_rows="10")
    assert over.status_code == 400 and over.headers["X-ClickHouse-Exception-Code"] == "396"
    loosened = query(api, "SELECT 1", max_execution_time="100000")
    assert loosened.status_code == 403 and "(READONLY)" in loosened.text
    assert query(api, "SELECT 1", max_memory_usage="0").status_code == 403
    assert query(api, "SELECT 1", format_schema="/etc/passwd").status_code == 403
    quoted = query(api, "SELECT toUInt64(5) AS n", default_format="JSONEachRow", output_format_json_quote_64bit_integers="1")
    plain = query(api, "SELECT toUInt64(5) AS n", default_format="JSONEachRow", output_format_json_quote_64bit_integers="0")
    assert (quoted.text, plain.text) == ('{"n":"5"}\n', '{"n":5}\n')
    assert query(api, "SELECT 1", readonly="1").text == "1\n"


def test_errors_come_as_clickhouse_sends_them(api):
    missing = query(api, "SELECT * FROM no_such_table")
    assert missing.status_code == 404 and missing.headers["X-ClickHouse-Exception-Code"] == "60"
    assert re.match(r"Code: 60\. DB::Exception: .*\(UNKNOWN_TABLE\)\n$", missing.text), missing.text
    syntax = query(api, "SELEC 1")
    assert syntax.status_code == 400 and syntax.text.startswith("Code: 62. DB::Exception: Syntax error")
    assert query(api, "").status_code == 400
    assert query(api, "SELECT throwIf(1)").status_code < 500  # an error of the query, not of the server


@pytest.fixture
def guarded(make_settings) -> Iterator[TestClient]:
    with SettlingClient(create_app(make_settings(read_token="read-token-0123"))) as api:
        yield api


def test_credentials_as_clickhouse_takes_them(guarded):
    sql = {"query": "SELECT 1"}
    refused = guarded.get("/clickhouse/", params=sql)
    assert refused.status_code == 403 and refused.headers["X-ClickHouse-Exception-Code"] == "516"
    assert "AUTHENTICATION_FAILED" in refused.text
    assert guarded.get("/clickhouse/", params=sql, auth=("default", "wrong-token")).status_code == 403
    assert guarded.get("/clickhouse/", params=sql, auth=("other", "read-token-0123")).status_code == 403
    assert guarded.get("/clickhouse/", params=sql, auth=("default", "read-token-0123")).text == "1\n"
    headers = {"X-ClickHouse-User": "default", "X-ClickHouse-Key": "read-token-0123"}
    assert guarded.get("/clickhouse/", params=sql, headers=headers).text == "1\n"
    assert guarded.get("/clickhouse/", params={**sql, "user": "default", "password": "read-token-0123"}).text == "1\n"
    assert guarded.get("/clickhouse/ping").text == "Ok.\n"  # as in ClickHouse, ping needs no login


def test_play_leads_to_the_built_in_console(api):
    answer = api.get("/play", follow_redirects=False)
    assert answer.status_code == 307 and answer.headers["location"] == "/#sql"


# --- a real server process -----------------------------------------------------------------

TOKEN = "read-token-0123"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[int, int]]:
    data = tmp_path_factory.mktemp("clickhouse-http")
    port = free_port()
    process = start_server(data / "clickhouse", port, READ_TOKEN=TOKEN, SPOOL_DIR=str(data / "spool"),
                           BUFFER_MIN_SECONDS="0", BUFFER_MAX_SECONDS="1")
    try:
        events = [{"dt": "2025-01-01T10:00:00Z", "event": "pay", "user_id": f"u{i}", "amount": 100 + i,
                   "event_id": str(uuid.UUID(int=i + 1))} for i in range(3)]
        assert httpx.post(f"http://127.0.0.1:{port}/events", json=events).status_code == 202
        wait_consumed(port)
        yield port, process.pid
    finally:
        process.terminate()
        process.wait(timeout=60)


def connect(port: int, password: str = TOKEN):
    return clickhouse_connect.get_client(host="127.0.0.1", port=port, proxy_path="/clickhouse",
                                         username="default", password=password)


def test_clickhouse_connect_over_http_reads_typed_rows(server):
    port, _ = server
    client = connect(port)
    rows = client.query("SELECT user_id, amount, dt, event_id, event FROM events_buffer ORDER BY user_id").result_rows
    assert [row[0] for row in rows] == ["u0", "u1", "u2"] and [row[1] for row in rows] == [100, 101, 102]
    assert rows[0][2].replace(tzinfo=None) == dt.datetime(2025, 1, 1, 10, 0)
    assert rows[0][3] == uuid.UUID(int=1) and rows[0][4] == "pay"
    typed = client.query(
        "SELECT toDate('2025-01-02') AS d, toDecimal64(12.34, 2) AS dec, map('a', 1) AS m, "
        "toUUID('00000000-0000-0000-0000-000000000007') AS u, toLowCardinality('x') AS lc, [1, 2] AS arr"
    ).result_rows[0]
    assert typed == (dt.date(2025, 1, 2), Decimal("12.34"), {"a": 1}, uuid.UUID(int=7), "x", [1, 2])
    assert client.command("SELECT count() FROM events_buffer") == 3
    assert client.query("SELECT {n:UInt32} * 2", parameters={"n": 21}).result_rows == [(42,)]


def test_clickhouse_connect_sees_a_refused_write_and_a_wrong_password_as_errors(server):
    port, _ = server
    client = connect(port)
    with pytest.raises(DatabaseError, match="READONLY"):
        client.command("DROP TABLE events")
    with pytest.raises(DatabaseError, match="ACCESS_DENIED"):
        client.query("SELECT * FROM file('/etc/hostname', 'LineAsString')")
    assert client.command("SELECT count() FROM events_buffer") == 3
    with pytest.raises(DatabaseError, match="AUTHENTICATION_FAILED"):
        connect(port, password="wrong-password").query("SELECT 1")


def vm_hwm_bytes(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"VmHWM:\s+(\d+) kB", status).group(1)) * 1024


def test_a_memory_bomb_is_stopped_and_the_process_stays_bounded(server):
    port, pid = server
    client = connect(port)
    with pytest.raises(DatabaseError, match="MEMORY_LIMIT_EXCEEDED"):
        client.query("SELECT length(groupArray(number)) FROM numbers(300000000)")
    # SQL_MAX_MEMORY_BYTES (1 GB) bounds the query; the whole process stays well under the
    # 5-6.4 GB this query took before the limit.
    assert vm_hwm_bytes(pid) < 2_000_000_000
    assert client.command("SELECT 1") == 1


def readme_curl_commands() -> list[str]:
    text = (ROOT / "docs" / "api.md").read_text()
    section = text[text.index("## ClickHouse's HTTP interface"):]
    return [line.strip() for line in section.splitlines() if line.strip().startswith("curl ")]


def test_the_docs_curl_examples_work_as_written(tmp_path):
    """On a server as `make run` starts it (no READ_TOKEN: the password is not checked)."""
    port = free_port()
    process = start_server(tmp_path / "clickhouse", port, SPOOL_DIR=str(tmp_path / "spool"))
    try:
        assert httpx.post(f"http://127.0.0.1:{port}/events", json={"dt": "2025-01-01T00:00:00Z", "event": "view",
                                                                  "user_id": "u1"}).status_code == 202
        wait_consumed(port)
        commands = readme_curl_commands()
        assert len(commands) >= 3
        outputs = []
        for command in commands:
            out = subprocess.run(["bash", "-c", command.replace("18888", str(port))], capture_output=True,
                                 text=True, timeout=30)
            assert out.returncode == 0 and out.stdout and "Exception" not in out.stdout, (command, out.stdout)
            outputs.append(out.stdout)
        assert outputs[0] == "1\n"
    finally:
        process.terminate()
        process.wait(timeout=60)
