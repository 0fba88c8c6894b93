"""The ``nut`` sink: any battery is a UPS. Writes a NUT dummy-ups port file.

Same variables, formulas, user overrides, ``-nocomms`` rename and atomic writes as
NUT's enphase-monitor (one implementation: :mod:`.portfile`); the ``enphase-monitor``
command is the ``enphase`` source feeding this sink.

Readings that carry meter rows (``Reading.extra["meter_rows"]``, see
:data:`solarbridge.model.EXTRA_METER_ROWS`; the ``enphase`` source sends them) are
mapped row by row like enphase-monitor: net meter -> input.*, consumption meter ->
output.*, storage -> battery.current, per-line variables when ``phase_count`` is 3,
OL/OB from ``grid_available`` (without it, from ``grid_voltage_v`` as below),
``battery_soc_pct``/``battery_capacity_wh``/``battery_reserve_pct`` printed as the
device sent them. Values a reading lacks (capacity, reserve, firmware, serial) keep
what the port file held at start.

Other readings are mapped from canonical metrics:

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
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import Field

from ...model import EXTRA_METER_ROWS, EXTRA_PHASE_COUNT, MetricValue, Reading
from ...plugin import Context, DeliveryPending, Sink, SinkConfig
from ...util.atomic import atomic_write
from .portfile import (
    DEFAULT_SETTINGS,
    MeterRow,
    NutInputs,
    PortFile,
    PortFileError,
    _fixed,
    generate,
    json_number,
)


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


def grid_status(metrics: dict[str, MetricValue], grid_min: float) -> str:
    """OL or OB from ``grid_available``, else from ``grid_voltage_v >= grid_min``; "" when neither is known."""
    avail = metrics.get("grid_available")
    if isinstance(avail, bool):
        return "OL" if avail else "OB"
    volts = _num(metrics, "grid_voltage_v")
    if volts is not None:
        return "OL" if volts >= grid_min else "OB"
    return ""


def inputs_from_metrics(metrics: dict[str, MetricValue], cfg: NutSinkConfig, grid_min: float | None = None,
                        serial: str | None = None, firmware: str | None = None) -> NutInputs:
    """The NUT inputs for one device's latest canonical metrics."""
    volts = _num(metrics, "grid_voltage_v")
    status = grid_status(metrics, cfg.grid_voltage_min if grid_min is None else grid_min)
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


def _row(obj: object) -> MeterRow:
    if not isinstance(obj, dict):
        return MeterRow()

    def num(key: str) -> float | int | None:
        v = obj.get(key)
        return v if isinstance(v, int | float) and not isinstance(v, bool) else None

    return MeterRow(num("real_w"), num("apparent_va"), num("voltage_v"), num("power_factor"), num("frequency_hz"))


def _rows(obj: object) -> list[MeterRow]:
    return [_row(x) for x in obj] if isinstance(obj, list) else []


