"""Daemon source ``givenergy``: polls one inverter through its dongle and executes controls.

    [[sources]]
    type = "givenergy"
    host = "192.168.1.50"
    poll_interval = 15          # fast poll (IR 0-59, IR 180-239 + the model's extra IR blocks, HR 0-59, batteries)
    full_refresh_interval = 120 # HR 0-179 + the model's extra holding blocks
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import re
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import Field, field_validator

from ...model import ControlError, ControlRequest, ControlResult, DeviceInfo, Reading, utcnow
from ...plugin import Context, Emit, PluginConfig, Source
from ...util.aiorun import cancel_and_wait
from ...util.atomic import atomic_write
from ...util.backoff import Backoff
from .client import DEFAULT_PORT, GivEnergyClient, GivEnergyError
from .controls import (
    BATTERY_SOC_RESERVE,
    REGISTER_NAMES,
    STATE_METRICS,
    TIMED_CONTROLS,
    PlanContext,
    WritePlan,
    named,
    register_name,
    restore_plan,
)
from .controls import plan as make_plan
from .readings import DEVICE_TYPE, build_reading, device_info

REGISTER_NUMBERS = {name: r for r, name in REGISTER_NAMES.items()}


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
    poll_profile: Literal["full", "lite"] = Field(
        "full", description="full: every block each poll, the holding blocks every full_refresh_interval; lite: the "
        "live (input) blocks each poll, the configuration (holding) blocks every config_interval and the battery "
        "units every battery_interval, for dongles that struggle")
    config_interval: float = Field(300.0, gt=0, le=86400, description="lite: seconds between reads of the "
                                   "configuration (holding) blocks")
    battery_interval: float = Field(60.0, gt=0, le=86400, description="lite: seconds between reads of the battery "
                                    "units (LV packs, HV BCU/BMUs) and the external meters")
    block_intervals: dict[str, float] = Field(
        default_factory=dict, description='seconds between reads of single blocks, overriding the profile, e.g. '
        '{ IR240 = 60, HR180 = 3600, battery = 120 } (keys IR<base>, HR<base>, battery, hv, meters)')
    meters: list[int] | None = Field(None, description="external meters (device addresses 1..8) to read on each "
                                     "poll; default: probe 1..8 once after connecting and keep those that answer; "
                                     "[] reads none")
    allow_reboot: bool = Field(False, description="offer the rebootInverter control (refused unless true)")

    @field_validator("block_intervals")
    @classmethod
    def _check_block_intervals(cls, v: dict[str, float]) -> dict[str, float]:
        for key, seconds in v.items():
            if not re.fullmatch(r"(IR|HR)\d{1,4}|battery|hv|meters", key):
                raise ValueError(f"block_intervals: {key!r} is not a block (IR<base>, HR<base>, battery, hv or "
                                 "meters)")
            if not 0 < seconds <= 86400:
                raise ValueError(f"block_intervals.{key}: must be more than 0 and at most 86400 s (got {seconds:g})")
        return v

    @field_validator("meters")
    @classmethod
    def _check_meters(cls, v: list[int] | None) -> list[int] | None:
        for addr in v or ():
            if not 1 <= addr <= 8:
                raise ValueError(f"meters: each address must be 1..8 (got {addr})")
        return sorted(set(v)) if v is not None else None
    reconnect_initial: float = Field(1.0, gt=0, le=60)
    reconnect_cap: float = Field(60.0, gt=0, le=3600)


class GivEnergySource(Source):
    Config = GivEnergyConfig

    def __init__(self, config: GivEnergyConfig, ctx: Context) -> None:
        super().__init__(config, ctx)
        self.client = GivEnergyClient(config.host, config.port, timeout=config.timeout, retries=config.retries,
                                      gap=config.request_gap, read_address=config.read_address,
                                      meters=None if config.meters is None else tuple(config.meters), log=ctx.log)
        self._emit: Emit | None = None
        self._last_full = 0.0
        self._last_read: dict[str, float] = {}  # block key -> monotonic time of its last read
        #: the clock of the poll schedule (a bench runs it faster than real time)
        self.monotonic: Callable[[], float] = time.monotonic
        self._control_lock = asyncio.Lock()
        self.saved_reserve = 4
        #: running timed controls: kind -> {"until": epoch s, "minutes": n, "restore": {register: value}}
        self.timed: dict[str, dict[str, Any]] = {}
        #: wall clock for timed controls (their end survives a restart); tests move it
        self.clock: Callable[[], float] = time.time
        #: seconds between checks for a timed control that ran out
        self.timer_tick = 1.0
        self.last_reading: Reading | None = None
        self.on_reading: Callable[[Reading], None] | None = None
        self._load_state()

    # ------------------------------------------------------------------ state (saved reserve, timed controls)

    @property
    def _state_file(self) -> Any:
        return self.ctx.state_dir / f"givenergy-{self.ctx.name}.json"

    def _load_state(self) -> None:
        try:
            data = json.loads(self._state_file.read_text())
        except (OSError, ValueError):
            return
        if not isinstance(data, dict):
            return
        try:
            self.saved_reserve = int(data.get("saved_reserve", 4))
        except (TypeError, ValueError):
            pass
        for kind, t in (data.get("timed") or {}).items():
            try:
                restore = {REGISTER_NUMBERS[name]: int(v) for name, v in t["restore"].items()}
                self.timed[kind] = {"until": float(t["until"]), "minutes": int(t["minutes"]), "restore": restore}
            except (KeyError, TypeError, ValueError, AttributeError):
                self.ctx.log.warning("givenergy %s: ignoring an unreadable timed control %r in %s", self.ctx.name,
                                     kind, self._state_file)

    def _save_state(self) -> None:
        """Atomically, and synced: a timed control's revert plan must survive a crash or a restart."""
        data = {"saved_reserve": self.saved_reserve,
                "timed": {kind: {"until": t["until"], "minutes": t["minutes"], "restore": named(t["restore"])}
                          for kind, t in self.timed.items()}}
        try:
            self.ctx.state_dir.mkdir(parents=True, exist_ok=True)
            atomic_write(self._state_file, json.dumps(data), fsync=True)
        except OSError as e:
            self.ctx.log.warning("cannot save %s: %s", self._state_file, e)

    def _remember_reserve(self) -> None:
        r = self.client.plant.holding.get(BATTERY_SOC_RESERVE)
        # a reserve set by a running force export is not the user's
        if r is not None and 4 <= r < 100 and r != self.saved_reserve and "forceExport" not in self.timed:
            self.saved_reserve = r
            self._save_state()

    # ------------------------------------------------------------------ polling

    def timed_metrics(self) -> dict[str, int]:
        """Minutes left of each timed control (0 when it is not running)."""
        now = self.clock()
        out = {}
        for kind, (_name, metric, _label) in TIMED_CONTROLS.items():
            t = self.timed.get(kind)
            out[metric] = max(0, math.ceil((t["until"] - now) / 60)) if t else 0
        return out

    def _publish(self) -> Reading:
        reading = build_reading(self.client.plant, source=self.ctx.name or "givenergy", layout=self.config.layout,
                                raw=self.config.print_raw, allow_reboot=self.config.allow_reboot)
        reading.metrics.update(self.timed_metrics())
        control = reading.extra.get("givtcp", {}).get("Control")
        if isinstance(control, dict):  # GivTCP's cache fields for the timed controls
            for kind, key in (("forceCharge", "Force_Charge"), ("forceExport", "Force_Export"),
                              ("tempPauseCharge", "Temp_Pause_Charge"),
                              ("tempPauseDischarge", "Temp_Pause_Discharge")):
                control[key] = "Running" if kind in self.timed else "Normal"
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

    def block_interval(self, key: str) -> float:
        """Seconds between reads of one block under the poll profile and ``block_intervals``."""
        cfg = self.config
        if key in cfg.block_intervals:
            return cfg.block_intervals[key]
        if key.startswith("IR"):
            return cfg.poll_interval
        if cfg.poll_profile == "lite":
            return cfg.config_interval if key.startswith("HR") else cfg.battery_interval
        if key == "HR0" or key in ("battery", "hv", "meters"):
            return cfg.poll_interval
        return cfg.full_refresh_interval

    def _due(self, key: str) -> bool:
        now = self.monotonic()
        last = self._last_read.get(key)
        # a little slack: a block due "now" on a fixed cadence must not slip a whole poll
        if last is not None and now - last < self.block_interval(key) - 0.05 * self.config.poll_interval:
            return False
        self._last_read[key] = now
        return True

    async def poll_once(self, full: bool | None = None) -> Reading:
        now = self.monotonic()
        if full is not None or (self.config.poll_profile == "full" and not self.config.block_intervals):
            if full is None:
                full = now - self._last_full >= self.config.full_refresh_interval
            await self.client.refresh(full=full)
            if full:
                self._last_full = now
        else:  # every block on its own interval
            await self.client.refresh(full=True, due=self._due)
        self._remember_reserve()
        self.ctx.health.ok()
        return self._publish()

    async def run(self, emit: Emit) -> None:
        self._emit = emit
        cfg = self.config
        backoff = Backoff(initial=cfg.reconnect_initial, cap=cfg.reconnect_cap)
        log = self.ctx.log
        timer = asyncio.create_task(self._timer_loop())
        try:
            while True:
                try:
                    await self.client.connect()
                    await self.client.detect(cfg.batteries)
                    self._last_full = 0.0
                    self._last_read.clear()  # after a (re)connect every block is read once
                    unknown = sorted(set(cfg.block_intervals) - set(self.client.block_keys()))
                    if unknown:
                        log.warning("givenergy %s: block_intervals %s: no such block in this %s's poll plan (it "
                                    "reads %s)", self.ctx.name, ", ".join(unknown), self.client.plant.model.label,
                                    ", ".join(self.client.block_keys()))
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
            await cancel_and_wait([timer], 5.0)
            await self.client.close()

    def devices(self) -> list[DeviceInfo]:
        if not self.client.plant.serial:
            return []
        return [device_info(self.client.plant, self.ctx.name, allow_reboot=self.config.allow_reboot)]

    # ------------------------------------------------------------------ control

    def _plan_context(self) -> PlanContext:
        return PlanContext.for_plant(self.client.plant, saved_reserve=self.saved_reserve,
                                     allow_reboot=self.config.allow_reboot, now=datetime.now())

    async def control(self, request: ControlRequest) -> ControlResult:
        """Validate, write, read back; the result carries the new state as the control's metric shows it."""
        serial = self.client.plant.serial
        if serial and request.device_id not in (serial, "", None):
            raise ControlError(f"device {request.device_id!r} is not handled here (inverter {serial})", status=404)
        wp = make_plan(request.command, request.value, context=self._plan_context())
        if not self.client.connected:
            raise ControlError(f"{wp.command}: inverter {self.config.host}:{self.config.port} is unreachable",
                               status=503)
        async with self._control_lock:
            try:
                if wp.timed is not None:
                    message = await self._timed_control(wp)
                else:
                    await self.client.execute(wp)
                    message = wp.success_message()
                await self.client.refresh(full=False)
            except GivEnergyError as e:
                raise ControlError(f"{wp.command}: {e}", status=503) from None
        if wp.saved_reserve is not None:
            self.saved_reserve = wp.saved_reserve
            self._save_state()
        reading = self._publish()
        hr = self.client.plant.holding
        details: dict[str, Any] = {"writes": named(wp.writes),
                                   "read_back": named({r: hr[r] for r, _v in wp.writes if r in hr})}
        if wp.timed is not None and wp.timed.kind in self.timed:
            t = self.timed[wp.timed.kind]
            details["until"] = datetime.fromtimestamp(t["until"], UTC).isoformat()
            details["revert"] = named(t["restore"])
        self.ctx.log.info("givenergy %s: %s done: wrote %s", self.ctx.name, wp.command, details["writes"])
        metric = STATE_METRICS.get(request.command)
        if metric is None and wp.timed is not None:
            metric = TIMED_CONTROLS[wp.timed.kind][1]
        if metric is not None:
            value: Any = reading.metrics.get(metric)
        else:  # a GivTCP command: the named fields it changed, as read back
            value = details["read_back"]
        return ControlResult(True, message, value=value, details=details)

    async def _read_registers(self, registers: Any) -> dict[int, int]:
        """Fresh values of holding registers (their 60-register blocks are read now)."""
        await self.client.read_holding(registers)
        hr = self.client.plant.holding
        missing = [r for r in registers if r not in hr]
        if missing:
            raise ControlError(f"cannot read the current {', '.join(register_name(r) for r in missing)} to restore "
                               "later", status=503)
        return {r: hr[r] for r in registers}

    async def _timed_control(self, wp: WritePlan) -> str:
        spec = wp.timed
        assert spec is not None
        kind = spec.kind
        if spec.cancel:
            if kind not in self.timed:
                return f"{kind}: not running, nothing to cancel"
            await self._revert(kind)
            return f"{kind} cancelled, previous settings restored"
        for other, t in self.timed.items():
            if other != kind and set(t["restore"]) & set(spec.restore):
                left = max(0, math.ceil((t["until"] - self.clock()) / 60))
                raise ControlError(f"{wp.command}: {other} is running ({left} min left) and changes the same "
                                   f"settings; cancel it first", field_name="command", status=409)
        running = self.timed.get(kind)
        if running is not None:  # extend: keep what was there before the first start
            restore = {**await self._read_registers([r for r in spec.restore if r not in running["restore"]]),
                       **running["restore"]}
        else:
            restore = await self._read_registers(spec.restore)
        # the revert plan is on disk before the first write: a crash or restart from here still reverts
        self.timed[kind] = {"until": self.clock() + spec.minutes * 60, "minutes": spec.minutes,
                            "restore": {r: restore[r] for r in spec.restore}}
        self._save_state()
        try:
            await self.client.execute(wp)
        except (GivEnergyError, ControlError):
            with contextlib.suppress(GivEnergyError, ControlError):
                await self._revert(kind)
            raise
        return wp.success_message()

    async def _revert(self, kind: str) -> None:
        t = self.timed[kind]
        await self.client.execute(restore_plan(kind, t["restore"]))
        del self.timed[kind]
        self._save_state()
        self.ctx.log.info("givenergy %s: %s ended, restored %s", self.ctx.name, kind, named(t["restore"]))

    async def revert_due(self) -> list[str]:
        """Revert every timed control whose time is up (when the inverter is reachable); returns their kinds."""
        done = []
        now = self.clock()
        for kind in [k for k, t in self.timed.items() if t["until"] <= now]:
            if not self.client.connected or self.client.plan is None:
                break
            async with self._control_lock:
                if kind not in self.timed:
                    continue
                try:
                    await self._revert(kind)
                    await self.client.refresh(full=False)
                except (GivEnergyError, ControlError) as e:
                    self.ctx.health.count("revert_errors")
                    self.ctx.log.warning("givenergy %s: reverting %s failed (will retry): %s", self.ctx.name, kind, e)
                    continue
            done.append(kind)
        if done:
            self._publish()
        return done

    async def _timer_loop(self) -> None:
        while True:
            await asyncio.sleep(self.timer_tick)
            if self.timed:
                await self.revert_due()
