"""`analytics-api import PATH… [--format ndjson|csv|parquet] [--app-id A]`: earlier systems'
exported history into `events`, with the same field names, aliases and validation as
`POST /events`, in batches, exactly once.

A file is read as a stream (gzip when it ends in .gz): NDJSON line by line, CSV row by row (a
header line names the fields), Parquet through the engine's own Parquet reader (the embedded
engine, or an in-memory one beside a ClickHouse server) as JSONEachRow. Every BATCH_LINES lines
are validated (bad lines set aside, the rest kept) and inserted straight into `events` (so the
views count them as if posted) with an insert_deduplication_token naming the file's SHA-256 and
the batch; then the batch is recorded in `imports` (010_imports.sql). Batches found there are
skipped: a second run, or a run after Ctrl-C or a crash, stores nothing twice.

Bad lines: counted by field, and the first MAX_REJECTS written with their line numbers and
reasons to `<file>.rejects.ndjson` beside the input. Progress: a tqdm bar of bytes with rows/s.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import io
import logging
import multiprocessing
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from clickhouse_connect.driver.client import Client

from server.config import Settings
from server.ingest.validate import Limits, validate_events
from server.ingest.writer import encode_rows
from server.store import db

log = logging.getLogger(__name__)

BATCH_LINES = 50_000
WORKERS = 2  # validating processes
MAX_REJECTS = 100
FORMATS = ("ndjson", "csv", "parquet")
EXTENSIONS = {".ndjson": "ndjson", ".jsonl": "ndjson", ".json": "ndjson", ".csv": "csv", ".parquet": "parquet"}


class ImportFailed(Exception):
    """The file cannot be imported as asked (its format, its content); the message says why."""


@dataclass
class Summary:
    path: Path
    lines: int = 0
    stored: int = 0
    skipped: int = 0  # in batches an earlier run stored
    rejected: Counter[str] = field(default_factory=Counter)
    rejects_path: Path | None = None
    seconds: float = 0.0

    def text(self) -> str:
        rate = self.lines / self.seconds if self.seconds else 0.0
        parts = [f"{self.path.name}: {self.lines:,} lines in {self.seconds:.1f} s ({rate:,.0f} lines/s): "
                 f"{self.stored:,} events stored"]
        if self.skipped:
            parts.append(f"{self.skipped:,} lines skipped (stored by an earlier run)")
        if self.rejected:
            reasons = ", ".join(f"{name} {n:,}" for name, n in self.rejected.most_common())
            parts.append(f"{sum(self.rejected.values()):,} rejected ({reasons}); the first ones in {self.rejects_path}")
        return "; ".join(parts)


def format_of(path: Path, given: str | None) -> str:
    if given:
        if given not in FORMATS:
            raise ImportFailed(f"--format must be one of {', '.join(FORMATS)}, got {given!r}")
        return given
    suffix = Path(path.name.removesuffix(".gz")).suffix.lower()
    if suffix not in EXTENSIONS:
        raise ImportFailed(f"{path.name}: cannot tell the format from the extension; give --format")
    return EXTENSIONS[suffix]


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as raw:
        while chunk := raw.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _open(path: Path) -> io.BufferedIOBase:
    return gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb")


def items(path: Path, fmt: str, parquet_client: Client | None) -> Iterator[tuple[int, bytes | dict[str, str]]]:
    """(line number, the line's bytes (NDJSON, Parquet as JSONEachRow) or the CSV row's fields),
    in file order; parsed by the validating processes."""
    if fmt == "parquet":
        assert parquet_client is not None
        stream = parquet_client.raw_stream("SELECT * FROM file({path:String}, Parquet)",
                                           parameters={"path": str(path.resolve())}, fmt="JSONEachRow")
        assert isinstance(stream, io.IOBase)  # the engine in this process: a file-like stream of lines
        with stream:
            yield from _lines(stream)
        return
    if fmt == "ndjson":
        with _open(path) as raw:
            yield from _lines(raw)
        return
    opened = gzip.open(path, "rt", encoding="utf-8", newline="") if path.suffix == ".gz" else open(
        path, encoding="utf-8", newline="")
    with opened as text:
        reader = csv.DictReader(text)
        for row in reader:
            yield reader.line_num, {k: v for k, v in row.items() if k is not None and v != ""}


def _lines(raw: Any) -> Iterator[tuple[int, bytes]]:
    for number, line in enumerate(raw, start=1):
        if line.strip():
            yield number, line


@dataclass
class Validated:
    """One batch, validated in a worker process: the rows encoded for JSONEachRow, and the rejects."""

    rows: int
    body: bytes
    rejected: Counter[str]
    rejects: list[bytes]


_limits: Limits | None = None
_app_id = ""


def _start_worker(limits: Limits, app_id: str) -> None:
    global _limits, _app_id
    _limits, _app_id = limits, app_id


def _validate(batch: list[tuple[int, bytes | dict[str, str]]]) -> Validated:
    """Parse and validate a batch (in a worker process); bad lines set aside, the rest kept."""
    assert _limits is not None
    rejected: Counter[str] = Counter()
    rejects: list[bytes] = []
    candidates: list[tuple[int, Any]] = []
    for number, line in batch:
        if isinstance(line, bytes):
            try:
                item: Any = orjson.loads(line)
            except orjson.JSONDecodeError as exc:
                reason = [{"field": "line", "reason": f"not JSON: {exc}"}]
                _reject(rejected, rejects, number, reason, line.decode(errors="replace"))
                continue
        else:
            item = line
        if _app_id and isinstance(item, dict) and not item.get("app_id"):
            item["app_id"] = _app_id
        candidates.append((number, item))
    rows, errors = validate_events([item for _, item in candidates], _limits)
    if errors:
        bad: dict[int, list[dict[str, Any]]] = {}
        for error in errors:
            bad.setdefault(error.index, []).append({"field": error.field, "reason": error.reason})
        for index, reasons in bad.items():
            number, item = candidates[index]
            _reject(rejected, rejects, number, reasons, item)
        rows, errors = validate_events([item for index, (_, item) in enumerate(candidates) if index not in bad], _limits)
        assert not errors, errors
    rejects.sort(key=lambda line: orjson.loads(line)["line"])  # parse errors were set aside first
    return Validated(len(rows), encode_rows(rows) if rows else b"", rejected, rejects)


def _batches(path: Path, fmt: str, parquet_client: Client | None) -> Iterator[list[tuple[int, bytes | dict[str, str]]]]:
    batch: list[tuple[int, bytes | dict[str, str]]] = []
    for line in items(path, fmt, parquet_client):
        batch.append(line)
        if len(batch) >= BATCH_LINES:
            yield batch
            batch = []
    if batch:
        yield batch


def import_file(client: Client, settings: Settings, path: Path, fmt: str, app_id: str = "",
                parquet_client: Client | None = None, progress: bool = True) -> Summary:
    """Batches are validated by WORKERS processes (in order, a few ahead) while this process
    inserts the previous ones: Python validation is most of the cost, and the engine inserts in
    its own threads."""
    started = time.perf_counter()
    summary = Summary(path)
    file_sha = sha256_of(path)
    done = {row[0] for row in client.query("SELECT batch FROM imports WHERE file_sha256 = {sha:String}",
                                           parameters={"sha": file_sha}).result_rows}
    bar = _progress(path, progress)
    rejects: list[bytes] = []
    todo: list[tuple[int, int, int]] = []  # batch number, first line, lines

    def to_validate() -> Iterator[list[tuple[int, bytes | dict[str, str]]]]:
        for number, batch in enumerate(_batches(path, fmt, parquet_client)):
            summary.lines += len(batch)
            if number in done:
                summary.skipped += len(batch)
                continue
            todo.append((number, batch[0][0], len(batch)))
            yield batch

    context = multiprocessing.get_context("spawn")  # not fork: this process runs the engine's threads
    with context.Pool(WORKERS, initializer=_start_worker, initargs=(Limits.from_settings(settings), app_id)) as pool:
        for index, validated in enumerate(pool.imap(_validate, to_validate())):
            number, first_line, lines = todo[index]
            _store(client, file_sha, path.name, number, first_line, lines, validated.body, validated.rows)
            summary.stored += validated.rows
            summary.rejected.update(validated.rejected)
            rejects.extend(validated.rejects[: max(0, MAX_REJECTS - len(rejects))])
            _advance(bar, summary)
    _advance(bar, summary)
    if bar is not None:
        bar.close()
    if rejects:
        summary.rejects_path = path.with_name(path.name + ".rejects.ndjson")
        summary.rejects_path.write_bytes(b"".join(rejects))
    summary.seconds = time.perf_counter() - started
    log.info("import: %s", summary.text())
    return summary


def _store(client: Client, file_sha: str, name: str, batch_number: int, first_line: int, lines: int,
           body: bytes, rows: int) -> None:
    """INSERT the batch's rows (a re-sent batch is dropped by its token), then record the batch."""
    if rows:
        client.raw_insert("events", insert_block=body, fmt="JSONEachRow", settings={
            "insert_deduplication_token": f"import:{file_sha}:{batch_number}",
            "deduplicate_blocks_in_dependent_materialized_views": 1,
        })
    db.insert_rows(client, "imports", ["file_sha256", "batch", "first_line", "lines", "rows", "file_name"],
                   [[file_sha, batch_number, first_line, lines, rows, name]])


