"""The peers' ingest routes: Segment's and RudderStack's `/v1/*`, PostHog's `/capture/`, `/batch/`,
`/e/`, `/i/v0/e/`, Plausible's `/api/event` and Umami's `/api/send`.

Each reads the body within MAX_BODY_BYTES, finds the write key where the peer's SDK sends it,
maps the messages to items (server/sdks/segment.py, posthog.py, plausible.py, umami.py) and hands
them to the ingest pipeline `POST /events` uses (validation, enrichment, dedup, the log or the
batcher): all or nothing, acknowledged once durable. Answers are the peer's: Segment's
`{"success": true}`, PostHog's `{"status": 1}`, Plausible's `ok`; a rejection is a 4xx in the
peer's error shape with ours (`error`: code, message, field, errors) inside.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from server.http.auth import apps_of_key, basic_credentials
from server.http.bodies import read_decoded_body
from server.http.errors import ApiError, BadBody, BodyTooLarge, FieldError, ValidationFailed
from server.http.headers import header
from server.http.responses import json_response
from server.ingest.enrich import Sender
from server.ingest.routes import Ingest, ingest_of, store_items
from server.sdks import plausible, posthog, segment, umami
from server.sdks.messages import Mapped, Refused

ErrorShape = Callable[[ApiError], dict[str, Any]]


def segment_error(exc: ApiError) -> dict[str, Any]:
    return {"success": False, "message": exc.message, **exc.body()}


def posthog_error(exc: ApiError) -> dict[str, Any]:
    kind = "authentication_error" if exc.status == 401 else "server_error" if exc.status >= 500 else "validation_error"
    return {"type": kind, "code": exc.code, "detail": exc.message, "attr": exc.field, **exc.body()}


def plausible_error(exc: ApiError) -> dict[str, Any]:
    named = {error.field: [error.reason] for error in exc.errors} or {exc.field or "request": [exc.message]}
    return {"errors": named, **exc.body()}


def ours(exc: ApiError) -> dict[str, Any]:
    return exc.body()


async def answered(shape: ErrorShape, work: Awaitable[Response]) -> Response:
    """The work's answer, or its rejection in the peer's shape; a mapping error is a 422 naming
    the peer's field."""
    try:
        return await work
    except ApiError as exc:
        return json_response(shape(exc), exc.status, exc.headers)
    except Refused as refused:
        failed = ValidationFailed([FieldError(0, refused.field, refused.reason)])
        return json_response(shape(failed), failed.status)


async def json_object(request: Request, ingest: Ingest) -> dict[str, Any]:
    try:
        document = orjson.loads(await read_decoded_body(request, ingest.settings.max_body_bytes))
    except orjson.JSONDecodeError as exc:
        raise BadBody(f"body is not valid JSON: {exc}", field="body") from None
    if not isinstance(document, dict):
        raise BadBody("body must be a JSON object", field="body")
    return document


def sole_app(apps: frozenset[str] | None) -> str:
    """The app_id of a key that writes exactly one app ('' for an open server or a `*` key)."""
    return next(iter(apps)) if apps is not None and len(apps) == 1 and "*" not in apps else ""


async def store(request: Request, ingest: Ingest, mapped: Mapped, apps: frozenset[str] | None) -> None:
    ingest.admit(request, apps)
    if mapped.errors:
        ingest.metrics.events_rejected.labels("validation").inc(len(mapped.items))
        raise ValidationFailed(mapped.errors)
    if not mapped.items:
        raise BadBody("the body holds no events", field="body")
    if len(mapped.items) > ingest.settings.max_events_per_request:
        limit = ingest.settings.max_events_per_request
        raise BodyTooLarge(f"{len(mapped.items)} events in one request; at most {limit}", field="body")
    await store_items(ingest, mapped.items, apps, Sender.of(request), mapped.senders)


async def segment_route(request: Request) -> Response:
    async def work() -> Response:
        ingest = ingest_of(request)
        body = await json_object(request, ingest)
        # Segment's SDKs send the write key as the Basic user, with no password.
        key = (basic_credentials(request) or (b"", b""))[0] or (
            body["writeKey"].encode() if isinstance(body.get("writeKey"), str) else None)
        apps = apps_of_key(ingest.keys, key, "send it as the HTTP Basic user (Segment's and RudderStack's SDKs "
                           "do) or as writeKey in the body", field="writeKey")
        kind = request.url.path.rsplit("/", 1)[-1]
        path_type = None if kind in ("batch", "b", "import") else segment.TYPE_OF_PATH[kind]
        await store(request, ingest, segment.map_messages(body, path_type, now_ms(), sole_app(apps)), apps)
        return json_response({"success": True})

    return await answered(segment_error, work())


