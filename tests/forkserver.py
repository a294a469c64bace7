"""Python processes for the tests, forked from one that has already imported the server.

Every `python -m server.cli …` and `python -c …` that a test starts (servers, CLI commands, queries
on a data directory: ~90 a run) imported the server's modules first (uvicorn, Starlette,
clickhouse-connect, the server's own: ~0.3 s of CPU). Here a fork server, started once per test
process, imports them once; each process is forked from it and then runs exactly what the
interpreter would have run (`-m`: the module as `__main__`, `-c`: the code), with the arguments,
environment, working directory and standard streams the test gave. Measured: a server's start
to /readyz 0.53 -> 0.32 s of CPU; in a whole run, the processes other than pytest's and the
browsers' 94-104 -> 81-91 s (3 runs each). chDB is not loaded before the fork: its library starts threads when
it is loaded, and a fork keeps only the forking thread; each process loads it itself, as a fresh
one does. What `serve` itself starts (the engine's process, uvicorn's workers) starts fresh, and
tests of what a fresh interpreter does (tests/test_store.py's imports, test_group.py's lifeline)
call subprocess themselves.

`popen()` and `run()` take the same arguments as subprocess's for the commands tests run; any
other command (or PYTHON_FORKSERVER=0 in the environment) goes to subprocess itself. A forked
process is the fork server's child, not the test's: `Process` waits on it through a pidfd and
gets its exit status from the fork server.

Run as `python -m tests.forkserver FD`: the fork server, on the socket FD.
"""

from __future__ import annotations

import atexit
import json
import os
import select
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any

ROOT = Path(__file__).resolve().parent.parent

# What `serve` and the CLI's commands import, except chDB (and what imports it).
PRELOAD = (
    "server.cli", "server.config", "server.store.db", "server.process.preflight", "server.process.app",
    "server.process.group", "server.process.front", "server.data.backup", "server.data.erase",
    "server.data.export", "server.data.importer", "server.reports.rollup_job", "server.reports.configured",
    "server.reports.stored_rows", "server.people.stitch", "clickhouse_connect.driver.client",
    "uvicorn", "uvicorn.main", "uvicorn.loops.uvloop", "uvicorn.protocols.http.httptools_impl",
    "uvicorn.protocols.websockets.websockets_sansio_impl", "uvicorn.lifespan.on", "orjson", "runpy",
)
MESSAGE = 1 << 20  # a request's size at most (its environment and arguments)


# ---------------------------------------------------------------- the fork server's side


def _send(sock: socket.socket, answer: dict[str, Any]) -> None:
    sock.send(json.dumps(answer).encode())


def _serve(sock: socket.socket) -> dict[str, Any] | None:
    """Answers requests until the test process goes (None), or returns a request in a forked child."""
    while True:
        message, fds, _, _ = socket.recv_fds(sock, MESSAGE, 3)
        if not message:
            return None
        request = json.loads(message)
        op = request["op"]
        if op == "spawn":
            sys.stdout.flush()
            sys.stderr.flush()
            pid = os.fork()
            if pid == 0:
                sock.close()
                for target, fd in enumerate(fds):
                    os.dup2(fd, target)
                for fd in fds:
                    if fd > 2:
                        os.close(fd)
                return request
            for fd in fds:
                os.close(fd)
            _send(sock, {"pid": pid})
        elif op == "reap":  # the process has exited (the test saw its pidfd readable)
            _, status = os.waitpid(request["pid"], 0)
            _send(sock, {"returncode": os.waitstatus_to_exitcode(status)})


def _value_class_by_environment() -> None:
    """prometheus-client picks its value class (in-process, or files for several processes) from
    PROMETHEUS_MULTIPROC_DIR when it is imported; `serve` sets that variable before it imports the
    client. Here the client was imported before: the class is picked at its first use instead, from
    the environment of then, once, as the import would have."""
    from prometheus_client import values

    picked: list[Any] = []

    def value_class(*args: Any, **kwargs: Any) -> Any:
        if not picked:
            picked.append(values.get_value_class())  # type: ignore[no-untyped-call]
        return picked[0](*args, **kwargs)

    values.ValueClass = value_class


