"""The ``nut`` sink: any battery is a UPS. Writes a NUT dummy-ups port file from canonical metrics.

Same variables, formulas, user overrides, ``-nocomms`` rename and atomic writes as
enphase-monitor (one implementation: :mod:`solarbridge.sources.enphase.nut`).

Mapping: ``grid_available`` (or, without it, ``grid_voltage_v >= grid_voltage_min``)
gives OL/OB; ``battery_soc_pct`` -> battery.charge; ``battery_capacity_wh`` ->
battery.capacity; ``load_power_w`` -> output.realpower (drives runtime and ups.load);
``grid_power_w`` -> input.realpower; ``grid_voltage_v``/``grid_frequency_hz`` ->
input/output voltage and frequency; ``battery_power_w`` over the battery (or grid)
voltage -> battery.current (``battery_current_a`` wins when present);
``battery_voltage_v`` replaces the LiFePO4 estimate. Per-phase ``_l1``..``_l3``
metrics give the three-phase variables. An ``online=False`` reading, or no reading
for ``stale_after`` seconds, hides the file (rename to ``<port_file>-nocomms``).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from pathlib import Path
from typing import Any

from pydantic import Field

from ...model import MetricValue, Reading
from ...plugin import Context, Sink, SinkConfig
from ...sources.enphase.nut import (
    DEFAULT_SETTINGS,
    MeterRow,
    NutInputs,
    PortFile,
    PortFileError,
    _fixed,
    generate,
    json_number,
)
from ...util.atomic import atomic_write


class NutSinkConfig(SinkConfig):
    type: str = "nut"
    port_file: str = Field(..., min_length=1, description="dummy-ups port file (created when missing)")
    device_id: str = Field("", description="device to follow (default: the first with battery or grid data)")
    loadkwh: int = Field(768, ge=0, le=100_000, description="W per kWh of capacity at 100 % ups.load (0 = off)")
    restart_pct: float = Field(10, ge=0, le=100, description="battery.charge.restart when no battery_reserve_pct")
    stale_after: float = Field(300, ge=0, le=86400, description="hide the file after this many seconds without data")
    grid_voltage_min: float = Field(100, ge=0, le=1000, description="grid counts as up at or above this voltage")
    keep_user_lines: bool = True
    battery_type: str = "LFP"


def _num(metrics: dict[str, MetricValue], key: str) -> float | None:
    v = metrics.get(key)
    if isinstance(v, bool) or not isinstance(v, int | float) or v != v:
        return None
    return float(v)


def inputs_from_metrics(metrics: dict[str, MetricValue], cfg: NutSinkConfig, grid_min: float | None = None,
                        serial: str | None = None, firmware: str | None = None) -> NutInputs:
    """The NUT inputs for one device's latest canonical metrics."""
    gmin = cfg.grid_voltage_min if grid_min is None else grid_min
    avail = metrics.get("grid_available")
    volts = _num(metrics, "grid_voltage_v")
    if isinstance(avail, bool):
        status = "OL" if avail else "OB"
    elif volts is not None:
        status = "OL" if volts >= gmin else "OB"
    else:
        status = ""
    soc = _num(metrics, "battery_soc_pct")
    cap = _num(metrics, "battery_capacity_wh")
    reserve = _num(metrics, "battery_reserve_pct")
    freq = _num(metrics, "grid_frequency_hz")
    three = any(f"{k}_l3" in metrics for k in ("load_power_w", "grid_power_w", "grid_voltage_v"))

    def row(power_key: str, suffix: str = "") -> MeterRow:
        return MeterRow(real_w=_num(metrics, power_key + suffix),
                        voltage_v=_num(metrics, "grid_voltage_v" + suffix) or (volts if not suffix else None),
                        frequency_hz=freq)

    suffixes = ["", "_l1", "_l2", "_l3"] if three else [""]
    bv = _num(metrics, "battery_voltage_v")
    storage = None
    if "battery_power_w" in metrics:
        storage = MeterRow(real_w=_num(metrics, "battery_power_w"), voltage_v=bv or volts)
    return NutInputs(
        status=status,
        charge=json_number(round(soc, 1)) if soc is not None else None,
        capacity=str(int(cap)) if cap is not None and cap > 0 else None,
        restart=json_number(round(reserve if reserve is not None else cfg.restart_pct, 1)),
        firmware=firmware or None, serial=serial or None, phases=3 if three else None,
        input=[row("grid_power_w", s) for s in suffixes], output=[row("load_power_w", s) for s in suffixes],
        storage=storage, loadkwh=cfg.loadkwh, battery_type=cfg.battery_type,
    )


