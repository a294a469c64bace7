"""Raw items → rows for the `events` table, or a list of `FieldError` values.

Accepts every seed client's field names (`event_time`, `event_name`, `userid`, `page`, …),
converts form strings to each column's type, and moves unknown scalar fields into `props`.
A row is a dict keyed by column name, ready for JSONEachRow; `dt` and `received_at` are
written as "seconds.milliseconds" text, which ClickHouse reads exactly into DateTime64(3).
"""

from __future__ import annotations

import re
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from server.config import Settings
from server.http.errors import FieldError

# One row for `events`, keyed by column name, as JSONEachRow will encode it.
Row = dict[str, Any]

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
# Epoch numbers at or above this are milliseconds: 1e11 seconds is the year 5138.
EPOCH_MS_THRESHOLD = 100_000_000_000
MAX_PROP_KEY_LENGTH = 128
CONTROL_CHARACTERS = re.compile(r"[\x00-\x1f\x7f]")
NUMERIC_TEXT = re.compile(r"^-?\d+(\.\d+)?$")
INTEGER_TEXT = re.compile(r"^[+-]?\d+$")

# Client field name -> column. Canonical names map to themselves.
ALIASES = {
    "dt": "dt", "event_time": "dt", "timestamp": "dt",
    "event": "event", "event_name": "event",
    "user_id": "user_id", "userid": "user_id",
    "screen": "screen", "page": "screen",
}
OPTIONAL_STRINGS = ("session_id", "elem", "app_id", "type", "country", "region", "city", "referrer",
                    "utm_source", "utm_medium", "utm_campaign", "utm_term", "utm_content")
REQUIRED = ("dt", "event", "user_id")


@dataclass(frozen=True)
class Limits:
    max_string_length: int
    max_props: int
    min_time_ms: int
    max_future_ms: int

    @classmethod
    def from_settings(cls, settings: Settings) -> Limits:
        start = datetime(settings.min_event_year, 1, 1, tzinfo=UTC)
        return cls(
            max_string_length=settings.max_string_length,
            max_props=settings.max_props,
            min_time_ms=int(start.timestamp() * 1000),
            max_future_ms=settings.max_future_seconds * 1000,
        )


class Invalid(Exception):
    """One field's value is unusable; caught inside this module and turned into a FieldError."""


def validate_events(items: list[Any], limits: Limits, now_ms: int | None = None,
                    anonymous: bool = False) -> tuple[list[Row], list[FieldError]]:
    """Validate every item; return (rows, []) or ([], errors) — a batch is all or nothing.

    `anonymous`: events may leave out `user_id` (enrich.py gives them a visitor id)."""
    now_ms = int(time.time() * 1000) if now_ms is None else now_ms
    received_at = epoch_ms_text(now_ms)
    latest_ms = now_ms + limits.max_future_ms
    rows: list[Row] = []
    errors: list[FieldError] = []
    for index, item in enumerate(items):
        if not isinstance(item, dict):
            errors.append(FieldError(index, "(event)", f"must be an object, got {kind_of(item)}"))
            continue
        row = _validate_event(index, item, limits, latest_ms, errors, anonymous)
        if row is not None:
            row["received_at"] = received_at
            rows.append(row)
    return (rows, []) if not errors else ([], errors)


def _validate_event(index: int, item: dict[str, Any], limits: Limits, latest_ms: int,
                    errors: list[FieldError], anonymous: bool) -> Row | None:
    row: dict[str, Any] = {}
    given_as: dict[str, str] = {}
    props: dict[str, str] = {}
    failed = False
    for key, value in item.items():
        column = ALIASES.get(key, key)
        try:
            if column in given_as:
                raise Invalid(f"given twice, as {given_as[column]!r} and {key!r}")
            given_as[column] = key
            if column == "dt":
                row["dt"] = epoch_ms_text(parse_time_ms(value, limits.min_time_ms, latest_ms))
            elif column == "event":
                row["event"] = event_name(value, limits.max_string_length)
            elif column == "user_id":
                row["user_id"] = identifier(value, limits.max_string_length)
            elif column == "screen" or column in OPTIONAL_STRINGS:
                if value is not None:
                    row[column] = text_value(value, limits.max_string_length)
            elif column == "amount":
                if value is not None:
                    row["amount"] = integer(value)
            elif column == "event_id":
                row["event_id"] = event_id(value)
            elif column == "props":
                add_props(props, value, limits, explicit=True)
            else:
                add_props(props, {key: value}, limits, explicit=False)
        except Invalid as exc:
            errors.append(FieldError(index, key, str(exc)))
            failed = True
    for column in REQUIRED:
        if column not in given_as and not (anonymous and column == "user_id"):
            names = " or ".join(k for k, c in ALIASES.items() if c == column)
            why = ("; an event without one gets a visitor id only when the request has a User-Agent"
                   if column == "user_id" else "")
            errors.append(FieldError(index, column, f"is required (as {names}){why}"))
            failed = True
    if len(props) > limits.max_props:
        errors.append(FieldError(index, "props", f"has {len(props)} properties; at most {limits.max_props}"))
        failed = True
    if failed:
        return None
    if props:
        row["props"] = props
    # No event_id: the column's DEFAULT generateUUIDv4() fills it. Generating it here cost ~9% of
    # the request path under load (os.urandom per call; measured with py-spy).
    return row


