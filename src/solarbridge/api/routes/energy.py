"""``/api/energy`` and ``/api/sites``: a site's daily/monthly/yearly energy and the sites' resolved roles."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Depends, Query
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from ...energyview import BYS, default_since, site_device, site_energy, site_names
from ...stages.sites import ENERGY_METRICS
from ...util.timeparse import zone
from ..errors import BAD_REQUEST, ApiError, ErrorOut
from . import deps
from .history import parse_when

router = APIRouter(tags=["energy"])


class EnergyPeriodOut(BaseModel):
    start: str = Field(description="period start, local time (ISO 8601 with offset)")
    end: str
    kwh: dict[str, float | None] = Field(description="kWh per flow; null where history has no data")


class EnergyOut(BaseModel):
    site: str
    device_id: str
    by: str
    timezone: str
    unit: str = "kWh"
    flows: list[str]
    derived: list[str] = Field(description="flows integrated from power (no counter), as far as the daemon knows")
    periods: list[EnergyPeriodOut]
    totals: dict[str, float | None]


class SiteOut(BaseModel):
    name: str
    device_id: str
    timezone: str
    roles: dict[str, Any] | None = Field(description="resolved roles of a running site (null: history only)")


def _configured_tz(sup: Any, site: str) -> str:
    for s in getattr(getattr(sup, "config", None), "sites", []) or []:
        if s.name == site:
            return str(s.timezone)
    return ""


def _sites_stage(sup: Any) -> Any:
    return sup.stage("sites") if hasattr(sup, "stage") else None


@router.get("/api/energy", response_model=EnergyOut,
            responses={**BAD_REQUEST, 404: {"model": ErrorOut}, 503: {"model": ErrorOut}})
async def energy(
    site: str = Query(..., min_length=1, max_length=200, description="site name (or site:<name>)"),
    by: str = Query("day", description="day, month or year"),
    since: str | None = Query(None, description="start: ISO 8601, Unix time or a duration ago (30d); "
                                                "default the last 7 days, 12 months or 5 years"),
    until: str | None = Query(None, description="end (default now)"),
    tz: str | None = Query(None, max_length=64, description="IANA time zone of the days (default: the site's)"),
    sup: Any = Depends(deps.supervisor),
    hist: Any = Depends(deps.history),
) -> Any:
    """Energy per day, month or year of one site: PV, import, export, charge, discharge, load, self-consumption."""
    if by not in BYS:
        raise ApiError(400, f"by: must be one of {', '.join(BYS)} (got {by!r})")
    name = site_device(site)[len("site:"):]
    tz_name = tz if tz is not None else _configured_tz(sup, name)
    try:
        zone_ = zone(tz_name)
    except ValueError as e:
        raise ApiError(400, f"tz: {e}") from None
    now = datetime.now(UTC)
    t1 = parse_when("until", until, now) if until else now
    t0 = parse_when("since", since, now) if since else default_since(t1, by, zone_)
    if t0 >= t1:
        raise ApiError(400, f"since: must be before until (since {t0.isoformat()}, until {t1.isoformat()})")
    store = hist.get()
    try:
        periods = await asyncio.to_thread(site_energy, store, name, by, t0, t1, zone_)
    except ValueError as e:
        raise ApiError(400, str(e)) from None
    if all(p.kwh.get(f) is None for p in periods for f in ENERGY_METRICS):
        known = await asyncio.to_thread(site_names, store)
        if name not in known:
            raise ApiError(404, f"site: no energy history for site {name!r} (known: {', '.join(known) or 'none'})")
    totals: dict[str, float | None] = {}
    for f in ENERGY_METRICS:
        vals = [v for p in periods if (v := p.kwh.get(f)) is not None]
        totals[f] = round(sum(vals), 3) if vals else None
    stage = _sites_stage(sup)
    live = stage.sites.get(name) if stage is not None else None
    derived = sorted(k for k, m in ENERGY_METRICS.items() if live is not None and m in live.derived)
    return JSONResponse({
        "site": name, "device_id": site_device(name), "by": by, "timezone": tz_name or "local",
        "unit": "kWh", "flows": list(ENERGY_METRICS), "derived": derived,
        "periods": [{"start": p.start.isoformat(), "end": p.end.isoformat(), "kwh": p.kwh} for p in periods],
        "totals": totals,
    })


@router.get("/api/sites", response_model=list[SiteOut], responses={503: {"model": ErrorOut}})
async def sites(sup: Any = Depends(deps.supervisor), hist: Any = Depends(deps.history)) -> Any:
    """Every site: those the daemon runs (with their resolved roles) and those with energy history."""
    out: dict[str, dict[str, Any]] = {}
    stage = _sites_stage(sup)
    if stage is not None:
        for d in stage.describe():
            out[d["name"]] = {"name": d["name"], "device_id": d["device_id"],
                              "timezone": d["timezone"] or _configured_tz(sup, d["name"]), "roles": d}
    try:
        names = await asyncio.to_thread(site_names, hist.get())
    except ApiError:
        names = []
    for n in names:
        out.setdefault(n, {"name": n, "device_id": site_device(n), "timezone": _configured_tz(sup, n), "roles": None})
    return JSONResponse(sorted(out.values(), key=lambda d: d["name"]))
