"""`analytics-api serve | migrate`: parses arguments, builds settings and the app, nothing more."""

from __future__ import annotations

import argparse
import sys

from server.config import ConfigError, Settings
from server.logs import configure_logging


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="analytics-api", description="Event-ingest server for ClickHouse.")
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="migrate the schema, then serve HTTP")
    serve.add_argument("--host", help="address to bind (default: HOST or 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port to listen on (default: PORT or 18888)")
    commands.add_parser("migrate", help="apply pending migrations and exit")
    args = parser.parse_args(argv)

    overrides = {k: v for k, v in (("host", getattr(args, "host", None)), ("port", getattr(args, "port", None))) if v}
    try:
        settings = Settings.from_env(**overrides)
    except ConfigError as exc:
        print(f"analytics-api: configuration error: {exc}", file=sys.stderr)
        return 2
    configure_logging(settings.log_level)

    if args.command == "migrate":
        from server import db

        applied = db.migrate(settings)
        print("applied: " + ", ".join(applied) if applied else "schema is up to date")
        return 0

    import uvicorn

    from server.app import create_app

    uvicorn.run(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        access_log=settings.access_log,
        log_level=settings.log_level,
        log_config=None,  # keep our JSON handler for uvicorn's loggers too
        # Embedded chDB allows one engine per process, so the embedded default is one process;
        # with a ClickHouse server, run several (WEB_CONCURRENCY, see docker/).
        workers=None,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
