"""The one read-only query service: every query a client sends (`POST /sql`, `/clickhouse/`) runs
here, and only here.

A query goes through three steps, each on the engine:
1. `SELECT formatQuery({q:String})`: the query text travels as a bound parameter, so nothing of
   it runs; ClickHouse's parser accepts exactly one statement (chDB would otherwise run every
   statement of a `;`-separated text) and writes it back in canonical form;
2. `EXPLAIN AST <canonical statement>`: the parse tree, which server/query/policy.py reads to
   refuse writes, DDL, `SET`/`SETTINGS`, `INTO OUTFILE` and functions that reach files, processes
   or the network;
3. the canonical statement itself, on a session with `readonly=1` (set last), `max_execution_time`,
   `max_memory_usage` and a result bound (`max_result_rows` or `max_result_bytes`).

The engine itself is confined too (server/store/db.py): its `user_files_path`, `user_scripts_path` and
`format_schema_path` point at an empty directory of the server's own. (chDB, like clickhouse-local,
still lets `file()` read absolute paths: that is why step 2 exists.)

After any error a client is closed (a new one is made at the next use): chDB leaves the unread output of a query stopped
mid-way (a result limit, a timeout) in its connection and hands it to the next query (measured:
the next `SELECT 2` returned random bytes of the stopped query).
"""

from __future__ import annotations

import asyncio
import queue
import re
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from clickhouse_connect.driver.client import Client
from clickhouse_connect.driver.exceptions import DatabaseError

from server.query import policy as query_policy

PLACEHOLDER = re.compile(r"\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*:")
WRAPPER_SCOPE = re.compile(r"[.\s:]*In scope SELECT formatQuery\(.*\)\.(?= \()", re.DOTALL)
VERSION = re.compile(r" \(version [^)]*\)")
REPEATED_PREFIX = re.compile(r"^(Code: \d+\. DB::Exception: )\1")


class QueryRefused(Exception):
    """The query was not run, or ClickHouse stopped it. `text` is ClickHouse's own wording,
    `Code: N. DB::Exception: … (NAME)`, as clients of ClickHouse expect to show it."""

    def __init__(self, code: int, name: str, text: str):
        super().__init__(text)
        self.code = code
        self.name = name
        self.text = text

    @classmethod
    def of(cls, refusal: query_policy.Refusal) -> QueryRefused:
        return cls(refusal.code, refusal.name, f"Code: {refusal.code}. DB::Exception: {refusal.message}. ({refusal.name})")

    @classmethod
    def from_engine(cls, error: DatabaseError) -> QueryRefused:
        code = int(error.code or 1000)
        name = error.name or "UNKNOWN_EXCEPTION"
        text = WRAPPER_SCOPE.sub(".", str(error).strip())
        text = VERSION.sub("", text)
        text = REPEATED_PREFIX.sub(r"\1", text)
        text = text.replace(f"({name}). ({name})", f"({name})")
        if not text.startswith("Code: "):
            text = f"Code: {code}. DB::Exception: {text}. ({name})"
        return cls(code, name, text)


@dataclass(frozen=True)
class Checked:
    """A statement the policy allows: its canonical text, its FORMAT clause (None without one),
    and the query parameters it uses."""

    sql: str
    output_format: str | None
    parameters: dict[str, str]


@dataclass(frozen=True)
class Rows:
    columns: list[str]
    types: list[str]
    rows: list[list[Any]]
    truncated: bool
    elapsed_ms: float


@dataclass(frozen=True)
class RawAnswer:
    body: bytes
    output_format: str
    elapsed_seconds: float


@dataclass(frozen=True)
class Limits:
    """ClickHouse settings of every session of a service; `readonly` is always added last."""

    max_execution_time: int
    max_memory_usage: int
    max_result_rows: int = 0
    max_result_bytes: int = 0
    result_overflow_mode: str = "throw"

    def client_settings(self) -> dict[str, Any]:
        settings: dict[str, Any] = {
            "max_execution_time": self.max_execution_time,
            "max_memory_usage": self.max_memory_usage,
            "result_overflow_mode": self.result_overflow_mode,
        }
        if self.max_result_rows:
            settings["max_result_rows"] = self.max_result_rows
        if self.max_result_bytes:
            settings["max_result_bytes"] = self.max_result_bytes
        settings["readonly"] = 1  # last: once set, the session may change no setting
        return settings


