"""`serve` on the embedded engine with the engine in a process of its own (WEB_CONCURRENCY > 1, or `auto` on
2 or more cores): N HTTP workers and one engine process.

chDB allows one process per data directory, so the work is split:

- **HTTP workers** (uvicorn's `workers=N`, app: server/process/front.py) parse, validate, enrich and
  deduplicate events and acknowledge them after the fdatasync of each one's own write-ahead log;
  every other request they pass to the engine process over a unix socket.
- **The engine process** (`analytics-api engine`, app: server/process/app.py with `group_workers=N`)
  owns chDB: it migrates, inserts its own log and every worker's log exactly once (one consumer
  each, server/ingest/worker_logs.py), and answers reports, SQL, /clickhouse/, exports, the
  page, and the workers' questions on `/_engine/` (stored event_ids, the visitors' salts:
  server/process/engine_routes.py).

This process starts the engine, waits until it is ready, starts the workers, and restarts the
engine if it dies (the workers go on acknowledging into their logs meanwhile; what the engine
had in flight is sent again with the same deduplication tokens). uvicorn restarts a worker that
dies; the new one takes the log directory its predecessor left. A stop (SIGTERM/SIGINT) stops
the workers first (they finish their requests and sync their logs), then the engine, which
inserts what it can within STOP_TIMEOUT_SECONDS; the rest waits in the logs for the next start.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

import httpx
from clickhouse_connect.driver.client import Client

from server.config import Settings
from server.process.lifeline import SERVE_PID_ENV, die_with, serve_pid

log = logging.getLogger(__name__)

ENGINE_START_SECONDS = 120


# --- in the parent process: start and watch -----------------------------------------------

class Engine:
    """The engine process, restarted when it dies until `stop()`."""

    def __init__(self, socket_path: str, env: dict[str, str]) -> None:
        self.socket_path = socket_path
        self._env = env
        self._process: subprocess.Popen[bytes] | None = None
        self._stopping = threading.Event()
        self._watcher = threading.Thread(target=self._watch, name="engine-watcher", daemon=True)

    def start(self) -> None:
        self._spawn()
        self._watcher.start()

    def _spawn(self) -> None:
        if os.path.exists(self.socket_path):
            os.unlink(self.socket_path)
        # A session of its own: a terminal's Ctrl-C reaches this process and the workers, and the
        # engine stops after them (stop()); it stops by itself if this process dies (serve_engine).
        self._process = subprocess.Popen([sys.executable, "-m", "server.cli", "engine", "--socket", self.socket_path],
                                         env=self._env, start_new_session=True)
        self._wait_ready()

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + ENGINE_START_SECONDS
        transport = httpx.HTTPTransport(uds=self.socket_path, verify=False)  # no TLS on a unix socket (front.py)
        with httpx.Client(transport=transport, base_url="http://engine") as client:
            while time.monotonic() < deadline:
                assert self._process is not None
                if self._process.poll() is not None:
                    raise RuntimeError(f"the engine process exited at start (code {self._process.returncode})")
                try:
                    if client.get("/healthz", timeout=1).status_code == 200:
                        return
                except httpx.HTTPError:
                    pass
                time.sleep(0.05)
        raise RuntimeError(f"the engine process was not ready in {ENGINE_START_SECONDS} s")

    def _watch(self) -> None:
        while not self._stopping.wait(0.5):
            process = self._process
            if process is not None and process.poll() is not None and not self._stopping.is_set():
                log.error("the engine process exited (code %s); starting it again", process.returncode)
                try:
                    self._spawn()
                except RuntimeError as exc:
                    log.error("%s; trying again", exc)
        # An engine this thread started dies with it (serve_engine's PR_SET_PDEATHSIG follows the
        # thread that started the process): it ends only once that engine has stopped.
        if self._process is not None:
            self._process.wait()

    def stop(self, timeout: float) -> None:
        self._stopping.set()
        process = self._process
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            log.error("the engine process did not stop within %.0f s; killing it (its logs keep what waits)", timeout)
            process.kill()
            process.wait()


def serve_group(settings: Settings) -> int:
    import uvicorn

    from server.process.front import ENGINE_SOCKET_ENV

    socket_dir = tempfile.mkdtemp(prefix="analytics-api-")  # short: a unix socket's path has ~100 bytes
    socket_path = os.path.join(socket_dir, "engine.sock")
    os.environ[SERVE_PID_ENV] = str(os.getpid())  # for the engine and the workers: lifeline.serve_pid
    env = {**os.environ, ENGINE_SOCKET_ENV: socket_path}
    engine = Engine(socket_path, env)
    engine.start()
    os.environ[ENGINE_SOCKET_ENV] = socket_path  # for the workers uvicorn starts
    # uvicorn raises the signal that stopped it once more after its shutdown (with one worker it
    # serves in this process): under the default action that would end this process before the
    # engine is stopped below, and the engine would die with it (lifeline.die_with) instead of draining.
    for stopping in (signal.SIGINT, signal.SIGTERM):
        signal.signal(stopping, lambda number, frame: None)
    try:
        uvicorn.run("server.process.front:create_front_app_from_env", factory=True, workers=settings.web_concurrency,
                    host=settings.host, port=settings.port, access_log=settings.access_log,
                    log_level=settings.log_level, log_config=None, forwarded_allow_ips=settings.forwarded_allow_ips)
    finally:
        engine.stop(settings.stop_timeout_seconds + 60)
        shutil.rmtree(socket_dir, ignore_errors=True)
    return 0


def serve_engine(settings: Settings, socket_path: str, held: Client | None = None) -> int:
    import uvicorn

    from server.process.app import create_app

    parent = serve_pid()
    bound = die_with(parent)
    app = create_app(settings, freeze_after_start=True, group_workers=settings.web_concurrency, held=held)

    def stop_when_orphaned() -> None:  # where die_with cannot: stop as SIGTERM would
        while os.getppid() == parent:
            time.sleep(1)
        os.kill(os.getpid(), signal.SIGTERM)

    if not bound:
        threading.Thread(target=stop_when_orphaned, name="orphan-watch", daemon=True).start()
    uvicorn.run(app, uds=socket_path, workers=1, access_log=False, log_level=settings.log_level, log_config=None)
    return 0