def _run(request: dict[str, Any]) -> None:
    """In the forked child: what `python ARGS` would run, with the request's environment."""
    import runpy
    import time
    import types
    import warnings

    os.chdir(request["cwd"])
    os.environ.clear()
    os.environ.update(request["env"])
    if request.get("cpus"):
        os.sched_setaffinity(0, request["cpus"])
    _value_class_by_environment()
    time.tzset()  # TZ as the request's environment says
    flag, what, *args = request["args"]
    if flag == "-m":
        # The module was imported before (as itself): run as __main__ all the same, as `-m` would.
        warnings.filterwarnings("ignore", message=".* found in sys.modules after import of package", category=RuntimeWarning)
        sys.argv = [what, *args]  # [0]: the module's file, set by run_module
        runpy.run_module(what, run_name="__main__", alter_sys=True)
    else:  # -c
        sys.argv = ["-c", *args]
        main = types.ModuleType("__main__")
        sys.modules["__main__"] = main
        exec(compile(what, "<string>", "exec"), main.__dict__)


def main() -> None:
    import importlib

    for name in PRELOAD:
        importlib.import_module(name)
    importlib.import_module("server.ingest.useragent").warm()  # what each server's start does (~0.11 s)
    loaded = [name for name in sys.modules if name.split(".")[0] in ("chdb", "pyarrow", "numpy")]
    assert not loaded and threading.active_count() == 1 and len(os.listdir("/proc/self/task")) == 1, loaded
    sock = socket.socket(fileno=int(sys.argv[1]))
    request = _serve(sock)
    if request is not None:
        _run(request)  # in a child: its exit (SystemExit, an exception) ends the process as Python's would


# ---------------------------------------------------------------- the test's side


class Process:
    """A forked process, as much of subprocess.Popen as the tests use."""

    def __init__(self, server: ForkServer, pid: int, args: Sequence[str]) -> None:
        self._server = server
        self.pid = pid
        self.args = list(args)
        self.returncode: int | None = None
        self._pidfd = os.pidfd_open(pid)  # before any reap: the pid cannot name another process
        self.stdin = self.stdout = self.stderr = None

    def poll(self) -> int | None:
        if self.returncode is None and select.select([self._pidfd], [], [], 0)[0]:
            self._reap()
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        if self.returncode is None:
            if not select.select([self._pidfd], [], [], timeout)[0]:
                raise subprocess.TimeoutExpired(self.args, timeout or 0)
            self._reap()
        assert self.returncode is not None
        return self.returncode

    def _reap(self) -> None:
        self.returncode = self._server.request({"op": "reap", "pid": self.pid})["returncode"]
        os.close(self._pidfd)

    def send_signal(self, sig: int) -> None:
        if self.poll() is None:
            os.kill(self.pid, sig)

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)

    def __enter__(self) -> Process:
        return self

    def __exit__(self, *exc: object) -> None:
        self.wait()


Started = Process | subprocess.Popen[bytes]  # what popen() gives


class ForkServer:
    def __init__(self) -> None:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self._process = subprocess.Popen([sys.executable, "-m", "tests.forkserver", str(theirs.fileno())],
                                         cwd=ROOT, pass_fds=[theirs.fileno()], stdin=subprocess.DEVNULL)
        theirs.close()
        self._sock = ours
        self._lock = threading.Lock()
        atexit.register(self.close)

    def close(self) -> None:
        """The fork server ends when its socket closes (what it started goes on, as subprocess's do)."""
        self._sock.close()
        self._process.wait(timeout=10)

    def request(self, message: dict[str, Any], fds: Sequence[int] = ()) -> dict[str, Any]:
        with self._lock:
            socket.send_fds(self._sock, [json.dumps(message).encode()], list(fds))
            answer = self._sock.recv(MESSAGE)
        if not answer:
            raise RuntimeError(f"the fork server ended (exit status {self._process.wait()})")
        return dict(json.loads(answer))

    def spawn(self, args: Sequence[str], cwd: str | os.PathLike[str], env: dict[str, str], fds: Sequence[int],
              cpus: Sequence[int] = ()) -> Process:
        answer = self.request({"op": "spawn", "args": list(args), "cwd": str(cwd), "env": env, "cpus": list(cpus)}, fds)
        return Process(self, answer["pid"], [sys.executable, *args])