# Settings a client may send with a query (URL parameters of /clickhouse/): the limits, only to
# tighten them, and output settings that name no file. They make a session of their own for that
# query, with `readonly=1` still set last.
LIMIT_SETTINGS = ("max_execution_time", "max_memory_usage", "max_result_rows", "max_result_bytes")
OUTPUT_SETTINGS = frozenset({
    "result_overflow_mode", "max_block_size", "max_rows_to_read", "max_bytes_to_read", "max_threads",
    "session_timezone", "date_time_output_format", "output_format_decimal_trailing_zeros",
    "output_format_json_quote_64bit_integers", "output_format_json_quote_64bit_floats",
    "output_format_json_quote_denormals", "output_format_json_quote_decimals",
    "output_format_json_named_tuples_as_objects", "output_format_json_array_of_rows",
    "output_format_json_validate_utf8", "output_format_write_statistics", "output_format_pretty_max_rows",
    "output_format_pretty_color", "output_format_pretty_row_numbers", "output_format_csv_crlf_end_of_line",
    "output_format_tsv_crlf_end_of_line", "output_format_arrow_string_as_string",
    "output_format_parquet_string_as_string", "output_format_native_encode_types_in_binary_format",
    "format_csv_delimiter", "format_tsv_null_representation", "format_csv_null_representation",
    "extremes", "totals_mode", "join_use_nulls", "readonly",
})


