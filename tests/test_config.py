"""Settings from the environment, and the README's configuration table kept in step with them."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import threading
from dataclasses import fields
from pathlib import Path

import pytest

from server.config import ConfigError, Settings
from server.settings_doc import SETTINGS_DOC, markdown_table
from tests import forkserver
from tests.servers import ROOT, free_port, output, start_server

README = Path(__file__).resolve().parent.parent / "README.md"


def test_defaults():
    settings = Settings.from_env({})
    assert settings.clickhouse_url.startswith("chdb:///") and settings.clickhouse_url.endswith("/var/clickhouse")
    assert (settings.host, settings.port, settings.max_body_bytes) == ("127.0.0.1", 18888, 1_048_576)
    assert settings.database == "default" and settings.embedded


def test_environment_values_are_converted():
    settings = Settings.from_env({"PORT": "9000", "ACCESS_LOG": "yes", "BATCH_MAX_DELAY_MS": "1.5",
                                  "CLICKHOUSE_URL": "http://u:p@ch:8123/analytics"})
    assert (settings.port, settings.access_log, settings.batch_max_delay_ms) == (9000, True, 1.5)
    assert settings.database == "analytics" and not settings.embedded


@pytest.mark.parametrize(
    "env,named",
    [
        ({"PORT": "http"}, "PORT"),
        ({"MAX_BODY_BYTES": "0"}, "MAX_BODY_BYTES"),
        ({"ACCESS_LOG": "maybe"}, "ACCESS_LOG"),
        ({"ACK": "never"}, "ACK"),
        ({"BUFFER_MIN_ROWS": "10", "BUFFER_MAX_ROWS": "5"}, "BUFFER_MIN_ROWS"),
        ({"CLICKHOUSE_URL": "postgres://x"}, "CLICKHOUSE_URL"),
        ({"CLICKHOUSE_URL": "chdb://relative/path"}, "CLICKHOUSE_URL"),
        ({"CLICKHOUSE_URL": "http://h:8123/bad-name"}, "CLICKHOUSE_URL"),
        ({"ROLLUP_ZONES": "UTC,Mars/Olympus"}, "ROLLUP_ZONES"),
    ],
)
def test_bad_values_name_the_variable(env, named):
    with pytest.raises(ConfigError, match=named):
        Settings.from_env(env)


def test_every_setting_is_documented_in_config_and_readme():
    names = {f.name.upper() for f in fields(Settings) if f.metadata.get("env", True)}
    assert names == set(SETTINGS_DOC)
    table = README.read_text()
    assert markdown_table() in table, "README's configuration table is not `python -m server.settings_doc`'s output"
    for name, (default, _) in SETTINGS_DOC.items():
        row = re.search(rf"^\| `{name}` \| `([^`]*)` \|", table, re.MULTILINE)
        assert row, f"README's configuration table lacks {name}"
        assert row.group(1) == default, f"README gives {name} the default {row.group(1)!r}, config says {default!r}"


def test_the_readme_is_short_and_starts_with_the_two_commands():
    text = README.read_text()
    assert text.count("\n") <= 300
    first_section = text[text.index("\n## "):].split("\n## ")[1]
    assert first_section.startswith("The two commands") and "make run" in first_section and "make test" in first_section
    for doc in ("api", "reports", "architecture", "operations", "performance", "sdks"):
        assert f"(docs/{doc}.md)" in text and (README.parent / "docs" / f"{doc}.md").exists()


def test_documented_defaults_match_the_dataclass():
    defaults = Settings.from_env({})
    for field in fields(Settings):
        if not field.metadata.get("env", True):
            continue
        documented = SETTINGS_DOC[field.name.upper()][0]
        if field.name in ("clickhouse_url", "spool_dir", "log_dir", "ack", "backup_dir"):
            continue
        if field.name == "web_concurrency":  # `auto`: test_web_concurrency_auto_uses_every_core
            assert documented == "auto"
            continue
        value = getattr(defaults, field.name)
        if documented == "(unset)":
            assert value == "", field.name
            continue
        shown = str(value).lower() if isinstance(value, bool) else str(value)
        assert shown == documented or float(shown) == float(documented), field.name


def test_ack_defaults_to_the_log_on_the_embedded_engine_and_to_insert_with_a_server():
    assert Settings.from_env({}).ack_mode == "log"
    assert Settings.from_env({"CLICKHOUSE_URL": "http://ch:8123/db"}).ack_mode == "insert"
    assert Settings.from_env({"CLICKHOUSE_URL": "http://ch:8123/db", "ACK": "log"}).ack_mode == "log"
    with pytest.raises(ConfigError, match="ACK=log: one process per log directory"):
        Settings.from_env({"CLICKHOUSE_URL": "http://ch:8123/db", "ACK": "log", "WEB_CONCURRENCY": "2"})


@pytest.mark.parametrize("cores", [1, 2, 8])
def test_web_concurrency_auto_uses_every_core(monkeypatch, cores):
    """The default: one worker per core but the engine's on the embedded engine (ACK=log), with the
    engine in its own process from 2 cores on; one per core with a server (ACK=insert), one where
    several cannot work; `1` keeps one process."""
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(cores)))
    server = {"CLICKHOUSE_URL": "http://ch:8123/db"}
    shape = {name: (s.web_concurrency, s.engine_process) for name, s in {
        "default": Settings.from_env({}), "auto": Settings.from_env({"WEB_CONCURRENCY": "auto"}),
        "insert": Settings.from_env({"ACK": "insert"}), "server": Settings.from_env(server),
        "server log": Settings.from_env({**server, "ACK": "log"}), "1": Settings.from_env({"WEB_CONCURRENCY": "1"}),
        "2": Settings.from_env({"WEB_CONCURRENCY": "2"})}.items()}
    assert shape == {"default": (max(1, cores - 1), cores > 1), "auto": (max(1, cores - 1), cores > 1),
                     "insert": (1, False), "server": (cores, False), "server log": (1, False), "1": (1, False),
                     "2": (2, True)}


def test_several_workers_on_the_embedded_engine_need_the_log():
    assert Settings.from_env({"WEB_CONCURRENCY": "2"}).web_concurrency == 2  # a group: workers and an engine process
    with pytest.raises(ConfigError, match="WEB_CONCURRENCY=2 on the embedded engine needs ACK=log"):
        Settings.from_env({"WEB_CONCURRENCY": "2", "ACK": "insert"})
    assert Settings.from_env({"WEB_CONCURRENCY": "2", "CLICKHOUSE_URL": "http://ch:8123/db"}).web_concurrency == 2


def serve(port: int, **env: str) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if k not in ("CLICKHOUSE_URL", "LOG_DIR")}
    return forkserver.run([sys.executable, "-m", "server.cli", "serve", "--port", str(port)], cwd=ROOT,
                          env={**environ, **env}, capture_output=True, text=True, timeout=60)


def one_line_naming(result: subprocess.CompletedProcess[str], setting: str) -> str:
    assert result.returncode == 2, result.stderr
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr, result.stderr
    assert setting in result.stderr, result.stderr
    return result.stderr


@pytest.mark.parametrize(("env", "setting"), [
    ({"CLICKHOUSE_URL": "chdb:///proc/analytics"}, "CLICKHOUSE_URL"),
    ({"CLICKHOUSE_URL": "chdb:relative/dir"}, "CLICKHOUSE_URL"),
    ({"CLICKHOUSE_URL": "http://127.0.0.1:1"}, "CLICKHOUSE_URL"),
    ({"LOG_DIR": "/proc/analytics-wal"}, "LOG_DIR"),
    ({"ACK": "sometimes"}, "ACK"),
])
def test_an_unusable_environment_is_one_line_naming_the_setting_and_exit_2(tmp_path, env, setting):
    env = {"CLICKHOUSE_URL": f"chdb://{tmp_path}/clickhouse", **env}
    one_line_naming(serve(free_port(), **env), setting)


def test_a_port_let_go_moments_after_the_start_is_taken_not_refused(tmp_path):
    """What a restart right after a crash can find: the dead server's workers, dying with it, still
    holding the port for some milliseconds (here ~0.5 s past the check). The start waits up to 1 s for it."""
    port = free_port()
    taken = socket.socket()
    taken.bind(("127.0.0.1", port))
    taken.listen()
    threading.Timer(0.9, taken.close).start()
    server = start_server(tmp_path / "clickhouse", port)
    server.terminate()
    server.wait(timeout=60)
    assert "in use" not in output(server)


def test_a_port_in_use_and_a_data_directory_in_use_are_found_before_migrating(tmp_path):
    port = free_port()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", port))
        taken.listen()
        message = one_line_naming(serve(port, CLICKHOUSE_URL=f"chdb://{tmp_path}/other"), "PORT")
        assert "in use" in message
    assert not (tmp_path / "other").exists()  # nothing was created: found before migrating
    running = start_server(tmp_path / "clickhouse", free_port())
    try:
        message = one_line_naming(serve(free_port(), CLICKHOUSE_URL=f"chdb://{tmp_path}/clickhouse"), "CLICKHOUSE_URL")
        assert "in use by another process" in message
    finally:
        running.terminate()
        running.wait(timeout=60)
