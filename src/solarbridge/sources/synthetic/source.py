"""The `synthetic` source: a simulated home for the demo and for testing sinks."""

from __future__ import annotations

import asyncio
import json
import random
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

from pydantic import Field, field_validator

from ...model import ControlError, ControlRequest, ControlResult, ControlSpec, DeviceInfo, Reading
from ...plugin import Context, Emit, PluginConfig, Source
from ...util.atomic import atomic_write
from ...util.timeparse import parse_duration
from .model import HomeParams, HomeState, SyntheticHome

#: what a restart keeps: the lifetime and daily counters, the day they belong to, and the battery's charge
_KEPT = ("soc_pct", "pv_total_wh", "pv_today_wh", "load_total_wh", "import_total_wh", "export_total_wh",
         "charge_total_wh", "discharge_total_wh", "day")
_SAVE_EVERY_S = 60.0


class SyntheticConfig(PluginConfig):
    type: str = "synthetic"
    device_id: str = "synthetic-home"
    interval: float = Field(10.0, gt=0, le=3600, description="seconds between readings")
    seed: int = 0
    #: emit this much history at start (e.g. "24h"), at `interval` spacing, so plots are not empty
    backfill: str = "0s"
    #: stop after this many readings (0 = run forever); for tests and benchmarks
    count: int = Field(0, ge=0)
    pv_peak_w: float = Field(5000.0, ge=0, le=1_000_000)
    battery_capacity_wh: float = Field(10000.0, gt=0, le=10_000_000)
    initial_soc_pct: float = Field(50.0, ge=0, le=100)
    utc_offset_h: float = Field(0.0, ge=-14, le=14)
    #: keep the home's counters and battery charge in ``state_dir`` across restarts, as a real device does
    #: (a home whose lifetime totals restart at 0 on every run is a device the counter stage must distrust)
    persist: bool = True

    @field_validator("backfill")
    @classmethod
    def _dur(cls, v: str) -> str:
        parse_duration(v)
        return v


CONTROLS = (
    ControlSpec("battery_reserve_pct", "number", "Battery reserve", "%", 4, 100, 1, state_metric="battery_reserve_pct"),
    ControlSpec("grid_available", "switch", "Simulated grid", state_metric="grid_available"),
    ControlSpec("extra_load_w", "number", "Extra load", "W", 0, 10000, 100, state_metric="extra_load_w"),
)


