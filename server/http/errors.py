"""Every rejection the API gives, and the one place they become JSON responses.

Code that knows what is wrong raises one of these; `install_error_handlers` turns them into
`{"error": {"code", "message", "field", ...}}` bodies. Validation failures carry a list of
`FieldError` values, one per bad field of each bad event.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from server.http.responses import json_response

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FieldError:
    """One bad field of one event (its index in the request)."""

    index: int
    field: str
    reason: str

    def as_dict(self) -> dict[str, Any]:
        return {"index": self.index, "field": self.field, "reason": self.reason}


class ApiError(Exception):
    status = 400
    code = "bad_request"
    errors: list[FieldError] = []  # per-event field errors, listed in the body when there are any

    def __init__(self, message: str, field: str | None = None, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.message = message
        self.field = field
        self.headers = headers

    def body(self) -> dict[str, Any]:
        error: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.field is not None:
            error["field"] = self.field
        if self.errors:
            error["errors"] = [e.as_dict() for e in self.errors]
        return {"error": error}


class BadBody(ApiError):
    status = 400
    code = "bad_body"


class BodyTooLarge(ApiError):
    status = 413
    code = "too_large"


class RequestTimeout(ApiError):
    status = 408
    code = "timeout"


class UnsupportedMediaType(ApiError):
    status = 415
    code = "unsupported_media_type"


class ValidationFailed(ApiError):
    status = 422
    code = "validation_failed"

    def __init__(self, errors: list[FieldError]):
        bad_events = len({e.index for e in errors})
        super().__init__(f"{bad_events} event(s) failed validation; nothing was stored")
        self.errors = errors


class Unauthorized(ApiError):
    status = 401
    code = "unauthorized"

    def __init__(self, message: str, field: str):
        super().__init__(message, field=field, headers={"WWW-Authenticate": "Bearer"})


class Forbidden(ApiError):
    status = 403
    code = "forbidden"

    def __init__(self, message: str, errors: list[FieldError]):
        super().__init__(message, field=errors[0].field if errors else None)
        self.errors = errors


class Unavailable(ApiError):
    """The request was fine but could not be stored now; the client should retry."""

    status = 503
    code = "unavailable"

    def __init__(self, message: str, retry_after_seconds: int = 1):
        super().__init__(message, headers={"Retry-After": str(retry_after_seconds)})


def first_line(exc: BaseException, limit: int = 300) -> str:
    """A database error's first line, for a client-facing message (ClickHouse adds stack traces)."""
    text = str(exc).strip()
    return text.splitlines()[0][:limit] if text else type(exc).__name__


async def _api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    return json_response(exc.body(), exc.status, exc.headers)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    codes = {404: "not_found", 405: "method_not_allowed"}
    body = {"error": {"code": codes.get(exc.status_code, "http_error"), "message": exc.detail}}
    return json_response(body, exc.status_code, exc.headers)


INTERNAL_ERROR = {"error": {"code": "internal", "message": "internal error; nothing was stored by this request"}}


def log_unexpected(method: str, path: str) -> None:
    """A bug, not a client's error: logged with its traceback (call from an except block)."""
    log.exception("unexpected error on %s %s", method, path)


async def _unexpected(request: Request, exc: Exception) -> Response:
    log_unexpected(request.method, request.url.path)
    return json_response(INTERNAL_ERROR, 500)


def install_error_handlers(app: Starlette) -> None:
    app.add_exception_handler(ApiError, _api_error)
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected)
