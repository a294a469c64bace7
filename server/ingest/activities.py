"""Seed 003's `user_activities` body → rows for the `activities` table, or FieldErrors.

Each activity names an operation (insert or delete), a target table and parallel lists of
column names, BigQuery column types and values. Values are checked against their listed type
and stored as canonical text; a wrong type names the activity (index) and the column.
"""

from __future__ import annotations

import base64
import binascii
import re
import uuid
from collections.abc import Callable
from datetime import date, datetime, time
from decimal import Decimal, InvalidOperation
from typing import Any

import orjson

from server.http.errors import FieldError
from server.ingest.validate import INT64_MAX, INT64_MIN, Invalid, epoch_ms_text, kind_of

OPERATIONS = ("insert", "delete")
REQUIRED_KEYS = ("operation", "table", "col_names", "col_types", "col_values")
COLUMN_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")


def _string(value: Any) -> str:
    if not isinstance(value, str):
        raise Invalid(f"must be a string, got {kind_of(value)}")
    return value


def _bytes(value: Any) -> str:
    text = _string(value)
    try:
        base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise Invalid("must be base64 text for type bytes") from None
    return text


def _integer(value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, int):
        raise Invalid(f"must be an integer, got {kind_of(value)}")
    if not INT64_MIN <= value <= INT64_MAX:
        raise Invalid("is out of the INT64 range")
    return str(value)


def _float(value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise Invalid(f"must be a number, got {kind_of(value)}")
    return repr(float(value))


def _numeric(value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise Invalid(f"must be a number or decimal text, got {kind_of(value)}")
    try:
        number = Decimal(str(value))
    except InvalidOperation:
        raise Invalid(f"is not a decimal number: {str(value)[:64]!r}") from None
    if not number.is_finite():
        raise Invalid("must be a finite number")
    return str(number)


def _boolean(value: Any) -> str:
    if not isinstance(value, bool):
        raise Invalid(f"must be a boolean, got {kind_of(value)}")
    return "true" if value else "false"


def _parsed(parse: Callable[[str], Any], what: str) -> Callable[[Any], str]:
    def check(value: Any) -> str:
        text = _string(value)
        try:
            return str(parse(text).isoformat())
        except ValueError:
            raise Invalid(f"is not a {what}: {text[:64]!r}") from None

    return check


def _record(value: Any) -> str:
    if not isinstance(value, dict):
        raise Invalid(f"must be an object, got {kind_of(value)}")
    return orjson.dumps(value).decode()


TYPE_CHECKS: dict[str, Callable[[Any], str]] = {
    "string": _string,
    "bytes": _bytes,
    "integer": _integer,
    "float": _float,
    "numeric": _numeric,
    "bignumeric": _numeric,
    "boolean": _boolean,
    "timestamp": _parsed(datetime.fromisoformat, "timestamp"),
    "datetime": _parsed(datetime.fromisoformat, "datetime"),
    "date": _parsed(date.fromisoformat, "date (YYYY-MM-DD)"),
    "time": _parsed(time.fromisoformat, "time (HH:MM:SS)"),
    "geography": _string,
    "record": _record,
}


def validate_activities(body: Any, max_items: int, max_length: int, now_ms: int) -> tuple[list[dict[str, Any]], list[FieldError]]:
    if not isinstance(body, dict) or "user_activities" not in body:
        return [], [FieldError(0, "user_activities", "is required: an array of activities")]
    activities = body["user_activities"]
    if not isinstance(activities, list) or not activities:
        return [], [FieldError(0, "user_activities", "must be a non-empty array of activities")]
    if len(activities) > max_items:
        return [], [FieldError(0, "user_activities", f"holds {len(activities)} activities; at most {max_items}")]
    received_at = epoch_ms_text(now_ms)
    rows: list[dict[str, Any]] = []
    errors: list[FieldError] = []
    for index, activity in enumerate(activities):
        row = _validate_activity(index, activity, max_length, errors)
        if row is not None:
            row["received_at"] = received_at
            rows.append(row)
    return (rows, []) if not errors else ([], errors)


def _validate_activity(index: int, activity: Any, max_length: int, errors: list[FieldError]) -> dict[str, Any] | None:
    if not isinstance(activity, dict):
        errors.append(FieldError(index, "(activity)", f"must be an object, got {kind_of(activity)}"))
        return None
    missing = [key for key in REQUIRED_KEYS if key not in activity]
    for key in missing:
        errors.append(FieldError(index, key, "is required"))
    if missing:
        return None
    before = len(errors)
    operation, table = activity["operation"], activity["table"]
    names, types, values = activity["col_names"], activity["col_types"], activity["col_values"]
    if operation not in OPERATIONS:
        errors.append(FieldError(index, "operation", f"must be one of {', '.join(OPERATIONS)}"))
    if not isinstance(table, str) or not table or len(table) > max_length:
        errors.append(FieldError(index, "table", f"must be a table name of 1 to {max_length} characters"))
    for key, value in (("col_names", names), ("col_types", types), ("col_values", values)):
        if not isinstance(value, list):
            errors.append(FieldError(index, key, f"must be an array, got {kind_of(value)}"))
    if len(errors) > before:
        return None
    if not (len(names) == len(types) == len(values)):
        errors.append(FieldError(index, "col_values", "col_names, col_types and col_values must have the same length"))
        return None
    canonical: list[str | None] = []
    for position, (name, kind, value) in enumerate(zip(names, types, values, strict=False)):
        column = name if isinstance(name, str) else f"#{position}"
        if not isinstance(name, str) or not COLUMN_NAME.match(name):
            errors.append(FieldError(index, f"col_names[{position}]", "must be a column name (letters, digits, _)"))
            continue
        check = TYPE_CHECKS.get(kind.lower()) if isinstance(kind, str) else None
        if check is None:
            errors.append(FieldError(index, f"col_types[{position}] ({column})", f"must be one of {', '.join(TYPE_CHECKS)}"))
            continue
        if value is None:
            canonical.append(None)
            continue
        try:
            text = check(value)
            if len(text) > max_length:
                raise Invalid(f"is longer than {max_length} characters")
            canonical.append(text)
        except Invalid as exc:
            errors.append(FieldError(index, f"col_values[{position}] ({column})", f"{kind.lower()} value {exc}"))
    if len(errors) > before:
        return None
    return {
        "activity_id": str(uuid.uuid4()),
        "operation": operation,
        "target_table": table,
        "col_names": names,
        "col_types": [k.lower() for k in types],
        "col_values": canonical,
    }
