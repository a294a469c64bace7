"""The one settings object: every environment variable the server reads, with its default.

Settings are read once, at start (`Settings.from_env()`), validated here with messages that
name the variable, and passed down explicitly. What each variable means, with its default, is in
server/settings_doc.py, from which the README's table is made (a test keeps them in step).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from functools import cache
from pathlib import Path
from urllib.parse import parse_qs, urlparse
from zoneinfo import available_timezones

__all__ = ["ConfigError", "Settings", "clickhouse_target", "known_zones", "parse_write_keys"]


@cache
def known_zones() -> frozenset[str]:
    """The IANA zone names ClickHouse knows, read once (a scan of the zoneinfo tree: ~12 ms): the
    canonical ones only, not the system's posix/ and right/ copies."""
    return frozenset(z for z in available_timezones() if not z.startswith(("posix/", "right/")))


class ConfigError(ValueError):
    """A setting has a value the server cannot use; the message names the variable."""


def default_clickhouse_url() -> str:
    return "chdb://" + str(Path.cwd() / "var" / "clickhouse")


def default_spool_dir() -> str:
    return str(Path.cwd() / "var" / "spool")


def default_log_dir(clickhouse_url: str) -> str:
    """Beside the embedded engine's data directory (`var/wal` next to `var/clickhouse`), one per
    database; with a ClickHouse server, under the working directory."""
    kind, database = clickhouse_target(clickhouse_url)
    if kind == "chdb" and urlparse(clickhouse_url).path.strip("/"):
        data = Path(urlparse(clickhouse_url).path)
        return str(data.parent / ("wal" if database == "default" else f"wal-{database}"))
    return str(Path.cwd() / "var" / "wal")


# The dashboard's funnel (server/web/app.js): its days are stored by default.
DEFAULT_FUNNELS = "view,start_task,finish_task,pay@3600"
MAX_STORED_WINDOW_SECONDS = 86_400
# The columns /reports/breakdown counts visitors by (server/reports/routes.py), and those whose
# days the rollup job stores by default (the dashboard's first choices).
BREAKDOWN_COLUMNS = ("browser", "os", "device_type", "country", "referrer_domain", "utm_source", "utm_medium",
                     "utm_campaign", "screen", "event", "app_id")
DEFAULT_BREAKDOWNS = "referrer_domain"

ACK_MODES = ("log", "insert")
LOG_LEVELS = ("debug", "info", "warning", "error")


