"""Operations endpoints: /healthz, /readyz and /metrics, on the real app and engine."""

from __future__ import annotations

import time

from prometheus_client.parser import text_string_to_metric_families

from server.process.app import create_app
from server.store import db
from tests.conftest import SettlingClient


def samples(api) -> dict[tuple, float]:
    text = api.get("/metrics").text
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def test_healthz_and_readyz(api):
    assert api.get("/healthz").json() == {"status": "ok"}
    assert api.get("/readyz").json() == {"status": "ready", "ack": "log", "log_bytes": 0, "log_failure": None,
                                         "insert_failure": None}


def test_readyz_is_503_while_a_migration_is_pending(api, ch):
    ch.command("ALTER TABLE schema_migrations DELETE WHERE version = 3 SETTINGS mutations_sync = 1")
    r = api.get("/readyz")
    assert r.status_code == 503
    assert r.json()["pending"] == ["003_activities"]


def test_metrics_count_requests_events_and_batches(api):
    event = {"dt": "2025-01-01T00:00:00Z", "event": "e", "user_id": "u"}
    api.post("/events", json=[event] * 3)
    api.post("/events", json=[event, {"event": "no time"}])
    api.post("/events", content=b"{", headers={"Content-Type": "application/json"})
    found = samples(api)
    assert found[("http_requests_total", (("route", "/events"), ("status", "202")))] == 1
    assert found[("http_requests_total", (("route", "/events"), ("status", "422")))] == 1
    assert found[("http_requests_total", (("route", "/events"), ("status", "400")))] == 1
    assert found[("events_accepted_total", ())] == 3
    assert found[("events_rejected_total", (("reason", "validation"),))] == 2
    assert found[("events_rejected_total", (("reason", "bad_body"),))] == 1
    assert found[("batch_rows_sum", ())] == 3
    assert found[("insert_duration_seconds_count", ())] == 1
    assert found[("batcher_queue_rows", ())] == 0
    assert ("http_request_duration_seconds_count", (("route", "/events"),)) in found


def test_the_embedded_engine_gives_freed_memory_back_after_reports(make_settings):
    """After a report request, in a process over MEMORY_TRIM_ABOVE_MB (here: any), the engine's
    allocator is told to give back what its queries freed (SYSTEM JEMALLOC PURGE,
    server/process/services.py), without an error: counted."""
    with SettlingClient(create_app(make_settings(memory_trim_above_mb=0))) as api:
        before = samples(api).get(("engine_memory_purges_total", ()), 0)
        assert api.get("/reports/daily").status_code == 200
        deadline = time.monotonic() + 10
        while samples(api).get(("engine_memory_purges_total", ()), 0) <= before and time.monotonic() < deadline:
            time.sleep(0.05)
        assert samples(api)[("engine_memory_purges_total", ())] > before


def test_unmatched_paths_share_one_label(api):
    api.get("/a"), api.get("/b")
    assert samples(api)[("http_requests_total", (("route", "unmatched"), ("status", "404")))] == 2


def test_migrations_are_recorded_and_safe_to_rerun(settings, api, ch):
    assert db.migrate(settings) == []
    versions = ch.query("SELECT version, name FROM schema_migrations FINAL ORDER BY version").result_rows
    assert versions == [(1, "events"), (2, "events_buffer"), (3, "activities"), (4, "rollups"), (5, "event_id_index"),
                        (6, "exactly_once"), (7, "enrichment"), (8, "user_hours"), (9, "session_spans"),
                        (10, "imports"), (11, "event_changes"), (12, "users_first"), (13, "session_spans_v2"),
                        (14, "report_days"), (15, "users_last"),
                        (16, "event_changes_last"), (17, "user_days"), (18, "funnel_days"),
                        (19, "breakdown_days"), (20, "identities"),
                        (21, "erasures"), (22, "persons"), (23, "stitch_marks"), (24, "patch_deletes"),
                        (25, "stitch_sessions")]


def test_changed_buffer_thresholds_recreate_the_buffer_without_losing_rows(make_settings):
    from dataclasses import replace

    settings = make_settings(ack="insert", buffer_min_seconds=3000, buffer_max_seconds=3600)
    admin_client = None
    with SettlingClient(create_app(settings)) as api:
        api.post("/events", json={"dt": "2025-01-01T00:00:00Z", "event": "e", "user_id": "u"})
        admin_client = db.connect(settings)
        # Rows sit in the Buffer now; changing its thresholds must flush them first.
        changed = replace(settings, buffer_max_seconds=7200)
        assert db.sync_buffer_table(admin_client, changed) is True
        assert admin_client.command("SELECT count() FROM events") == 1
        engine = admin_client.command("SELECT engine_full FROM system.tables WHERE name = 'events_buffer' "
                                      "AND database = currentDatabase()")
        assert "3000, 7200" in engine
        assert db.sync_buffer_table(admin_client, changed) is False
    admin_client.close()


def test_a_bug_in_a_route_is_logged_with_its_traceback_and_answered_500(make_settings, monkeypatch, caplog):
    """A planted exception (not a database error) is not disguised as a 4xx or 503."""
    import logging

    from starlette.testclient import TestClient

    from server.ingest import routes

    def planted(*args: object, **kwargs: object) -> None:
        raise ZeroDivisionError("planted bug")

    monkeypatch.setattr(routes, "validate_events", planted)
    with TestClient(create_app(make_settings()), raise_server_exceptions=False) as api, \
            caplog.at_level(logging.ERROR, logger="server.http.errors"):
        response = api.post("/events", json={"dt": 1735689600, "event": "e", "user_id": "u"})
    assert response.status_code == 500
    assert response.json()["error"]["code"] == "internal"
    [record] = [r for r in caplog.records if r.name == "server.http.errors"]
    assert record.exc_info and record.exc_info[0] is ZeroDivisionError
    assert "POST /events" in record.getMessage()
