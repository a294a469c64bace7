"""Backups of what cannot be derived, and their restore into an empty database.

What is kept: the tables no view or job makes (BASE_TABLES: the events, the seed-003 activities,
the imports' progress, the visitors' salts), each as gzipped Native files (`events` one file per
UTC day), and `manifest.json`, written last (a directory without it is not a backup), with each
file's rows. Everything else is made again from `events` on restore: the rows go in through the
materialized views exactly as ingest sent them (the rollups, identities, changes), and the rollup
job stores the finished days again. ClickHouse's own BACKUP is not used: the embedded engine
refuses it (`backups.allowed_path` cannot be configured in chDB, measured with chDB 26.9); on a
ClickHouse server, its BACKUP/RESTORE (docs/operations.md) also keeps the derived tables.

Consistency with the write-ahead log: a backup runs with the log's consumer paused after it
inserted everything acknowledged (`Pipeline.quiesced`), so every event acknowledged before the
backup began is in it; the ones acknowledged while it runs stay in the log and are inserted after.
"""

from __future__ import annotations

import asyncio
import gzip
import logging
import os
import re
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

import orjson
from clickhouse_connect.driver.client import Client
from clickhouse_connect.driver.exceptions import ClickHouseError
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from server.config import Settings
from server.data.erase import QUIESCE_TIMEOUT_SECONDS, require_admin
from server.http.bodies import read_decoded_body
from server.http.errors import ApiError, BadBody, Unavailable, first_line
from server.http.responses import json_response
from server.http.state import services
from server.ingest.pipeline import Pipeline
from server.store import db

log = logging.getLogger(__name__)
NAME = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]{0,99}")

BASE_TABLES = ("events", "activities", "imports", "visitor_salts")
MANIFEST = "manifest.json"
FORMAT = 1


class BackupRefused(Exception):
    """The backup or restore cannot be done as asked (the message says why); nothing was changed."""


@dataclass
class Manifest:
    format: int
    created: str
    schema_version: int
    files: dict[str, int] = field(default_factory=dict)  # file -> rows
    tables: dict[str, int] = field(default_factory=dict)  # table -> rows
    seconds: float = 0.0

    def body(self) -> dict[str, Any]:
        return asdict(self)


def schema_version(client: Client) -> int:
    return int(db.scalar(client, "SELECT max(version) FROM schema_migrations FINAL", {}) or 0)


def backup(client: Client, path: Path) -> Manifest:
    """Write the backup into `path` (new or empty). Call with the pipeline quiesced."""
    started = time.perf_counter()
    if path.exists() and any(path.iterdir()):
        raise BackupRefused(f"{path} is not empty: a backup goes into a new directory")
    path.mkdir(parents=True, exist_ok=True)
    manifest = Manifest(FORMAT, time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), schema_version(client))
    days = [row[0] for row in client.query("SELECT DISTINCT toDate(dt, 'UTC') FROM events ORDER BY 1").result_rows]
    pieces: list[tuple[str, str, str, dict[str, Any]]] = [
        ("events", f"events/{day.isoformat()}.native.gz", "toDate(dt, 'UTC') = {day:Date}", {"day": day})
        for day in days]
    pieces += [(table, f"{table}.native.gz", "1", {}) for table in BASE_TABLES[1:]]
    for table, name, where, parameters in pieces:
        rows = int(db.scalar(client, f"SELECT count() FROM {table} WHERE {where}", parameters))
        data = client.raw_query(f"SELECT * FROM {table} WHERE {where}", parameters=parameters, fmt="Native")
        _write(path / name, gzip.compress(data, compresslevel=1))
        manifest.files[name] = rows
        manifest.tables[table] = manifest.tables.get(table, 0) + rows
    manifest.seconds = round(time.perf_counter() - started, 3)
    _write(path / MANIFEST, orjson.dumps(manifest.body(), option=orjson.OPT_INDENT_2))
    return manifest


def read_manifest(path: Path) -> Manifest:
    try:
        found = orjson.loads((path / MANIFEST).read_bytes())
    except FileNotFoundError:
        raise BackupRefused(f"{path} holds no {MANIFEST}: not a backup, or one that did not finish") from None
    if found.get("format") != FORMAT:
        raise BackupRefused(f"{path}: backup format {found.get('format')!r}, this version reads {FORMAT}")
    return Manifest(**found)


def restore(client: Client, path: Path) -> Manifest:
    """Insert a backup into the (migrated) database of `client`, which must hold no events."""
    manifest = read_manifest(path)
    if manifest.schema_version > schema_version(client):
        raise BackupRefused(f"the backup's schema ({manifest.schema_version}) is newer than this version's "
                            f"({schema_version(client)}): restore it with the version that made it")
    if db.scalar(client, "SELECT count() FROM events", {}):
        raise BackupRefused("the database already holds events: restore into a new CLICKHOUSE_URL")
    for name, rows in manifest.files.items():
        table = name.split("/")[0].split(".")[0]
        data = gzip.decompress((path / name).read_bytes())
        if rows:
            # Each file's blocks once: no deduplication against blocks of the same rows sent before.
            client.raw_insert(table, insert_block=data, fmt="Native", settings={"insert_deduplicate": 0})
    return manifest


def _write(target: Path, data: bytes) -> None:
    """The file complete and on disk before the next one is begun (the manifest comes last)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target, "wb") as out:
        out.write(data)
        out.flush()
        os.fsync(out.fileno())



class BackupServices(Protocol):
    settings: Settings
    pipeline: Pipeline


async def post_backup(request: Request) -> Response:
    """`POST /admin/backup {"name": "..."}` (ADMIN_TOKEN): a backup of the running server into
    BACKUP_DIR/name, with the log's consumer paused while it runs (ingest goes on into the log)."""
    found: BackupServices = services(request)
    require_admin(request, found.settings.admin_token, "backups over HTTP")
    try:
        document = orjson.loads(await read_decoded_body(request, 4096))
    except orjson.JSONDecodeError:
        raise BadBody('send {"name": "..."}', field="body") from None
    name = document.get("name") if isinstance(document, dict) else None
    if not isinstance(name, str) or not NAME.fullmatch(name):
        raise BadBody("name must be 1 to 100 letters, digits, '.', '_' or '-' (not starting with '.')", field="name")
    client = await asyncio.to_thread(db.connect, found.settings)
    try:
        async with found.pipeline.quiesced(QUIESCE_TIMEOUT_SECONDS):
            manifest = await asyncio.to_thread(backup, client, Path(found.settings.backup_dir) / name)
    except BackupRefused as refused:
        raise Conflict(str(refused), field="name") from None
    except ClickHouseError as exc:
        raise Unavailable(f"the backup did not finish ({first_line(exc)}); run it again into a new name") from None
    finally:
        client.close()
    log.info("backup %s: %s", name, manifest.tables)
    return json_response({"path": str(Path(found.settings.backup_dir) / name), **manifest.body()})


class Conflict(ApiError):
    status = 409
    code = "conflict"


def routes() -> list[Route]:
    return [Route("/admin/backup", post_backup, methods=["POST"])]
