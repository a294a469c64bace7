"""The outage spool: batches ClickHouse did not take, kept on local disk until it does.

Append-only segment files `spool-<n>.log` in SPOOL_DIR; each record is
`b"SPL1" | length (u32 LE) | crc32 (u32 LE) | payload`, the payload being JSONEachRow rows that all
carry an `event_id`. `append()` writes and fsyncs the record (and the directory, for a new file)
before it returns, and only then does the request get its 202. After a crash the last record may
be torn: reading stops at the first record whose header or checksum does not match, and new
records always go to a new segment, never after a torn tail.

Replay (`Spool.replay`) seals the current segment and hands every record, oldest first, to a
function that stores it; a segment file is deleted once all its records are stored. A replay cut
short (an insert fails, the process dies) starts that segment again next time, and the event_id
check in front of every insert (server/ingest/dedup.py) keeps the records already stored from
being stored twice.
"""

from __future__ import annotations

import os
import struct
import threading
import zlib
from pathlib import Path
from typing import Callable, Iterator

MAGIC = b"SPL1"
HEADER = struct.Struct("<4sII")
SEGMENT_BYTES = 64 * 1024 * 1024


class SpoolFull(Exception):
    """The spool holds SPOOL_MAX_BYTES already."""


class Spool:
    def __init__(self, directory: Path, max_bytes: int):
        self.directory = directory
        self.max_bytes = max_bytes
        self._lock = threading.Lock()
        self.directory.mkdir(parents=True, exist_ok=True)
        self._current: Path | None = None  # a segment this process appends to; a new one after start
        # The depth, kept as records come and go (read from the files once, at start).
        segments = self._segments()
        self._records = sum(1 for segment in segments for _ in read_records(segment))
        self._bytes = sum(segment.stat().st_size for segment in segments)

    def _segments(self) -> list[Path]:
        return sorted(self.directory.glob("spool-*.log"))

    def depth(self) -> tuple[int, int]:
        """(records, bytes) waiting."""
        with self._lock:
            return self._records, self._bytes

    def append(self, payload: bytes) -> None:
        record = HEADER.pack(MAGIC, len(payload), zlib.crc32(payload)) + payload
        with self._lock:
            if self._bytes + len(record) > self.max_bytes:
                raise SpoolFull(f"the outage spool holds {self.max_bytes:,} bytes already")
            if self._current is None or self._current.stat().st_size + len(record) > SEGMENT_BYTES:
                self._current = self._new_segment()
            with open(self._current, "ab") as f:
                f.write(record)
                f.flush()
                os.fsync(f.fileno())
            self._records += 1
            self._bytes += len(record)

    def _new_segment(self) -> Path:
        segments = self._segments()
        number = int(segments[-1].stem.split("-")[1]) + 1 if segments else 1
        path = self.directory / f"spool-{number:012d}.log"
        path.touch()
        directory = os.open(self.directory, os.O_RDONLY)
        try:
            os.fsync(directory)  # the new file's name is durable too
        finally:
            os.close(directory)
        return path

    def replay(self, store: Callable[[bytes], None]) -> int:
        """Store every record, oldest first; returns how many. Stops at the first failure
        (raised) with that segment kept."""
        with self._lock:
            self._current = None  # seal: appends from now on go to a new segment
            segments = self._segments()
        stored = 0
        for segment in segments:
            records = 0
            for payload in read_records(segment):
                store(payload)
                records += 1
            with self._lock:
                self._bytes -= segment.stat().st_size
                self._records -= records
                segment.unlink()
            stored += records
        return stored


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
