"""The one settings object: every environment variable the server reads, with its default.

Settings are read once, at start (`Settings.from_env()`), validated here with messages that
name the variable, and passed down explicitly. The README's configuration table is checked
against `SETTINGS_DOC` by a test, so the two cannot drift apart.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from pathlib import Path
from urllib.parse import parse_qs, urlparse
from zoneinfo import available_timezones

from server.errors import ConfigError

__all__ = ["ConfigError", "Settings", "SETTINGS_DOC", "clickhouse_target", "parse_write_keys"]


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

# name -> (default, description). The order is the README's order.
SETTINGS_DOC: dict[str, tuple[str, str]] = {
    "CLICKHOUSE_URL": (
        "chdb://$PWD/var/clickhouse",
        "Where ClickHouse is: `chdb:///abs/path` (embedded engine, data in that directory; "
        "add `?database=NAME` for a database other than `default`) or "
        "`http://user:pass@host:8123/db` (a ClickHouse server).",
    ),
    "CLICKHOUSE_CLUSTER": (
        "(unset)",
        "A ClickHouse server's cluster name (`remote_servers`): migrations create `ON CLUSTER` "
        "replicated `_local` tables with Distributed tables named as today's (README: A ClickHouse "
        "cluster). Not with the embedded engine.",
    ),
    "HOST": ("127.0.0.1", "Address `analytics-api serve` binds to (`--host` overrides)."),
    "PORT": ("18888", "Port `analytics-api serve` listens on (`--port` overrides)."),
    "WEB_CONCURRENCY": (
        "1",
        "HTTP worker processes. On the embedded engine, N > 1 runs N workers that acknowledge into "
        "logs of their own plus one process that owns the engine and inserts them (ACK=log only; "
        "README: Several workers on one machine); with a ClickHouse server, N uvicorn workers.",
    ),
    "PROMETHEUS_MULTIPROC_DIR": (
        "(unset)",
        "prometheus-client's multiprocess directory, so that `/metrics` covers every worker. "
        "With WEB_CONCURRENCY > 1, `serve` creates it (a temporary directory when unset) and "
        "empties it at start; processes started separately may share one to report together.",
    ),
    "WRITE_KEYS": (
        "(unset)",
        "Write keys for the ingest routes, `app_id:key,app_id:key` (`*:key` for any app); a key "
        "writes only its app's events. Unset: ingest is open (logged at start).",
    ),
    "READ_TOKEN": (
        "(unset)",
        "Token for the report and SQL routes, and the password of `/clickhouse/`. Unset: they are open "
        "(logged at start), and `serve` on a non-loopback HOST refuses to start (ALLOW_OPEN_READS).",
    ),
    "ALLOW_OPEN_READS": (
        "false",
        "`true` lets `serve` bind a non-loopback HOST without READ_TOKEN, the reports, `POST /sql` and "
        "`/clickhouse/` then open to anyone who reaches it. Otherwise such a start is refused (one line "
        "naming READ_TOKEN), as Redis's protected mode does.",
    ),
    "ADMIN_TOKEN": (
        "(unset)",
        "Token for `DELETE /users/{user_id}` (erasing a user's events everywhere); the write keys and the "
        "read token cannot. Unset: erasure over HTTP is disabled (`analytics-api erase` still works).",
    ),
    "CORS_ORIGINS": (
        "*",
        "Origins whose pages may send events from a browser (CORS on the ingest routes, preflight "
        "included): `*` for any, or a comma-separated list such as `https://shop.example,https://blog.example`.",
    ),
    "FORWARDED_ALLOW_IPS": (
        "127.0.0.1",
        "Proxies trusted to name the client: from these peers uvicorn takes the client IP from "
        "`X-Forwarded-For` (comma-separated addresses or networks, `*` for any). The IP gives the "
        "country and the visitor id and is stored nowhere.",
    ),
    "BODY_TIMEOUT_SECONDS": (
        "10",
        "Longest time a client may take to send a request body; slower gets 408.",
    ),
    "ACK": (
        "(by target)",
        "When a 202 is sent. `log`: once the events are fdatasync'd in the local write-ahead log "
        "(LOG_DIR), from which batches go into `events` exactly once; survives SIGKILL and power loss. "
        "`insert`: once the INSERT into the Buffer table `events_buffer` returned (no local state, for "
        "stateless replicas in front of a ClickHouse server). Default: `log` on the embedded engine, "
        "`insert` with a ClickHouse server.",
    ),
    "LOG_DIR": (
        "(beside the data)",
        "ACK=log: the write-ahead log's directory, locked by one process: `wal` beside the embedded "
        "data directory (`$PWD/var/wal` by default; `wal-<database>` for another database), "
        "`$PWD/var/wal` with a ClickHouse server.",
    ),
    "LOG_MAX_BYTES": (
        "1073741824",
        "ACK=log: most bytes of the log not yet in ClickHouse (an outage fills it); past it requests "
        "get 503 with Retry-After.",
    ),
    "LOG_BATCH_SECONDS": (
        "1",
        "ACK=log: how long the consumer gathers rows for one INSERT into `events` while rows arrive "
        "(reports lag by about this much).",
    ),
    "LOG_BATCH_MAX_ROWS": ("50000", "ACK=log: most rows in one INSERT from the log."),
    "STOP_TIMEOUT_SECONDS": (
        "10",
        "At SIGTERM/SIGINT: how long the log's consumer may go on inserting; what is left stays in "
        "the log for the next start.",
    ),
    "SPOOL_DIR": (
        "$PWD/var/spool",
        "Where an earlier version kept its outage spool. At start, what a spool there holds is moved "
        "into the log (ACK=log) or ClickHouse (ACK=insert), each event once, and the files deleted.",
    ),
    "SQL_TIMEOUT_SECONDS": (
        "10",
        "Client SQL (`POST /sql`, `/clickhouse/`): ClickHouse's `max_execution_time` for a query.",
    ),
    "SQL_MAX_ROWS": ("1000", "SQL console (`POST /sql`): most rows returned; the answer says when it was cut."),
    "SQL_MAX_MEMORY_BYTES": (
        "1000000000",
        "Client SQL: ClickHouse's `max_memory_usage` for a query; a query that needs more is stopped.",
    ),
    "SQL_MAX_RESULT_BYTES": (
        "100000000",
        "`/clickhouse/`: ClickHouse's `max_result_bytes`; a larger result is an error, not a cut answer.",
    ),
    "SQL_CONCURRENCY": ("2", "Client SQL: queries run at once (per service); more wait their turn."),
    "ROLLUP_ZONES": (
        "UTC",
        "Time zones (comma-separated IANA names) whose finished days of active users, new users, "
        "session length, revenue, REPORT_FUNNELS and REPORT_BREAKDOWNS the rollup job computes once "
        "and stores, for all apps and each app (README: Reports). Other zones and filters are "
        "computed per request.",
    ),
    "ROLLUP_INTERVAL_SECONDS": (
        "300",
        "How often the rollup job stores the days that are missing, older than a day, or touched by "
        "late events; 0 turns it off (reports then compute every day).",
    ),
    "ROLLUP_DAYS": ("400", "How many days back from today the rollup job keeps."),
    "REPORT_FUNNELS": (
        DEFAULT_FUNNELS,
        "Funnels whose finished days the rollup job stores, per user, for each zone of ROLLUP_ZONES "
        "and all apps and each app (`;`-separated, each `step,step,…@window seconds`, window at most "
        "86400); `/reports/funnel` with the same steps and window reads them. `none`: no funnel.",
    ),
    "REPORT_BREAKDOWNS": (
        DEFAULT_BREAKDOWNS,
        "Columns whose finished days of visitors and events per value the rollup job stores, per "
        "user, for each zone of ROLLUP_ZONES and all apps and each app (comma-separated, of "
        "`/reports/breakdown`'s `by`); a breakdown by one of them without an `event` reads them. "
        "`none`: no column.",
    ),
    "CLICKHOUSE_HTTP_USER": (
        "default",
        "`/clickhouse/`: the user name ClickHouse clients log in with (the password is READ_TOKEN).",
    ),
    "MAX_BODY_BYTES": ("1048576", "Largest request body, after gzip decoding; larger gets 413."),
    "MAX_EVENTS_PER_REQUEST": ("10000", "Most events in one request; more gets 413."),
    "MAX_STRING_LENGTH": ("1024", "Longest string field or property value, in characters; longer gets 422."),
    "MAX_PROPS": ("64", "Most properties (`props` plus unknown top-level fields) per event."),
    "MAX_FUTURE_SECONDS": ("86400", "How far ahead of the server clock an event time may be."),
    "MIN_EVENT_YEAR": ("2000", "Events dated before 1 January of this year are rejected."),
    "BATCH_MAX_ROWS": ("5000", "ACK=insert, group commit: an INSERT is sent once this many rows wait."),
    "BATCH_MAX_DELAY_MS": (
        "0",
        "ACK=insert, group commit: how long a batch may wait for more rows while an insert slot is free. "
        "0 sends at once; rows gather anyway while inserts are in flight.",
    ),
    "INSERT_CONCURRENCY": (
        "1",
        "ACK=insert, group commit: how many INSERTs may be in flight at once. 1 makes the largest batches "
        "(best on the embedded engine); 2-4 hide network latency to a ClickHouse server.",
    ),
    "QUEUE_MAX_ROWS": (
        "200000",
        "ACK=insert, backpressure: most rows waiting for an insert; past it requests get 503 with Retry-After.",
    ),
    "BUFFER_LAYERS": ("1", "Buffer table `num_layers`."),
    "BUFFER_MIN_SECONDS": ("2", "Buffer table `min_time`: flush when all minimums are met."),
    "BUFFER_MAX_SECONDS": ("10", "Buffer table `max_time`: flush when any maximum is reached."),
    "BUFFER_MIN_ROWS": ("10000", "Buffer table `min_rows`."),
    "BUFFER_MAX_ROWS": ("1000000", "Buffer table `max_rows`."),
    "BUFFER_MIN_BYTES": ("10000000", "Buffer table `min_bytes`."),
    "BUFFER_MAX_BYTES": ("100000000", "Buffer table `max_bytes`."),
    "LOG_LEVEL": ("info", "Log level: debug, info, warning, error."),
    "ACCESS_LOG": ("false", "`true` logs a line per request (off by default: it costs throughput)."),
}

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
    ack: str = ""
    log_dir: str = ""
    log_max_bytes: int = 1_073_741_824
    log_batch_seconds: float = 1.0
    log_batch_max_rows: int = 50_000
    stop_timeout_seconds: float = 10.0
    spool_dir: str = ""
    sql_timeout_seconds: int = 10
    sql_max_rows: int = 1000
    sql_max_memory_bytes: int = 1_000_000_000
    sql_max_result_bytes: int = 100_000_000
    sql_concurrency: int = 2
    rollup_zones: str = "UTC"
    rollup_interval_seconds: float = 300.0
    rollup_days: int = 400
    report_funnels: str = DEFAULT_FUNNELS
    report_breakdowns: str = DEFAULT_BREAKDOWNS
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

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: object) -> Settings:
        """Build settings from environment variables; `overrides` win (tests, CLI flags)."""
        env = os.environ if environ is None else environ
        values: dict[str, object] = {}
        for field in fields(cls):
            name = field.name.upper()
            if field.name in overrides:
                values[field.name] = overrides[field.name]
                continue
            raw = env.get(name)
            if raw is None or raw == "":
                if field.name == "clickhouse_url":
                    values[field.name] = default_clickhouse_url()
                if field.name == "spool_dir":
                    values[field.name] = default_spool_dir()
                if field.name == "log_dir":
                    values[field.name] = ""  # filled below, from CLICKHOUSE_URL
                continue
            values[field.name] = _convert(name, raw, field.default)
        settings = cls(**values)  # type: ignore[arg-type]
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
            "max_props", "max_future_seconds", "batch_max_delay_ms", "log_batch_seconds", "stop_timeout_seconds",
            "rollup_interval_seconds", "rollup_days",
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
            if zone not in available_timezones():
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
