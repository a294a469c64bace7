"""POST /sql, the console's back end: reads work, what is not a read is refused (the query
service, tests/test_query_service.py), time and row limits hold."""

from __future__ import annotations

from server.process.app import create_app
from tests.conftest import SettlingClient


def sql(api, text: str, **headers: str):
    return api.post("/sql", json={"sql": text}, headers=headers)


def test_a_select_answers_columns_types_and_rows(api):
    assert api.post("/events", json={"dt": 1735689600, "event": "view", "user_id": "u1"}).status_code == 202
    answer = sql(api, "SELECT event, count() AS n FROM events_buffer GROUP BY event").json()
    assert answer["columns"] == ["event", "n"]
    assert answer["types"] == ["LowCardinality(String)", "UInt64"]
    assert answer["rows"] == [["view", 1]] and answer["truncated"] is False
    assert api.post("/sql", content=b"SELECT 1 AS one", headers={"Content-Type": "text/plain"}).json()["rows"] == [[1]]


def test_what_is_not_a_read_is_refused_with_clickhouse_s_words(api, ch):
    # The whole hostile list is in tests/test_query_service.py; here, the console's error body.
    response = sql(api, "DROP TABLE events")
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "sql_error" and error["field"] == "sql"
    assert error["message"].startswith("Code: 164. DB::Exception: ") and "(READONLY)" in error["message"]
    assert ch.command("EXISTS TABLE events") == 1


def test_a_format_clause_is_explained(api):
    error = sql(api, "SELECT 1 FORMAT JSON").json()["error"]
    assert "FORMAT" in error["message"] and "/clickhouse/" in error["message"]


def test_rows_are_cut_at_the_limit_and_the_answer_says_so(make_settings):
    with SettlingClient(create_app(make_settings(sql_max_rows=100))) as api:
        answer = sql(api, "SELECT number FROM numbers(100000)").json()
        assert len(answer["rows"]) == 100 and answer["truncated"] is True
        assert sql(api, "SELECT number FROM numbers(100)").json()["truncated"] is False


def test_a_query_over_the_time_limit_is_stopped(make_settings):
    with SettlingClient(create_app(make_settings(sql_timeout_seconds=1))) as api:
        response = sql(api, "SELECT count() FROM numbers(1000000000000) WHERE cityHash64(number) = 0")
        assert response.status_code == 400
        # ClickHouse stops it at the limit, or refuses it sooner from its speed estimate.
        message = response.json()["error"]["message"]
        assert "TIMEOUT_EXCEEDED" in message or "TOO_SLOW" in message, message


def test_bad_requests_and_sql_errors_are_clear(api):
    assert api.post("/sql", json={"query": "SELECT 1"}).json()["error"]["field"] == "sql"
    assert api.post("/sql", content=b"{not json", headers={"Content-Type": "application/json"}).status_code == 400
    unknown = sql(api, "SELECT * FROM no_such_table").json()["error"]
    assert "UNKNOWN_TABLE" in unknown["message"] and "\n" not in unknown["message"]


def test_the_console_needs_the_read_token(make_settings):
    with SettlingClient(create_app(make_settings(read_token="read-token-0123"))) as api:
        assert sql(api, "SELECT 1").status_code == 401
        assert sql(api, "SELECT 1", **{"X-Read-Token": "read-token-0123"}).status_code == 200


def test_the_console_s_memory_bomb_is_refused_and_the_process_grows_by_less_than_the_cap(tmp_path):
    """`SELECT groupArray(number) FROM numbers(3e8)` wants ~5 GB. With SQL_MAX_MEMORY_BYTES at
    200 MB the query is stopped with a clear 4xx naming the limit, the process's peak RSS
    (VmHWM) grows by less than 1.5 times the cap, and the console answers the next query.
    (The process starts at ~370 MB, 220 MB of it chDB's library: the cap is what a query adds.)"""
    import re
    from pathlib import Path

    import httpx

    from tests.servers import free_port, output, start_server

    def peak_rss() -> int:
        status = Path(f"/proc/{process.pid}/status").read_text()
        return int(re.search(r"VmHWM:\s+(\d+) kB", status).group(1)) * 1024

    cap = 200_000_000
    port = free_port()
    process = start_server(tmp_path / "data", port, SQL_MAX_MEMORY_BYTES=str(cap))
    try:
        assert httpx.post(f"http://127.0.0.1:{port}/sql", json={"sql": "SELECT 1"}, timeout=30).status_code == 200
        before = peak_rss()
        r = httpx.post(f"http://127.0.0.1:{port}/sql", json={"sql": "SELECT groupArray(number) FROM numbers(3e8)"},
                       timeout=60)
        assert 400 <= r.status_code < 500, r.text
        assert "MEMORY_LIMIT_EXCEEDED" in r.json()["error"]["message"]
        assert r.json()["error"]["field"] == "sql"
        grown = peak_rss() - before
        assert grown < 1.5 * cap, f"peak RSS grew by {grown / 1e6:.0f} MB"
        again = httpx.post(f"http://127.0.0.1:{port}/sql", json={"sql": "SELECT 1 AS one"}, timeout=30)
        assert again.json()["rows"] == [[1]]
    finally:
        process.terminate()
        process.wait(timeout=60)
    assert "Traceback" not in output(process)
