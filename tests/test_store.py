"""`db.insert_rows`, the server's one way to insert Python rows: values arrive exactly (dates, times
aware or naive, arrays of times), and a server process never loads pandas (clickhouse-connect's
`insert()` imports it on its first call: 0.4 s and 81 MB a process). `db.connect` on the embedded
engine: the engine's facts are read by a process's first client only, and every client works as one
of clickhouse-connect's own."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, date, datetime, timedelta, timezone
from pathlib import Path

import httpx
import pytest
from clickhouse_connect.driver.exceptions import DatabaseError

from server.config import Settings
from server.store import db
from server.store.embedded import EmbeddedClient
from tests.servers import free_port, start_server


def test_insert_rows_stores_dates_times_and_arrays_exactly(ch):
    client = ch  # on the test's database, migrated by the app (a fresh one when the pool has none)
    kolkata = timezone(timedelta(hours=5, minutes=30))
    aware = datetime(2025, 3, 12, 23, 59, 58, 123000, tzinfo=kolkata)  # 18:29:58.123 UTC
    naive = datetime(2025, 3, 12, 18, 29, 58, 456000)  # UTC, as the engine gives times out
    db.insert_rows(client, "erasures", ["user_id", "app_id", "buckets", "hours", "first_dt", "rows", "begun", "stitch"],
                   [["u'1\"\\", "app", [datetime(2025, 3, 12, 18, 15, tzinfo=UTC)], [naive.replace(minute=0, second=0,
                    microsecond=0)], aware, 7, naive, 1]])
    now = datetime.now(kolkata).replace(microsecond=789000)  # report_days keeps 3 days since `stored`
    db.insert_rows(client, "report_days", ["report", "key", "day", "value", "stored", "seen"],
                   [["daily", "UTC|", date(2025, 3, 12), "[1]", now, 3]])
    db.insert_rows(client, "persons", ["app_id", "id", "person", "version"], [])  # nothing: no INSERT
    assert client.query("SELECT user_id, app_id, arrayMap(t -> toUnixTimestamp(t), buckets), "
                        "arrayMap(t -> toUnixTimestamp(t), hours), toUnixTimestamp64Milli(first_dt), rows, "
                        "toUnixTimestamp64Milli(begun), stitch FROM erasures").result_rows == [
        ("u'1\"\\", "app", [int(datetime(2025, 3, 12, 18, 15, tzinfo=UTC).timestamp())],
         [int(datetime(2025, 3, 12, 18, tzinfo=UTC).timestamp())], int(aware.timestamp() * 1000), 7,
         int(naive.replace(tzinfo=UTC).timestamp() * 1000), 1)]
    assert client.query("SELECT day, toUnixTimestamp64Milli(stored), seen FROM report_days").result_rows == [
        (date(2025, 3, 12), int(now.timestamp() * 1000), 3)]


def test_a_server_never_loads_pandas(tmp_path):
    """Started (visitor salts inserted), sent events and asked for a report: no pandas library is
    mapped into the process."""
    port = free_port()
    server = start_server(tmp_path / "data", port)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as http:
            assert http.post("/events", json={"event": "view", "user_id": "u", "dt": 1735689600},
                             headers={"User-Agent": "Mozilla/5.0 Firefox/120.0"}).status_code == 202
            assert http.get("/reports/daily", params={"from": "2025-01-01", "to": "2025-01-01"}).status_code == 200
        maps = Path(f"/proc/{server.pid}/maps").read_text()
        assert "/site-packages/chdb" in maps  # what is mapped is visible here
        assert "/pandas/" not in maps
    finally:
        server.terminate()
        server.wait(timeout=60)


def test_the_engine_loads_without_pyarrow_and_pyarrow_still_imports_after(tmp_path: Path):
    """A fresh process: opening the engine and querying it does not import pyarrow or numpy
    (0.14 s of CPU a start), and a later `import pyarrow` in that process still works."""
    code = (
        "import sys, server.store.embedded, clickhouse_connect;"
        f"c = clickhouse_connect.get_client(dsn='chdb://{tmp_path / 'data'}');"
        "assert c.query('SELECT 41 + 1').result_rows == [(42,)];"
        "print(sorted({'pyarrow', 'numpy', 'pandas'} & set(sys.modules)));"
        "import pyarrow; print(pyarrow.array([1, 2]).to_pylist())"
    )
    lines = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.splitlines()
    assert lines[-2:] == ["[]", "[1, 2]"]


def test_embedded_clients_read_the_engine_once_and_work_as_clickhouse_connect_s(settings: Settings, ch):
    """Clients made after the first on an engine take its facts from the first (one entry per kind
    of client, none added by later ones), with the same server facts as a client clickhouse-connect
    makes itself; each still applies its own settings (a read-only one refuses writes) and the
    library's defaults (times given as text are parsed best-effort)."""
    import clickhouse_connect

    first = db.connect(settings)
    known = dict(EmbeddedClient._facts)
    assert known  # the facts the first client read (or one before it, of the same kind)
    later = [db.connect(settings) for _ in range(3)]
    readonly = db.connect(settings, client_settings={"readonly": 1})
    readonly_again = db.connect(settings, client_settings={"readonly": 2})
    assert len(EmbeddedClient._facts) <= len(known) + 1  # the read-only kind, if no client of it came before
    plain = clickhouse_connect.get_client(dsn=settings.clickhouse_url.split("?")[0], database=settings.database)
    try:
        for client in (first, *later, readonly, readonly_again):
            assert isinstance(client, EmbeddedClient)
            # The settings as the first client read them, whose `database` (the session's when it
            # read them) may be another: each client's own is its handle's, set by USE.
            assert (client.server_version, client.server_tz, _but_database(client.server_settings)) == (
                plain.server_version, plain.server_tz, _but_database(plain.server_settings))
            assert client.query("SELECT currentDatabase()").result_rows == [(settings.database,)]
            assert client.get_client_setting("date_time_input_format") == "best_effort"
        later[0].command("CREATE TABLE t_facts (at DateTime('UTC')) ENGINE = MergeTree ORDER BY at")
        later[1].command("INSERT INTO t_facts VALUES ('2025-03-12T18:29:58Z')")  # best-effort parsing
        assert later[2].query("SELECT toUnixTimestamp(at) FROM t_facts").result_rows == [(1741804198,)]
        for client in (readonly, readonly_again):
            assert client.query("SELECT getSetting('readonly')").result_rows[0][0] in (1, 2)
            with pytest.raises(DatabaseError, match="readonly"):
                client.command("INSERT INTO t_facts VALUES (now())")
    finally:
        for client in (first, *later, readonly, readonly_again, plain):
            client.close()
        ch.command("DROP TABLE IF EXISTS t_facts")


def _but_database(server_settings: dict[str, object]) -> dict[str, object]:
    return {name: value for name, value in server_settings.items() if name != "database"}
