"""The handlers' typed way to the Services of the app that serves them (server/services.py)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from starlette.requests import Request

if TYPE_CHECKING:
    from server.services import Services


def services(request: Request) -> Services:
    found: Services = request.app.state.services
    return found