@dataclass(frozen=True)
class Settings:
    clickhouse_url: str
    clickhouse_cluster: str = ""
    host: str = "127.0.0.1"
    port: int = 18888
    web_concurrency: int = 1
    prometheus_multiproc_dir: str = ""
    write_keys: str = ""
    read_token: str = ""
    allow_open_reads: bool = False
    admin_token: str = ""
    cors_origins: str = "*"
    forwarded_allow_ips: str = "127.0.0.1"
    body_timeout_seconds: float = 10.0
    rate_limit_ip_per_second: float = 100.0
    rate_limit_ip_burst: float = 500.0
    rate_limit_key_per_second: float = 0.0
    rate_limit_key_burst: float = 0.0
    ack: str = ""
    log_dir: str = ""
    log_max_bytes: int = 1_073_741_824
    log_batch_seconds: float = 1.0
    log_batch_max_rows: int = 50_000
    stop_timeout_seconds: float = 10.0
    spool_dir: str = ""
    backup_dir: str = ""
    sql_timeout_seconds: int = 10
    sql_max_rows: int = 1000
    sql_max_memory_bytes: int = 1_000_000_000
    sql_max_result_bytes: int = 100_000_000
    sql_concurrency: int = 2
    memory_trim_above_mb: int = 470
    rollup_zones: str = "UTC"
    rollup_interval_seconds: float = 300.0
    rollup_days: int = 400
    report_funnels: str = DEFAULT_FUNNELS
    report_breakdowns: str = DEFAULT_BREAKDOWNS
    stitch_interval_seconds: float = 10.0
    identity_merge_identified: bool = False
    clickhouse_http_user: str = "default"
    max_body_bytes: int = 1_048_576
    max_events_per_request: int = 10_000
    max_string_length: int = 1024
    max_props: int = 64
    max_future_seconds: int = 86_400
    min_event_year: int = 2000
    batch_max_rows: int = 5000
    batch_max_delay_ms: float = 0.0
    insert_concurrency: int = 1
    queue_max_rows: int = 200_000
    buffer_layers: int = 1
    buffer_min_seconds: int = 2
    buffer_max_seconds: int = 10
    buffer_min_rows: int = 10_000
    buffer_max_rows: int = 1_000_000
    buffer_min_bytes: int = 10_000_000
    buffer_max_bytes: int = 100_000_000
    log_level: str = "info"
    access_log: bool = False
    # Not a variable of its own: whether the embedded engine runs in a process of its own behind
    # the HTTP workers (server/process/group.py), from WEB_CONCURRENCY (N > 1, or `auto` on 2 or
    # more cores; `1` keeps a single process).
    engine_process: bool = field(default=False, metadata={"env": False})

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: object) -> Settings:
        """Build settings from environment variables; `overrides` win (tests, CLI flags)."""
        env = os.environ if environ is None else environ
        values: dict[str, object] = {}
        for one in fields(cls):
            name = one.name.upper()
            if one.name in overrides:
                values[one.name] = overrides[one.name]
                continue
            if not one.metadata.get("env", True):
                continue
            raw = env.get(name)
            if one.name == "web_concurrency" and (raw or "auto").strip().lower() == "auto":
                values[one.name] = AUTO_WORKERS  # resolved below, once the target and ACK are known
                continue
            if raw is None or raw == "":
                if one.name == "clickhouse_url":
                    values[one.name] = default_clickhouse_url()
                if one.name == "spool_dir":
                    values[one.name] = default_spool_dir()
                if one.name == "backup_dir":
                    values[one.name] = str(Path.cwd() / "var" / "backups")
                if one.name == "log_dir":
                    values[one.name] = ""  # filled below, from CLICKHOUSE_URL
                continue
            values[one.name] = _convert(name, raw, one.default)
        settings = cls(**values)  # type: ignore[arg-type]
        if settings.web_concurrency == AUTO_WORKERS:
            settings = replace(settings, web_concurrency=auto_workers(settings), engine_process=auto_engine_process(settings))
        if settings.web_concurrency > 1 and settings.embedded:
            settings = replace(settings, engine_process=True)
        settings.check()
        if not settings.log_dir:
            settings = replace(settings, log_dir=default_log_dir(settings.clickhouse_url))
        return settings

    def check(self) -> None:
        """Reject values that cannot work, naming the variable."""
        positive = [
            "port", "web_concurrency", "body_timeout_seconds", "log_max_bytes", "log_batch_max_rows", "sql_timeout_seconds",
            "sql_max_rows", "sql_max_memory_bytes", "sql_max_result_bytes", "sql_concurrency", "max_body_bytes",
            "max_events_per_request", "max_string_length",
            "batch_max_rows", "insert_concurrency", "queue_max_rows", "buffer_layers", "buffer_max_seconds",
            "buffer_max_rows", "buffer_max_bytes",
        ]
        for name in positive:
            if getattr(self, name) <= 0:
                raise ConfigError(f"{name.upper()} must be greater than 0, got {getattr(self, name)}")
        non_negative = [
            "max_props", "max_future_seconds", "rate_limit_ip_per_second", "rate_limit_ip_burst",
            "rate_limit_key_per_second", "rate_limit_key_burst", "batch_max_delay_ms", "log_batch_seconds",
            "stop_timeout_seconds",
            "rollup_interval_seconds", "rollup_days", "stitch_interval_seconds", "memory_trim_above_mb",
            "buffer_min_seconds",
            "buffer_min_rows", "buffer_min_bytes",
        ]
        for name in non_negative:
            if getattr(self, name) < 0:
                raise ConfigError(f"{name.upper()} must not be negative, got {getattr(self, name)}")
        for low, high in (("min_seconds", "max_seconds"), ("min_rows", "max_rows"), ("min_bytes", "max_bytes")):
            if getattr(self, f"buffer_{low}") > getattr(self, f"buffer_{high}"):
                raise ConfigError(f"BUFFER_{low.upper()} must not exceed BUFFER_{high.upper()}")
        if self.ack and self.ack not in ACK_MODES:
            raise ConfigError(f"ACK must be one of {', '.join(ACK_MODES)}, got {self.ack!r}")
        if self.log_level not in LOG_LEVELS:
            raise ConfigError(f"LOG_LEVEL must be one of {', '.join(LOG_LEVELS)}, got {self.log_level!r}")
        if not 1970 <= self.min_event_year <= 9999:
            raise ConfigError(f"MIN_EVENT_YEAR must be between 1970 and 9999, got {self.min_event_year}")
        for zone in self.zones:
            if zone not in known_zones():
                raise ConfigError(f"ROLLUP_ZONES: {zone!r} is not an IANA time zone name")
        parse_funnels(self.report_funnels)  # raises ConfigError naming the variable
        self.breakdowns  # noqa: B018 (raises ConfigError naming the variable)
        clickhouse_target(self.clickhouse_url)
        parse_write_keys(self.write_keys)  # raises ConfigError naming the variable
        if self.read_token and len(self.read_token) < 8:
            raise ConfigError("READ_TOKEN must be at least 8 characters")
        if self.admin_token and len(self.admin_token) < 16:
            raise ConfigError("ADMIN_TOKEN must be at least 16 characters")
        if self.clickhouse_cluster and self.embedded:
            raise ConfigError("CLICKHOUSE_CLUSTER needs a ClickHouse server (CLICKHOUSE_URL=http://…), not the embedded engine")
        if self.clickhouse_cluster and not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", self.clickhouse_cluster):
            raise ConfigError(f"CLICKHOUSE_CLUSTER {self.clickhouse_cluster!r} must be a plain identifier")
        if self.web_concurrency > 1 and self.embedded and self.ack_mode != "log":
            raise ConfigError(
                f"WEB_CONCURRENCY={self.web_concurrency} on the embedded engine needs ACK=log: the workers write "
                "logs that the one process owning the engine inserts"
            )
        if self.web_concurrency > 1 and not self.embedded and self.ack_mode == "log":
            raise ConfigError(
                f"WEB_CONCURRENCY={self.web_concurrency} with ACK=log: one process per log directory; "
                "run one worker per LOG_DIR, or ACK=insert"
            )

    @property
    def ack_mode(self) -> str:
        """ACK, or its default for the target: `log` on the embedded engine, `insert` with a server."""
        return self.ack or ("log" if self.embedded else "insert")

    @property
    def database(self) -> str:
        return clickhouse_target(self.clickhouse_url)[1]

    @property
    def embedded(self) -> bool:
        return self.clickhouse_url.startswith("chdb:")

    @property
    def zones(self) -> tuple[str, ...]:
        """ROLLUP_ZONES as names, in order, without repeats."""
        return tuple(dict.fromkeys(z.strip() for z in self.rollup_zones.split(",") if z.strip()))

    @property
    def breakdowns(self) -> tuple[str, ...]:
        """REPORT_BREAKDOWNS as column names, in order, without repeats."""
        found = tuple(dict.fromkeys(c.strip() for c in self.report_breakdowns.split(",") if c.strip() not in ("", "none")))
        for column in found:
            if column not in BREAKDOWN_COLUMNS:
                raise ConfigError(f"REPORT_BREAKDOWNS: {column!r} is not one of {', '.join(BREAKDOWN_COLUMNS)}")
        return found

    @property
    def funnels(self) -> tuple[tuple[tuple[str, ...], int], ...]:
        """REPORT_FUNNELS as (steps, window seconds), in order, without repeats."""
        return parse_funnels(self.report_funnels)


