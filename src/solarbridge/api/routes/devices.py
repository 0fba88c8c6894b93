"""Devices: the list, each device's latest values, and the live event stream."""

from __future__ import annotations

import time
from typing import Any

from fastapi import APIRouter, Depends, Query
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, Field

from ...model import metric_spec
from ..errors import ApiError, ErrorOut
from ..sse import EventStreamResponse, encode_event, safe_metrics
from . import deps

router = APIRouter()


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


def device_out(sup: Any, dev_id: str, dev: Any, now: float) -> dict[str, Any]:
    """One device of the bus's registry as :class:`DeviceOut`."""
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


@router.get("/api/devices", response_model=list[DeviceOut], tags=["devices"])
async def devices(sup: Any = Depends(deps.supervisor)) -> Any:
    """Every device the daemon knows: identity, source, online state and last-seen time."""
    now = time.time()
    return JSONResponse([device_out(sup, k, d, now) for k, d in sorted(sup.bus.devices.items())])


@router.get("/api/devices/{device_id}/latest", response_model=LatestOut, tags=["devices"],
            responses={404: {"model": ErrorOut}})
async def latest(device_id: str, sup: Any = Depends(deps.supervisor)) -> Any:
    """The device's latest value of every metric, with units."""
    dev = sup.bus.devices.get(device_id)
    if dev is None:
        raise ApiError(404, f"device_id: unknown device {device_id!r} (see /api/devices)")
    out = device_out(sup, device_id, dev, time.time())
    out["metrics"] = safe_metrics(dict(dev.latest))
    out["units"] = {k: metric_spec(k).unit for k in dev.latest}
    return JSONResponse(out)


@router.get("/api/events", tags=["daemon"], response_class=Response,
            responses={200: {"content": {"text/event-stream": {}},
                             "description": "`event: device` for each known device, then `event: reading`"
                                            " for every reading as it arrives"}})
async def events_route(device: str | None = Query(None, max_length=200, description="only this device_id"),
                 sup: Any = Depends(deps.supervisor), fanout: Any = Depends(deps.broadcaster)) -> Any:
    """Server-sent events: the current state of each device, then every live reading."""
    client = fanout.add(device)
    now = time.time()
    first = [encode_event("device", {**device_out(sup, k, d, now), "metrics": safe_metrics(dict(d.latest))})
             for k, d in sorted(sup.bus.devices.items()) if device is None or k == device]
    return EventStreamResponse(fanout, client, first)