class QueryService:
    """Runs client SQL read-only. Sessions come from `connect(settings)`; at most `concurrency`
    queries run at once, the others wait their turn."""

    def __init__(self, connect: Callable[[dict[str, Any]], Client], limits: Limits, concurrency: int):
        self._limits = limits
        self._connect_with = connect
        self._idle: queue.SimpleQueue[Client] = queue.SimpleQueue()
        self._open: set[Client] = set()
        self._lock = threading.Lock()
        self._slots = asyncio.Semaphore(concurrency)
        # Sessions and the engine's catalog are made at first use: most processes (and tests)
        # never run client SQL, and each session costs ~10-40 ms to open.
        self._catalog: tuple[frozenset[str], frozenset[str]] | None = None

    def _catalog_of(self, client: Client) -> tuple[frozenset[str], frozenset[str]]:
        """(table functions, output formats) the engine knows, lower-cased; read once."""
        if self._catalog is None:
            self._catalog = (_names(client, "SELECT lower(name) FROM system.table_functions"),
                             _names(client, "SELECT lower(name) FROM system.formats WHERE is_output"))
        return self._catalog

    def _new_client(self) -> Client:
        client = self._connect_with(self._limits.client_settings())
        with self._lock:
            self._open.add(client)
        return client

    @contextmanager
    def _lease(self) -> Iterator[Client]:
        """An idle session, or a new one (at most `concurrency` are leased at once: the callers
        hold a slot of the semaphore)."""
        try:
            client = self._idle.get_nowait()
        except queue.Empty:
            client = self._new_client()
        try:
            yield client
        except BaseException:
            # Never reuse a session a query failed on (see the module's docstring).
            with self._lock:
                self._open.discard(client)
            client.close()
            raise
        self._idle.put(client)

    @contextmanager
    def _session(self, overrides: dict[str, str]) -> Iterator[Client]:
        """A pooled session, or one of its own for a query that sets settings."""
        if not overrides:
            with self._lease() as client:
                yield client
            return
        settings = {**self._limits.client_settings(), **overrides}
        settings["readonly"] = settings.pop("readonly")  # last, whatever was asked
        try:
            client = self._connect_with(settings)
        except DatabaseError as error:
            raise QueryRefused.from_engine(error) from None
        try:
            yield client
        finally:
            client.close()

    def session_overrides(self, requested: dict[str, str]) -> dict[str, str]:
        """The settings a query asked for that differ from the session's, checked: limits may
        only tighten; other settings must be harmless output settings. Raises QueryRefused."""
        ours = self._limits.client_settings()
        overrides = {}
        for name, value in requested.items():
            if str(ours.get(name, "")) == value:
                continue
            if name in LIMIT_SETTINGS:
                if not value.isdigit() or int(value) == 0 or (ours.get(name) and int(value) > int(ours[name])):
                    raise QueryRefused(164, "READONLY", f"Code: 164. DB::Exception: Cannot modify '{name}' setting "
                                       f"in readonly mode: {name} may only be lowered here (at most {ours.get(name)}). "
                                       "(READONLY)")
            elif name == "readonly":
                if value not in ("1", "2"):
                    raise QueryRefused(164, "READONLY", "Code: 164. DB::Exception: Cannot modify 'readonly' setting "
                                       "in readonly mode. (READONLY)")
                continue  # readonly stays 1
            elif name not in OUTPUT_SETTINGS:
                raise QueryRefused(164, "READONLY", f"Code: 164. DB::Exception: Cannot modify '{name}' setting in "
                                   "readonly mode. (READONLY)")
            overrides[name] = value
        return overrides

    def close(self) -> None:
        with self._lock:
            clients, self._open = list(self._open), set()
        for client in clients:
            client.close()

    # --- the three steps -------------------------------------------------------------------

    def check(self, client: Client, sql: str, parameters: dict[str, str] | None = None) -> Checked:
        """Parse `sql` with ClickHouse's parser and apply the policy; raises QueryRefused."""
        try:
            canonical = str(client.query("SELECT formatQuery({q:String})", parameters={"q": sql}).result_rows[0][0])
            used = {name: value for name, value in (parameters or {}).items()
                    if name in set(PLACEHOLDER.findall(canonical))}
            tree = client.raw_query("EXPLAIN AST " + canonical, parameters=used or None).decode("utf-8", "replace")
        except DatabaseError as error:
            raise QueryRefused.from_engine(error) from None
        table_functions, output_formats = self._catalog_of(client)
        refusal = query_policy.refusal(tree, table_functions)
        if refusal is not None:
            raise QueryRefused.of(refusal)
        return Checked(canonical, query_policy.output_format(tree, output_formats), used)

    def rows(self, sql: str, max_rows: int) -> Rows:
        """Run `sql` and return its rows (the console): at most `max_rows`, `truncated` when cut."""
        with self._lease() as client:
            checked = self.check(client, sql)
            if checked.output_format:
                raise QueryRefused(62, "SYNTAX_ERROR", "Code: 62. DB::Exception: the console shows rows itself: "
                                   "leave out the FORMAT clause (or use /clickhouse/). (SYNTAX_ERROR)")
            started = time.perf_counter()
            try:
                result = client.query(checked.sql, parameters=checked.parameters or None)
                rows = result.result_rows
            except DatabaseError as error:
                raise QueryRefused.from_engine(error) from None
            return Rows(
                columns=list(result.column_names),
                types=[t.name for t in result.column_types],
                rows=[list(row) for row in rows[:max_rows]],
                truncated=len(rows) > max_rows,
                elapsed_ms=round((time.perf_counter() - started) * 1000, 1),
            )

    def raw(self, sql: str, *, default_format: str, database: str, parameters: dict[str, str],
            settings: dict[str, str]) -> RawAnswer:
        """Run `sql` and return the engine's output bytes in its FORMAT (or `default_format`),
        with the query's own `settings` (see `session_overrides`)."""
        with self._session(self.session_overrides(settings)) as client:
            if default_format.lower() not in self._catalog_of(client)[1]:
                raise QueryRefused(73, "UNKNOWN_FORMAT", f"Code: 73. DB::Exception: Unknown output format "
                                   f"{default_format}. (UNKNOWN_FORMAT)")
            checked = self.check(client, sql, parameters)
            output_format = checked.output_format or default_format
            text = checked.sql if checked.output_format else f"{checked.sql}\nFORMAT {default_format}"
            started = time.perf_counter()
            try:
                client.database = database
                body = client.raw_query(text, parameters=checked.parameters or None)
            except DatabaseError as error:
                raise QueryRefused.from_engine(error) from None
            return RawAnswer(body, output_format, time.perf_counter() - started)

    # --- async faces, each holding one of `concurrency` slots -------------------------------

    async def run_rows(self, sql: str, max_rows: int) -> Rows:
        async with self._slots:
            return await asyncio.to_thread(self.rows, sql, max_rows)

    async def run_raw(self, sql: str, *, default_format: str, database: str, parameters: dict[str, str],
                      settings: dict[str, str]) -> RawAnswer:
        async with self._slots:
            return await asyncio.to_thread(self.raw, sql, default_format=default_format, database=database,
                                           parameters=parameters, settings=settings)


def _names(client: Client, sql: str) -> frozenset[str]:
    return frozenset(str(row[0]) for row in client.query(sql).result_rows)
