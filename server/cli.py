"""`analytics-api serve | migrate | seed-demo | rollups | import | export | erase | backup | restore | loadtest`: parses
arguments, builds settings and the app (or calls the module that does the work), nothing more."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING

from server.config import ConfigError, Settings
from server.logs import configure_logging

if TYPE_CHECKING:  # the CLI imports the engine's client only for the commands that use it
    from clickhouse_connect.driver.client import Client


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="analytics-api", description="Event-ingest server for ClickHouse.")
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="migrate the schema, then serve HTTP")
    serve.add_argument("--host", help="address to bind (default: HOST or 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port to listen on (default: PORT or 18888)")
    engine = commands.add_parser("engine", help="(started by `serve` with WEB_CONCURRENCY > 1 on the embedded engine) "
                                                "the process that owns the engine, on a unix socket")
    engine.add_argument("--socket", required=True, help="the unix socket to listen on")
    commands.add_parser("migrate", help="apply pending migrations and exit")
    demo = commands.add_parser("seed-demo", help="migrate, then add demo events made inside ClickHouse")
    demo.add_argument("--events", type=int, default=1_000_000, help="how many events (default 1,000,000)")
    demo.add_argument("--days", type=int, default=180, help="spread over this many days before now")
    demo.add_argument("--no-rollups", dest="rollups", action="store_false",
                      help="leave the finished days to the server's rollup job (default: store them now)")
    commands.add_parser("rollups", help="migrate, then run one round of the rollup job and exit (the server "
                                        "stopped, on the embedded engine: a first round over much history in "
                                        "its own process)")
    out = commands.add_parser("export", help="write events of a date range to a file (the server stopped, "
                                               "on the embedded engine)")
    out.add_argument("output", help="the file; .gz at the end gzips it")
    out.add_argument("--format", default=None, help="ndjson, csv or parquet (default: from the file name)")
    for name in ("from", "to", "tz", "app_id", "country", "event", "bots"):
        out.add_argument(f"--{name.replace('_', '-')}", dest=name, help=f"as the reports' `{name}` parameter")
    into = commands.add_parser("import", help="import events from NDJSON, CSV or Parquet files (the server stopped, "
                                               "on the embedded engine)")
    into.add_argument("paths", nargs="+", help="files; .gz is read gzipped")
    into.add_argument("--format", choices=["ndjson", "csv", "parquet"], help="default: from the extension")
    into.add_argument("--app-id", default="", help="app_id for events that have none")
    into.add_argument("--quiet", action="store_true", help="no progress bar")
    save = commands.add_parser("backup", help="write what cannot be derived (events, activities, imports, salts) to a "
                                              "new directory, after inserting what the logs hold (the server stopped; "
                                              "a running one: POST /admin/backup)")
    save.add_argument("path", help="a new or empty directory")
    back = commands.add_parser("restore", help="migrate, then insert a backup into an empty database (CLICKHOUSE_URL); "
                                               "the views and the rollup job make the rest again")
    back.add_argument("path", help="the backup's directory")
    gone = commands.add_parser("erase", help="erase one user's events everywhere, rollups included (the server "
                                               "stopped, on the embedded engine)")
    gone.add_argument("--user-id", required=True, help="the user_id to erase")
    gone.add_argument("--app-id", default="", help="only this app's events (default: every app)")
    load = commands.add_parser("loadtest", help="run the locust scenario against a running server")
    load.add_argument("--target", default="http://127.0.0.1:18888", help="the server's base URL")
    load.add_argument("--rps", type=float, default=300.0, help="requests per second to hold (default 300)")
    load.add_argument("--seconds", type=int, default=30, help="how long (default 30)")
    load.add_argument("--users", type=int, help="simulated users (default: from the rate)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)

    if args.command == "loadtest":
        from loadgen.loadtest import run  # needs the [load] extra (locust)

        return run(args.target, args.rps, args.seconds, args.users)

    overrides = {k: v for k, v in (("host", getattr(args, "host", None)), ("port", getattr(args, "port", None))) if v}
    try:
        settings = Settings.from_env(**overrides)
        from server.process import preflight

        held = preflight.check(settings, serving=args.command == "serve")
    except ConfigError as exc:
        print(f"analytics-api: configuration error: {exc}", file=sys.stderr)
        return 2
    configure_logging(settings.log_level)
    try:
        return run_command(settings, args, held)
    finally:
        if held is not None:
            held.close()  # the engine's last client if the command closed its own: it shuts down here


def run_command(settings: Settings, args: argparse.Namespace, held: Client | None) -> int:
    """`held`: the preflight's client, still open (the engine stays up meanwhile). A server closes it
    once its own clients are open (its app's start), as its stop may end by a signal."""
    if args.command == "export":
        return export(settings, args)
    if args.command in ("backup", "restore"):
        return backup_or_restore(settings, args.command, args.path)
    if args.command == "erase":
        return erase(settings, args.user_id, args.app_id)
    if args.command == "import":
        from server.data.importer import ImportFailed, run_import

        try:
            return run_import(settings, args.paths, args.format, args.app_id, progress=not args.quiet)
        except ImportFailed as exc:
            print(f"analytics-api: {exc}", file=sys.stderr)
            return 2

    if args.command in ("migrate", "seed-demo", "rollups"):
        from server.store import db

        applied = db.migrate(settings)
        print("applied: " + ", ".join(applied) if applied else "schema is up to date")
        if args.command == "seed-demo":
            return seed_demo(settings, args.events, args.days, args.rollups)
        if args.command == "rollups":
            run_rollups(settings)
        return 0
    if args.command == "engine":
        from server.process.group import serve_engine

        return serve_engine(settings, args.socket, held)
    return serve(settings, held)


def serve(settings: Settings, held: Client | None = None) -> int:
    import uvicorn

    if settings.web_concurrency > 1 or settings.engine_process or settings.prometheus_multiproc_dir:
        prepare_metrics_dir(settings)
    if settings.engine_process:
        from server.process.group import serve_group

        return serve_group(settings)
    # log_config=None: our JSON handler.
    if settings.web_concurrency > 1:
        # Each worker builds its app from the environment (a ClickHouse server: checked by Settings).
        uvicorn.run("server.process.app:create_app_from_env", factory=True, workers=settings.web_concurrency,
                    host=settings.host, port=settings.port, access_log=settings.access_log,
                    log_level=settings.log_level, log_config=None,
                    forwarded_allow_ips=settings.forwarded_allow_ips)
        return 0
    from server.process.app import create_app

    # The embedded engine allows one process per data directory: one process, one event loop.
    # workers=1 said: uvicorn would otherwise read WEB_CONCURRENCY itself, and fail on `auto`.
    uvicorn.run(create_app(settings, freeze_after_start=True, held=held), workers=1, host=settings.host, port=settings.port,
                access_log=settings.access_log, log_level=settings.log_level, log_config=None,
                forwarded_allow_ips=settings.forwarded_allow_ips)
    return 0


def prepare_metrics_dir(settings: Settings) -> None:
    """prometheus-client's multiprocess directory, set before any worker imports the client. The
    parent of several workers owns it and empties it; a single process, or one worker with the
    engine's process, only creates it, because separately started servers may share it."""
    import os
    import tempfile
    from pathlib import Path

    directory = settings.prometheus_multiproc_dir or tempfile.mkdtemp(prefix="analytics-api-metrics-")
    Path(directory).mkdir(parents=True, exist_ok=True)
    if settings.web_concurrency > 1:
        for stale in Path(directory).glob("*.db"):
            stale.unlink()
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = directory


def export(settings: Settings, args: argparse.Namespace) -> int:
    from pathlib import Path

    from server.data.export import export_to_file, parse_format
    from server.http.errors import ValidationFailed
    from server.reports.params import report_range
    from server.store import db

    path = Path(args.output)
    given = {name: getattr(args, name) for name in ("from", "to", "tz", "app_id", "country", "event", "bots")}
    try:
        report = report_range({k: v for k, v in given.items() if v is not None})
        fmt = parse_format(args.format or path.name.removesuffix(".gz").rsplit(".", 1)[-1])
    except ValidationFailed as exc:
        print(f"analytics-api: {exc.message}", file=sys.stderr)
        return 2
    db.migrate(settings)
    written = export_to_file(settings, report, fmt, path)
    print(f"wrote {written:,} bytes of events from {report.first_day} to {report.last_day} to {path}")
    return 0


def run_offline(settings: Settings, work: Callable[[Client], dict[str, object]],
                insert_logs: bool = True) -> dict[str, object]:
    """Migrate, then `work(client)` with the server stopped; with `insert_logs`, once what the logs
    hold (this process's and a group's workers') is inserted, the log's consumer paused."""
    import asyncio

    from server.data.erase import QUIESCE_TIMEOUT_SECONDS
    from server.ingest import worker_logs
    from server.ingest.pipeline import Pipeline
    from server.metrics import Metrics
    from server.store import db

    async def run() -> dict[str, object]:
        db.migrate(settings)
        client = db.connect(settings)
        try:
            if not insert_logs:
                return await asyncio.to_thread(work, client)
            pipeline = Pipeline(settings, Metrics(), worker_logs.existing(settings.log_dir))
            pipeline.open()
            try:
                async with pipeline.quiesced(QUIESCE_TIMEOUT_SECONDS):
                    return await asyncio.to_thread(work, client)
            finally:
                await pipeline.close()
        finally:
            client.close()

    return asyncio.run(run())


def erase(settings: Settings, user_id: str, app_id: str) -> int:
    """Erase after inserting what the logs hold (they may hold the user's events)."""
    import orjson

    from server.data.erase import erase_person

    print(orjson.dumps(run_offline(settings, lambda client: erase_person(client, user_id, app_id).body())).decode())
    return 0


def backup_or_restore(settings: Settings, command: str, path: str) -> int:
    """`backup`: write the backup after inserting what the logs hold; `restore`: insert the backup
    (server/data/backup.py)."""
    from pathlib import Path

    import orjson

    from server.data.backup import BackupRefused, backup, restore

    try:
        if command == "restore":
            done = run_offline(settings, lambda client: restore(client, Path(path)).body(), insert_logs=False)
        else:
            done = run_offline(settings, lambda client: backup(client, Path(path)).body())
        print(orjson.dumps(done).decode())
    except BackupRefused as refused:
        print(f"analytics-api: {refused}", file=sys.stderr)
        return 2
    return 0


def seed_demo(settings: Settings, events: int, days: int, rollups: bool = True) -> int:
    """Demo events, then (unless `rollups` is False) the rollup job's first round (`run_rollups`)."""
    import time

    from server.store import db

    if events <= 0 or not 1 <= days <= 3650:
        print("analytics-api: --events must be positive and --days between 1 and 3650", file=sys.stderr)
        return 2
    client = db.connect(settings)
    try:
        started = time.perf_counter()
        added = db.seed_demo(client, events, days)
        seconds = time.perf_counter() - started
        print(f"added {added:,} demo events in {seconds:.1f} s ({added / seconds * 60:,.0f} rows/minute)")
    finally:
        client.close()
    if rollups:
        run_rollups(settings)
    return 0


def run_rollups(settings: Settings) -> None:
    """One round of the rollup job (server/reports/rollups.py), as the server's: a server started
    afterwards reads the finished days at once instead of computing them all while it takes its
    first traffic (a round over all history inside the server leaves it ~60 MB larger: memory no
    purge gives back)."""
    import time

    from server.people import stitch
    from server.reports import configured, rollup_job, stored_rows
    from server.store import db

    if not settings.zones:
        return
    client = db.connect(settings)
    try:
        started = time.perf_counter()
        if settings.embedded:  # nothing else writes: this process has the engine
            stitched = stitch.stitch(client, settings.identity_merge_identified)
            print(f"identity joins decided {stitched.decided}, ids moved to their person {stitched.moved}")
        done = rollup_job.refresh(client, settings.zones, settings.rollup_days, merge=not settings.clickhouse_cluster,
                                      more=configured.stored_reports(settings))
        if not settings.clickhouse_cluster:
            stored_rows.drop_unreferenced(client)
        print(f"stored {done.days:,} finished report days ({done.restamped:,} stamped again) in "
              f"{time.perf_counter() - started:.1f} s")
    finally:
        client.close()


if __name__ == "__main__":
    sys.exit(main())
