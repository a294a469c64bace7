"""validate.py on its own: conversions, limits, and odd values that must never raise."""

from __future__ import annotations

import pytest

from server.config import Settings
from server.ingest.validate import Limits, validate_events

LIMITS = Limits.from_settings(Settings.from_env({}))
NOW_MS = 1_764_000_000_000  # 2025-11-24
BASE = {"dt": "2025-01-01T00:00:00Z", "event": "e", "user_id": "u"}

ODD_VALUES = [
    None, True, False, 0, -1, 2**63, -(2**63) - 1, 10**400, 1e308, -1e308, 0.1, "", " ", "\x00",
    "9" * 5000, "-" + "1" * 5000, "1." + "9" * 5000, "2025-02-30", "2025-01-01T25:00:00Z", "1e5",
    "nan", "inf", "\ud800", "é" * 2000, [], {}, [1, [2]], {"a": {"b": 1}}, {"": 1}, {"x" * 200: 1},
]


def test_epoch_seconds_and_milliseconds_are_told_apart():
    rows, _ = validate_events([dict(BASE, dt=1740827471), dict(BASE, dt=1740827471123)], LIMITS, NOW_MS)
    assert [r["dt"] for r in rows] == ["1740827471.000", "1740827471.123"]


def test_form_strings_are_converted():
    rows, errors = validate_events([dict(BASE, amount="-42", dt="1740827471.5", user_id="7")], LIMITS, NOW_MS)
    assert errors == []
    assert (rows[0]["amount"], rows[0]["dt"], rows[0]["user_id"]) == (-42, "1740827471.500", "7")


def test_rows_carry_received_at_and_only_given_columns():
    rows, _ = validate_events([BASE], LIMITS, NOW_MS)
    assert rows == [{"dt": "1735689600.000", "event": "e", "user_id": "u", "received_at": "1764000000.000"}]


@pytest.mark.parametrize("field", ["dt", "event_time", "event", "user_id", "screen", "amount", "event_id",
                                   "props", "country", "anything"])
def test_odd_values_give_a_row_or_a_field_error_never_an_exception(field):
    for value in ODD_VALUES:
        rows, errors = validate_events([dict(BASE, **{field: value})], LIMITS, NOW_MS)
        assert bool(rows) != bool(errors), (field, value)
        if field == "event_time":
            assert errors  # given twice with dt
        for error in errors:
            assert error.index == 0 and error.reason