def parse_funnels(text: str) -> tuple[tuple[tuple[str, ...], int], ...]:
    """REPORT_FUNNELS is `step,step,…@window;…` (or `none`): (steps, window seconds) pairs."""
    found: dict[tuple[tuple[str, ...], int], None] = {}
    for item in (f.strip() for f in text.split(";")):
        if not item or item == "none":
            continue
        steps_text, at, window_text = item.rpartition("@")
        steps = tuple(s.strip() for s in steps_text.split(","))
        if not at or not window_text.strip().isdigit() or not 1 <= int(window_text) <= MAX_STORED_WINDOW_SECONDS:
            raise ConfigError(f"REPORT_FUNNELS: {item!r} must end with @ and a window of 1 to "
                              f"{MAX_STORED_WINDOW_SECONDS} seconds")
        if not 2 <= len(steps) <= 10 or not all(steps) or len(set(steps)) != len(steps):
            raise ConfigError(f"REPORT_FUNNELS: {item!r} must name 2 to 10 different events separated by commas")
        found[steps, int(window_text)] = None
    return tuple(found)


def parse_write_keys(write_keys: str) -> tuple[tuple[str, bytes], ...]:
    """WRITE_KEYS is `app_id:key,app_id:key` (`*:key` for any app): (app_id, key) pairs."""
    pairs: list[tuple[str, bytes]] = []
    for item in filter(None, (part.strip() for part in write_keys.split(","))):
        app_id, sep, key = item.partition(":")
        if not sep or not app_id.strip() or len(key.strip()) < 8:
            raise ConfigError("WRITE_KEYS entries must be app_id:key with a key of at least 8 characters "
                              f"(entry {len(pairs) + 1} is not)")
        pairs.append((app_id.strip(), key.strip().encode()))
    return tuple(pairs)


