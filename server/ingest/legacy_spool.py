"""The outage spool of earlier versions, moved out of the way at start.

Earlier versions kept batches ClickHouse refused in SPOOL_DIR as segment files `spool-<n>.log`
of records `b"SPL1" | length (u32 LE) | crc32 (u32 LE) | payload`, the payload JSONEachRow rows
that all carry an `event_id`. The write-ahead log does that job now. At start, every record of
such a spool is stored once: its rows whose event_id is stored already (in ClickHouse, or in the
log) are dropped, the rest go to `store` (the log, or an INSERT), and each segment file is
deleted once all its records are stored. A torn tail (the old process died mid-append) was never
acknowledged and is skipped. If storing fails, the rest stays for the next start.
"""

from __future__ import annotations

import logging
import struct
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path

import orjson

log = logging.getLogger(__name__)

MAGIC = b"SPL1"
HEADER = struct.Struct("<4sII")


def read_records(path: Path) -> Iterator[bytes]:
    data = path.read_bytes()
    offset = 0
    while offset + HEADER.size <= len(data):
        magic, length, crc = HEADER.unpack_from(data, offset)
        payload = data[offset + HEADER.size: offset + HEADER.size + length]
        if magic != MAGIC or len(payload) != length or zlib.crc32(payload) != crc:
            return  # a torn tail: never acknowledged, nothing after it in this segment
        yield payload
        offset += HEADER.size + length


def move_legacy_spool(directory: Path, stored: Callable[[list[str]], set[str]],
                      store: Callable[[bytes, list[str]], None]) -> int:
    """Store what an earlier version's spool holds, each event once; returns the events stored.
    `stored(ids)`: which ids are stored already; `store(rows, ids)`: store JSONEachRow rows."""
    moved = 0
    for segment in sorted(directory.glob("spool-*.log")) if directory.is_dir() else []:
        for payload in read_records(segment):
            lines = [line for line in payload.split(b"\n") if line]
            ids = [str(orjson.loads(line)["event_id"]) for line in lines]
            found = stored(ids)
            fresh = [(line, event_id) for line, event_id in zip(lines, ids, strict=True) if event_id not in found]
            if fresh:
                store(b"\n".join(line for line, _ in fresh) + b"\n", [event_id for _, event_id in fresh])
            moved += len(fresh)
        segment.unlink()
        log.info("moved the outage spool segment %s of an earlier version", segment.name)
    return moved
