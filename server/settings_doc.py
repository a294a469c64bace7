"""What each environment variable of `Settings` (server/config.py) means, with its default as
the README shows it. The README's configuration table is this, printed by
`python -m server.settings_doc`; a test checks the two agree and that every setting is here."""

from __future__ import annotations

from server.config import DEFAULT_BREAKDOWNS, DEFAULT_FUNNELS

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
        "replicated `_local` tables with Distributed tables named as today's (docs/operations.md: A ClickHouse "
        "cluster). Not with the embedded engine.",
    ),
    "HOST": ("127.0.0.1", "Address `analytics-api serve` binds to (`--host` overrides)."),
    "PORT": ("18888", "Port `analytics-api serve` listens on (`--port` overrides)."),
    "WEB_CONCURRENCY": (
        "auto",
        "HTTP worker processes. On the embedded engine, N > 1 runs N workers that acknowledge into "
        "logs of their own plus one process that owns the engine and inserts them (ACK=log only; "
        "docs/operations.md: Several workers on one machine); with a ClickHouse server, N uvicorn workers. "
        "`auto`: every core used: one worker per core but one (the engine's) on the embedded engine, "
        "so on 2 cores one worker in front of the engine's process (1 core: a single process); one per "
        "core with a server and ACK=insert; 1 where several cannot work. `1` keeps a single process.",
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
    "RATE_LIMIT_IP_PER_SECOND": (
        "100.0",
        "Ingest requests a second one client address may send, on average (a token bucket; 0: no "
        "limit); past it, 429 with Retry-After. Loopback addresses are not limited (a local proxy "
        "should name its clients: FORWARDED_ALLOW_IPS).",
    ),
    "RATE_LIMIT_IP_BURST": ("500.0", "Ingest requests one address may send at once before its rate applies."),
    "RATE_LIMIT_KEY_PER_SECOND": (
        "0.0",
        "Ingest requests a second one write key may send, on average; 0 (the default): no limit per key.",
    ),
    "RATE_LIMIT_KEY_BURST": ("0.0", "Ingest requests one write key may send at once (0: as many as its rate)."),
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
    "BACKUP_DIR": (
        "$PWD/var/backups",
        "Where `POST /admin/backup` writes a running server's backups (one directory per name); "
        "`analytics-api backup PATH` (the server stopped) writes to PATH.",
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
    "MEMORY_TRIM_ABOVE_MB": (
        "470",
        "Embedded engine: once the process's resident memory is over this, the memory queries freed is "
        "given back to the system after each report request and every second (`SYSTEM JEMALLOC PURGE`, "
        "`engine_memory_purges_total`); below it the engine keeps it for the next queries, which then "
        "need not fault it in again (docs/performance.md). 0: after every report request.",
    ),
    "ROLLUP_ZONES": (
        "UTC",
        "Time zones (comma-separated IANA names) whose finished days of active users, new users, "
        "session length, revenue, REPORT_FUNNELS and REPORT_BREAKDOWNS the rollup job computes once "
        "and stores, for all apps and each app (docs/reports.md). Other zones and filters are "
        "computed per request.",
    ),
    "ROLLUP_INTERVAL_SECONDS": (
        "300",
        "How often the rollup job stores the days that are missing, older than a day, or touched by "
        "late events; 0 turns it off (reports then compute every day).",
    ),
    "ROLLUP_DAYS": ("400", "How many days back from today the rollup job keeps."),
    "STITCH_INTERVAL_SECONDS": (
        "10",
        "How often the stitch job decides new identity joins (identify, alias, an event naming both ids) "
        "and moves each joined id's events to its person, so every report counts people; 0 turns it off. "
        "Embedded engine only: with a ClickHouse server the other replicas' inserts would have to pause "
        "during a move (not built yet), so there reports count ids.",
    ),
    "IDENTITY_MERGE_IDENTIFIED": (
        "false",
        "`true` also takes a join whose anonymous side is already identified (another id was joined to "
        "it): two known users become one person. Otherwise such a join is refused and counted "
        "(`identity_merges_total{outcome=\"refused\"}`), as PostHog does.",
    ),
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


def markdown_table() -> str:
    rows = ["| variable | default | meaning |", "| --- | --- | --- |"]
    rows += [f"| `{name}` | `{default}` | {meaning} |" for name, (default, meaning) in SETTINGS_DOC.items()]
    return "\n".join(rows)


if __name__ == "__main__":
    print(markdown_table())