class SyntheticSource(Source):
    Config = SyntheticConfig

    def __init__(self, config: SyntheticConfig, ctx: Context) -> None:
        super().__init__(config, ctx)
        c = config
        self.home = SyntheticHome(
            HomeParams(pv_peak_w=c.pv_peak_w, battery_capacity_wh=c.battery_capacity_wh, utc_offset_h=c.utc_offset_h),
            random.Random(c.seed), HomeState(soc_pct=c.initial_soc_pct))
        self.info = DeviceInfo(c.device_id, "synthetic", manufacturer="solarbridge", model="Synthetic home",
                               serial=c.device_id, sw_version="1", name="Synthetic home", source=ctx.name,
                               controls=CONTROLS)
        self._emit: Emit | None = None
        self._last: datetime | None = None  # time of the last reading, saved with the state

    @property
    def state_path(self) -> Path:
        safe = re.sub(r"[^A-Za-z0-9_.-]", "_", self.config.device_id)
        return Path(self.ctx.state_dir) / f"synthetic-{safe}.json"

    def load_state(self) -> datetime | None:
        """Resume the counters of an earlier run; returns the time of its last reading (None: a new home)."""
        try:
            saved = json.loads(self.state_path.read_text())
            kept = {k: saved[k] for k in _KEPT if isinstance(saved.get(k), (int, float))}
            last = datetime.fromisoformat(saved["last"])
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError) as e:
            self.ctx.log.warning("%s: unreadable (%s); the home starts afresh", self.state_path, e)
            return None
        for k, v in kept.items():
            setattr(self.home.s, k, type(getattr(self.home.s, k))(v))
        return last if last.tzinfo else last.replace(tzinfo=UTC)

    def save_state(self) -> None:
        if self._last is None:
            return
        state = {k: getattr(self.home.s, k) for k in _KEPT} | {"last": self._last.isoformat()}
        try:
            atomic_write(self.state_path, json.dumps(state, indent=1) + "\n")
        except OSError as e:
            self.ctx.log.warning("%s: cannot save the home's counters: %s", self.state_path, e.strerror or e)

    def devices(self) -> list[DeviceInfo]:
        return [self.info]

    def reading(self, now: datetime, dt: float) -> Reading:
        metrics = self.home.step(now, dt)
        self._last = now
        metrics["battery_reserve_pct"] = self.home.p.battery_reserve_pct
        metrics["extra_load_w"] = self.home.s.extra_load_w
        return Reading(self.config.device_id, "synthetic", now, metrics, source=self.ctx.name, info=self.info)

    async def run(self, emit: Emit) -> None:
        self._emit = emit
        try:
            await self._run(emit)
        finally:
            if self.config.persist:
                self.save_state()

    async def _run(self, emit: Emit) -> None:
        c = self.config
        sent = 0
        back = parse_duration(c.backfill)
        now = datetime.now(UTC)
        resumed = self.load_state() if c.persist else None
        start = now - timedelta(seconds=back)
        if resumed is not None:
            # history up to the last run's final reading exists already: fill only the gap since
            start = max(start, resumed + timedelta(seconds=c.interval))
        if start < now:
            t = start
            while t < now and (not c.count or sent < c.count):
                emit(self.reading(t, c.interval))
                sent += 1
                t += timedelta(seconds=c.interval)
                if sent % 200 == 0:
                    # let sinks drain and the web service answer during a large backfill (each reading also
                    # passes the counter and site stages, so a slice of 200 is a few tens of ms)
                    await asyncio.sleep(0)
        loop = asyncio.get_running_loop()
        next_at = saved_at = loop.time()
        while not c.count or sent < c.count:
            emit(self.reading(datetime.now(UTC), c.interval))
            sent += 1
            self.ctx.health.count("readings")
            if c.persist and loop.time() - saved_at >= _SAVE_EVERY_S:
                saved_at = loop.time()
                self.save_state()
            next_at += c.interval
            await asyncio.sleep(max(0.0, next_at - loop.time()))

    async def control(self, request: ControlRequest) -> ControlResult:
        spec = {s.name: s for s in CONTROLS}.get(request.command)
        if spec is None:
            raise ControlError(f"command: unknown command {request.command!r} (allowed: {', '.join(s.name for s in CONTROLS)})",
                               field_name="command")
        if spec.kind == "switch":
            value = _as_bool(request.value, spec.name)
            self.home.s.grid_available = value
        else:
            try:
                value = float(request.value)
            except (TypeError, ValueError):
                raise ControlError(f"{spec.name}: must be a number from {spec.minimum:g} to {spec.maximum:g}",
                                   field_name=spec.name) from None
            if not (spec.minimum <= value <= spec.maximum):  # type: ignore[operator]
                raise ControlError(f"{spec.name}: must be from {spec.minimum:g} to {spec.maximum:g} (got {value:g})",
                                   field_name=spec.name)
            if spec.name == "battery_reserve_pct":
                self.home.p.battery_reserve_pct = value
            else:
                self.home.s.extra_load_w = value
        if self._emit is not None:
            self._emit(self.reading(datetime.now(UTC), 0.0))
        return ControlResult(True, f"{spec.name} set", value)


def _as_bool(value: object, name: str) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "on", "yes"):
        return True
    if text in ("0", "false", "off", "no"):
        return False
    raise ControlError(f"{name}: must be ON or OFF (got {value!r})", field_name=name)
