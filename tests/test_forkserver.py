"""The tests' forked Python processes (tests/forkserver.py) behave as fresh ones: the same output,
exit status, environment, working directory and `__main__` as subprocess gives, for `-c` and `-m`."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from tests import forkserver
from tests.servers import ROOT

SHOW = ("import os, sys, json; m = sys.modules['__main__'];"
        "print(json.dumps([sys.argv, m.__name__, getattr(m.__spec__, 'name', None), os.getcwd(),"
        " os.environ.get('ONLY_HERE'), 'HOME' in os.environ]));"
        "print('to stderr', file=sys.stderr); sys.exit(int(sys.argv[1]))")


def both(args: list[str], **kwargs) -> tuple[subprocess.CompletedProcess, subprocess.CompletedProcess]:
    forked = forkserver.run(args, capture_output=True, text=True, timeout=60, **kwargs)
    fresh = forkserver.run(args, capture_output=True, text=True, timeout=60,
                           **{**kwargs, "env": {**kwargs.get("env", os.environ), "PYTHON_FORKSERVER": "0"}})
    return forked, fresh


def test_code_runs_as_in_a_fresh_process(tmp_path):
    env = {"ONLY_HERE": "yes", "PATH": os.environ["PATH"]}
    forked, fresh = both([sys.executable, "-c", SHOW, "3", "more"], cwd=tmp_path, env=env)
    shown = f'[["-c", "3", "more"], "__main__", null, "{tmp_path}", "yes", false]\n'
    assert (forked.returncode, forked.stdout, forked.stderr) == (fresh.returncode, fresh.stdout, fresh.stderr) == (
        3, shown, "to stderr\n")


def test_a_module_runs_as_main_with_its_exit_status_and_errors_as_python_gives_them(tmp_path):
    forked, fresh = both([sys.executable, "-m", "server.cli", "no-such-command"], cwd=ROOT)
    assert forked.returncode == fresh.returncode == 2 and forked.stderr == fresh.stderr != ""
    failing = "import sys; print('before'); sys.stdout.flush(); raise ValueError('broken on purpose')"
    forked, fresh = both([sys.executable, "-c", failing])
    assert forked.returncode == fresh.returncode == 1 and forked.stdout == fresh.stdout == "before\n"
    assert forked.stderr.splitlines()[-1] == fresh.stderr.splitlines()[-1] == "ValueError: broken on purpose"


def test_signals_waits_and_timeouts_as_popen(tmp_path):
    with open(tmp_path / "out", "wb") as out:
        process = forkserver.popen([sys.executable, "-c", "import time; print('up', flush=True); time.sleep(60)"],
                                   stdout=out, stderr=subprocess.STDOUT)
    assert process.poll() is None
    with pytest.raises(subprocess.TimeoutExpired):
        process.wait(timeout=0.05)
    deadline = time.monotonic() + 30
    while (tmp_path / "out").read_bytes() != b"up\n" and time.monotonic() < deadline:
        time.sleep(0.01)
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=30) == -signal.SIGTERM == process.poll()
    process.kill()  # gone already: nothing happens, as with Popen


def test_prometheus_client_s_value_class_follows_the_environment_of_its_first_use(tmp_path):
    """`serve` sets PROMETHEUS_MULTIPROC_DIR before it imports the client; the fork server imported
    it before: the values must still go to files."""
    code = ("import os, sys; os.environ['PROMETHEUS_MULTIPROC_DIR'] = sys.argv[1];"
            "from prometheus_client import CollectorRegistry, Counter;"
            "Counter('c', 'c', registry=CollectorRegistry()).inc(); print(sorted(os.listdir(sys.argv[1])))")
    forked, fresh = both([sys.executable, "-c", code, str(tmp_path)])
    assert forked.returncode == fresh.returncode == 0, forked.stderr
    assert forked.stdout.startswith("['counter_") and "db" in forked.stdout
