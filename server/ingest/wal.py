"""The write-ahead log: every accepted event is on local disk, fdatasync'd, before its 202.

Segment files `wal-<n>.seg` (n never reused) in LOG_DIR. A record is one request's rows:
`b"WAL1" | length (u32 LE) | crc32 (u32 LE) | payload`, the payload being JSONEachRow rows for
`events`. One writer thread appends groups of records (server/ingest/committer.py) and
fdatasyncs them; the consumer thread (server/ingest/consumer.py) reads them back and inserts
them into ClickHouse, then the segments it has finished are deleted.

Rules that make a 202 mean durable, and nothing else:
- A segment is appended to only by the process that created it: a restart starts a new one, so
  a torn tail (a crash mid-write) is never followed by records. Reading a segment stops at the
  first record whose header or checksum does not match: in a closed segment that is a torn
  tail (never acknowledged); in the live one it cannot happen, because readers stop at the
  synced end.
- A failed write or sync acknowledges nothing: the segment is cut back to its last synced end
  (ftruncate) and retired, the failure is kept for /readyz, and the next write starts a new
  segment.
- Past LOG_MAX_BYTES unconsumed, writes are refused (`LogFull`).

Another process may consume the log (WEB_CONCURRENCY > 1 on the embedded engine: each HTTP
worker writes its own log, the engine process reads them all): after each fdatasync the writer
records the synced end in the file `synced` (segment, offset; 16 bytes, no sync of its own), and
`LogReader` reads the live segment only up to it, so a record is read only once acknowledged.
"""

from __future__ import annotations

import fcntl
import os
import struct
import threading
import uuid
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

MAGIC = b"WAL1"
HEADER = struct.Struct("<4sII")
SYNCED = struct.Struct("<qq")  # the `synced` file: segment, offset
SEGMENT_BYTES = 64 * 1024 * 1024


class LogFull(Exception):
    """LOG_MAX_BYTES of events wait to be inserted already."""


class LogInUse(Exception):
    """Another process holds the log directory."""


class LogWriteFailed(Exception):
    """The write or the fdatasync failed; nothing of the group was acknowledged."""


@dataclass(frozen=True, order=True)
class Position:
    """A place in the log: a segment and a byte offset in it."""

    segment: int
    offset: int


@dataclass(frozen=True)
class Record:
    payload: bytes
    start: Position
    end: Position

    @property
    def rows(self) -> int:
        return self.payload.count(b"\n")


def encode_record(payload: bytes) -> bytes:
    return HEADER.pack(MAGIC, len(payload), zlib.crc32(payload)) + payload


class LogSource(Protocol):
    """What the consumer reads: a WriteAheadLog of this process, or a LogReader of another's."""

    directory: Path
    log_id: str

    def segments(self) -> list[int]: ...
    def is_live(self, segment: int) -> bool: ...
    def readable_end(self, segment: int) -> int: ...
    def synced_end(self) -> Position | None: ...
    def read(self, start: Position, max_rows: int) -> Iterator[Record]: ...
    def delete_segment(self, segment: int) -> None: ...
    def bytes_after(self, position: Position) -> int: ...