async def posthog_route(request: Request) -> Response:
    async def work() -> Response:
        ingest = ingest_of(request)
        raw = await read_decoded_body(request, ingest.settings.max_body_bytes)
        form = header(request, b"content-type").startswith("application/x-www-form-urlencoded")
        document = posthog.decode(raw, request.query_params.get("compression", ""), form, ingest.settings.max_body_bytes)
        events, body_key, sent_at = posthog.events_of(document)
        key = posthog.key_of(events, body_key)
        apps = apps_of_key(ingest.keys, key.encode() if key else None, "send it as api_key (PostHog's SDKs do)",
                           field="api_key")
        await store(request, ingest, posthog.map_events(events, sent_at, now_ms(), sole_app(apps)), apps)
        return json_response({"status": 1})

    return await answered(posthog_error, work())


async def plausible_route(request: Request) -> Response:
    async def work() -> Response:
        ingest = ingest_of(request)
        body = await json_object(request, ingest)
        domain = plausible.domain_of(body)
        apps = apps_of_key(ingest.keys, domain.encode(), "the domain must be a key of WRITE_KEYS", field="domain")
        await store(request, ingest, plausible.map_event(body, now_ms(), sole_app(apps) or domain), apps)
        return PlainTextResponse("ok", 202)

    return await answered(plausible_error, work())


async def umami_route(request: Request) -> Response:
    async def work() -> Response:
        ingest = ingest_of(request)
        body = await json_object(request, ingest)
        website = umami.website_of(body)
        apps = apps_of_key(ingest.keys, website.encode(), "the website id must be a key of WRITE_KEYS",
                           field="payload.website")
        app_id = sole_app(apps) or website
        sender = Sender.of(request)
        visitor = ingest.enricher.visitors.visitor_id(app_id, sender.ip, sender.user_agent) if sender.can_be_visitor else ""
        await store(request, ingest, umami.map_event(body, now_ms(), app_id, visitor), apps)
        return json_response({"cache": ""})

    return await answered(ours, work())


async def posthog_flags(request: Request) -> Response:
    """posthog-js asks for feature flags and its remote settings at start: none here, and no
    session recording, so it only captures."""
    return json_response({"featureFlags": {}, "featureFlagPayloads": {}, "errorsWhileComputingFlags": False,
                          "sessionRecording": False, "supportedCompression": ["gzip-js", "base64"],
                          "autocapture_opt_out": True, "capturePerformance": False, "heatmaps": False,
                          "surveys": False, "siteApps": [], "toolbarParams": {}, "isAuthenticated": False,
                          "config": {"enable_collect_everything": False}})


async def segment_settings(request: Request) -> Response:
    """What Segment's CDN answers analytics.js (`cdnURL` pointed at us): the Segment.io destination
    sending to this server, and no other destination."""
    host = header(request, b"host") or f"{request.url.hostname}:{request.url.port}"
    return json_response({
        "integrations": {"Segment.io": {"apiKey": request.path_params["write_key"], "apiHost": f"{host}/v1",
                                        "protocol": request.url.scheme, "deliveryStrategy": {"strategy": "standard"}}},
        "plan": {"track": {"__default": {"enabled": True, "integrations": {}}}}, "edgeFunction": {},
        "analyticsNextEnabled": True, "middlewareSettings": {}, "enabledMiddleware": {}, "metrics": {"sampleRate": 0},
        "legacyVideoPluginsEnabled": False, "remotePlugins": []})


def now_ms() -> int:
    return int(time.time() * 1000)


SEGMENT_KINDS = ("batch", "b", "import", *segment.TYPE_OF_PATH)
SEGMENT_PATHS = tuple(f"/v1/{kind}" for kind in SEGMENT_KINDS)
POSTHOG_PATHS = tuple(path + end for path in ("/capture", "/batch", "/e", "/i/v0/e", "/track") for end in ("/", ""))
PEER_PATHS = (*SEGMENT_PATHS, *POSTHOG_PATHS, "/api/event", "/api/send")


def routes() -> list[Route]:
    return [
        *(Route(path, segment_route, methods=["POST"]) for path in SEGMENT_PATHS),
        *(Route(path, posthog_route, methods=["POST"]) for path in POSTHOG_PATHS),
        *(Route(path + end, posthog_flags, methods=["GET", "POST"]) for path in ("/decide", "/flags")
          for end in ("/", "")),
        Route("/v1/projects/{write_key}/settings", segment_settings),
        Route("/api/event", plausible_route, methods=["POST"]),
        Route("/api/send", umami_route, methods=["POST"]),
    ]