def _reject(rejected: Counter[str], rejects: list[bytes], number: int, reasons: list[dict[str, Any]], item: Any) -> None:
    for reason in reasons:
        rejected[reason["field"]] += 1
    if len(rejects) < MAX_REJECTS:
        rejects.append(orjson.dumps({"line": number, "errors": reasons, "item": item}, default=str) + b"\n")


def _progress(path: Path, show: bool) -> Any:
    if not show:
        return None
    from tqdm import tqdm

    return tqdm(desc=path.name, unit=" lines", unit_scale=True, smoothing=0.1)


def _advance(bar: Any, summary: Summary) -> None:
    if bar is not None:
        bar.update(summary.lines - bar.n)


def parquet_reader(settings: Settings, client: Client) -> Client:
    """The embedded engine reads Parquet itself; beside a ClickHouse server, an in-memory one does."""
    if settings.embedded:
        return client
    import clickhouse_connect

    return clickhouse_connect.get_client(dsn="chdb://:memory:")


def run_import(settings: Settings, paths: list[str], fmt: str | None, app_id: str, progress: bool = True) -> int:
    db.migrate(settings)
    client = db.connect(settings, client_settings={"input_format_parallel_parsing": 0})
    reader = None
    try:
        for name in paths:
            path = Path(name)
            if not path.is_file():
                raise ImportFailed(f"{name}: no such file")
            kind = format_of(path, fmt)
            if kind == "parquet" and reader is None:
                reader = parquet_reader(settings, client)
            print(import_file(client, settings, path, kind, app_id, reader, progress).text())
    finally:
        if reader is not None and reader is not client:
            reader.close()
        client.close()
    return 0