class WriteAheadLog:
    def __init__(self, directory: Path, max_bytes: int, segment_bytes: int = SEGMENT_BYTES):
        self.directory = directory
        self.max_bytes = max_bytes
        self.segment_bytes = segment_bytes
        directory.mkdir(parents=True, exist_ok=True)
        self._lock_fd = os.open(directory / "lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self._lock_fd)
            raise LogInUse(f"the write-ahead log {directory} is in use by another process (LOG_DIR)") from None
        self.log_id = log_id_of(directory)
        self._synced_fd = os.open(directory / "synced", os.O_RDWR | os.O_CREAT, 0o600)
        self._lock = threading.Lock()
        self._readable: dict[int, int] = {}  # segment -> bytes a reader may read
        for segment in self._segment_numbers():
            self._readable[segment] = (directory / _name(segment)).stat().st_size
        self._next_segment = max(self._readable, default=0) + 1
        self._live: int | None = None  # the segment this process appends to
        self._fd: int | None = None
        self.failure: str | None = None  # the last write failure, until a write succeeds

    # --- writing (one thread) -----------------------------------------------------------

    def append(self, records: list[bytes]) -> Position:
        """Write encoded records after each other and fdatasync them; returns the end of the
        last one. Raises LogFull or LogWriteFailed (nothing of them is acknowledged then)."""
        data = b"".join(records)
        if self.unconsumed_bytes() + len(data) > self.max_bytes:
            raise LogFull(f"the write-ahead log holds {self.max_bytes:,} bytes not yet in ClickHouse")
        try:
            if self._fd is None or self._readable[self._live] + len(data) > self.segment_bytes:  # type: ignore[index]
                self._open_new_segment()
            assert self._fd is not None and self._live is not None
            start = self._readable[self._live]
            view = memoryview(data)
            while view:
                written = os.write(self._fd, view)
                view = view[written:]
            os.fdatasync(self._fd)
        except OSError as error:
            self._retire_after(error)
            raise LogWriteFailed(f"the write-ahead log could not be written ({error.strerror or error})") from None
        with self._lock:
            self._readable[self._live] = start + len(data)
        self.failure = None
        end = Position(self._live, start + len(data))
        try:  # for a reader in another process; a page-cache write (lost in a crash, when it is not needed)
            os.pwrite(self._synced_fd, SYNCED.pack(end.segment, end.offset), 0)
        except OSError:
            pass  # the records are durable and acknowledged; a reader elsewhere sees them at the next write
        return end

    def _open_new_segment(self) -> None:
        self._close_live()
        segment = self._next_segment
        fd = os.open(self.directory / _name(segment), os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND, 0o600)
        try:
            _fsync_directory(self.directory)  # the new file's name is durable too
        except OSError:
            os.close(fd)
            raise
        self._next_segment += 1
        with self._lock:
            self._readable[segment] = 0
        self._live, self._fd = segment, fd

    def _retire_after(self, error: OSError) -> None:
        self.failure = f"the last write to the write-ahead log failed: {error.strerror or error}"
        if self._fd is not None and self._live is not None:
            try:  # cut what was written but never acknowledged
                os.ftruncate(self._fd, self._readable[self._live])
                os.fdatasync(self._fd)
            except OSError:
                pass  # readers stop at the synced end anyway (kept in _readable)
        self._close_live()

    def _close_live(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
        self._fd, self._live = None, None

    def close(self) -> None:
        self._close_live()
        os.close(self._synced_fd)
        os.close(self._lock_fd)  # releases the lock

    def probe(self) -> bool:
        """Can the log's disk take a synced write now? (For /readyz after a failure.)"""
        path = self.directory / "probe.tmp"
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            try:
                os.write(fd, b"\0" * 4096)
                os.fdatasync(fd)
            finally:
                os.close(fd)
                path.unlink()
        except OSError:
            return False
        self.failure = None
        return True

    # --- reading (the consumer) ---------------------------------------------------------

    def segments(self) -> list[int]:
        with self._lock:
            return sorted(self._readable)

    def is_live(self, segment: int) -> bool:
        return segment == self._live

    def synced_end(self) -> Position | None:
        """The end of what is synced in the newest segment (None: no segment)."""
        with self._lock:
            if not self._readable:
                return None
            segment = max(self._readable)
            return Position(segment, self._readable[segment])

    def readable_end(self, segment: int) -> int:
        with self._lock:
            return self._readable.get(segment, 0)

    def read(self, start: Position, max_rows: int) -> Iterator[Record]:
        """Records from `start` to the segment's readable end (its synced end while live), at most
        about `max_rows` rows (a record is never split), stopping at a torn tail."""
        return read_records(self.directory, start, self.readable_end(start.segment), max_rows)

    def delete_segment(self, segment: int) -> None:
        """A segment the consumer has finished (never the live one)."""
        if segment == self._live:
            return
        with self._lock:
            self._readable.pop(segment, None)
        (self.directory / _name(segment)).unlink(missing_ok=True)
        _fsync_directory(self.directory)

    def forget_deleted(self) -> None:
        """Drop the segments another process (the engine of a group) has consumed and deleted."""
        with self._lock:
            for segment in [s for s in self._readable if s != self._live]:
                if not (self.directory / _name(segment)).exists():
                    del self._readable[segment]

    def unconsumed_bytes(self) -> int:
        """Bytes on disk in segments not yet deleted (what LOG_MAX_BYTES bounds)."""
        with self._lock:
            return sum(self._readable.values())

    def bytes_after(self, position: Position) -> int:
        """Bytes of records after `position` (what waits for the consumer)."""
        with self._lock:
            return max(0, sum(size for segment, size in self._readable.items() if segment >= position.segment)
                       - (position.offset if position.segment in self._readable else 0))

    def _segment_numbers(self) -> list[int]:
        return segment_numbers(self.directory)


class LogReader:
    """A log directory written by another process, read by its consumer (server/ingest/consumer.py
    takes either this or a WriteAheadLog). The newest segment is the live one: read up to the end
    the writer recorded as synced. The older ones are finished (the writer's process restarted,
    or it moved on) and are read to their end, stopping at a torn tail. Takes no lock."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.log_id = log_id_of(directory)

    def segments(self) -> list[int]:
        return segment_numbers(self.directory)

    def is_live(self, segment: int) -> bool:
        found = self.segments()
        return bool(found) and segment == found[-1]

    def _synced(self) -> Position | None:
        try:
            data = (self.directory / "synced").read_bytes()
        except FileNotFoundError:
            return None
        return Position(*SYNCED.unpack(data)) if len(data) == SYNCED.size else None

    def readable_end(self, segment: int) -> int:
        try:
            size = (self.directory / _name(segment)).stat().st_size
        except FileNotFoundError:
            return 0
        if not self.is_live(segment):
            return size
        synced = self._synced()
        return min(size, synced.offset) if synced is not None and synced.segment == segment else 0

    def synced_end(self) -> Position | None:
        found = self.segments()
        return Position(found[-1], self.readable_end(found[-1])) if found else None

    def read(self, start: Position, max_rows: int) -> Iterator[Record]:
        return read_records(self.directory, start, self.readable_end(start.segment), max_rows)

    def delete_segment(self, segment: int) -> None:
        if self.is_live(segment):
            return
        (self.directory / _name(segment)).unlink(missing_ok=True)
        _fsync_directory(self.directory)

    def bytes_after(self, position: Position) -> int:
        total = 0
        for segment in self.segments():
            if segment >= position.segment:
                end = self.readable_end(segment)
                total += max(0, end - position.offset) if segment == position.segment else end
        return total


def read_records(directory: Path, start: Position, end: int, max_rows: int) -> Iterator[Record]:
    """Records of one segment from `start` to `end`, at most about `max_rows` rows (a record is
    never split), stopping at a torn tail."""
    if start.offset >= end:
        return
    with open(directory / _name(start.segment), "rb") as f:
        f.seek(start.offset)
        data = f.read(end - start.offset)
    offset, rows = 0, 0
    while offset + HEADER.size <= len(data) and rows < max_rows:
        magic, length, crc = HEADER.unpack_from(data, offset)
        payload = data[offset + HEADER.size: offset + HEADER.size + length]
        if magic != MAGIC or len(payload) != length or zlib.crc32(payload) != crc:
            return  # a torn tail
        record_start = Position(start.segment, start.offset + offset)
        offset += HEADER.size + length
        record = Record(payload, record_start, Position(start.segment, start.offset + offset))
        rows += record.rows
        yield record


def segment_numbers(directory: Path) -> list[int]:
    return sorted(int(path.stem.split("-")[1]) for path in directory.glob("wal-*.seg"))


def log_id_of(directory: Path) -> str:
    """The log's identity, part of every deduplication token, so that a log directory made anew
    never reuses a token of an earlier one. Made by the first process to open the directory (for
    the HTTP workers' logs: the engine process, before any worker starts)."""
    path = directory / "log-id"
    if path.exists():
        return path.read_text().strip()
    directory.mkdir(parents=True, exist_ok=True)
    log_id = uuid.uuid4().hex
    temporary = directory / "log-id.tmp"
    with open(temporary, "w") as f:
        f.write(log_id)
        f.flush()
        os.fsync(f.fileno())
    os.replace(temporary, path)
    _fsync_directory(directory)
    return log_id


def _name(segment: int) -> str:
    return f"wal-{segment:012d}.seg"


def _fsync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
