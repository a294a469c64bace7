"""Report queries run for clients, so they carry the client SQL limits: a report over
SQL_MAX_MEMORY_BYTES is a 503 JSON error naming the limit, and the server goes on answering."""

from __future__ import annotations

from server.process.app import create_app
from tests.conftest import SettlingClient


def test_a_report_over_the_memory_cap_is_a_503_and_the_server_goes_on(make_settings):
    settings = make_settings(sql_max_memory_bytes=100_000)
    with SettlingClient(create_app(settings)) as api:
        events = [{"dt": 1740787200 + i * 60, "event": "view", "user_id": f"u{i}"} for i in range(5000)]
        assert api.post("/events", json=events).status_code == 202
        r = api.get("/reports/active-users", params={"from": "2025-03-01", "to": "2025-03-05"})
        assert r.status_code == 503
        assert "memory limit" in r.json()["error"]["message"].lower()
        with api.app.state.services.report_clients.client() as client:
            limits = client.query(
                "SELECT getSetting('max_memory_usage'), getSetting('max_execution_time')").result_rows
        assert limits == [(100_000, float(settings.sql_timeout_seconds))]
        assert api.get("/healthz").status_code == 200
