"""GET /export and `analytics-api export`: events of a range, straight from ClickHouse's output
formats, never the whole result in this process.

NDJSON (JSONEachRow) and CSV stream block by block: a thread of the export's own reads the
engine's stream and hands chunks to the response through a queue of 8 chunks (a slow client
slows the query instead of filling memory; a client that goes away stops it). CSV gets a header
line of the column names. Parquet has its metadata at the end, so ClickHouse makes the whole
file before the first byte (bounded by SQL_MAX_MEMORY_BYTES). `?gzip=1` sends a .gz file
(application/gzip); otherwise `Accept-Encoding: gzip` compresses the transfer. An error before
the first byte is a 503 JSON answer; after it, the response is cut short and the error logged
(HTTP has no way to say so once a 200 is sent).
"""

from __future__ import annotations

import asyncio
import gzip
import io
import logging
import threading
import zlib
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from clickhouse_connect.driver.client import Client
from clickhouse_connect.driver.exceptions import ClickHouseError
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from server.config import Settings
from server.http.auth import read_protected
from server.http.errors import Unavailable, first_line
from server.http.state import services
from server.reports.params import BadParameter, ReportRange, report_range
from server.reports.queries import sql
from server.store import db

log = logging.getLogger(__name__)

CHUNK_BYTES = 1 << 16
QUEUE_CHUNKS = 8
EXPORT_TIMEOUT_SECONDS = 3600  # max_execution_time of an export: months of events take a while


@dataclass(frozen=True)
class Format:
    clickhouse: str
    media_type: str
    extension: str


FORMATS = {
    "ndjson": Format("JSONEachRow", "application/x-ndjson", "ndjson"),
    "csv": Format("CSV", "text/csv; charset=utf-8", "csv"),
    "parquet": Format("Parquet", "application/vnd.apache.parquet", "parquet"),
}


def columns() -> list[str]:
    """The exported columns, in order (the CSV header), read from export.sql's SELECT list."""
    select = sql("export").split("SELECT", 1)[1].split("FROM events", 1)[0]
    return [name.strip() for name in select.replace("\n", " ").split(",")]


def export_client(settings: Settings) -> Client:
    """A client of its own (a stream holds its client until it ends), with the client limits."""
    return db.connect(settings, client_settings={"max_execution_time": EXPORT_TIMEOUT_SECONDS,
                                                 "max_memory_usage": settings.sql_max_memory_bytes})


def chunks(client: Client, report: ReportRange, fmt: Format) -> Iterator[bytes]:
    """The export's bytes from ClickHouse, chunk by chunk (call from one thread: the stream is bound to it)."""
    if fmt.clickhouse == "CSV":
        yield (",".join(columns()) + "\n").encode()
    stream = client.raw_stream(sql("export"), parameters=report.parameters(), fmt=fmt.clickhouse)
    if isinstance(stream, io.IOBase):  # the embedded engine: a file-like stream
        with stream:
            while chunk := stream.read(CHUNK_BYTES):
                yield chunk
    else:  # a ClickHouse server: an iterator of the HTTP body's chunks
        with stream:
            yield from stream


def parse_format(text: str) -> Format:
    if text not in FORMATS:
        raise BadParameter("format", f"must be one of {', '.join(FORMATS)}, got {text[:40]!r}")
    return FORMATS[text]


class ExportServices(Protocol):
    settings: Settings


async def export(request: Request) -> Response:
    report = report_range(request.query_params)
    fmt = parse_format(request.query_params.get("format", "ndjson"))
    gzip_file = request.query_params.get("gzip") in ("1", "true")  # a .gz file to keep
    compress = gzip_file or "gzip" in request.headers.get("accept-encoding", "")  # else transport compression
    found: ExportServices = services(request)
    settings = found.settings
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[bytes | BaseException | None] = asyncio.Queue(maxsize=QUEUE_CHUNKS)
    stop = threading.Event()

    def hand_over(item: bytes | BaseException | None) -> bool:
        """Put one item on the queue; False once the response has gone away."""
        while not stop.is_set():
            future = asyncio.run_coroutine_threadsafe(queue.put(item), loop)
            try:
                future.result(timeout=1)
                return True
            except TimeoutError:
                future.cancel()
        return False

    def produce() -> None:
        client = export_client(settings)
        try:
            for chunk in chunks(client, report, fmt):
                if not hand_over(chunk):
                    return
            hand_over(None)
        except ClickHouseError as exc:
            hand_over(exc)
        finally:
            client.close()

    threading.Thread(target=produce, name="export", daemon=True).start()
    first = await queue.get()
    if isinstance(first, BaseException):
        stop.set()
        raise Unavailable(f"the export query failed: {first_line(first)}")

    async def body() -> AsyncIterator[bytes]:
        encoder = zlib.compressobj(6, zlib.DEFLATED, 16 + zlib.MAX_WBITS) if compress else None
        item: bytes | BaseException | None = first
        try:
            while isinstance(item, bytes):
                yield encoder.compress(item) if encoder else item
                item = await queue.get()
            if isinstance(item, BaseException):
                log.error("export cut short (the client got part of it): %s", first_line(item))
                return
            if encoder:
                yield encoder.flush()
        finally:
            stop.set()

    name = f"events-{report.first_day}-{report.last_day}.{fmt.extension}" + (".gz" if gzip_file else "")
    headers = {"Content-Disposition": f'attachment; filename="{name}"'}
    if compress and not gzip_file:
        headers["Content-Encoding"] = "gzip"
    return StreamingResponse(body(), media_type="application/gzip" if gzip_file else fmt.media_type, headers=headers)


def export_to_file(settings: Settings, report: ReportRange, fmt: Format, path: Path) -> int:
    """`analytics-api export`: the same bytes into a file (gzipped when it ends with .gz); returns bytes written."""
    client = export_client(settings)
    written = 0
    try:
        with gzip.open(path, "wb") if path.suffix == ".gz" else open(path, "wb") as out:
            for chunk in chunks(client, report, fmt):
                out.write(chunk)
                written += len(chunk)
    finally:
        client.close()
    return written


def routes() -> list[Route]:
    return [Route("/export", read_protected(export), methods=["GET"])]
