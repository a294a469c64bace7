"""Safe when exposed: a server bound to a network address does not serve reports and client SQL
without a read token, and no key or token ever reaches its log."""

from __future__ import annotations

import base64
import os
import sys

import httpx
import pytest

from server.config import ConfigError, Settings
from server.logs import redact
from server.process.preflight import is_loopback, reads_not_exposed
from tests import forkserver
from tests.servers import ROOT, free_port, output, start_server
from tests.test_config import one_line_naming, serve

READ_TOKEN = "read-token-4f1c9b7e"
WRITE_KEY = "write-key-8d2a6c31"


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.53", "::1", "[::1]", "localhost"])
def test_loopback_addresses(host):
    assert is_loopback(host)


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "", "192.168.1.10", "10.0.0.1", "8.8.8.8", "no-such-host.invalid"])
def test_addresses_reachable_from_the_network(host):
    assert not is_loopback(host)


@pytest.mark.parametrize("host", ["0.0.0.0", "::"])
def test_an_exposed_server_without_a_read_token_refuses_to_start(tmp_path, host):
    message = one_line_naming(serve(free_port(), HOST=host, CLICKHOUSE_URL=f"chdb://{tmp_path}/ch"), "READ_TOKEN")
    assert "ALLOW_OPEN_READS" in message and host in message
    assert not (tmp_path / "ch").exists()  # refused before anything was created


def test_the_exposure_check_passes_with_a_token_or_on_purpose():
    """(The check alone: the whole preflight opens the engine, one per process, in `serve` above.)"""
    with pytest.raises(ConfigError, match="READ_TOKEN"):
        reads_not_exposed(Settings.from_env({"HOST": "0.0.0.0"}))
    for env in ({"READ_TOKEN": READ_TOKEN}, {"ALLOW_OPEN_READS": "true"}, {"HOST": "127.0.0.1"}, {"HOST": "localhost"}):
        reads_not_exposed(Settings.from_env({"HOST": "0.0.0.0", **env}))


def test_commands_that_serve_nothing_are_not_refused_for_the_host_they_inherit(tmp_path):
    """migrate, erase, import…: HOST=0.0.0.0 in their environment (a container's) is not a reason to stop."""
    result = forkserver.run([sys.executable, "-m", "server.cli", "migrate"], cwd=ROOT, capture_output=True, text=True,
                            timeout=120, env={**os.environ, "HOST": "0.0.0.0", "CLICKHOUSE_URL": f"chdb://{tmp_path}/ch",
                                              "LOG_DIR": f"{tmp_path}/wal"})
    assert result.returncode == 0, result.stderr


def test_redaction_of_credentials_in_request_lines():
    line = f'127.0.0.1:5 - "POST /events?key={WRITE_KEY}&x=1 HTTP/1.1" 202'
    assert WRITE_KEY not in redact(line) and "key=***&x=1" in redact(line)
    assert redact("/clickhouse/?user=default&PASSWORD=hunter2&query=1") == "/clickhouse/?user=default&PASSWORD=***&query=1"
    assert redact("/reports/active-users?monkey=1") == "/reports/active-users?monkey=1"


def test_an_exposed_server_with_tokens_serves_only_holders_and_never_logs_them(tmp_path):
    port = free_port()
    server = start_server(tmp_path / "data", port, HOST="0.0.0.0", READ_TOKEN=READ_TOKEN,
                          WRITE_KEYS=f"shop:{WRITE_KEY}", ACCESS_LOG="true", LOG_LEVEL="debug")
    base = f"http://127.0.0.1:{port}"
    try:
        assert httpx.post(f"{base}/sql", json={"sql": "SELECT 1"}).status_code == 401
        assert httpx.get(f"{base}/reports/active-users").status_code == 401
        assert httpx.get(f"{base}/clickhouse/", params={"query": "SELECT 1"}).status_code in (401, 403)
        bearer = {"Authorization": f"Bearer {READ_TOKEN}"}
        assert httpx.post(f"{base}/sql", json={"sql": "SELECT 1"}, headers=bearer).status_code == 200
        assert httpx.get(f"{base}/clickhouse/", params={"query": "SELECT 1", "password": READ_TOKEN}).text == "1\n"
        basic = base64.b64encode(f"default:{READ_TOKEN}".encode()).decode()
        assert httpx.get(f"{base}/clickhouse/", params={"query": "SELECT 2"},
                         headers={"Authorization": f"Basic {basic}"}).text == "2\n"
        event = {"dt": "2026-12-01T10:00:00Z", "event": "view", "user_id": "u1", "app_id": "shop"}
        assert httpx.post(f"{base}/events", params={"key": WRITE_KEY}, json=event).status_code == 202
        assert httpx.post(f"{base}/events", headers={"X-Write-Key": WRITE_KEY}, json=event).status_code == 202
        # Wrong ones too: a near miss must not be echoed either.
        assert httpx.post(f"{base}/events", params={"key": WRITE_KEY[:-1] + "x"}, json=event).status_code == 401
        assert httpx.post(f"{base}/sql", json={"sql": "SELECT 1"},
                          headers={"Authorization": f"Bearer {READ_TOKEN[:-1]}x"}).status_code == 401
    finally:
        server.terminate()
        server.wait(timeout=60)
    log = output(server)
    assert "POST /events?key=***" in log  # the access log ran, so the check below means something
    for secret in (READ_TOKEN, WRITE_KEY, READ_TOKEN[:-1], WRITE_KEY[:-1], basic):
        assert secret not in log
