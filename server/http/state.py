"""What the app was assembled with, for its handlers.

The assembly (server/process/app.py) puts one services object on `app.state`. A handler's module
does not import that object's class (it is built from every room, the handlers' modules
included): it declares, as a Protocol beside its routes, the part it uses, and reads it through
`services()`; server/process/app.py checks with mypy that the services object gives every room
what its Protocol asks.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request


def services(request: Request) -> Any:
    return request.app.state.services
