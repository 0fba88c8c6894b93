"""The daemon's own state: /api/health for people and the dashboard, /metrics for Prometheus."""

from __future__ import annotations

import time
from typing import Any

from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, Field

from ..sse import json_safe
from . import deps

router = APIRouter()


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
    shard: str | None = Field(None, description="this worker's shard \"k/n\" (docs/fleet.md), null when not sharded")
    uptime_s: float
    readings: int
    devices: int
    devices_online: int
    sse_clients: int
    components: list[HealthComponent]


@router.get("/api/health", response_model=HealthOut, tags=["daemon"])
async def health(sup: Any = Depends(deps.supervisor), fanout: Any = Depends(deps.broadcaster)) -> Any:
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
        "shard": _shard_label(sup),
        "sse_clients": len(fanout.clients),
        "components": comps,
    })


def _shard_label(sup: Any) -> str | None:
    """The worker's shard "k/n" (docs/fleet.md), None when not sharded."""
    shard = getattr(getattr(sup, "config", None), "shard", None)
    return shard.label if shard is not None else None


@router.get("/metrics", tags=["daemon"], response_class=Response,
            responses={200: {"content": {"text/plain": {}}, "description": "Prometheus text format 0.0.4"}})
async def metrics(sup: Any = Depends(deps.supervisor)) -> Any:
    """Prometheus exposition: latest device metrics and the daemon's own counters."""
    from ..metrics import CONTENT_TYPE, render

    return Response(render(sup), media_type=CONTENT_TYPE)
