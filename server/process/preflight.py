"""Checks of the environment before `serve` or `migrate` touches anything: each failure is a
ConfigError whose one-line message names the setting and what to do (the CLI prints it and
exits 2), instead of a traceback from deep inside the engine or uvicorn."""

from __future__ import annotations

import errno
import fcntl
import ipaddress
import logging
import os
import socket
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlparse

from clickhouse_connect.driver.client import Client
from clickhouse_connect.driver.exceptions import ClickHouseError

from server.config import ConfigError, Settings
from server.http.errors import first_line
from server.store import db


def check(settings: Settings, serving: bool) -> Client | None:
    """Raises ConfigError naming the setting at fault. Returns the client the check of ClickHouse
    opened, still open (None if not checked here): the caller closes it when its command is done,
    a server once its app's own clients are open (`create_app(held=…)`).
    Held meanwhile, it keeps the embedded engine up, which would otherwise shut down when the check
    closed its last client and start again for the command (~0.2 s of a start)."""
    if serving:
        reads_not_exposed(settings)
        _unless_released(lambda: _port_free(settings))
    if settings.embedded:
        _data_directory_usable(settings)
    if serving and settings.ack_mode == "log":
        _directory_usable("LOG_DIR", Path(settings.log_dir))
        _unless_released(lambda: _not_locked("LOG_DIR", Path(settings.log_dir) / "lock", "the write-ahead log"))
    if not (serving and settings.engine_process):
        # With the engine in a process of its own, that process checks (and opens) it: opening it
        # here too would leave `serve`, which becomes the HTTP worker, ~110 MB larger.
        return _clickhouse_answers(settings)
    return None


def is_loopback(host: str) -> bool:
    """Whether every address HOST names is on this machine only (`0.0.0.0`, `::` and `""` bind every
    interface; a name is resolved, and counts as loopback only if all its addresses are)."""
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        pass
    if not host:
        return False
    try:
        found = socket.getaddrinfo(host, None)
    except OSError:
        return False  # uvicorn will fail to bind it anyway; not a reason to call it safe
    return bool(found) and all(ipaddress.ip_address(str(info[4][0]).split("%")[0]).is_loopback for info in found)


def reads_not_exposed(settings: Settings) -> None:
    """A server reachable from the network must not serve reports and client SQL to anyone: with no
    READ_TOKEN it starts only on a loopback address, or when ALLOW_OPEN_READS says so on purpose."""
    if settings.read_token or settings.allow_open_reads or is_loopback(settings.host):
        return
    raise ConfigError(f"HOST {settings.host} is reachable from the network and READ_TOKEN is unset: the reports, "
                      "POST /sql and /clickhouse/ would answer anyone. Set READ_TOKEN, bind HOST=127.0.0.1, or set "
                      "ALLOW_OPEN_READS=true to serve them open on purpose")


# How long a port or a directory held by another process may take to be let go before the start
# is refused: a killed server's engine and workers (lifeline.die_with) are gone only once the kernel
# has torn them down. Measured after SIGKILLs of a two-worker serve (3 at once on 2 cores): port or
# engine lock still held 20-65 ms after serve's exit in 52 of 60 kills; a start right after (a
# supervisor's restart, the kill-loop tests) could be refused for that.
RELEASE_GRACE_SECONDS = 1.0


def _unless_released(check: Callable[[], None]) -> None:
    """`check`, again every 50 ms while it finds the resource held, for RELEASE_GRACE_SECONDS."""
    deadline = time.monotonic() + RELEASE_GRACE_SECONDS
    while True:
        try:
            check()
            return
        except ConfigError:
            if time.monotonic() > deadline:
                raise
        time.sleep(0.05)


def _port_free(settings: Settings) -> None:
    with socket.socket(socket.AF_INET6 if ":" in settings.host else socket.AF_INET) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((settings.host, settings.port))
        except OSError as error:
            what = "is in use" if error.errno == errno.EADDRINUSE else f"cannot be bound ({error.strerror})"
            raise ConfigError(f"PORT {settings.port} on HOST {settings.host} {what}: stop the other server "
                              "or choose another PORT") from None


def _directory_usable(name: str, path: Path) -> None:
    if not path.is_absolute():
        raise ConfigError(f"{name} {str(path)!r} must be an absolute path")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise ConfigError(f"{name}: cannot create {path} ({error.strerror}); choose a writable directory") from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise ConfigError(f"{name}: {path} is not writable by this user; choose a writable directory")


def _not_locked(name: str, lock_file: Path, what: str) -> None:
    if not lock_file.exists():
        return
    fd = os.open(lock_file, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        raise ConfigError(f"{name}: {what} in {lock_file.parent} is in use by another process "
                          "(one process per directory): stop it first, or choose another directory") from None
    finally:
        os.close(fd)  # closing releases a lock taken here


def _data_directory_usable(settings: Settings) -> None:
    path = Path(urlparse(settings.clickhouse_url).path)
    _directory_usable("CLICKHOUSE_URL", path)
    # The engine locks `status` in its data directory while it runs.
    _unless_released(lambda: _not_locked("CLICKHOUSE_URL", path / "status", "the embedded engine's data directory"))


def _clickhouse_answers(settings: Settings) -> Client:
    driver_log = logging.getLogger("clickhouse_connect")
    level = driver_log.level
    driver_log.setLevel(logging.CRITICAL)  # it logs the same failure as a second line; ours names the setting
    try:
        client = db.connect(settings, database="default")
    except ClickHouseError as error:
        raise ConfigError(f"CLICKHOUSE_URL {_without_password(settings.clickhouse_url)}: ClickHouse cannot be "
                          f"reached or opened ({first_line(error, limit=200)})") from None
    finally:
        driver_log.setLevel(level)
    return client


def _without_password(url: str) -> str:
    parsed = urlparse(url)
    if parsed.password:
        return url.replace(f":{parsed.password}@", ":***@")
    return url
