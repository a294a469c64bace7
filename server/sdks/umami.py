"""Umami's collect API (`POST /api/send`, what its script sends) as our items.

A body: `{"type": "event" | "identify", "payload": {...}}`. The payload: `website` (the site's
id: our app_id, and the write key when WRITE_KEYS is set, as the script cannot send one),
`hostname` and `url` (a path: the page's URL is the two joined), `referrer`, `title`,
`language`, `screen` (its size), `name` (a custom event; none: a page view), `data` (the event's
properties), and for `identify` `id` (the user's id) and `data` (traits).

No user id on events: the visitor id comes from the IP and User-Agent, as Umami counts visitors.
An `identify` with an `id` is stored as `$identify` of that user with the visitor's id as
`anonymous_id`: the visitor's earlier events and the user are one person.
"""

from __future__ import annotations

from typing import Any

from server.sdks.messages import IDENTIFY, PAGEVIEW, Mapped, Refused, as_object, flat_props


def website_of(body: dict[str, Any]) -> str:
    website = as_object(body.get("payload"), "payload").get("website")
    if not isinstance(website, str) or not website:
        raise Refused("payload.website", "is required (the website id of the script)")
    return website


def map_event(body: dict[str, Any], received_ms: int, app_id: str, visitor_id: str) -> Mapped:
    mapped = Mapped()
    try:
        mapped.add(item_of(body, received_ms, app_id, visitor_id))
    except Refused as refused:
        mapped.refuse(0, refused)
    return mapped


def item_of(body: dict[str, Any], received_ms: int, app_id: str, visitor_id: str) -> dict[str, Any]:
    kind = body.get("type")
    if kind not in ("event", "identify"):
        raise Refused("type", f"must be event or identify, got {str(kind)[:40]!r}")
    payload = as_object(body.get("payload"), "payload")
    props = flat_props(payload.get("data"), "payload.data")
    item: dict[str, Any] = {"dt": received_ms, "app_id": app_id}
    if kind == "identify":
        user = payload.get("id")
        if user is None or user == "":
            raise Refused("payload.id", "is required: identify names the user")
        item.update(event=IDENTIFY, user_id=str(user))
        if visitor_id and visitor_id != str(user):
            props["anonymous_id"] = visitor_id
    else:
        name = payload.get("name")
        item["event"] = name if isinstance(name, str) and name else PAGEVIEW
    path, host = payload.get("url"), payload.get("hostname")
    if isinstance(path, str) and path:
        item["screen"] = path.split("?")[0]
        props["url"] = path if "://" in path or not isinstance(host, str) else f"https://{host}{path}"
    referrer = payload.get("referrer")
    if isinstance(referrer, str) and referrer:
        item["referrer"] = referrer
    for key in ("title", "language"):
        if isinstance(payload.get(key), str) and payload[key]:
            props[key] = payload[key]
    if props:
        item["props"] = props
    return item
