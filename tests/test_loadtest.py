"""The locust scenario and `analytics-api loadtest` against a real server process."""

from __future__ import annotations

from loadgen.loadtest import run
from tests.servers import free_port, start_server


def test_loadtest_finds_every_acknowledged_event_stored(tmp_path, capsys):
    port = free_port()
    # A Buffer that flushes within a second, so the stored count settles quickly.
    server = start_server(tmp_path / "clickhouse", port, BUFFER_MIN_SECONDS="0", BUFFER_MAX_SECONDS="1")
    try:
        status = run(f"http://127.0.0.1:{port}", rps=40, seconds=4, users=4, settle_seconds=20)
    finally:
        server.terminate()
        server.wait(timeout=60)
    out = capsys.readouterr().out
    assert status == 0, out
    assert "OK: every acknowledged event is stored" in out
    acknowledged = int(out.split("events:     ")[1].split(" acknowledged")[0].replace(",", ""))
    assert acknowledged > 0
