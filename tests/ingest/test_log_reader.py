"""A log written by one process and read by another (the HTTP workers' logs, read by the engine
process): the reader sees exactly what the writer has synced, and a torn tail ends a finished
segment instead of stopping its consumer."""

from __future__ import annotations

from pathlib import Path

from server.ingest.consumer import Consumer
from server.ingest.dedup import LoggedIds
from server.ingest.wal import LogReader, Position, WriteAheadLog, encode_record
from server.metrics import Metrics
from server.store import db


def rows(*users: str) -> bytes:
    return b"".join(b'{"dt": "2025-01-01 00:00:00", "event": "view", "user_id": "%s"}\n' % u.encode() for u in users)


def test_the_reader_sees_what_is_synced_and_not_a_write_in_progress(tmp_path: Path):
    writer = WriteAheadLog(tmp_path / "log", max_bytes=10**9)
    end = writer.append([encode_record(rows("a", "b"))])
    reader = LogReader(tmp_path / "log")
    assert reader.log_id == writer.log_id
    assert reader.synced_end() == end
    # Bytes written but not synced yet (the writer between write and fdatasync): not read.
    with open(tmp_path / "log" / f"wal-{end.segment:012d}.seg", "ab") as f:
        f.write(encode_record(rows("c")))
    assert [r.payload for r in reader.read(Position(end.segment, 0), 100)] == [rows("a", "b")]
    assert reader.is_live(end.segment)
    writer.close()


def test_a_torn_tail_in_a_finished_segment_is_skipped(tmp_path: Path, make_settings):
    settings = make_settings()
    db.migrate(settings)
    directory = tmp_path / "log"
    first = WriteAheadLog(directory, max_bytes=10**9)
    end = first.append([encode_record(rows("a"))])
    first.close()
    with open(directory / f"wal-{end.segment:012d}.seg", "ab") as f:  # a process died mid-write
        f.write(encode_record(rows("torn"))[:20])
    second = WriteAheadLog(directory, max_bytes=10**9)  # its successor writes a new segment
    second.append([encode_record(rows("b", "c"))])
    client = db.connect(settings, client_settings=db.INSERT_SETTINGS)
    consumer = Consumer(LogReader(directory), client, batch_seconds=0.05, batch_max_rows=1000, metrics=Metrics(),
                        on_consumed=LoggedIds().consumed_through)
    consumer.start()
    assert consumer.settle(timeout=30)
    consumer.stop(timeout=5)
    stored = db.connect(settings).query("SELECT user_id FROM events ORDER BY user_id").result_rows
    assert stored == [("a",), ("b",), ("c",)]
    assert not (directory / f"wal-{end.segment:012d}.seg").exists()  # finished and deleted
    second.close()