_server: ForkServer | None = None
_server_pid = 0


def _fork_server() -> ForkServer:
    global _server, _server_pid
    if _server is None or _server_pid != os.getpid():
        _server, _server_pid = ForkServer(), os.getpid()
    return _server


def _forkable(args: Sequence[str], env: dict[str, str] | None) -> bool:
    return (len(args) >= 3 and args[0] == sys.executable and args[1] in ("-m", "-c")
            and (env if env is not None else os.environ).get("PYTHON_FORKSERVER", "1") != "0")


def popen(args: Sequence[str], *, cwd: str | os.PathLike[str] | None = None, env: dict[str, str] | None = None,
          stdout: int | IO[Any] | None = None, stderr: int | IO[Any] | None = None,
          cpus: Sequence[int] = ()) -> Started:
    """subprocess.Popen(args, cwd=, env=, stdout=, stderr=) (each an open file, a descriptor or
    DEVNULL; stderr also STDOUT), stdin from /dev/null; `cpus`: the CPUs the process may run on
    (all when empty)."""
    if not _forkable(args, env):
        mask = list(cpus)
        return subprocess.Popen(args, cwd=cwd, env=env, stdout=stdout, stderr=stderr, stdin=subprocess.DEVNULL,
                                preexec_fn=(lambda: os.sched_setaffinity(0, mask)) if mask else None)
    with open(os.devnull, "rb") as stdin, open(os.devnull, "wb") as null:

        def fd(stream: int | IO[Any] | None, default: int) -> int:
            if stream is None:
                return default
            if stream == subprocess.DEVNULL:
                return null.fileno()
            return stream if isinstance(stream, int) else stream.fileno()

        out = fd(stdout, 1)
        err = out if stderr == subprocess.STDOUT else fd(stderr, 2)
        return _fork_server().spawn(args[1:], cwd or os.getcwd(), dict(env if env is not None else os.environ),
                                    [stdin.fileno(), out, err], cpus)


def run(args: Sequence[str], *, cwd: str | os.PathLike[str] | None = None, env: dict[str, str] | None = None,
        capture_output: bool = False, text: bool = False, timeout: float | None = None,
        check: bool = False) -> subprocess.CompletedProcess[Any]:
    """subprocess.run with those arguments; the output is read once the process has exited (it
    goes to temporary files, not pipes, so nothing has to drain them meanwhile)."""
    if not _forkable(args, env):
        return subprocess.run(args, cwd=cwd, env=env, capture_output=capture_output, text=text, timeout=timeout,
                              check=check, stdin=subprocess.DEVNULL)
    import tempfile

    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        process = popen(args, cwd=cwd, env=env, stdout=out if capture_output else None,
                        stderr=err if capture_output else None)
        try:
            code = process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
            raise
        outputs: list[Any] = []
        for f in (out, err):
            f.seek(0)
            data = f.read() if capture_output else None
            if text and data is not None:  # universal newlines, as subprocess's text mode
                data = data.decode().replace("\r\n", "\n").replace("\r", "\n")
            outputs.append(data)
    if check and code:
        raise subprocess.CalledProcessError(code, list(args), outputs[0], outputs[1])
    return subprocess.CompletedProcess(list(args), code, outputs[0], outputs[1])


if __name__ == "__main__":
    main()
