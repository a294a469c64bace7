"""Segment's HTTP Tracking API messages (and RudderStack's, the same shape) as our items.

A message: `type` (track, page, screen, identify, group, alias), `userId` and/or `anonymousId`,
`messageId` (our event_id: a retry is recognised), `timestamp`/`sentAt` (the sender's clock
corrected), `event` (track), `name` (page, screen), `properties`, `traits`, `groupId`,
`previousId` (alias) and `context` (`ip`, `userAgent`, `page.{url,path,referrer,title}`,
`campaign.*`, `library`, `traits`, RudderStack's `sessionId`).

What goes where: the user id is `userId`, else `anonymousId` (with both, `anonymousId` is kept
as props `anonymous_id`: the two are one person); properties and traits (nested objects
flattened with dots) go to `props`; `properties.revenue` (currency units) to `amount` in cents;
`context.page.url` to props `url` (UTM and referrer domain come from it), `context.page.referrer`
to `referrer`, the page's `name` (else its path) to `screen`; `context.campaign` to `utm_*`;
`context.ip` and `context.userAgent` describe the sender instead of the connection.
"""

from __future__ import annotations

from typing import Any

from server.sdks.messages import (
    ALIAS,
    GROUP,
    IDENTIFY,
    PAGEVIEW,
    SCREENVIEW,
    UTM_OF_CAMPAIGN,
    Mapped,
    Refused,
    as_object,
    cents,
    corrected_ms,
    finish,
    flat_props,
    identity,
)

TYPES = ("track", "page", "screen", "identify", "group", "alias")
# The short paths analytics.js uses (/v1/t …) and the long ones, as the type they imply.
TYPE_OF_PATH = {"t": "track", "p": "page", "s": "screen", "i": "identify", "g": "group", "a": "alias",
                **{name: name for name in TYPES}}


def messages_of(body: dict[str, Any], path_type: str | None) -> tuple[list[Any], dict[str, Any], object]:
    """(messages, context every message shares, sentAt) of a request: a batch's `batch`, or the
    one message a typed path takes."""
    if path_type is None:
        batch = body.get("batch")
        if not isinstance(batch, list):
            raise Refused("batch", "must be an array of messages")
        return batch, as_object(body.get("context"), "context"), body.get("sentAt")
    return [{"type": path_type, **body}], {}, body.get("sentAt")


def map_messages(body: dict[str, Any], path_type: str | None, received_ms: int, app_id: str) -> Mapped:
    mapped = Mapped()
    messages, shared, sent_at = messages_of(body, path_type)
    for index, message in enumerate(messages):
        try:
            if not isinstance(message, dict):
                raise Refused("(message)", "must be an object")
            context = {**shared, **as_object(message.get("context"), "context")}
            item = item_of(message, context, sent_at, received_ms, app_id)
        except Refused as refused:
            mapped.refuse(index, refused)
            continue
        mapped.add(item, context.get("ip"), context.get("userAgent"))
    return mapped


def item_of(message: dict[str, Any], context: dict[str, Any], sent_at: object, received_ms: int,
            app_id: str) -> dict[str, Any]:
    kind = message.get("type")
    if kind not in TYPES:
        raise Refused("type", f"must be one of {', '.join(TYPES)}, got {str(kind)[:40]!r}")
    if kind == "alias":
        user_id, anonymous_id = identity(message.get("userId"), message.get("previousId"))
        if not anonymous_id:
            raise Refused("previousId", "is required, and must differ from userId")
    else:
        user_id, anonymous_id = identity(message.get("userId"), message.get("anonymousId"))
    item: dict[str, Any] = {
        "dt": corrected_ms(message.get("timestamp") or message.get("originalTimestamp"),
                           message.get("sentAt") or sent_at, received_ms),
        "event": event_name(kind, message),
        "user_id": user_id,
    }
    props = page_fields(item, kind, message, context)
    props.update(flat_props(message.get("properties"), "properties"))
    for moved in ("referrer", "path"):  # into their columns (page_fields)
        props.pop(moved, None)
    if kind in ("identify", "group"):
        props.update(flat_props(message.get("traits") or context.get("traits"), "traits"))
    if kind == "group":
        props["group_id"] = str(message.get("groupId") or "")
        if not props["group_id"]:
            raise Refused("groupId", "is required")
    if "revenue" in props:
        item["amount"] = cents(props.pop("revenue"), "properties.revenue")
    library = as_object(context.get("library"), "context.library")
    if library.get("name"):
        props["library"] = f"{library['name']}/{library.get('version', '')}".rstrip("/")
    for part, column in UTM_OF_CAMPAIGN.items():
        value = as_object(context.get("campaign"), "context.campaign").get(part)
        if value:
            item[column] = str(value)
    if context.get("sessionId") is not None:
        item["session_id"] = str(context["sessionId"])
    return finish(item, props, anonymous_id, message.get("messageId"), app_id)


def event_name(kind: str, message: dict[str, Any]) -> Any:
    if kind == "track":
        if not message.get("event"):
            raise Refused("event", "is required for a track call")
        return message["event"]
    return {"page": PAGEVIEW, "screen": SCREENVIEW, "identify": IDENTIFY, "group": GROUP, "alias": ALIAS}[kind]


def page_fields(item: dict[str, Any], kind: str, message: dict[str, Any], context: dict[str, Any]) -> dict[str, Any]:
    """The page's URL, referrer and title (a page call's properties, else `context.page`) into the
    item and its props; `screen` from the page's or screen's name, else the path."""
    page = as_object(context.get("page"), "context.page")
    properties = as_object(message.get("properties"), "properties")
    props: dict[str, Any] = {}
    url = properties.get("url") or page.get("url")
    if url:
        props["url"] = url
    referrer = properties.get("referrer") or page.get("referrer")
    if referrer:
        item["referrer"] = referrer
    screen = message.get("name") if kind in ("page", "screen") else None
    screen = screen or properties.get("path") or page.get("path")
    if screen:
        item["screen"] = screen
    return props
