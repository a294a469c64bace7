"""A group's child processes (the engine's, uvicorn's HTTP workers) die with the `serve` process
that started them: a killed `serve` leaves no process behind that holds the data directory, the
port or a worker's log, so the server started again (by systemd, a test, a user) takes them at
once, as after the kill of a single process. A kill is what they are built to survive: every
acknowledged event is in a log, and inserts are exactly once."""

from __future__ import annotations

import ctypes
import logging
import os
import signal

log = logging.getLogger(__name__)

PR_SET_PDEATHSIG = 1  # prctl(2)
# The pid of `serve`, which it puts in the environment before it starts the engine and the workers.
SERVE_PID_ENV = "ANALYTICS_API_SERVE_PID"


def serve_pid() -> int:
    """The `serve` that started this process. Not os.getppid(): a process that asks after `serve`
    died (killed while the process was still importing) has been handed to init (1) or a subreaper
    by then, and would take that for its parent and live on, holding the port (seen: a worker still
    listening 3 s and more after the SIGKILL of serve, in about 1 in 30 kills on a busy machine)."""
    return int(os.environ.get(SERVE_PID_ENV) or os.getppid())


def die_with(parent: int) -> bool:
    """SIGKILL this process when its parent (`parent`, its pid now) dies, by Linux's
    PR_SET_PDEATHSIG; False where that cannot be asked (not Linux). The kernel's signal follows
    the parent's thread that started this process."""
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return False
    if prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
        log.warning("this process cannot ask to die with its parent (errno %d)", ctypes.get_errno())
        return False
    if os.getppid() != parent:  # the parent died before the request: as if it had come in time
        os.kill(os.getpid(), signal.SIGKILL)
    return True
