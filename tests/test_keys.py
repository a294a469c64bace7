"""Write keys per app_id on ingest, a read token on reports: 401/403 with clear JSON, keys never
logged, and an open server (saying so) when none are configured."""

from __future__ import annotations

import logging

import pytest

from server.config import ConfigError, Settings
from server.process.app import create_app
from server.store import db
from tests.conftest import SettlingClient

WEB_KEY = "web-key-0123456789"
ANY_KEY = "any-app-key-987654"
READ = "read-token-abcdef12"
EVENT = {"dt": "2025-01-01T10:00:00Z", "event": "view", "user_id": "u1", "app_id": "web"}


@pytest.fixture
def locked(make_settings):
    settings = make_settings(write_keys=f"web:{WEB_KEY},*:{ANY_KEY}", read_token=READ)
    with SettlingClient(create_app(settings)) as client:
        yield client


def error(response) -> dict:
    return response.json()["error"]


def test_ingest_without_a_key_or_with_a_wrong_one_gets_401(locked):
    missing = locked.post("/events", json=EVENT)
    wrong = locked.post("/events", json=EVENT, headers={"Authorization": "Bearer not-the-key-000"})
    assert missing.status_code == wrong.status_code == 401
    assert error(missing)["field"] == "authorization" and "write key is required" in error(missing)["message"]
    assert error(wrong)["message"] == "the write key is not valid"
    assert missing.headers["WWW-Authenticate"] == "Bearer"
    assert locked.post("/api/v1/event/save", json=EVENT).status_code == 401  # seed routes too
    assert locked.post("/api-log/v1/", json={}).status_code == 401


def test_a_key_writes_its_own_app_only(locked):
    bearer = {"Authorization": f"Bearer {WEB_KEY}"}
    assert locked.post("/events", json=EVENT, headers=bearer).status_code == 202
    assert locked.post("/events", json=EVENT, headers={"X-Write-Key": WEB_KEY}).status_code == 202
    other = locked.post("/events", json=[EVENT, dict(EVENT, app_id="ios"), dict(EVENT, app_id="")], headers=bearer)
    assert other.status_code == 403
    assert [(e["index"], e["field"]) for e in error(other)["errors"]] == [(1, "app_id"), (2, "app_id")]
    assert locked.post("/events", json=dict(EVENT, app_id="ios"), headers={"X-Write-Key": ANY_KEY}).status_code == 202
    db.flush_buffer_table(locked.app.state.services.query_client)
    counts = locked.get("/reports/events", params={"from": "2025-01-01", "to": "2025-01-01"},
                        headers={"X-Read-Token": READ}).json()
    assert sum(row["events"] for row in counts) == 3  # nothing of the refused request


def test_reports_need_the_read_token(locked):
    params = {"from": "2025-01-01", "to": "2025-01-02"}
    assert locked.get("/reports/daily", params=params).status_code == 401
    assert locked.get("/event", params=params).status_code == 401
    assert locked.get("/reports/daily", params=params, headers={"X-Read-Token": "wrong-token-123"}).status_code == 401
    assert locked.get("/reports/daily", params=params, headers={"Authorization": f"Bearer {READ}"}).status_code == 200
    assert locked.get("/reports/daily", params=params, headers={"Authorization": f"Bearer {WEB_KEY}"}).status_code == 401
    assert locked.get("/healthz").status_code == 200 and locked.get("/metrics").status_code == 200


def test_keys_never_reach_the_logs(make_settings, caplog):
    settings = make_settings(write_keys=f"web:{WEB_KEY}", read_token=READ, access_log=True)
    caplog.set_level(logging.DEBUG)
    with SettlingClient(create_app(settings)) as client:
        client.post("/events", json=EVENT, headers={"Authorization": "Bearer leaked-guess-123"})
        client.post("/events", json=EVENT, headers={"Authorization": f"Bearer {WEB_KEY}"})
        client.get("/reports/daily", headers={"X-Read-Token": READ})
    text = "\n".join(record.getMessage() for record in caplog.records)
    for secret in (WEB_KEY, READ, "leaked-guess-123"):
        assert secret not in text


def test_with_no_keys_the_server_is_open_and_says_so(settings, caplog):
    caplog.set_level(logging.WARNING)
    with SettlingClient(create_app(settings)) as client:
        assert client.post("/events", json=EVENT).status_code == 202
    messages = [record.getMessage() for record in caplog.records]
    assert any(m.startswith("open for writes") for m in messages)
    assert any(m.startswith("open for reads") for m in messages)


@pytest.mark.parametrize("env", [{"WRITE_KEYS": "web"}, {"WRITE_KEYS": "web:short"}, {"READ_TOKEN": "short"}])
def test_bad_keys_are_a_configuration_error_naming_the_variable(env):
    with pytest.raises(ConfigError, match=next(iter(env))):
        Settings.from_env(env)
