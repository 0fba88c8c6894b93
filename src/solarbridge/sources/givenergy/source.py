"""Daemon source ``givenergy``: polls one inverter through its dongle and executes controls.

    [[sources]]
    type = "givenergy"
    host = "192.168.1.50"
    poll_interval = 15          # fast poll (IR 0-59, IR 180-239 + the model's extra IR blocks, HR 0-59, batteries)
    full_refresh_interval = 120 # HR 0-179 + the model's extra holding blocks
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from typing import Any, Literal

from pydantic import Field

from ...model import ControlError, ControlRequest, ControlResult, DeviceInfo, Reading, utcnow
from ...plugin import Context, Emit, PluginConfig, Source
from ...util.atomic import atomic_write
from ...util.backoff import Backoff
from .client import DEFAULT_PORT, GivEnergyClient, GivEnergyError
from .controls import PlanContext
from .controls import plan as make_plan
from .readings import DEVICE_TYPE, build_reading, device_info


class GivEnergyConfig(PluginConfig):
    host: str = Field(description="IP address or host name of the WiFi/LAN dongle")
    port: int = Field(DEFAULT_PORT, ge=1, le=65535)
    poll_interval: float = Field(15.0, gt=0, le=3600, description="seconds between fast polls")
    full_refresh_interval: float = Field(120.0, gt=0, le=86400, description="seconds between full refreshes")
    timeout: float = Field(1.5, gt=0, le=30, description="seconds to wait for each reply")
    retries: int = Field(2, ge=0, le=10)
    request_gap: float = Field(0.02, ge=0, le=5, description="minimum seconds between transmitted frames")
    batteries: int | None = Field(None, ge=0, le=6, description="LV batteries (default: detect)")
    read_address: int | None = Field(None, ge=0, le=255, description="device address for reads (default: by "
                                     "model, 0x31 for Gen1 hybrid and AC, else 0x11)")
    layout: Literal["v1", "v3"] = Field("v1", description="GivTCP key names in extra['givtcp']")
    print_raw: bool = Field(False, description="add raw registers to the output (GivTCP PRINT_RAW)")
    reconnect_initial: float = Field(1.0, gt=0, le=60)
    reconnect_cap: float = Field(60.0, gt=0, le=3600)


class GivEnergySource(Source):
    Config = GivEnergyConfig

    def __init__(self, config: GivEnergyConfig, ctx: Context) -> None:
        super().__init__(config, ctx)
        self.client = GivEnergyClient(config.host, config.port, timeout=config.timeout, retries=config.retries,
                                      gap=config.request_gap, read_address=config.read_address,
                                      log=ctx.log)
        self._emit: Emit | None = None
        self._last_full = 0.0
        self._control_lock = asyncio.Lock()
        self.saved_reserve = 4
        self.last_reading: Reading | None = None
        self.on_reading: Callable[[Reading], None] | None = None
        self._load_state()

    # ------------------------------------------------------------------ state (saved reserve for "Eco")

    @property
    def _state_file(self) -> Any:
        return self.ctx.state_dir / f"givenergy-{self.ctx.name}.json"

    def _load_state(self) -> None:
        try:
            data = json.loads(self._state_file.read_text())
            self.saved_reserve = int(data.get("saved_reserve", 4))
        except (OSError, ValueError, TypeError):
            pass

    def _save_state(self) -> None:
        try:
            self.ctx.state_dir.mkdir(parents=True, exist_ok=True)
            atomic_write(self._state_file, json.dumps({"saved_reserve": self.saved_reserve}), fsync=False)
        except OSError as e:
            self.ctx.log.warning("cannot save %s: %s", self._state_file, e)

    def _remember_reserve(self) -> None:
        r = self.client.plant.holding.get(110)
        if r is not None and 4 <= r < 100 and r != self.saved_reserve:
            self.saved_reserve = r
            self._save_state()

    # ------------------------------------------------------------------ polling

    def _publish(self) -> Reading:
        reading = build_reading(self.client.plant, source=self.ctx.name or "givenergy", layout=self.config.layout,
                                raw=self.config.print_raw)
        self.last_reading = reading
        h = self.ctx.health
        for k, v in self.client.framer.drops.items():
            h.counters[f"dropped_{k}"] = v
        for k, v in self.client.stats.items():
            h.counters[k] = v
        if self._emit is not None:
            self._emit(reading)
        if self.on_reading is not None:
            self.on_reading(reading)
        return reading

    async def poll_once(self, full: bool | None = None) -> Reading:
        now = time.monotonic()
        if full is None:
            full = now - self._last_full >= self.config.full_refresh_interval
        await self.client.refresh(full=full)
        if full:
            self._last_full = now
        self._remember_reserve()
        self.ctx.health.ok()
        return self._publish()

    async def run(self, emit: Emit) -> None:
        self._emit = emit
        cfg = self.config
        backoff = Backoff(initial=cfg.reconnect_initial, cap=cfg.reconnect_cap)
        log = self.ctx.log
        try:
            while True:
                try:
                    await self.client.connect()
                    await self.client.detect(cfg.batteries)
                    self._last_full = 0.0
                    plan = self.client.plan
                    log.info("connected to %s:%s, inverter %s (%s), polling at 0x%02x", cfg.host, cfg.port,
                             self.client.plant.serial, self.client.plant.model.label, self.client.read_address)
                    if plan is not None:
                        self.ctx.health.gauges["unsupported_blocks"] = len(plan.unsupported)
                    next_poll = time.monotonic()
                    while True:
                        await self.poll_once()
                        backoff.reset()
                        self.ctx.health.gauges["connected"] = 1
                        # fixed cadence: poll_interval from start to start, not after each poll
                        next_poll += cfg.poll_interval
                        now = time.monotonic()
                        if next_poll < now:
                            next_poll = now
                        await asyncio.sleep(next_poll - now)
                except GivEnergyError as e:
                    self.ctx.health.count("comm_errors")
                    self.ctx.health.last_error = str(e)
                    self.ctx.health.gauges["connected"] = 0
                    log.warning("givenergy %s:%s: %s", cfg.host, cfg.port, e)
                    serial = self.client.plant.serial
                    if serial:
                        emit(Reading(serial, DEVICE_TYPE, utcnow(), {}, source=self.ctx.name, online=False))
                    await self.client.close()
                    await asyncio.sleep(backoff.next_delay())
        finally:
            await self.client.close()

    def devices(self) -> list[DeviceInfo]:
        if not self.client.plant.serial:
            return []
        return [device_info(self.client.plant, self.ctx.name)]

    # ------------------------------------------------------------------ control

    async def control(self, request: ControlRequest) -> ControlResult:
        serial = self.client.plant.serial
        if serial and request.device_id not in (serial, "", None):
            raise ControlError(f"device {request.device_id!r} is not handled here (inverter {serial})", status=404)
        plant = self.client.plant
        ctx = PlanContext(saved_reserve=self.saved_reserve,
                          battery_capacity_wh=plant.battery_capacity_kwh * 1000 or None,
                          max_battery_w=plant.model.max_battery_w if plant.holding else None)
        wp = make_plan(request.command, request.value, context=ctx)
        if not self.client.connected:
            raise ControlError(f"{wp.command}: inverter {self.config.host}:{self.config.port} is unreachable",
                               status=503)
        async with self._control_lock:
            try:
                await self.client.execute(wp)
                await self.client.refresh(full=False)
            except GivEnergyError as e:
                raise ControlError(f"{wp.command}: {e}", status=503) from None
        if wp.saved_reserve is not None:
            self.saved_reserve = wp.saved_reserve
            self._save_state()
        self._publish()
        return ControlResult(True, wp.success_message(), value=dict(wp.writes))
