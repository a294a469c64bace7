"""Request bodies → a list of raw items (dicts, as the client sent them).

Owns content encodings (gzip, deflate) and content types (JSON, NDJSON, URL-encoded and
multipart forms). Knows nothing of event fields: `validate.py` does that.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from typing import Any
from urllib.parse import parse_qsl

import orjson
from starlette.datastructures import Headers, UploadFile
from starlette.formparsers import MultiPartException, MultiPartParser

from server.http.errors import BadBody, UnsupportedMediaType

JSON_TYPES = {"application/json", "text/json", "text/plain"}  # text/plain: navigator.sendBeacon
NDJSON_TYPES = {"application/x-ndjson", "application/ndjson", "application/jsonl", "application/x-jsonlines"}
FORM_TYPE = "application/x-www-form-urlencoded"
MULTIPART_TYPE = "multipart/form-data"
SUPPORTED = sorted(JSON_TYPES | NDJSON_TYPES | {FORM_TYPE, MULTIPART_TYPE})


def media_type(content_type: str | None) -> str:
    return (content_type or "").split(";", 1)[0].strip().lower()


def parse_json(body: bytes) -> list[Any]:
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise BadBody(f"body is not valid JSON: {exc}", field="body") from None
    if isinstance(data, list):
        return data
    if isinstance(data, dict):
        return [data]
    raise BadBody("JSON body must be an object or an array of objects", field="body")


def parse_ndjson(body: bytes) -> list[Any]:
    items = []
    for number, line in enumerate(body.split(b"\n"), start=1):
        if not line.strip():
            continue
        try:
            items.append(orjson.loads(line))
        except orjson.JSONDecodeError as exc:
            raise BadBody(f"line {number} is not valid JSON: {exc}", field=f"body line {number}") from None
    return items


def parse_urlencoded(body: bytes) -> list[Any]:
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise BadBody("form body is not valid UTF-8", field="body") from None
    try:
        pairs = parse_qsl(text, keep_blank_values=True, strict_parsing=False, max_num_fields=10_000)
    except ValueError as exc:
        raise BadBody(f"form body cannot be parsed: {exc}", field="body") from None
    return [_single_values(pairs)]


async def parse_multipart(body: bytes, content_type: str) -> list[Any]:
    async def stream() -> AsyncGenerator[bytes, None]:
        yield body

    headers = Headers({"content-type": content_type})
    parser = MultiPartParser(headers, stream(), max_files=1000, max_fields=10_000, max_part_size=len(body) + 1)
    try:
        form = await parser.parse()
    except MultiPartException as exc:
        raise BadBody(f"multipart body cannot be parsed: {exc.message}", field="body") from None
    pairs = []
    for key, value in form.multi_items():
        if isinstance(value, UploadFile):
            await value.close()
            raise BadBody(f"field {key!r} is a file upload; send plain form fields", field=key)
        pairs.append((key, value))
    return [_single_values(pairs)]


async def parse_body(body: bytes, content_type: str | None) -> list[Any]:
    """Parse a decoded body by its media type into raw items (not yet validated)."""
    kind = media_type(content_type)
    if kind in JSON_TYPES:
        return parse_json(body)
    if kind in NDJSON_TYPES:
        return parse_ndjson(body)
    if kind == FORM_TYPE:
        return parse_urlencoded(body)
    if kind == MULTIPART_TYPE:
        return await parse_multipart(body, content_type or "")
    shown = kind or "none"
    raise UnsupportedMediaType(
        f"Content-Type {shown!r} is not supported; use one of {', '.join(SUPPORTED)}", field="Content-Type"
    )


def _single_values(pairs: list[tuple[str, str]]) -> dict[str, str]:
    if not pairs:
        raise BadBody("the form holds no fields", field="body")
    fields: dict[str, str] = {}
    for key, value in pairs:
        if key in fields:
            raise BadBody(f"form field {key!r} is given more than once", field=key)
        fields[key] = value
    return fields
