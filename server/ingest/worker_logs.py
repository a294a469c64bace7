"""The HTTP workers' logs when WEB_CONCURRENCY > 1 on the embedded engine (server/process/group.py).

Each worker process writes its own write-ahead log, `LOG_DIR/workers/<k>`, and acknowledges
after its fdatasync, as one process does; the engine process (the only one that opens chDB)
reads every worker's log with a `LogReader` and inserts it with a `Consumer` of its own, with the
same checkpoint and deduplication tokens: exactly once, whichever process is killed.

A worker takes the first directory whose lock is free (`claim`), so a worker restarted after a
crash takes the directory its predecessor left and starts a new segment there. The engine makes
the directories and their log ids before any worker starts (`prepare`), and reads every
`workers/<k>` it finds, so a smaller WEB_CONCURRENCY after a larger one still drains them all;
so does a single process (WEB_CONCURRENCY=1) and `analytics-api erase`, through the same readers.

For idempotent retries across workers the engine also knows the event_ids in every worker's log
that are not inserted yet: `WorkerLog.scan()` reads what was synced since the last scan, and a
worker asks the engine before storing an event whose id its own log does not hold.
"""

from __future__ import annotations

import threading
from pathlib import Path

from clickhouse_connect.driver.client import Client

from server.ingest.consumer import Consumer
from server.ingest.dedup import LoggedIds
from server.ingest.wal import LogInUse, LogReader, WriteAheadLog, log_id_of
from server.metrics import Metrics

MAX_WORKERS = 64


def workers_dir(log_dir: str) -> Path:
    return Path(log_dir) / "workers"


def prepare(log_dir: str, workers: int) -> list[Path]:
    """Make `workers/0 … workers-1` with their log ids; return every worker directory there is."""
    for k in range(workers):
        log_id_of(workers_dir(log_dir) / str(k))
    return existing(log_dir)


def existing(log_dir: str) -> list[Path]:
    """The worker logs a group left (a single process inserts what they still hold, too)."""
    root = workers_dir(log_dir)
    if not root.is_dir():
        return []
    return sorted((path for path in root.iterdir() if path.name.isdigit() and (path / "log-id").exists()),
                  key=lambda path: int(path.name))


def claim(log_dir: str, max_bytes: int) -> WriteAheadLog:
    """The first worker log this process can lock (a worker's; LogInUse when all are taken)."""
    for k in range(MAX_WORKERS):
        directory = workers_dir(log_dir) / str(k)
        if not (directory / "log-id").exists():
            break  # the engine makes one per worker: more workers than it expects
        try:
            return WriteAheadLog(directory, max_bytes)
        except LogInUse:
            continue
    raise LogInUse(f"every worker log under {workers_dir(log_dir)} is in use")


class WorkerLog:
    """One worker's log as the engine sees it: its reader, its consumer, the ids it holds."""

    def __init__(self, directory: Path, client: Client, *, batch_seconds: float, batch_max_rows: int,
                 metrics: Metrics) -> None:
        self.reader = LogReader(directory)
        self.ids = LoggedIds()
        self.consumer = Consumer(self.reader, client, batch_seconds=batch_seconds, batch_max_rows=batch_max_rows,
                                 metrics=metrics, on_consumed=self.ids.consumed_through)
        self._scanned = self.consumer.unconsumed_from
        self._lock = threading.Lock()

    def scan(self) -> None:
        """Add the ids of the records synced since the last scan."""
        with self._lock:
            self._scanned = self.ids.add_from_log(self.reader, self._scanned)

    def known(self, ids: list[str]) -> set[str]:
        self.scan()
        return self.ids.known(ids)
