"""What routes need from the running daemon, as FastAPI dependencies reading ``app.state``.

:func:`solarbridge.api.app.create_app` sets ``app.state.supervisor``, ``.history`` (a
:class:`~solarbridge.api.routes.history.HistoryAccess`), ``.broadcaster`` (the SSE fan-out) and
``.check_token`` (the bearer-token check of the ``[api] token``).

Routes that read the supervisor's state are ``async def`` on purpose: they run on the event loop, never
in FastAPI's thread pool, so they cannot see the device registry or the SSE client set mid-update.
"""

from __future__ import annotations

from typing import Any

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials

from ..auth import bearer


def supervisor(request: Request) -> Any:
    return request.app.state.supervisor


def history(request: Request) -> Any:
    return request.app.state.history


def broadcaster(request: Request) -> Any:
    return request.app.state.broadcaster


def require_token(request: Request, creds: HTTPAuthorizationCredentials | None = Depends(bearer)) -> None:
    """The control routes' guard: the configured bearer token (open when none is set)."""
    request.app.state.check_token(request, creds)
