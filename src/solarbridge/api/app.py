"""The FastAPI application: REST API, server-sent events, Prometheus metrics and the dashboard.

``create_app(supervisor, api_config)`` builds the app around a running
:class:`~solarbridge.runtime.Supervisor` from the routers in :mod:`solarbridge.api.routes`
(devices and events, control, history, site energy, health and /metrics, the dashboard) and, when a givenergy
source is configured, the GivTCP-compatible routes (:mod:`solarbridge.api.givtcp`). The routers read
the daemon through ``app.state`` (see :mod:`solarbridge.api.routes.deps`): the live device registry
(``supervisor.bus.devices``), the health report and the history store; control requests go through
``supervisor.control``. Every client error is a 4xx with
``{"detail": "<one line naming the field and what is allowed>"}`` (:mod:`solarbridge.api.errors`).
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI

from . import errors
from .auth import token_checker
from .routes import control, dashboard, devices, docs, energy, health
from .routes import history as history_routes
from .sse import Broadcaster


def givtcp_router(supervisor: Any, api_config: Any) -> Any:
    """The GivTCP-compatible router when a givenergy source is configured and the module exists."""
    if not any(getattr(s.config, "type", "") == "givenergy" for s in getattr(supervisor, "sources", {}).values()):
        return None
    try:
        from .givtcp import create_router
    except ImportError:  # an installation without the GivEnergy family
        return None
    return create_router(supervisor, api_config)


def create_app(supervisor: Any, api_config: Any = None, *, history: Any = None,
               broadcaster: Broadcaster | None = None) -> FastAPI:
    """Build the web app for ``supervisor``. ``history`` overrides the history store (tests, benchmarks)."""
    from ..config import ApiConfig

    cfg = api_config or ApiConfig()
    app = FastAPI(
        title="solarbridge",
        summary="Live readings, history, health and controls of your solar and battery devices",
        version=_version(),
        docs_url=None,  # routes/docs.py serves Swagger UI from a package, not a CDN
        redoc_url=None,
        openapi_url="/api/openapi.json",
    )
    app.state.supervisor = supervisor
    app.state.broadcaster = broadcaster or Broadcaster(supervisor.bus)
    app.state.history = history_routes.HistoryAccess(supervisor, history)
    app.state.check_token = token_checker(cfg.token)

    if cfg.cors_origins:
        from fastapi.middleware.cors import CORSMiddleware

        app.add_middleware(CORSMiddleware, allow_origins=list(cfg.cors_origins), allow_methods=["GET", "POST"],
                           allow_headers=["Authorization", "Content-Type"])

    for module in (devices, control, history_routes, energy, health):
        app.include_router(module.router)
    dashboard.mount(app)
    docs.mount(app)
    router = givtcp_router(supervisor, cfg)
    if router is not None:
        app.include_router(router)
    errors.install(app)
    return app



def _version() -> str:
    try:
        from .. import __version__

        return str(__version__)
    except ImportError:
        return "0"