def clickhouse_target(url: str) -> tuple[str, str]:
    """Split CLICKHOUSE_URL into (kind, database); kind is 'chdb' or 'http'."""
    parsed = urlparse(url)
    if parsed.scheme == "chdb":
        if parsed.netloc and parsed.netloc not in ("memory", ":memory:"):
            raise ConfigError(
                f"CLICKHOUSE_URL {url!r}: an embedded path must be absolute, as chdb:///abs/path"
            )
        database = parse_qs(parsed.query).get("database", ["default"])[0]
        if parsed.netloc and parsed.path.strip("/"):
            database = parsed.path.strip("/").split("/")[0]
        return "chdb", _check_database(url, database)
    if parsed.scheme in ("http", "https"):
        if not parsed.hostname:
            raise ConfigError(f"CLICKHOUSE_URL {url!r} names no host")
        database = parsed.path.strip("/").split("/")[0] or "default"
        return "http", _check_database(url, database)
    raise ConfigError(f"CLICKHOUSE_URL must start with chdb://, http:// or https://, got {url!r}")


def _check_database(url: str, database: str) -> str:
    if not database.replace("_", "").isalnum():
        raise ConfigError(f"CLICKHOUSE_URL {url!r}: database name {database!r} must be letters, digits and _")
    return database


def _convert(name: str, raw: str, default: object) -> object:
    if isinstance(default, bool):
        lowered = raw.strip().lower()
        if lowered in ("1", "true", "yes", "on"):
            return True
        if lowered in ("0", "false", "no", "off"):
            return False
        raise ConfigError(f"{name} must be true or false, got {raw!r}")
    if isinstance(default, int):
        try:
            return int(raw)
        except ValueError:
            raise ConfigError(f"{name} must be a whole number, got {raw!r}") from None
    if isinstance(default, float):
        try:
            return float(raw)
        except ValueError:
            raise ConfigError(f"{name} must be a number, got {raw!r}") from None
    return raw.strip()


AUTO_WORKERS = 0  # WEB_CONCURRENCY=auto (the default), until resolved


def auto_workers(settings: Settings) -> int:
    """WEB_CONCURRENCY=auto: every core used. On the embedded engine with ACK=log, one HTTP worker
    per core but one, which the engine's process takes (2 cores: one worker and the engine's
    process; 1 core: a single process); with a ClickHouse server and ACK=insert, one per core. One
    where several cannot work (the embedded engine with ACK=insert, a server with ACK=log: one log
    directory per process)."""
    if settings.ack_mode != ("log" if settings.embedded else "insert"):
        return 1
    return max(1, _cores() - 1) if settings.embedded else _cores()


def auto_engine_process(settings: Settings) -> bool:
    """WEB_CONCURRENCY=auto: the embedded engine in a process of its own (ACK=log), from 2 cores on."""
    return settings.embedded and settings.ack_mode == "log" and _cores() > 1


def _cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