def epoch_ms_text(ms: int) -> str:
    return f"{ms // 1000}.{ms % 1000:03d}"


def parse_time_ms(value: Any, min_ms: int, max_ms: int) -> int:
    """An event time as epoch milliseconds: ISO-8601/RFC 3339 text, or epoch seconds or milliseconds."""
    if isinstance(value, bool) or value is None:
        raise Invalid("must be a time: ISO-8601 text or epoch seconds or milliseconds")
    if isinstance(value, str):
        text = value.strip()
        if len(text) > 64:
            raise Invalid("is not a time: longer than 64 characters")
        if NUMERIC_TEXT.match(text):
            value = float(text) if "." in text else int(text)
        else:
            value = _parse_iso(text)
    if isinstance(value, (int, float)):
        if value != value or value in (float("inf"), float("-inf")):
            raise Invalid("must be a finite number")
        ms = int(round(value)) if abs(value) >= EPOCH_MS_THRESHOLD else int(round(value * 1000))
    elif isinstance(value, datetime):
        ms = int(value.timestamp() * 1000)
    else:
        raise Invalid(f"must be a time, got {kind_of(value)}")
    if ms < min_ms:
        raise Invalid(f"is before {_iso(min_ms)}")
    if ms > max_ms:
        raise Invalid(f"is more than the allowed margin ahead of the server clock (latest {_iso(max_ms)})")
    return ms


def _parse_iso(text: str) -> datetime:
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise Invalid(f"is not an ISO-8601 time or an epoch number: {text[:64]!r}") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def event_name(value: Any, max_length: int) -> str:
    if not isinstance(value, str):
        raise Invalid(f"must be a string, got {kind_of(value)}")
    if not value.strip():
        raise Invalid("must not be empty")
    if CONTROL_CHARACTERS.search(value):
        raise Invalid("must not contain control characters")
    return _bounded(value, max_length)


def identifier(value: Any, max_length: int) -> str:
    """A user id: text, or an integer (stored as its decimal text)."""
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    if not isinstance(value, str):
        raise Invalid(f"must be a string, got {kind_of(value)}")
    if not value.strip():
        raise Invalid("must not be empty")
    return _bounded(value, max_length)


def text_value(value: Any, max_length: int) -> str:
    if isinstance(value, str):
        return _bounded(value, max_length)
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    raise Invalid(f"must be a string, got {kind_of(value)}")


def integer(value: Any) -> int:
    if isinstance(value, bool):
        raise Invalid("must be an integer, got a boolean")
    if isinstance(value, float):
        if not value.is_integer():
            raise Invalid(f"must be an integer, got {value!r}")
        value = int(value)
    elif isinstance(value, str):
        # 20 digits hold any Int64; a longer text would also trip Python's int() digit limit.
        if len(value.strip()) > 21 or not INTEGER_TEXT.match(value.strip()):
            raise Invalid(f"must be an integer, got {value[:64]!r}")
        value = int(value)
    elif not isinstance(value, int):
        raise Invalid(f"must be an integer, got {kind_of(value)}")
    if not INT64_MIN <= value <= INT64_MAX:
        raise Invalid("is out of the Int64 range")
    return int(value)


def event_id(value: Any) -> str:
    if not isinstance(value, str):
        raise Invalid(f"must be a UUID string, got {kind_of(value)}")
    try:
        return str(uuid.UUID(value))
    except ValueError:
        raise Invalid(f"is not a UUID: {value[:64]!r}") from None


def add_props(props: dict[str, str], values: Any, limits: Limits, explicit: bool) -> None:
    if not isinstance(values, dict):
        raise Invalid(f"must be an object of scalar values, got {kind_of(values)}")
    for key, value in values.items():
        if value is None:
            continue
        if not key or len(key) > MAX_PROP_KEY_LENGTH:
            raise Invalid(f"property names must be 1 to {MAX_PROP_KEY_LENGTH} characters")
        if isinstance(value, str):
            text = _bounded(value, limits.max_string_length)
        elif isinstance(value, bool):
            text = "true" if value else "false"
        elif isinstance(value, (int, float)):
            text = repr(value)
        else:
            where = f"props.{key}" if explicit else key
            raise Invalid(f"{where} must be a string, number or boolean, got {kind_of(value)}")
        props[key] = text


def _bounded(text: str, max_length: int) -> str:
    if len(text) > max_length:
        raise Invalid(f"is {len(text)} characters long; at most {max_length}")
    return text


def kind_of(value: Any) -> str:
    return {dict: "an object", list: "an array", str: "a string", bool: "a boolean", type(None): "null"}.get(
        type(value), type(value).__name__
    )