def inputs_from_meter_rows(metrics: dict[str, MetricValue], extra: dict[str, object], cfg: NutSinkConfig,
                           initial: dict[str, str], serial: str | None = None,
                           firmware: str | None = None) -> NutInputs:
    """The NUT inputs for a reading that carries meter rows (enphase-monitor's mapping)."""
    # a gateway with no grid relay (firmware before 7) sends no grid_available: the metered voltage says
    status = grid_status(metrics, cfg.grid_voltage_min)
    rows = extra.get(EXTRA_METER_ROWS)
    rows = rows if isinstance(rows, dict) else {}
    battery = _rows(rows.get("battery"))

    def text(key: str, fallback: str) -> str | None:
        value = json_number(metrics[key]) if key in metrics else None
        return value if value is not None else (initial.get(fallback) or None)

    return NutInputs(
        status=status,
        charge=json_number(metrics.get("battery_soc_pct")),
        capacity=text("battery_capacity_wh", "battery.capacity"),
        restart=text("battery_reserve_pct", "battery.charge.restart"),
        firmware=firmware or initial.get("ups.firmware") or None,
        serial=serial or initial.get("ups.serial") or initial.get("device.serial") or None,
        phases=count if (count := extra.get(EXTRA_PHASE_COUNT)) in (2, 3) else None,
        input=_rows(rows.get("grid")), output=_rows(rows.get("load")),
        storage=battery[0] if battery else None, loadkwh=cfg.loadkwh, battery_type=cfg.battery_type,
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


class _LogNotes:
    """Where the sink's messages go in the daemon: its logger (enphase-monitor passes its own reporter)."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    def info(self, msg: str) -> None:
        log = self.ctx.log.warning if msg.startswith("Communication lost") else self.ctx.log.info
        log("nut sink %s: %s", self.ctx.name, msg)

    def debug(self, msg: str, level: int = 1) -> None:
        if level == 1:
            self.ctx.log.debug("nut sink %s: %s", self.ctx.name, msg)


class NutSink(Sink):
    Config = NutSinkConfig

    def __init__(self, config: NutSinkConfig, ctx: Context) -> None:
        super().__init__(config, ctx)
        self.port = PortFile(Path(config.port_file), config.keep_user_lines)
        self.device_id = config.device_id
        self.metrics: dict[str, MetricValue] = {}
        self.extra: dict[str, Any] = {}
        self.status = ""
        self.last_seen = 0.0
        self.defaults = dict(DEFAULT_SETTINGS)
        self.serial: str | None = None
        self.firmware: str | None = None
        #: values the port file held at start (used where readings lack them)
        self.initial: dict[str, str] = {}
        #: messages (``info``/``debug``); enphase-monitor sets its reporter here
        self.notes: Any = _LogNotes(ctx)
        #: when set, a port-file error is handed to it instead of failing (and restarting) the sink
        self.on_error: Callable[[str], None] | None = None
        #: readings taken so far (enphase-monitor waits for this before its next poll)
        self.taken = 0
        self._started = False
        self._watch: asyncio.Task[Any] | None = None
        #: why the newest state is not in the port file ("" when it is)
        self._unwritten = ""

    def load_initial(self) -> None:
        """Read the start-up values and status from the port file (or its -nocomms twin); PortFileError."""
        values, hidden = self.port.initial()
        self.initial = values
        self.status = "" if hidden else values.get("ups.status", "")
        self._started = True

    async def start(self) -> None:
        p = self.port
        if not self._started:
            if not p.path.exists() and not p.nocomms_path.exists():
                p.path.parent.mkdir(parents=True, exist_ok=True)
                atomic_write(p.nocomms_path, "")
            try:
                self.load_initial()
            except PortFileError as e:
                raise RuntimeError(str(e)) from None
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
            if EXTRA_METER_ROWS in r.extra:
                # a full view of the device: replaces, never merges
                self.metrics = dict(r.metrics)
                self.extra = dict(r.extra)
            else:
                self.metrics.update(r.metrics)
                self.extra = {}
            if r.info is not None:
                self.serial = r.info.serial or r.device_id
                self.firmware = r.info.sw_version or None
                if r.info.manufacturer:
                    self.defaults["device.mfr"] = self.defaults["ups.mfr"] = r.info.manufacturer
                if r.info.model:
                    self.defaults["device.model"] = self.defaults["ups.model"] = r.info.model
        if touched:
            self.publish()
        self.taken += len(batch)

    def values(self, overrides: dict[str, str]) -> dict[str, str]:
        if self.extra and self.metrics:
            inputs = inputs_from_meter_rows(self.metrics, self.extra, self.config, self.initial, self.serial,
                                            self.firmware)
            return generate(inputs, overrides, self.defaults)
        return nut_values(self.metrics, self.config, overrides, self.defaults, self.serial, self.firmware)

    def publish(self) -> None:
        """Write the newest state to the port file.

        On failure the state stays in memory (it was taken): :class:`DeliveryPending` (the runtime retries with
        backoff, :meth:`flush` retries at the end, :meth:`undelivered` names it), or ``on_error`` when set.
        """
        try:
            self._publish()
        except PortFileError as e:
            self._unwritten = str(e)
            if self.on_error is None:
                raise DeliveryPending(str(e)) from None
            self.on_error(str(e))
            return
        self._unwritten = ""
        self.ctx.health.ok()

    async def flush(self) -> None:
        """The newest state is in the port file: retry a write that failed, with backoff; the caller bounds it."""
        from ...util.backoff import Backoff

        backoff = Backoff(initial=0.2, cap=2.0)
        while self._unwritten:
            with contextlib.suppress(DeliveryPending):
                self.publish()
            if self._unwritten:
                await asyncio.sleep(backoff.next_delay())

    def pending(self) -> int:
        return 1 if self._unwritten else 0

    def undelivered(self) -> str:
        if not self._unwritten:
            return ""
        return f"the newest state of {self.device_id or 'the device'} is not in the port file ({self._unwritten})"

    def _publish(self) -> None:
        overrides = self.port.overrides()
        values = self.values(overrides)
        new = values.get("ups.status", "")
        if new != self.status:
            if self.status and not new:
                self.notes.info("Communication lost, hiding portfile")
                self.port.hide()
                self.ctx.health.count("nocomms")
            elif not self.status and new:
                self.notes.info("Communication restored, restoring portfile")
                self.port.restore()
            self.notes.info(f"ups.status now {new}")
            self.status = new
        if new and self.port.update(values):
            self.ctx.health.count("port_file_writes")
            self.notes.info(f"Updating {self.port.path}")
            self.notes.debug("new file:\n" + "".join(f"  {k}: {v}\n" for k, v in values.items()), 3)

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
