"""The FastAPI application: REST API, server-sent events, Prometheus metrics and the dashboard.

``create_app(supervisor, api_config)`` builds the app around a running
:class:`~solarbridge.runtime.Supervisor`; it reads the live device registry
(``supervisor.bus.devices``), the health report and the history store, and routes
control requests through ``supervisor.control``. Every client error is a 4xx with
``{"detail": "<one line naming the field and what is allowed>"}``.
"""

from __future__ import annotations

import asyncio
import logging
import math
import re
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from fastapi import Depends, FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, Field

from ..model import ControlError, ControlRequest, metric_spec
from ..util.timeparse import parse_duration, parse_time
from .auth import token_checker
from .sse import Broadcaster, EventStreamResponse, encode_event, json_safe, safe_metrics

log = logging.getLogger("solarbridge.api")

STATIC = Path(__file__).parent / "static"
#: most buckets one /api/history answer may hold
MAX_BUCKETS = 20_000
#: the widest bucket (about 100 years): bucket arithmetic stays within SQLite's 64-bit integers
MAX_STEP = 36500 * 86400
#: buckets aimed for when the client gives no step
AUTO_BUCKETS = 720
NICE_STEPS = (10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400, 604800)


# --------------------------------------------------------------------------- response models (OpenAPI)


class ErrorOut(BaseModel):
    detail: str = Field(description="what was wrong, naming the field and the allowed values")


class ControlOut(BaseModel):
    name: str
    kind: str
    label: str = ""
    unit: str = ""
    minimum: float | None = None
    maximum: float | None = None
    step: float | None = None
    options: list[str] = []
    state_metric: str = ""


class DeviceOut(BaseModel):
    device_id: str
    device_type: str
    name: str
    manufacturer: str
    model: str
    serial: str
    sw_version: str
    source: str
    online: bool
    comms: str = Field(description="state of the source that reads this device: running, failed, stopped, ...")
    last_seen: float | None = Field(description="Unix time of the last reading")
    age_s: float | None = Field(description="seconds since the last reading")
    timestamp: str | None = Field(description="timestamp of the last reading with metrics (ISO 8601)")
    controls: list[ControlOut]


class LatestOut(DeviceOut):
    metrics: dict[str, float | int | bool | str | None]
    units: dict[str, str]


class HistoryOut(BaseModel):
    device: str
    metric: str
    unit: str
    since: float
    until: float
    step: float
    t: list[float] = Field(description="bucket start, Unix seconds, aligned to multiples of step")
    min: list[float | None]
    mean: list[float | None]
    max: list[float | None]
    count: list[int]


class SeriesOut(BaseModel):
    device_id: str
    device_type: str
    metric: str
    unit: str


class HealthComponent(BaseModel):
    name: str
    kind: str
    type: str
    state: str
    last_success: float | None
    last_error: str
    error_since: float | None
    restarts: int
    counters: dict[str, int]
    gauges: dict[str, float | None]
    queue_depth: int | None = None
    dropped: int | None = None
    pending: int | None = None


class HealthOut(BaseModel):
    status: str = Field(description="ok when every component runs, degraded otherwise")
    uptime_s: float
    readings: int
    devices: int
    devices_online: int
    sse_clients: int
    components: list[HealthComponent]


class ControlIn(BaseModel):
    command: str = Field(min_length=1, max_length=100, description="a control name from the device's controls")
    value: Any = None


class ControlResultOut(BaseModel):
    ok: bool
    message: str
    value: Any = Field(None, description="the new state read back, as the control's state metric shows it")
    details: dict[str, Any] = Field(default_factory=dict, description="what was done, e.g. the writes by name")


# --------------------------------------------------------------------------- helpers


class ApiError(Exception):
    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail


def _bad(detail: str) -> ApiError:
    return ApiError(400, detail)


_NUMBER = re.compile(r"^\s*-?\d+(\.\d+)?\s*$")


def parse_when(name: str, text: str, now: datetime) -> datetime:
    """ISO 8601, ``now``, a duration ago with a unit (``24h``), or a bare number = Unix time."""
    try:
        if _NUMBER.match(text):
            # util.timeparse reads a bare number as "seconds ago"; in the API it is a Unix time
            return datetime.fromtimestamp(float(text), UTC)
        return parse_time(text, now=now)
    except (ValueError, OverflowError, OSError) as e:
        msg = str(e) if isinstance(e, ValueError) and str(e).startswith("not a") else f"out of range: {text!r}"
        raise _bad(f"{name}: {msg}") from None


