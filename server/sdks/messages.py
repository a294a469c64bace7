"""What every peer's message mapping shares: a message's id as our `event_id`, its time corrected
for the sender's clock, its properties as `props`, its user and anonymous ids, and the errors
that name the peer's own field.

A mapped message is an *item*, the dict `POST /events` takes (server/ingest/validate.py checks
its values as it checks ours); mapping only moves fields. Identity calls become events too
(`$identify`, `$alias`, `$group`), so they are durable in the write-ahead log and stored once like
any event; the tables of identities, traits and groups are views over them
(clickhouse/migrations/020_identities.sql).
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import orjson

from server.http.errors import FieldError
from server.ingest.enrich import Sender

# Event names shared by every peer's mapping: page and screen views as our own tracker names
# them, identity calls under names of their own.
PAGEVIEW = "pageview"
SCREENVIEW = "screenview"
IDENTIFY = "$identify"
ALIAS = "$alias"
GROUP = "$group"
# A message id that is not a UUID becomes one, the same every time (uuid5): a retried message
# carries the same id, so it is recognised as stored (server/ingest/dedup.py).
MESSAGE_ID_NAMESPACE = uuid.UUID("6f0f6c4e-6d1a-4c55-9a3e-0a1c8e5b2d71")
UTM_OF_CAMPAIGN = {"source": "utm_source", "medium": "utm_medium", "name": "utm_campaign", "term": "utm_term",
                   "content": "utm_content"}


class Refused(Exception):
    """A message cannot be mapped; caught where the messages are, turned into a FieldError."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(reason)
        self.field = field
        self.reason = reason


@dataclass
class Mapped:
    """A request's messages as items, the senders some of them name, and what could not be mapped."""

    items: list[dict[str, Any]] = field(default_factory=list)
    senders: dict[int, Sender] = field(default_factory=dict)
    errors: list[FieldError] = field(default_factory=list)

    def add(self, item: dict[str, Any], ip: object = None, user_agent: object = None) -> None:
        if isinstance(ip, str) and ip or isinstance(user_agent, str) and user_agent:
            self.senders[len(self.items)] = Sender.named(ip if isinstance(ip, str) else "",
                                                         user_agent if isinstance(user_agent, str) else "")
        self.items.append(item)

    def refuse(self, index: int, refused: Refused) -> None:
        self.errors.append(FieldError(index, refused.field, refused.reason))
        self.items.append({})  # keeps the indexes of the messages after it


def event_id_of(message_id: object, app_id: str) -> str | None:
    """A UUID message id as it is; any other id as a UUID made from it and the app."""
    if message_id is None or message_id == "":
        return None
    text = str(message_id)
    try:
        return str(uuid.UUID(text))
    except ValueError:
        return str(uuid.uuid5(MESSAGE_ID_NAMESPACE, f"{app_id}\x00{text}"))


def finish(item: dict[str, Any], props: dict[str, Any], anonymous_id: str, message_id: object,
           app_id: str) -> dict[str, Any]:
    """What every peer's item ends with: the anonymous id joined to the user, the message's id as
    event_id, the key's app, and the props."""
    if anonymous_id:
        props["anonymous_id"] = anonymous_id
    event_id = event_id_of(message_id, app_id)
    if event_id:
        item["event_id"] = event_id
    if app_id:
        item["app_id"] = app_id
    if props:
        item["props"] = props
    return item


def time_ms(value: object, name: str) -> int | None:
    """An ISO-8601 time or epoch seconds/milliseconds as epoch milliseconds; None when absent."""
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        raise Refused(name, "must be an ISO-8601 time")
    if isinstance(value, int | float):
        return int(value) if abs(value) >= 100_000_000_000 else int(value * 1000)
    if not isinstance(value, str) or len(value) > 64:
        raise Refused(name, "must be an ISO-8601 time")
    try:
        return int(datetime.fromisoformat(value.strip()).timestamp() * 1000)
    except ValueError:
        raise Refused(name, f"is not an ISO-8601 time: {value[:64]!r}") from None


def corrected_ms(timestamp: object, sent_at: object, received_ms: int) -> int:
    """The event's time on the server's clock, as Segment documents it: when the sender says when
    it sent the message, its clock's offset (`sentAt` - receivedAt) is taken off `timestamp`; no
    `timestamp`: the time received."""
    event_ms = time_ms(timestamp, "timestamp")
    sent_ms = time_ms(sent_at, "sentAt")
    if event_ms is None:
        return received_ms
    return event_ms if sent_ms is None else received_ms - (sent_ms - event_ms)


def flat_props(values: object, name: str, prefix: str = "") -> dict[str, Any]:
    """Properties or traits as `props`: scalars as they are, nested objects flattened with dots,
    arrays as JSON text (the validation bounds their length)."""
    if values is None:
        return {}
    if not isinstance(values, Mapping):
        raise Refused(name, "must be an object")
    flat: dict[str, Any] = {}
    for key, value in values.items():
        path = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flat_props(value, name, f"{path}."))
        elif isinstance(value, list):
            flat[path] = orjson.dumps(value).decode()
        elif value is not None:
            flat[path] = value
    return flat


def identity(user_id: object, anonymous_id: object) -> tuple[str, str]:
    """(user_id, anonymous id or ''): the user's id when there is one, else the anonymous one."""
    user = "" if user_id is None else str(user_id)
    anonymous = "" if anonymous_id is None else str(anonymous_id)
    if not user and not anonymous:
        raise Refused("userId", "userId or anonymousId is required")
    return (user, anonymous if anonymous != user else "") if user else (anonymous, "")


def as_object(value: object, name: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise Refused(name, "must be an object")
    return value


def cents(value: object, name: str) -> int:
    """A revenue in currency units (9.99) as whole cents (999), our `amount`."""
    try:
        amount = float(value) if isinstance(value, int | float | str) and not isinstance(value, bool) else None
    except ValueError:
        amount = None
    if amount is None or amount != amount or abs(amount) > 9e15:
        raise Refused(name, "must be a number")
    return round(amount * 100)
