"""History: downsampled series of one metric, and the list of series that have history."""

from __future__ import annotations

import asyncio
import math
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Depends, Query
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from ...model import metric_spec
from ...util.timeparse import parse_duration, parse_time
from ..errors import BAD_REQUEST, ApiError, ErrorOut, bad
from . import deps

router = APIRouter()

#: most buckets one /api/history answer may hold
MAX_BUCKETS = 20_000
#: the widest bucket (about 100 years): bucket arithmetic stays within SQLite's 64-bit integers
MAX_STEP = 36500 * 86400
#: buckets aimed for when the client gives no step
AUTO_BUCKETS = 720
NICE_STEPS = (10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400, 604800)


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
        raise bad(f"{name}: {msg}") from None


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
            raise bad(f"until: out of range: {until!r}") from None
    if t0 >= t1:
        raise bad(f"since: must be before until (since {t0.isoformat()}, until {t1.isoformat()})")
    span = t1.timestamp() - t0.timestamp()
    if step is None or step.strip() in ("", "auto"):
        return t0, t1, auto_step(span)
    try:
        s = parse_duration(step)
    except ValueError as e:
        raise bad(f"step: {e}") from None
    if not math.isfinite(s) or s < 1 or s > MAX_STEP:
        raise bad(f"step: must be from 1s to {MAX_STEP // 86400}d (got {step!r})")
    if span / s > MAX_BUCKETS:
        need = math.ceil(span / MAX_BUCKETS)
        raise bad(f"step: {step!r} gives {int(span / s)} buckets for this range (max {MAX_BUCKETS});"
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
            from ...sinks.history.sink import HistoryStore

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


def _has_series(store: Any, device: str, metric: str) -> bool:
    return any(r["device_id"] == device and r["metric"] == metric for r in store.series())


@router.get("/api/history", response_model=HistoryOut, tags=["history"],
            responses={**BAD_REQUEST, 404: {"model": ErrorOut}, 503: {"model": ErrorOut}})
async def history_route(
    device: str = Query(..., min_length=1, max_length=200, description="device_id"),
    metric: str = Query(..., min_length=1, max_length=200, description="metric name, e.g. pv_power_w"),
    since: str | None = Query(None, description="start: ISO 8601, Unix time, or a duration ago (24h)"),
    until: str | None = Query(None, description="end (default now), same forms as since"),
    step: str | None = Query(None, description="bucket width (e.g. 60s, 5m); default: about 720 buckets"),
    hist: HistoryAccess = Depends(deps.history),
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


@router.get("/api/history/series", response_model=list[SeriesOut], tags=["history"],
            responses={503: {"model": ErrorOut}})
async def history_series(hist: HistoryAccess = Depends(deps.history)) -> Any:
    """Every (device, metric) pair that has history."""
    store = hist.get()
    rows = await asyncio.to_thread(store.series)
    return JSONResponse([{**r, "unit": metric_spec(r["metric"]).unit} for r in rows])
