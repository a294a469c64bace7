"""PostHog's capture API as our items: what posthog-js, posthog-python and posthog-node send.

A body is one event, an array of them, `{"batch": [...]}` (with `api_key`), or a form field
`data` holding one of those in base64; posthog-js gzips it (`?compression=gzip-js`) or sends it
base64 (`?compression=base64`). An event: `event`, `distinct_id` (or in `properties`),
`properties`, `timestamp` (`sent_at` corrects the sender's clock), `uuid` (our event_id),
`api_key` / `token` (the write key), `$set`.

What goes where: `distinct_id` is the user id; `$identify` carries `$anon_distinct_id` (props
`anonymous_id`: one person) and its `$set` traits; `$create_alias` joins its `distinct_id` to
`alias`, the id kept (stored as `$alias`); `$set` is an identify with traits; `$pageview` and
`$screen` become `pageview` and `screenview`; `$current_url` goes to props `url`, `$referrer` to
`referrer`, `$pathname` (or `$screen_name`) to `screen`, `$session_id` to `session_id`,
`$lib`/`$lib_version` to props `library`. The other `$`-properties posthog-js adds on every event
(screen size, browser, insert id…) are left out: the User-Agent and IP give ours; the event's
own properties go to `props`.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any
from urllib.parse import parse_qsl

import orjson

from server.http.bodies import decode_content
from server.sdks.messages import (
    ALIAS,
    IDENTIFY,
    PAGEVIEW,
    SCREENVIEW,
    Mapped,
    Refused,
    as_object,
    corrected_ms,
    finish,
    flat_props,
    identity,
)

# `$set` (a person's properties, no other id) is an identify call of the user with those traits.
EVENT_NAMES = {"$pageview": PAGEVIEW, "$screen": SCREENVIEW, "$identify": IDENTIFY, "$set": IDENTIFY, "$create_alias": ALIAS}
# Properties that posthog-js adds to every event and that are mapped or not kept.
MAPPED = {"$current_url", "$referrer", "$pathname", "$screen_name", "$session_id", "$lib", "$lib_version",
          "$anon_distinct_id", "$set", "$set_once", "distinct_id", "token", "alias", "$time"}


def decode(body: bytes, compression: str, form: bool, max_bytes: int) -> Any:
    """The JSON document of a capture request (after Content-Encoding was undone); gzip-js is
    undone within `max_bytes` as well (a bomb is refused with 413, not decompressed)."""
    if compression == "lz64":
        raise Refused("compression", "lz64 is not supported: use gzip-js or base64 (posthog-js does by default)")
    if compression == "gzip-js" or body[:2] == b"\x1f\x8b":
        body = decode_content(body, "gzip", max_bytes)
    if form or body[:5] == b"data=":
        fields = dict(parse_qsl(body.decode("utf-8", "replace")))
        if "data" not in fields:
            raise Refused("data", "is required in a form body")
        body, compression = fields["data"].encode(), fields.get("compression", compression) or "base64"
    if compression == "base64" or (body.strip() and body.lstrip()[:1] not in (b"{", b"[")):
        try:
            body = base64.b64decode(body + b"=" * (-len(body) % 4), validate=False)
        except (binascii.Error, ValueError):
            raise Refused("data", "is not valid base64") from None
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise Refused("body", f"is not valid JSON: {exc}") from None


def events_of(document: Any) -> tuple[list[Any], object, object]:
    """(events, the body's api_key, its sent_at)."""
    if isinstance(document, list):
        return document, None, None
    if not isinstance(document, dict):
        raise Refused("body", "must be an event, an array of events or {\"batch\": [...]}")
    key = document.get("api_key") or document.get("token")
    if "batch" in document:
        if not isinstance(document["batch"], list):
            raise Refused("batch", "must be an array of events")
        return document["batch"], key, document.get("sent_at") or document.get("sentAt")
    return [document], key, document.get("sent_at")


def key_of(events: list[Any], body_key: object) -> str | None:
    """The write key: the body's `api_key`, else the first event's `api_key` or `properties.token`."""
    if isinstance(body_key, str) and body_key:
        return body_key
    for event in events[:1]:
        if isinstance(event, dict):
            found = event.get("api_key") or as_object(event.get("properties"), "properties").get("token")
            if isinstance(found, str) and found:
                return found
    return None


def map_events(events: list[Any], sent_at: object, received_ms: int, app_id: str) -> Mapped:
    mapped = Mapped()
    for index, event in enumerate(events):
        try:
            if not isinstance(event, dict):
                raise Refused("(event)", "must be an object")
            item = item_of(event, sent_at, received_ms, app_id)
        except Refused as refused:
            mapped.refuse(index, refused)
            continue
        properties = as_object(event.get("properties"), "properties")
        mapped.add(item, properties.get("$ip"), properties.get("$raw_user_agent"))
    return mapped


def item_of(event: dict[str, Any], sent_at: object, received_ms: int, app_id: str) -> dict[str, Any]:
    properties = as_object(event.get("properties"), "properties")
    name = event.get("event")
    if not isinstance(name, str) or not name:
        raise Refused("event", "is required")
    distinct_id = event.get("distinct_id") or event.get("$distinct_id") or properties.get("distinct_id")
    if name == "$create_alias":  # both SDKs: `alias` is the id kept, distinct_id the earlier one
        user_id, anonymous_id = identity(properties.get("alias"), distinct_id)
        if not anonymous_id:
            raise Refused("properties.alias", "is required, and must differ from distinct_id")
    else:
        user_id, anonymous_id = identity(distinct_id, properties.get("$anon_distinct_id") if name == "$identify" else None)
    timestamp = event.get("timestamp") or properties.get("$time")
    item: dict[str, Any] = {"dt": corrected_ms(timestamp, sent_at or event.get("sent_at"), received_ms),
                            "event": EVENT_NAMES.get(name, name), "user_id": user_id}
    props = {key: value for key, value in flat_props(properties, "properties").items()
             if not key.startswith("$") and key not in MAPPED}
    if name in ("$identify", "$set"):
        props.update(flat_props(event.get("$set") or properties.get("$set"), "$set"))
    for source, column in (("$referrer", "referrer"), ("$session_id", "session_id")):
        value = properties.get(source)
        if isinstance(value, str) and value and value != "$direct":
            item[column] = value
    screen = properties.get("$pathname") or properties.get("$screen_name")
    if isinstance(screen, str) and screen:
        item["screen"] = screen
    if isinstance(properties.get("$current_url"), str):
        props["url"] = properties["$current_url"]
    if properties.get("$lib"):
        props["library"] = f"{properties['$lib']}/{properties.get('$lib_version', '')}".rstrip("/")
    return finish(item, props, anonymous_id, event.get("uuid"), app_id)
