"""/metrics covers the whole process group: two real server processes share one
PROMETHEUS_MULTIPROC_DIR (as uvicorn's workers do under WEB_CONCURRENCY), and either one
reports the events both accepted."""

from __future__ import annotations

import httpx
from prometheus_client.parser import text_string_to_metric_families

from tests.servers import free_port, start_server


def sample(text: str, name: str, **labels: str) -> float:
    return sum(s.value for family in text_string_to_metric_families(text) for s in family.samples
               if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()))


def test_metrics_from_either_process_count_both(tmp_path):
    shared = tmp_path / "metrics"
    shared.mkdir()
    ports = [free_port(), free_port()]
    servers = [start_server(tmp_path / f"data{i}", port, PROMETHEUS_MULTIPROC_DIR=str(shared))
               for i, port in enumerate(ports)]
    try:
        for port, count in zip(ports, (3, 2), strict=True):
            body = [{"dt": "2026-01-01T00:00:00Z", "event": "view", "user_id": f"u{i}"} for i in range(count)]
            assert httpx.post(f"http://127.0.0.1:{port}/events", json=body).status_code == 202
        no_event = {"dt": "2026-01-01T00:00:00Z", "user_id": "u"}
        assert httpx.post(f"http://127.0.0.1:{ports[1]}/events", json=no_event).status_code == 422
        for port in ports:
            text = httpx.get(f"http://127.0.0.1:{port}/metrics").text
            assert sample(text, "events_accepted_total") == 5
            assert sample(text, "events_rejected_total") == 1
            assert sample(text, "http_requests_total", route="/events", status="202") == 2
            assert sample(text, "log_group_records_count") == 2  # each request's own fdatasync
    finally:
        for server in servers:
            server.terminate()
            server.wait(timeout=60)
