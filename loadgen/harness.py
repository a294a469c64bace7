"""What every benchmark here shares: a server in its own process (CPU time and peak RSS read
from /proc) and wrk driving it (closed loop, or paced to a rate by post_event.lua)."""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from server.config import Settings

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "loadgen" / "results"
WRK_SCRIPT = ROOT / "loadgen" / "post_event.lua"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
PERCENTILES = ("50", "75", "90", "99")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServerProcess:
    """A server in its own process, with its CPU time and RSS read from /proc."""

    def __init__(self, command: list[str], env: dict[str, str], port: int, ready_path: str):
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.process = subprocess.Popen(command, cwd=ROOT, env={**os.environ, **env},
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                if httpx.get(self.url + ready_path, timeout=1).status_code < 500:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"{command} did not answer on port {port}")

    def cpu_seconds(self) -> float:
        fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime + stime

    def _status_mb(self, field: str) -> float:
        status = Path(f"/proc/{self.process.pid}/status").read_text()
        return int(re.search(rf"{field}:\s+(\d+) kB", status).group(1)) / 1024

    def peak_rss_mb(self) -> float:
        return self._status_mb("VmHWM")

    def rss_mb(self) -> float:
        return self._status_mb("VmRSS")

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.process.kill()


def bare_server(workers: int = 1) -> ServerProcess:
    """Every ingest benchmark's baseline: loadgen/bare_app.py (read the body, parse the JSON,
    answer 202) under uvicorn with `workers` processes, on a free port."""
    port = free_port()
    command = [sys.executable, "-m", "uvicorn", "--no-access-log", "--log-level", "warning",
               "--workers", str(workers), "loadgen.bare_app:app", "--port", str(port)]
    return ServerProcess(command, {"WEB_CONCURRENCY": str(workers)}, port, "/")


def embedded_shape(web_concurrency: str = "auto") -> tuple[int, bool, str]:
    """What `serve` on the embedded engine runs on this machine for WEB_CONCURRENCY: (HTTP workers,
    whether the engine has a process of its own, a line saying so), as Settings resolves it."""
    settings = Settings.from_env({"CLICKHOUSE_URL": "chdb:///tmp/unused", "WEB_CONCURRENCY": web_concurrency})
    line = f"{settings.web_concurrency} HTTP worker(s)" + (" and the engine's process" if settings.engine_process
                                                          else " in one process")
    return settings.web_concurrency, settings.engine_process, line


def embedded_server(directory: str | Path, **env: str) -> ServerProcess:
    """`analytics-api serve` on a free port with the embedded engine's data and the log under
    `directory`; `env` adds settings (ACK, WEB_CONCURRENCY, …). Returns once /readyz answers."""
    port = free_port()
    settings = {"CLICKHOUSE_URL": f"chdb://{directory}/clickhouse", "LOG_DIR": f"{directory}/wal", **env}
    return ServerProcess([sys.executable, "-m", "server.cli", "serve", "--port", str(port)], settings, port, "/readyz")


@dataclass
class WrkFigures:
    rps: float
    requests: int
    latency_ms: dict[str, float]  # percentile ("50", "75", "90", "99") -> ms
    errors: int


def run_wrk(url: str, connections: int, seconds: int, batch: int = 1, rate: float = 0) -> WrkFigures:
    """wrk -t1 against url: closed loop, or paced to `rate` requests/s when rate > 0."""
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed: `make bench-ratio` (or `apt-get install wrk`) installs it")
    env = {**os.environ, "BATCH": str(batch), "RATE": str(rate)}
    out = subprocess.run(
        ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency", "-s", str(WRK_SCRIPT), url],
        capture_output=True, text=True, env=env, check=True,
    ).stdout

    def latency(percent: str) -> float:
        value, unit = re.search(rf"^\s+{percent}%\s+([\d.]+)(us|ms|s)\s*$", out, re.MULTILINE).groups()
        return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]

    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    socket_errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    errors = int(non_2xx.group(1)) if non_2xx else 0
    errors += sum(int(n) for n in socket_errors.groups()) if socket_errors else 0
    return WrkFigures(rps=float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),
                      requests=int(re.search(r"(\d+) requests in", out).group(1)),
                      latency_ms={p: latency(p) for p in PERCENTILES}, errors=errors)