def nut_values(metrics: dict[str, MetricValue], cfg: NutSinkConfig, overrides: dict[str, str],
               defaults: dict[str, str], serial: str | None = None, firmware: str | None = None) -> dict[str, str]:
    values = generate(inputs_from_metrics(metrics, cfg, serial=serial, firmware=firmware), overrides, defaults)
    if not values:
        return values
    amps = _num(metrics, "battery_current_a")
    if amps is not None:
        values["battery.current"] = _fixed(int(amps * 100), 2)
    bv = _num(metrics, "battery_voltage_v")
    if bv is not None and "battery.voltage" in values:
        values["battery.voltage"] = f"{bv:.1f}"
    return values


class NutSink(Sink):
    Config = NutSinkConfig

    def __init__(self, config: NutSinkConfig, ctx: Context) -> None:
        super().__init__(config, ctx)
        self.port = PortFile(Path(config.port_file), config.keep_user_lines)
        self.device_id = config.device_id
        self.metrics: dict[str, MetricValue] = {}
        self.status = ""
        self.last_seen = 0.0
        self.defaults = dict(DEFAULT_SETTINGS)
        self.serial: str | None = None
        self.firmware: str | None = None
        self._watch: asyncio.Task[Any] | None = None

    async def start(self) -> None:
        p = self.port
        if not p.path.exists() and not p.nocomms_path.exists():
            p.path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write(p.nocomms_path, "")
        try:
            values, hidden = p.initial()
        except PortFileError as e:
            raise RuntimeError(str(e)) from None
        self.status = "" if hidden else values.get("ups.status", "")
        self.last_seen = time.monotonic()
        if self.config.stale_after and self._watch is None:
            self._watch = asyncio.create_task(self._watchdog())

    def _relevant(self, r: Reading) -> bool:
        if self.device_id:
            return r.device_id == self.device_id
        if not r.online:
            return False
        if "grid_available" in r.metrics or "battery_soc_pct" in r.metrics:
            self.device_id = r.device_id
            self.ctx.log.info("nut sink %s follows device %s", self.ctx.name, r.device_id)
            return True
        return False

    async def write(self, batch: list[Reading]) -> None:
        touched = False
        for r in batch:
            if not self._relevant(r):
                continue
            touched = True
            self.last_seen = time.monotonic()
            if not r.online:
                self.metrics = {}
                continue
            self.metrics.update(r.metrics)
            if r.info is not None:
                self.serial = r.info.serial or r.device_id
                self.firmware = r.info.sw_version or None
                if r.info.manufacturer:
                    self.defaults["device.mfr"] = self.defaults["ups.mfr"] = r.info.manufacturer
                if r.info.model:
                    self.defaults["device.model"] = self.defaults["ups.model"] = r.info.model
        if touched:
            self.publish()

    def publish(self) -> None:
        overrides = self.port.overrides()
        values = nut_values(self.metrics, self.config, overrides, self.defaults, self.serial, self.firmware)
        new = values.get("ups.status", "")
        try:
            if new != self.status:
                if self.status and not new:
                    self.ctx.log.warning("nut sink %s: no data, hiding %s", self.ctx.name, self.port.path)
                    self.port.hide()
                    self.ctx.health.count("nocomms")
                elif not self.status and new:
                    self.port.restore()
                self.ctx.log.info("nut sink %s: ups.status now %s", self.ctx.name, new or "(none)")
                self.status = new
            if new and self.port.update(values):
                self.ctx.health.count("port_file_writes")
        except PortFileError as e:
            raise RuntimeError(str(e)) from None
        self.ctx.health.ok()

    async def _watchdog(self) -> None:
        while True:
            await asyncio.sleep(min(1.0, self.config.stale_after))
            if self.status and self.last_seen and time.monotonic() - self.last_seen > self.config.stale_after:
                self.metrics = {}
                with contextlib.suppress(RuntimeError):
                    self.publish()

    async def stop(self) -> None:
        if self._watch is not None:
            self._watch.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._watch
            self._watch = None
