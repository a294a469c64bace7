"""Report query parameters → a validated `ReportRange`, or a 422 naming the parameter."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from server.config import known_zones
from server.http.errors import FieldError, ValidationFailed

MAX_RANGE_DAYS = 400
DEFAULT_RANGE_DAYS = 30
LOOKBACK_DAYS = 29  # MAU is the 30 days ending with a date


class BadParameter(ValidationFailed):
    def __init__(self, name: str, reason: str):
        super().__init__([FieldError(0, name, reason)])
        self.message = f"query parameter {name!r} {reason}"
        self.field = name


@dataclass(frozen=True)
class ReportRange:
    first_day: date
    last_day: date
    tz: str
    app_id: str = ""
    country: str = ""
    event: str = ""
    group_id: str = ""  # only the members of this group (`group` calls: group_members, 020)
    bots: bool = False  # count events flagged is_bot (`bots=include`); left out by default

    def day_start_ms(self, day: date) -> int:
        return int(datetime.combine(day, time(0), ZoneInfo(self.tz)).timestamp() * 1000)

    @property
    def start_ms(self) -> int:
        return self.day_start_ms(self.first_day)

    @property
    def end_ms(self) -> int:
        """Exclusive: midnight after the last day, in the report's zone."""
        return self.day_start_ms(self.last_day + timedelta(days=1))

    def days(self) -> list[date]:
        return [self.first_day + timedelta(days=n) for n in range((self.last_day - self.first_day).days + 1)]

    def parameters(self) -> dict[str, object]:
        lookback_day = self.first_day - timedelta(days=LOOKBACK_DAYS)
        return {
            "tz": self.tz, "app_id": self.app_id, "country": self.country, "event": self.event, "group_id": self.group_id,
            "bots": int(self.bots), "from": self.first_day.isoformat(), "to": self.last_day.isoformat(),
            "start_ms": self.start_ms, "end_ms": self.end_ms,
            "lookback_day": lookback_day.isoformat(), "lookback_ms": self.day_start_ms(lookback_day),
            "days_with_lookback": (self.last_day - lookback_day).days + 1,
        }


def parse_day(name: str, text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise BadParameter(name, f"must be a date as YYYY-MM-DD, got {text[:40]!r}") from None


def parse_tz(text: str) -> str:
    if text not in known_zones():
        raise BadParameter("tz", f"is not a known IANA time zone name: {text[:40]!r}")
    try:
        ZoneInfo(text)
    except (ZoneInfoNotFoundError, ValueError):
        raise BadParameter("tz", f"is not a known IANA time zone name: {text[:40]!r}") from None
    return text


def report_range(query: Mapping[str, str], today: date | None = None) -> ReportRange:
    tz = parse_tz(query.get("tz", "UTC"))
    today = today or datetime.now(ZoneInfo(tz)).date()
    last_day = parse_day("to", query["to"]) if query.get("to") else today
    first_day = parse_day("from", query["from"]) if query.get("from") else last_day - timedelta(days=DEFAULT_RANGE_DAYS - 1)
    if first_day > last_day:
        raise BadParameter("from", f"({first_day}) is after 'to' ({last_day})")
    if (last_day - first_day).days + 1 > MAX_RANGE_DAYS:
        raise BadParameter("to", f"makes a range of more than {MAX_RANGE_DAYS} days")
    if first_day.year < 1971 or last_day.year > 9998:
        raise BadParameter("from", "must be between 1971 and 9998")
    filters = {}
    for name in ("app_id", "country", "event", "group_id"):
        value = query.get(name, "")
        if len(value) > 1024:
            raise BadParameter(name, "is longer than 1024 characters")
        filters[name] = value
    return ReportRange(first_day, last_day, tz, **filters, bots=parse_bots(query.get("bots", "exclude")))


def parse_bots(text: str) -> bool:
    """`bots=include` counts events flagged as bots; `exclude` (the default) leaves them out."""
    if text not in ("include", "exclude"):
        raise BadParameter("bots", f"must be include or exclude, got {text[:40]!r}")
    return text == "include"
