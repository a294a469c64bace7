"""A real HTTP server for the peers' SDKs: the app on uvicorn in a thread of the test process,
on the test's database of the session's engine (so a test can also make ClickHouse refuse)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import uvicorn
from clickhouse_connect.driver.client import Client
from starlette.applications import Starlette

from server.config import Settings
from server.process.app import create_app
from server.store import db
from tests.servers import free_port


@dataclass
class Live:
    url: str
    app: Starlette
    settings: Settings
    client: Client

    def rows(self, sql: str) -> list[tuple]:
        """After the events acknowledged so far are in ClickHouse (the log consumed, the Buffer flushed)."""
        pipeline = self.app.state.services.pipeline
        deadline = time.monotonic() + 30
        while pipeline.status().get("log_bytes") and time.monotonic() < deadline:
            time.sleep(0.02)
        db.flush_buffer_table(self.client)
        return self.client.query(sql).result_rows


def end_after_first_refusal(server: Live, outage: Any) -> str:
    """Wait until the server refused a request with 503 (ClickHouse refusing), then end the outage;
    the metric's line, for the test to check again at its end."""
    metrics = server.app.state.services.metrics
    refused = 'events_rejected_total{reason="unavailable"} 1.0'
    deadline = time.monotonic() + 30
    while refused not in metrics.render().body.decode() and time.monotonic() < deadline:
        time.sleep(0.05)
    outage.end()
    return refused


@pytest.fixture
def live(make_settings) -> Iterator[Callable[..., Live]]:
    """`live(**settings)`: a server on uvicorn; stopped (gracefully) after the test."""
    servers: list[tuple[uvicorn.Server, threading.Thread, Client]] = []

    def start(**overrides: object) -> Live:
        settings = make_settings(**overrides)
        app = create_app(settings)
        port = free_port()
        server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None, access_log=False))
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        deadline = time.monotonic() + 30
        while not server.started and time.monotonic() < deadline:
            time.sleep(0.02)
        assert server.started, "uvicorn did not start"
        client = db.connect(settings)
        servers.append((server, thread, client))
        return Live(f"http://127.0.0.1:{port}", app, settings, client)

    yield start
    for server, thread, client in servers:
        server.should_exit = True
        thread.join(timeout=60)
        client.close()
