"""Plausible's events API (`POST /api/event`, what its script sends) as our items.

A body: `n`/`name` (the event; `pageview` for a page view), `u`/`url`, `d`/`domain` (the site:
our app_id, and the write key when WRITE_KEYS is set, as the script cannot send one), `r`/`referrer`,
`p`/`props` (an object, or its JSON text), `$`/`revenue` (`{"amount", "currency"}`: `amount` in
cents, the currency in props). No user id: the visitor id comes from the IP and User-Agent, as
Plausible counts visitors; the time is the time received.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import orjson

from server.sdks.messages import PAGEVIEW, Mapped, Refused, as_object, cents, flat_props


def field(body: dict[str, Any], short: str, long: str) -> Any:
    return body.get(long) if body.get(long) is not None else body.get(short)


def domain_of(body: dict[str, Any]) -> str:
    domain = field(body, "d", "domain")
    if not isinstance(domain, str) or not domain:
        raise Refused("domain", "is required (the site's domain as configured in the script)")
    return domain.split(",")[0].strip()


def map_event(body: dict[str, Any], received_ms: int, app_id: str) -> Mapped:
    mapped = Mapped()
    try:
        mapped.add(item_of(body, received_ms, app_id))
    except Refused as refused:
        mapped.refuse(0, refused)
    return mapped


def item_of(body: dict[str, Any], received_ms: int, app_id: str) -> dict[str, Any]:
    name, url = field(body, "n", "name"), field(body, "u", "url")
    if not isinstance(name, str) or not name:
        raise Refused("name", "is required")
    if not isinstance(url, str) or not url:
        raise Refused("url", "is required")
    item: dict[str, Any] = {"dt": received_ms, "event": PAGEVIEW if name == "pageview" else name, "app_id": app_id}
    path = urlsplit(url).path
    if path:
        item["screen"] = path
    referrer = field(body, "r", "referrer")
    if isinstance(referrer, str) and referrer:
        item["referrer"] = referrer
    props = field(body, "p", "props")
    if isinstance(props, str):
        try:
            props = orjson.loads(props)
        except orjson.JSONDecodeError:
            raise Refused("props", "must be an object or its JSON text") from None
    flat = {"url": url, **flat_props(props, "props")}
    revenue = as_object(field(body, "$", "revenue"), "revenue")
    if revenue:
        item["amount"] = cents(revenue.get("amount"), "revenue.amount")
        flat["currency"] = str(revenue.get("currency", ""))
    item["props"] = flat
    return item
