"""Real server processes for tests that need one of their own (signals, restarts, several
processes): `analytics-api serve` started as a subprocess on its own data directory."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(data_dir: Path, port: int, **env: str) -> subprocess.Popen:
    environ = {
        **os.environ,
        "CLICKHOUSE_URL": f"chdb://{data_dir}",
        # Thresholds no test run reaches: rows stay in the Buffer table until the server flushes it.
        "BUFFER_MIN_SECONDS": "3000", "BUFFER_MAX_SECONDS": "3600",
        **env,
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "server.cli", "serve", "--port", str(port)],
        cwd=ROOT, env=environ, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError("server exited at start:\n" + process.stdout.read().decode())
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200:
                return process
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    process.kill()
    raise RuntimeError("server did not become ready in 60 s")


def count_in_events(data_dir: Path) -> int:
    """Open the data directory in a fresh process (one chDB engine per process) and count."""
    code = (
        "import clickhouse_connect, sys;"
        f"c = clickhouse_connect.get_client(dsn='chdb://{data_dir}');"
        "print(c.command('SELECT count() FROM events'))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    return int(out.stdout.strip().splitlines()[-1])
