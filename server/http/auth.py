"""Optional keys: write keys per `app_id` on the ingest routes, one read token on the report and
SQL routes. A key comes as `Authorization: Bearer <key>` or in `X-Write-Key` / `X-Read-Token`; a
write key also as `?key=` (the page tracker's beacons cannot set headers; a key in a public page
is public anyway: it can only write its app's events).

Keys are compared in constant time (hmac.compare_digest against every configured key, so the
time taken says nothing about which one nearly matched) and never logged or echoed. With none
configured the server is open, and says so in its start-up log.
"""

from __future__ import annotations

import base64
import hmac
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

from starlette.requests import Request
from starlette.responses import Response

from server.config import ConfigError, parse_write_keys
from server.http.errors import FieldError, Forbidden, Unauthorized
from server.http.headers import header
from server.http.state import services

ANY_APP = "*"


@dataclass(frozen=True)
class Keys:
    write: tuple[tuple[str, bytes], ...] = ()  # (app_id or "*", key)
    read: bytes = b""

    @classmethod
    def parse(cls, write_keys: str, read_token: str) -> Keys:
        """WRITE_KEYS is `app_id:key,app_id:key` (`*:key` for any app); READ_TOKEN one token
        (both checked by Settings: a bad value stops the start with a ConfigError)."""
        if read_token and len(read_token) < 8:
            raise ConfigError("READ_TOKEN must be at least 8 characters")
        return cls(parse_write_keys(write_keys), read_token.encode())

    @property
    def open_for_writes(self) -> bool:
        return not self.write

    @property
    def open_for_reads(self) -> bool:
        return not self.read


def _presented(request: Request, name: str) -> bytes | None:
    authorization = header(request, b"authorization")
    scheme, _, value = authorization.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip().encode()
    value = header(request, name.encode()).strip()
    return value.encode() if value else None


def basic_credentials(request: Request) -> tuple[bytes, bytes] | None:
    """User and password of `Authorization: Basic …`; None when there is none or it is not base64."""
    scheme, _, value = header(request, b"authorization").partition(" ")
    if scheme.lower() != "basic" or not value:
        return None
    try:
        user, _, password = base64.b64decode(value.strip(), validate=True).partition(b":")
    except ValueError:  # binascii.Error
        return None
    return user, password


def write_apps(request: Request, keys: Keys) -> frozenset[str] | None:
    """The app_ids this request may write (None: no keys configured, any app). Raises 401."""
    if keys.open_for_writes:
        return None
    presented = _presented(request, "x-write-key")
    if presented is None and request.query_params.get("key"):
        presented = request.query_params["key"].encode()  # the page tracker: sendBeacon sets no headers
    return apps_of_key(keys, presented, "send Authorization: Bearer <key>, X-Write-Key or ?key=")


def apps_of_key(keys: Keys, presented: bytes | None, how: str, field: str = "authorization") -> frozenset[str] | None:
    """The app_ids a presented write key may write (None: no keys configured, any app). Raises 401,
    saying `how` a key is sent on this route and naming `field`."""
    if keys.open_for_writes:
        return None
    if presented is None:
        raise Unauthorized(f"a write key is required: {how}", field)
    apps = {app for app, key in keys.write if hmac.compare_digest(presented, key)}  # every key compared
    if not apps:
        raise Unauthorized("the write key is not valid", field)
    return frozenset(apps)


def check_apps(rows: list[dict[str, Any]], apps: frozenset[str] | None) -> None:
    """Every event's app_id must belong to the key (403 naming each event that does not)."""
    if apps is None or ANY_APP in apps:
        return
    errors = [FieldError(i, "app_id", f"the write key is not valid for app_id {row.get('app_id', '')!r}")
              for i, row in enumerate(rows) if row.get("app_id", "") not in apps]
    if errors:
        raise Forbidden(f"{len(errors)} event(s) belong to an app this key may not write; nothing was stored", errors)


def require_read(request: Request, keys: Keys) -> None:
    if keys.open_for_reads:
        return
    presented = _presented(request, "x-read-token")
    if presented is None:
        raise Unauthorized("a read token is required: send Authorization: Bearer <token> or X-Read-Token", "authorization")
    if not hmac.compare_digest(presented, keys.read):
        raise Unauthorized("the read token is not valid", "authorization")


class KeyServices(Protocol):
    keys: Keys


def read_protected(endpoint: Callable[[Request], Awaitable[Response]]) -> Callable[[Request], Awaitable[Response]]:
    """The read token, when one is configured, before anything else (401 otherwise)."""

    async def guarded(request: Request) -> Response:
        found: KeyServices = services(request)
        require_read(request, found.keys)
        return await endpoint(request)

    return guarded
