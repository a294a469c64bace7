"""CORS on the ingest routes, so that pages on other origins can send events from a browser.

The tracker (/t.js) sends `text/plain` bodies, which need no preflight; other browser clients
sending `application/json` or a write key header get their preflight (`OPTIONS`) answered here.
Allowed origins come from CORS_ORIGINS (`*`: any). No cookies are read, so no credentials are
allowed. Used by `AnalyticsApp` before anything else, for the ingest paths only.
"""

from __future__ import annotations

import orjson
from starlette.types import Message, Receive, Scope, Send

INGEST_PATHS = frozenset({"/events", "/events/", "/event", "/event/", "/analytics/event", "/analytics/event/",
                          "/api/v1/event/save", "/api-log/v1", "/api-log/v1/",
                          # The peers' SDKs and scripts (server/sdks/routes.py; a test keeps the two in step).
                          *(f"/v1/{kind}" for kind in ("batch", "b", "import", "track", "t", "page", "p", "screen",
                                                       "s", "identify", "i", "group", "g", "alias", "a")),
                          *(path + end for path in ("/capture", "/batch", "/e", "/i/v0/e", "/track", "/decide", "/flags")
                            for end in ("/", "")),
                          "/api/event", "/api/send"})
# X-Retry-Count: analytics.js (@segment/analytics-next) sends it on every retry; not allowed, the
# browser blocked each retry at its preflight, and the event was lost after a 503.
ALLOWED_HEADERS = b"Content-Type, Content-Encoding, Authorization, X-Write-Key, X-Retry-Count"
MAX_AGE_SECONDS = b"86400"


class Cors:
    def __init__(self, origins: str) -> None:
        listed = [origin.strip().rstrip("/") for origin in origins.split(",") if origin.strip()]
        self.any = "*" in listed
        self.allowed = frozenset(origin.encode() for origin in listed if origin != "*")

    @staticmethod
    def applies(scope: Scope) -> bool:
        # analytics.js reads its settings from /v1/projects/<write key>/settings (server/sdks/routes.py).
        return scope["type"] == "http" and (scope["path"] in INGEST_PATHS or scope["path"].startswith("/v1/projects/"))

    def _allow_origin(self, origin: bytes) -> bytes | None:
        if self.any:
            return b"*"
        return origin if origin in self.allowed else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> Send | None:
        """Answer a preflight (returns None), or give the `send` that adds the CORS headers."""
        origin = next((value for name, value in scope["headers"] if name == b"origin"), None)
        if scope["method"] == "OPTIONS" and origin is None:  # not from a browser: what the route takes
            await send({"type": "http.response.start", "status": 204,
                        "headers": [(b"allow", b"POST, OPTIONS"), (b"content-length", b"0")]})
            await send({"type": "http.response.body", "body": b""})
            return None
        if origin is None:
            return send
        allowed = self._allow_origin(origin)
        if scope["method"] == "OPTIONS":
            await self._preflight(send, allowed, origin)
            return None
        if allowed is None:
            return send  # the browser withholds the answer from the page
        # Retry-After readable by the page's script (the tracker waits that long before a retry).
        extra = [(b"access-control-allow-origin", allowed), (b"access-control-expose-headers", b"Retry-After"),
                 (b"vary", b"Origin")]

        async def send_with_cors(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), *extra]}
            await send(message)

        return send_with_cors

    async def _preflight(self, send: Send, allowed: bytes | None, origin: bytes) -> None:
        if allowed is None:
            message = f"origin {origin.decode('latin-1')[:200]!r} is not in CORS_ORIGINS"
            body = orjson.dumps({"error": {"code": "forbidden", "message": message, "field": "Origin"}})
            headers = [(b"content-type", b"application/json")]
            status = 403
        else:
            body = b""
            headers = [(b"access-control-allow-origin", allowed), (b"vary", b"Origin"),
                       (b"access-control-allow-methods", b"POST, OPTIONS"),
                       (b"access-control-allow-headers", ALLOWED_HEADERS),
                       (b"access-control-max-age", MAX_AGE_SECONDS)]
            status = 204
        headers.append((b"content-length", str(len(body)).encode()))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})
