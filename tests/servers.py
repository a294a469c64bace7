"""Real server processes for tests that need one of their own (signals, restarts, several
processes): `analytics-api serve` started as a subprocess on its own data directory."""

from __future__ import annotations

import atexit
import functools
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import orjson

from tests import forkserver

ROOT = forkserver.ROOT  # the repository, where the processes tests start run


def local_http(timeout: float = 30, base_url: str = "") -> httpx.Client:
    """A client for plain-HTTP calls to a server on this machine. `httpx.get`/`post` make a client
    a call, and a client's TLS context loads the CA bundle: ~27 ms of CPU a call here (a server
    start's readiness poll spent ~0.5 s of it, beside the server starting on the same cores);
    without TLS verification a client costs ~1.4 ms. Nothing here speaks TLS."""
    return httpx.Client(verify=False, timeout=timeout, base_url=base_url)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# Thresholds no test run reaches: rows stay in the Buffer table until the server flushes it.
# One process unless a test asks for a group (WEB_CONCURRENCY=auto would depend on the machine's cores).
SERVER_ENV = {"BUFFER_MIN_SECONDS": "3000", "BUFFER_MAX_SECONDS": "3600", "ROLLUP_INTERVAL_SECONDS": "0",
              "WEB_CONCURRENCY": "1"}


@functools.cache
def migrated_template() -> Path:
    """A data directory migrated once per test process by `analytics-api migrate` (~1 s), copied
    for each server started on a new directory: a copy takes ~20 ms, a migration ~0.5 s."""
    template = Path(tempfile.mkdtemp(prefix="analytics-template-")) / "data"
    atexit.register(shutil.rmtree, template.parent, True)
    forkserver.run([sys.executable, "-m", "server.cli", "migrate"], cwd=ROOT, check=True, capture_output=True,
                   env={**os.environ, **SERVER_ENV, "CLICKHOUSE_URL": f"chdb://{template}", "LOG_DIR": f"{template}-wal"})
    return template


def start_server(data_dir: Path, port: int, cpus: int = 0, **env: str) -> forkserver.Started:
    """`analytics-api serve` on `data_dir`: a new directory starts as a copy of the migrated
    template (what the server's own first start would make), an existing one as it is. `cpus`:
    run on that many of this machine's CPUs (what WEB_CONCURRENCY=auto sees), not all of them."""
    if not data_dir.exists() and "CLICKHOUSE_URL" not in env:
        shutil.copytree(migrated_template(), data_dir, symlinks=True)  # relative links into store/
    environ = {
        **os.environ,
        "CLICKHOUSE_URL": f"chdb://{data_dir}",
        # The write-ahead log and the old spool's place beside the data, not under the working directory.
        "LOG_DIR": f"{data_dir}-wal", "SPOOL_DIR": f"{data_dir}-spool",
        **SERVER_ENV,
        **env,
    }
    # The server's log goes to a file beside its data (read with `output()`), not to a pipe that
    # would have to be drained and closed.
    log_path = data_dir.parent / f"{data_dir.name}-{port}.log"
    command = [sys.executable, "-m", "server.cli", "serve", "--port", str(port)]
    mask = sorted(os.sched_getaffinity(0))[:cpus] if cpus else []
    with open(log_path, "ab") as log_file:
        process = forkserver.popen(command, cwd=ROOT, env=environ, stdout=log_file, stderr=subprocess.STDOUT, cpus=mask)
    process.log_path = log_path  # type: ignore[attr-defined]
    deadline = time.monotonic() + 60
    with local_http(timeout=1) as http:
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError("server exited at start:\n" + output(process))
            try:
                if http.get(f"http://127.0.0.1:{port}/readyz").status_code == 200:
                    return process
            except httpx.HTTPError:
                pass
            time.sleep(0.05)  # a start takes ~1 s here: a coarser poll would add ~0.1 s to each
    process.kill()
    raise RuntimeError("server did not become ready in 60 s")


def output(process: forkserver.Started) -> str:
    """What a server started by `start_server` has logged so far."""
    return Path(process.log_path).read_text(errors="replace")  # type: ignore[attr-defined]


def query_in_process(data_dir: Path, sql: str) -> list[list]:
    """Rows of one query, from the data directory opened in a fresh process (one chDB engine
    per process, so never while a server has it open)."""
    return queries_in_process(data_dir, sql)[0]


def queries_in_process(data_dir: Path, *sqls: str) -> list[list[list]]:
    """Rows of each query, in one fresh process (opening the engine costs ~0.45 s of CPU a
    process). chDB is loaded as the server loads it (server.store.embedded: without pyarrow,
    ~0.14 s of CPU less)."""
    code = (
        "import server.store.embedded, clickhouse_connect, orjson, sys;"
        f"c = clickhouse_connect.get_client(dsn='chdb://{data_dir}');"
        "sys.stdout.write(orjson.dumps([[list(r) for r in c.query(q).result_rows] for q in sys.argv[1:]], "
        "default=str).decode())"
    )
    out = forkserver.run([sys.executable, "-c", code, *sqls], capture_output=True, text=True, timeout=120, check=True)
    return orjson.loads(out.stdout.strip().splitlines()[-1])


def count_in_events(data_dir: Path) -> int:
    return int(query_in_process(data_dir, "SELECT count() FROM events")[0][0])


def wait_consumed(port: int, seconds: float = 60) -> None:
    """Until the server's write-ahead log holds nothing not yet in ClickHouse (/readyz)."""
    deadline = time.monotonic() + seconds
    with local_http(timeout=10) as http:
        while http.get(f"http://127.0.0.1:{port}/readyz").json().get("log_bytes"):
            if time.monotonic() > deadline:
                raise RuntimeError(f"the log was not consumed in {seconds} s")
            time.sleep(0.05)