def auto_step(span: float, buckets: int = AUTO_BUCKETS) -> float:
    """The smallest "nice" step that keeps ``span`` within about ``buckets`` buckets."""
    want = span / buckets
    for s in NICE_STEPS:
        if s >= want:
            return float(s)
    return float(math.ceil(want / 86400) * 86400)


def history_params(since: str | None, until: str | None, step: str | None,
                   now: datetime | None = None) -> tuple[datetime, datetime, float]:
    """Validate the time window and step of /api/history (raises ApiError 400 with a message)."""
    now = now or datetime.now(UTC)
    t1 = parse_when("until", until, now) if until else now
    if since:
        t0 = parse_when("since", since, now)
    else:
        try:
            t0 = t1 - timedelta(days=1)
        except OverflowError:
            raise _bad(f"until: out of range: {until!r}") from None
    if t0 >= t1:
        raise _bad(f"since: must be before until (since {t0.isoformat()}, until {t1.isoformat()})")
    span = t1.timestamp() - t0.timestamp()
    if step is None or step.strip() in ("", "auto"):
        return t0, t1, auto_step(span)
    try:
        s = parse_duration(step)
    except ValueError as e:
        raise _bad(f"step: {e}") from None
    if not math.isfinite(s) or s < 1 or s > MAX_STEP:
        raise _bad(f"step: must be from 1s to {MAX_STEP // 86400}d (got {step!r})")
    if span / s > MAX_BUCKETS:
        need = math.ceil(span / MAX_BUCKETS)
        raise _bad(f"step: {step!r} gives {int(span / s)} buckets for this range (max {MAX_BUCKETS});"
                   f" use step >= {need}s or a shorter range")
    return t0, t1, s


def _finite(v: float) -> float | None:
    return v if math.isfinite(v) else None


class HistoryAccess:
    """Finds the history store: the running history sink's, else the database file read-only."""

    def __init__(self, supervisor: Any, store: Any = None) -> None:
        self.sup = supervisor
        self.fixed = store
        self._ro: Any = None

    def get(self) -> Any:
        if self.fixed is not None:
            return self.fixed
        path = None
        for sink in getattr(self.sup, "sinks", {}).values():
            if getattr(sink.config, "type", "") == "history":
                if getattr(sink, "store", None) is not None:
                    return sink.store
                path = getattr(sink, "path", None)
        if self._ro is None:
            from ..sinks.history.sink import HistoryStore

            path = Path(path) if path else Path(self.sup.state_dir) / "history.sqlite"
            try:
                self._ro = HistoryStore(path, readonly=True)
            except (FileNotFoundError, OSError) as e:
                raise ApiError(503, f"history is not available: {e}") from None
        return self._ro

    def close(self) -> None:
        if self._ro is not None:
            self._ro.close()
            self._ro = None


def _device_out(sup: Any, dev_id: str, dev: Any, now: float) -> dict[str, Any]:
    info = dev.info
    h = sup.health.get(dev.source)
    return {
        "device_id": dev_id,
        "device_type": info.device_type,
        "name": info.display_name(),
        "manufacturer": info.manufacturer,
        "model": info.model,
        "serial": info.serial,
        "sw_version": info.sw_version,
        "source": dev.source,
        "online": bool(dev.online),
        "comms": h.state if h is not None else "unknown",
        "last_seen": dev.last_seen or None,
        "age_s": round(now - dev.last_seen, 3) if dev.last_seen else None,
        "timestamp": dev.timestamp.isoformat() if dev.timestamp is not None else None,
        "controls": [
            {"name": c.name, "kind": c.kind, "label": c.label, "unit": c.unit, "minimum": c.minimum,
             "maximum": c.maximum, "step": c.step, "options": list(c.options), "state_metric": c.state_metric}
            for c in info.controls
        ],
    }


def _givtcp_router(supervisor: Any, api_config: Any) -> Any:
    """The GivTCP-compatible router when a givenergy source is configured and the module exists."""
    if not any(getattr(s.config, "type", "") == "givenergy" for s in getattr(supervisor, "sources", {}).values()):
        return None
    try:
        from .givtcp import create_router
    except ImportError:  # an installation without the GivEnergy family
        return None
    return create_router(supervisor, api_config)


# --------------------------------------------------------------------------- the app


