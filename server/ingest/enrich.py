"""Validated rows + who sent them → rows with browser, OS, device, bot flag, country, referrer,
UTM and, for events that name no user, a cookieless visitor id.

The sender (`Sender.of`) is read once per request: the User-Agent header, and the client IP of
the connection, which uvicorn takes from `X-Forwarded-For` only when the peer is one of
FORWARDED_ALLOW_IPS. The IP is used for the country and the visitor id and stored nowhere.

Per event, from its own fields: `referrer` → `referrer_domain` (empty for a link within the same
site as the event's `url`), and `utm_*` from the query string of `url` unless the event sent them.
A country the event sent wins over the IP's.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from functools import lru_cache
from urllib.parse import parse_qsl, urlsplit

import iptocc
from starlette.requests import Request

from server.http.headers import header
from server.ingest.useragent import NO_AGENT, Agent, describe
from server.ingest.validate import Row
from server.ingest.visitors import Visitors

UTM_FIELDS = ("utm_source", "utm_medium", "utm_campaign", "utm_term", "utm_content")
URL_CACHE_SIZE = 4096
# props anonymous_id "$visitor": the sender's cookieless visitor id (the tracker's identify sends it)
THIS_VISITOR = "$visitor"


@dataclass(frozen=True)
class Sender:
    ip: str  # '' when the connection gives no usable address
    user_agent: str
    agent: Agent
    country: str

    @property
    def can_be_visitor(self) -> bool:
        """Events that name no user get a visitor id from the IP and User-Agent, so both are needed."""
        return bool(self.ip and self.user_agent)

    @classmethod
    def of(cls, request: Request) -> Sender:
        client = request.scope.get("client")
        return cls.named(client[0] if client else "", header(request, b"user-agent"))

    @classmethod
    def named(cls, ip: str, user_agent: str) -> Sender:
        """A sender from an address (checked: '' when it is not one) and a User-Agent."""
        ip = _valid_ip(ip) if ip else ""
        return cls(ip, user_agent, describe(user_agent) if user_agent else NO_AGENT, _country(ip) if ip else "")


@lru_cache(maxsize=URL_CACHE_SIZE)
def _valid_ip(text: str) -> str:
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        return ""


def _country(ip: str) -> str:
    code = iptocc.country_code(ip)
    return code if isinstance(code, str) else ""


@lru_cache(maxsize=URL_CACHE_SIZE)
def host_of(url: str) -> str:
    """The host of a URL without `www.`, lower-cased; '' for text that is not an absolute URL."""
    try:
        host = urlsplit(url.strip()).hostname or ""
    except ValueError:
        return ""
    return host.removeprefix("www.")


@lru_cache(maxsize=URL_CACHE_SIZE)
def utm_of(url: str) -> tuple[tuple[str, str], ...]:
    """The utm_* parameters in a URL's query string (each at most once, the first wins)."""
    if "utm_" not in url:
        return ()
    try:
        query = urlsplit(url.strip()).query
    except ValueError:
        return ()
    found: dict[str, str] = {}
    for key, value in parse_qsl(query):
        if key in UTM_FIELDS and value and key not in found:
            found[key] = value
    return tuple(found.items())


class Enricher:
    def __init__(self, visitors: Visitors, max_string_length: int) -> None:
        self.visitors = visitors
        self.max_string_length = max_string_length

    def enrich(self, rows: list[Row], sender: Sender) -> None:
        """Fill the enrichment columns in place (`is_bot` is set only on bots)."""
        agent = sender.agent
        fields = {name: value for name, value in (("browser", agent.browser), ("browser_version", agent.browser_version),
                                                  ("os", agent.os), ("device_type", agent.device_type)) if value}
        for row in rows:
            if fields:
                row.update(fields)
            anonymous = "user_id" not in row
            if anonymous:
                row["user_id"] = self.visitors.visitor_id(row.get("app_id", ""), sender.ip, sender.user_agent)
            elif row.get("props", {}).get("anonymous_id") == THIS_VISITOR:
                # The tracker's identify: the visitor it names the user of is this sender's (the stitch
                # job then joins the visitor's events to the user: server/people/); none without both.
                named = dict(row["props"])
                if sender.can_be_visitor:
                    named["anonymous_id"] = self.visitors.visitor_id(row.get("app_id", ""), sender.ip, sender.user_agent)
                else:
                    del named["anonymous_id"]
                row["props"] = named
            if agent.crawler or (agent.tool and anonymous):
                row["is_bot"] = 1
                row["device_type"] = "bot"
            if sender.country and not row.get("country"):
                row["country"] = sender.country
            props = row.get("props")
            url = props.get("url", "") if props else ""
            referrer = row.get("referrer")
            if referrer:
                domain = host_of(referrer)
                if domain and domain != (host_of(url) if url else ""):
                    row["referrer_domain"] = domain[: self.max_string_length]
            if url:
                for key, value in utm_of(url):
                    row.setdefault(key, value[: self.max_string_length])
