"""Structured logs: one JSON object per line on stderr. Keys and tokens are never written: a
request line (ACCESS_LOG=true) shows the values of credential parameters in its query string
(the tracker's `?key=`, a ClickHouse client's `?password=`) as `***`."""

from __future__ import annotations

import logging
import re
import time

import orjson

# Query-string parameters that carry a credential, on any route (case-insensitive).
SECRET_PARAMETER = re.compile(r"(?i)([?&](?:key|token|api_key|write_key|writekey|read_token|password|access_token)=)[^&\s\"]*")


def redact(message: str) -> str:
    return SECRET_PARAMETER.sub(r"\1***", message) if "=" in message else message


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": redact(record.getMessage()),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(entry).decode()


def configure_logging(level: str) -> None:
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