def create_app(supervisor: Any, api_config: Any = None, *, history: Any = None,
               broadcaster: Broadcaster | None = None) -> FastAPI:
    """Build the web app for ``supervisor``. ``history`` overrides the history store (tests, benchmarks)."""
    from ..config import ApiConfig

    cfg = api_config or ApiConfig()
    app = FastAPI(
        title="solarbridge",
        summary="Live readings, history, health and controls of your solar and battery devices",
        version=_version(),
        docs_url="/api/docs",
        redoc_url=None,
        openapi_url="/api/openapi.json",
    )
    sup = supervisor
    hist = HistoryAccess(sup, history)
    events = broadcaster or Broadcaster(sup.bus)
    app.state.supervisor = sup
    app.state.broadcaster = events
    app.state.history = hist
    require_token = token_checker(cfg.token)
    errors: dict[int | str, dict[str, Any]] = {400: {"model": ErrorOut}}

    if cfg.cors_origins:
        from fastapi.middleware.cors import CORSMiddleware

        app.add_middleware(CORSMiddleware, allow_origins=list(cfg.cors_origins), allow_methods=["GET", "POST"],
                           allow_headers=["Authorization", "Content-Type"])

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError) -> JSONResponse:
        return JSONResponse({"detail": exc.detail}, status_code=exc.status)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        e = exc.errors()[0] if exc.errors() else {"loc": (), "msg": "invalid request"}
        loc = [str(x) for x in e.get("loc", ())]
        field = ".".join(loc[1:]) or (loc[0] if loc else "request")  # loc[0] is query, path or body
        msg = str(e.get("msg", "invalid"))
        if e.get("type") == "json_invalid":
            field, msg = "body", "not valid JSON"
        return JSONResponse({"detail": f"{field}: {msg}"}, status_code=400)

    @app.exception_handler(ControlError)
    async def _control_error(request: Request, exc: ControlError) -> JSONResponse:
        status = exc.status if 400 <= exc.status < 600 else 400
        body: dict[str, Any] = {"detail": str(exc)}
        if exc.field_name:
            body["field"] = exc.field_name
        return JSONResponse(body, status_code=status)

    # ------------------------------------------------------------------ devices
    # Routes that read the supervisor's state are `async def` on purpose: they run on the event loop, never in
    # FastAPI's thread pool, so they cannot see the device registry or the SSE client set mid-update.

    @app.get("/api/devices", response_model=list[DeviceOut], tags=["devices"])
    async def devices() -> Any:
        """Every device the daemon knows: identity, source, online state and last-seen time."""
        now = time.time()
        return JSONResponse([_device_out(sup, k, d, now) for k, d in sorted(sup.bus.devices.items())])

    @app.get("/api/devices/{device_id}/latest", response_model=LatestOut, tags=["devices"],
             responses={404: {"model": ErrorOut}})
    async def latest(device_id: str) -> Any:
        """The device's latest value of every metric, with units."""
        dev = sup.bus.devices.get(device_id)
        if dev is None:
            raise ApiError(404, f"device_id: unknown device {device_id!r} (see /api/devices)")
        out = _device_out(sup, device_id, dev, time.time())
        out["metrics"] = safe_metrics(dict(dev.latest))
        out["units"] = {k: metric_spec(k).unit for k in dev.latest}
        return JSONResponse(out)

    @app.post("/api/devices/{device_id}/control", response_model=ControlResultOut, tags=["control"],
              dependencies=[Depends(require_token)],
              responses={**errors, 401: {"model": ErrorOut}, 403: {"model": ErrorOut}, 404: {"model": ErrorOut},
                         502: {"model": ErrorOut}})
    async def control(device_id: str, body: ControlIn) -> Any:
        """Send a command to a device (see the device's ``controls``). Needs the bearer token when one is set."""
        req = ControlRequest(device_id=device_id, command=body.command, value=body.value, origin="api")
        try:
            result = await sup.control(req)
        except ControlError:
            raise
        except Exception as e:  # noqa: BLE001 - a device failure is the device's, not a server bug
            log.warning("control %s %s failed: %s", device_id, body.command, e)
            raise ApiError(502, f"the device did not accept the command: {type(e).__name__}: {e}") from None
        return JSONResponse({"ok": bool(result.ok), "message": result.message, "value": json_safe(result.value),
                             "details": json_safe(result.details)})

    # ------------------------------------------------------------------ history

    @app.get("/api/history", response_model=HistoryOut, tags=["history"],
             responses={**errors, 404: {"model": ErrorOut}, 503: {"model": ErrorOut}})
    async def history_route(
        device: str = Query(..., min_length=1, max_length=200, description="device_id"),
        metric: str = Query(..., min_length=1, max_length=200, description="metric name, e.g. pv_power_w"),
        since: str | None = Query(None, description="start: ISO 8601, Unix time, or a duration ago (24h)"),
        until: str | None = Query(None, description="end (default now), same forms as since"),
        step: str | None = Query(None, description="bucket width (e.g. 60s, 5m); default: about 720 buckets"),
    ) -> Any:
        """Downsampled history of one metric: per bucket of ``step`` seconds, min, mean, max and count."""
        t0, t1, s = history_params(since, until, step)
        store = hist.get()
        buckets = await asyncio.to_thread(store.downsample, device, metric, t0, t1, s)
        if not buckets and not await asyncio.to_thread(_has_series, store, device, metric):
            raise ApiError(404, f"no history for device {device!r} metric {metric!r} (see /api/history/series)")
        return JSONResponse({
            "device": device, "metric": metric, "unit": metric_spec(metric).unit,
            "since": t0.timestamp(), "until": t1.timestamp(), "step": s,
            "t": [b.ts for b in buckets],
            "min": [_finite(b.min) for b in buckets],
            "mean": [_finite(b.mean) for b in buckets],
            "max": [_finite(b.max) for b in buckets],
            "count": [b.count for b in buckets],
        })

    @app.get("/api/history/series", response_model=list[SeriesOut], tags=["history"],
             responses={503: {"model": ErrorOut}})
    async def history_series() -> Any:
        """Every (device, metric) pair that has history."""
        store = hist.get()
        rows = await asyncio.to_thread(store.series)
        return JSONResponse([{**r, "unit": metric_spec(r["metric"]).unit} for r in rows])

    # ------------------------------------------------------------------ health, events, metrics

    @app.get("/api/health", response_model=HealthOut, tags=["daemon"])
    async def health() -> Any:
        """Every source and sink: state, last success, last error, queue and spool depth."""
        comps = sup.health_report()
        for c in comps:
            c["gauges"] = {k: json_safe(v) for k, v in c.get("gauges", {}).items()}
        bad = [c for c in comps if c["state"] not in ("running", "stopped")]
        return JSONResponse({
            "status": "ok" if not bad else "degraded",
            "uptime_s": round(time.time() - getattr(sup, "started_at", time.time()), 3),
            "readings": sup.bus.published,
            "devices": len(sup.bus.devices),
            "devices_online": sum(1 for d in sup.bus.devices.values() if d.online),
            "sse_clients": len(events.clients),
            "components": comps,
        })

    @app.get("/api/events", tags=["daemon"], response_class=Response,
             responses={200: {"content": {"text/event-stream": {}},
                              "description": "`event: device` for each known device, then `event: reading`"
                                             " for every reading as it arrives"}})
    async def events_route(device: str | None = Query(None, max_length=200, description="only this device_id")) -> Any:
        """Server-sent events: the current state of each device, then every live reading."""
        client = events.add(device)
        now = time.time()
        first = [encode_event("device", {**_device_out(sup, k, d, now), "metrics": safe_metrics(dict(d.latest))})
                 for k, d in sorted(sup.bus.devices.items()) if device is None or k == device]
        return EventStreamResponse(events, client, first)

    @app.get("/metrics", tags=["daemon"], response_class=Response,
             responses={200: {"content": {"text/plain": {}}, "description": "Prometheus text format 0.0.4"}})
    async def metrics() -> Any:
        """Prometheus exposition: latest device metrics and the daemon's own counters."""
        from .metrics import CONTENT_TYPE, render

        return Response(render(sup), media_type=CONTENT_TYPE)

    # ------------------------------------------------------------------ dashboard

    @app.get("/", include_in_schema=False)
    async def index() -> Any:
        return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-cache"})

    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    router = _givtcp_router(sup, cfg)
    if router is not None:
        app.include_router(router)
    _document_400(app)
    return app


def _document_400(app: FastAPI) -> None:
    """Validation errors are answered 400 with ErrorOut (not FastAPI's 422): say so in the OpenAPI schema."""
    from fastapi.openapi.utils import get_openapi

    def schema() -> dict[str, Any]:
        if app.openapi_schema is None:
            doc = get_openapi(title=app.title, version=app.version, summary=app.summary, routes=app.routes)
            for item in doc.get("paths", {}).values():
                for op in item.values():
                    responses = op.get("responses", {})
                    if responses.pop("422", None) is not None:
                        responses.setdefault("400", {
                            "description": "Bad request: the message names the field and what is allowed",
                            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorOut"}}}})
            comps = doc.get("components", {}).get("schemas", {})
            for name in ("HTTPValidationError", "ValidationError"):
                comps.pop(name, None)
            app.openapi_schema = doc
        return app.openapi_schema

    app.openapi = schema  # type: ignore[method-assign]


def _has_series(store: Any, device: str, metric: str) -> bool:
    return any(r["device_id"] == device and r["metric"] == metric for r in store.series())


def _version() -> str:
    try:
        from .. import __version__

        return str(__version__)
    except ImportError:
        return "0"
