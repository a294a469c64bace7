"""Reading a request's body, for every route that takes one: within a size limit (413 as soon as
it passes), within BODY_TIMEOUT_SECONDS (408; one sweep over the bodies being read, not a timer
each), its Content-Encoding undone (also within the limit)."""

from __future__ import annotations

import asyncio
import contextlib
import time
import zlib
from typing import Any, Protocol

from starlette.requests import ClientDisconnect, Request

from server.config import Settings
from server.http.errors import BadBody, BodyTooLarge, RequestTimeout, UnsupportedMediaType
from server.http.headers import header
from server.http.state import services


class BodyDeadlines:
    """Cancels the requests whose body takes longer than BODY_TIMEOUT_SECONDS to arrive: one sweep
    every SWEEP_SECONDS over the requests reading a body, instead of a timer for each (a timer
    handle cost ~1.7 µs a request; asyncio.timeout() was ~5% of a one-event request's CPU). A
    slow body is cut between the timeout and the timeout plus one sweep."""

    SWEEP_SECONDS = 0.25

    def __init__(self) -> None:
        self._reading: dict[asyncio.Task[Any], float] = {}
        self._cancelled: set[asyncio.Task[Any]] = set()
        self._sweeper: asyncio.Task[None] | None = None

    def watch(self, task: asyncio.Task[Any], timeout: float) -> None:
        if self._sweeper is None:
            self._sweeper = asyncio.get_running_loop().create_task(self._sweep(), name="body-deadlines")
        self._reading[task] = time.monotonic() + timeout

    def forget(self, task: asyncio.Task[Any]) -> None:
        self._reading.pop(task, None)
        self._cancelled.discard(task)

    def expired(self, task: asyncio.Task[Any]) -> bool:
        return task in self._cancelled

    async def close(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper

    async def _sweep(self) -> None:
        while True:
            await asyncio.sleep(self.SWEEP_SECONDS)
            now = time.monotonic()
            for task, deadline in list(self._reading.items()):
                if now >= deadline and task not in self._cancelled:
                    self._cancelled.add(task)
                    task.cancel()


class BodyServices(Protocol):
    settings: Settings
    body_deadlines: BodyDeadlines


async def read_body(request: Request, max_bytes: int) -> bytes:
    """The raw body, refused with 413 as soon as it passes `max_bytes` (before reading it all)
    and with 408 when the client takes longer than BODY_TIMEOUT_SECONDS to send it."""
    declared = header(request, b"content-length") or None
    if declared is not None and declared.isdigit() and int(declared) > max_bytes:
        raise BodyTooLarge(f"body of {declared} bytes is over the limit of {max_bytes} bytes", field="body")
    found: BodyServices = services(request)
    timeout = found.settings.body_timeout_seconds
    task = asyncio.current_task()
    assert task is not None
    found.body_deadlines.watch(task, timeout)
    chunks, size = [], 0
    try:
        # The ASGI messages themselves, not request.stream(): its async generator was a measurable
        # part of a one-event request.
        while True:
            message = await request.receive()
            if message["type"] == "http.disconnect":
                raise ClientDisconnect()
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > max_bytes:
                raise BodyTooLarge(f"body is over the limit of {max_bytes} bytes", field="body")
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
    except ClientDisconnect:
        raise BadBody("the client disconnected before sending the whole body", field="body") from None
    except asyncio.CancelledError:
        if not found.body_deadlines.expired(task):
            raise
        task.uncancel()
        raise RequestTimeout(f"the body took longer than {timeout:g} s to arrive", field="body") from None
    finally:
        found.body_deadlines.forget(task)
    return b"".join(chunks)


async def read_decoded_body(request: Request, max_bytes: int) -> bytes:
    """The body within `max_bytes`, its Content-Encoding undone (also within `max_bytes`)."""
    body = await read_body(request, max_bytes)
    return decode_content(body, header(request, b"content-encoding") or None, max_bytes)


def decode_content(body: bytes, content_encoding: str | None, max_bytes: int) -> bytes:
    """Undo Content-Encoding, refusing output past `max_bytes` (so a gzip bomb costs nothing)."""
    encoding = (content_encoding or "identity").strip().lower()
    if encoding in ("", "identity"):
        return body
    if encoding in ("gzip", "x-gzip"):
        decoder = zlib.decompressobj(16 + zlib.MAX_WBITS)
    elif encoding == "deflate":
        decoder = zlib.decompressobj()
    else:
        raise UnsupportedMediaType(
            f"Content-Encoding {encoding!r} is not supported; use gzip, deflate or none", field="Content-Encoding"
        )
    try:
        out = decoder.decompress(body, max_bytes + 1)
    except zlib.error as exc:
        raise BadBody(f"body is not valid {encoding} data: {exc}", field="body") from None
    if len(out) > max_bytes:
        raise BodyTooLarge(f"decoded body is over the limit of {max_bytes} bytes", field="body")
    if not decoder.eof:
        raise BadBody(f"{encoding} body is truncated", field="body")
    return out
