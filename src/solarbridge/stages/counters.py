"""Counter hygiene: energy counters that sinks can trust, whatever the device sends.

Every ``*_total_wh`` metric is a **lifetime** counter and every ``*_today_wh`` metric a **daily** counter.
Devices get these wrong in known ways (a gateway's lifetime production stepping down, totals reading 0
after a dongle restart, 16/32-bit registers wrapping, daily counters resetting late, one-reading spikes).
:class:`CounterCleaner` turns what the device sent into what is published:

- a lifetime counter never decreases. A decrease is a *glitch* and the last good value is held, unless
  it is a 16/32-bit wrap (continued at once) or it persists for ``confirm_readings`` consistent readings
  (a real reset: device replaced, counter cleared), which is continued with an offset;
- an increase implying more power than allowed over the time since the counter last moved is a *spike*
  and is held the same way. Allowed power is the source's ``max_power_w`` (the device's rating) when set,
  else three times the highest measured power of that flow since the counter last moved plus 1 kW, else
  ``default_max_power_w``; twice the counter's resolution (its smallest rise seen; ``slack_wh`` until one
  is seen, and at most that) more is always allowed (coarse counters step by 100 Wh or 1 kWh);
- a 0 where a value was (a restarting dongle) is ignored and never confirms a reset by itself;
- a new serial for the same device id (device replaced) starts a new baseline at once;
- a daily counter is re-based at the device's local midnight: until the device resets it (late, as
  IQ Gateways do), today's value is the increase since midnight; a device that resets early (before
  midnight) carries the day's energy, so no day is negative and none counts twice.

Pure: no clock, no files, no logging. :class:`CounterStage` wraps it for the runtime (health counters,
one log line per state change, state saved atomically to ``<state_dir>/counters.json``).
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime, tzinfo
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from ..model import Reading
from ..util.timeparse import check_zone, zone
from . import Out, Stage, number

log = logging.getLogger("solarbridge.stages.counters")

#: moduli a raw register may wrap at, in Wh: 16/31/32-bit registers in Wh, 10 Wh, 0.1 kWh and kWh units
WRAP_MODULI: tuple[float, ...] = tuple(sorted(float(2**bits * unit) for bits in (16, 31, 32)
                                              for unit in (1, 10, 100, 1000)))

#: which measured power bounds which counter (a function of the reading's metrics, in W)
_POWER_OF: dict[str, Callable[[dict[str, Any]], float | None]] = {}


def _pos(key: str) -> Callable[[dict[str, Any]], float | None]:
    return lambda m: None if (v := number(m, key)) is None else max(v, 0.0)


def _neg(key: str) -> Callable[[dict[str, Any]], float | None]:
    return lambda m: None if (v := number(m, key)) is None else max(-v, 0.0)


for _prefix, _fn in (("pv_energy", _pos("pv_power_w")), ("grid_import_energy", _pos("grid_power_w")),
                     ("grid_export_energy", _neg("grid_power_w")), ("battery_charge_energy", _neg("battery_power_w")),
                     ("battery_discharge_energy", _pos("battery_power_w")), ("load_energy", _pos("load_power_w")),
                     ("inverter_energy", _pos("inverter_power_w"))):
    _POWER_OF[_prefix + "_total_wh"] = _fn
    _POWER_OF[_prefix + "_today_wh"] = _fn


def counter_kind(metric: str) -> str | None:
    """``"lifetime"`` for ``*_total_wh``, ``"daily"`` for ``*_today_wh``, else None."""
    if metric.endswith("_total_wh"):
        return "lifetime"
    if metric.endswith("_today_wh"):
        return "daily"
    return None


class CounterOptions(BaseModel):
    """Counter hygiene settings: ``[counters]`` for every source, ``counters = {...}`` on one source."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = Field(True, description="clean this source's energy counters")
    max_power_w: float | None = Field(None, gt=0, le=1e9, description="the device's rating: no counter may "
                                      "rise faster (default: from the measured power)")
    default_max_power_w: float = Field(250_000.0, gt=0, le=1e9, description="bound when no power is measured")
    slack_wh: float = Field(1000.0, ge=0, le=1e7, description="increase always allowed until the counter's resolution is seen (then twice that, at most this)")
    confirm_readings: int = Field(3, ge=1, le=100, description="consistent readings that confirm a real reset")
    timezone: str = Field("", description="the devices' local time zone for daily counters (default: system)")

    @field_validator("timezone")
    @classmethod
    def _tz(cls, v: str) -> str:
        return check_zone(v)

    def tz(self) -> tzinfo | None:
        return zone(self.timezone) if self.timezone else None


@dataclass(slots=True)
class Track:
    """What is known about one counter of one device."""

    kind: str  # lifetime | daily
    raw: float  # last accepted raw value
    pub: float  # last published value
    ts: float  # time of the last accepted value (Unix s)
    moved: float  # time the raw value last changed
    peak_w: float = 0.0  # highest measured power of this flow since it last moved
    pending: list[list[float]] = field(default_factory=list)  # suspicious [ts, raw] not yet confirmed
    state: str = "ok"  # ok, or the kind of correction being applied (for log-once)
    rebase: bool = False  # next value starts a new baseline (device replaced)
    day: int = 0  # daily: local date ordinal the value belongs to
    base: float = 0.0  # daily: raw value at local midnight (device not yet reset)
    carried: float = 0.0  # daily: energy of today counted before the device reset
    quantum: float = 0.0  # the smallest rise seen: the counter's resolution (0: none seen yet)


@dataclass(slots=True)
class Correction:
    device_id: str
    metric: str
    kind: str  # spike, step_down, zero_ignored, wrap, reset, replaced, daily_reset_early, daily_reset_late
    raw: float
    published: float
    was: str = "ok"  # the counter's state before this correction (the stage logs state changes only)


#: corrections that are events (logged each time) rather than states (logged when entered)
EVENTS = frozenset({"wrap", "reset", "replaced", "daily_reset_early", "daily_reset_late", "recovered"})


class CounterCleaner:
    """Cleans the counters of every device of one source (pure state machine, see the module docstring)."""

    def __init__(self, options: CounterOptions | None = None) -> None:
        self.opts = options or CounterOptions()
        self.tz = self.opts.tz()
        self.tracks: dict[str, dict[str, Track]] = {}
        self.serials: dict[str, str] = {}

    # ------------------------------------------------------------------ state
    def dump(self) -> dict[str, Any]:
        return {"serials": dict(self.serials),
                "tracks": {d: {m: asdict(t) for m, t in ts.items()} for d, ts in self.tracks.items()}}

    def load(self, data: dict[str, Any]) -> None:
        self.serials = {str(k): str(v) for k, v in data.get("serials", {}).items()}
        self.tracks = {d: {m: Track(**t) for m, t in ts.items()} for d, ts in data.get("tracks", {}).items()}

    # ------------------------------------------------------------------ cleaning
    def clean(self, device_id: str, when: datetime, metrics: dict[str, Any], serial: str = "",
              ) -> tuple[dict[str, Any], list[Correction]]:
        """The metrics to publish (a new dict only if something changed) and the corrections made."""
        fixes: list[Correction] = []
        tracks = self.tracks.get(device_id)
        if serial:
            known = self.serials.get(device_id)
            if known != serial:
                self.serials[device_id] = serial
                if known is not None and tracks:
                    for name, tr in tracks.items():
                        tr.rebase = True
                        tr.pending.clear()
                        fixes.append(Correction(device_id, name, "replaced", tr.raw, tr.pub, tr.state))
        out = metrics
        t = when.timestamp()
        for name, value in metrics.items():
            if name[-3:] != "_wh" or type(value) not in _NUMBER_TYPES:
                continue
            kind = counter_kind(name)
            if kind is None:
                continue
            v = float(value)
            if not v >= 0 or v == math.inf:
                continue
            if tracks is None:
                tracks = self.tracks[device_id] = {}
            tr = tracks.get(name)
            power = _POWER_OF.get(name, _none)(metrics)
            if tr is not None and v == tr.raw and t >= tr.ts and tr.state == "ok" and not tr.rebase \
                    and (kind == "lifetime" or tr.day == self._day(when)):
                # the common case: the counter did not move
                tr.ts = t
                if power is not None and power > tr.peak_w:
                    tr.peak_w = power
                if tr.pub != value:
                    if out is metrics:
                        out = dict(metrics)
                    out[name] = _tidy(tr.pub, value)
                continue
            if tr is None:
                tr = tracks[name] = Track(kind, v, v, t, t, peak_w=power or 0.0, day=self._day(when))
                pub = v
            elif t < tr.ts:
                pub = tr.pub  # an older reading than the last accepted one (replay, clock step): hold
            elif kind == "lifetime":
                pub = self._lifetime(device_id, name, tr, v, t, power, fixes)
            else:
                pub = self._daily(device_id, name, tr, v, t, self._day(when), power, fixes)
            if pub != value:
                if out is metrics:
                    out = dict(metrics)
                out[name] = _tidy(pub, value)
        return out, fixes

    def _day(self, when: datetime) -> int:
        return when.astimezone(self.tz).toordinal()

    def _budget(self, tr: Track, since: float, t: float, power: float | None) -> float:
        """Wh this counter may rise between ``since`` and ``t``."""
        if self.opts.max_power_w is not None:
            limit = self.opts.max_power_w
        elif power is not None or tr.peak_w > 0:
            limit = 3.0 * max(tr.peak_w, power or 0.0) + 1000.0
        else:
            limit = self.opts.default_max_power_w
        # slack for a counter's coarse steps: twice its resolution once seen, at most slack_wh
        slack = min(self.opts.slack_wh, 2.0 * tr.quantum) if tr.quantum > 0 else self.opts.slack_wh
        return limit * max(t - since, 0.0) / 3600.0 + slack

    def _accept(self, tr: Track, v: float, t: float, power: float | None) -> None:
        if v > tr.raw and (tr.quantum <= 0 or v - tr.raw < tr.quantum):
            tr.quantum = v - tr.raw
        if v != tr.raw:
            tr.moved = t
            tr.peak_w = power or 0.0
        elif power is not None and power > tr.peak_w:
            tr.peak_w = power
        tr.raw, tr.ts = v, t
        tr.pending.clear()
        tr.rebase = False

    def _note(self, device_id: str, name: str, tr: Track, kind: str, v: float, fixes: list[Correction]) -> None:
        fixes.append(Correction(device_id, name, kind, v, tr.pub, tr.state))

    def _good(self, device_id: str, name: str, tr: Track, v: float, fixes: list[Correction]) -> None:
        if tr.state != "ok":
            self._note(device_id, name, tr, "recovered", v, fixes)
            tr.state = "ok"

    def _lifetime(self, dev: str, name: str, tr: Track, v: float, t: float, power: float | None,
                  fixes: list[Correction]) -> float:
        if tr.rebase:
            # a new device behind the same id: its counter started from 0 if that is plausible, else continue
            if v <= self._budget(tr, tr.ts, t, power):
                tr.pub += v
            self._accept(tr, v, t, power)
            tr.state = "ok"
            return tr.pub
        budget = self._budget(tr, tr.moved, t, power)
        d = v - tr.raw
        if 0 <= d <= budget:
            # published = raw + offset, computed so that a counter never corrected is passed on exactly
            tr.pub = v + (tr.pub - tr.raw)
            self._accept(tr, v, t, power)
            self._good(dev, name, tr, v, fixes)
            return tr.pub
        if d < 0:
            for m in WRAP_MODULI:
                if tr.raw <= m and 0 <= v + m - tr.raw <= budget:
                    tr.pub += v + m - tr.raw
                    self._accept(tr, v, t, power)
                    self._note(dev, name, tr, "wrap", v, fixes)
                    tr.state = "ok"
                    return tr.pub
            if v == 0:
                self._note(dev, name, tr, "zero_ignored", v, fixes)
                tr.state = "zero_ignored"
                return tr.pub
        self._suspect(dev, name, tr, v, t, power, "spike" if d > 0 else "step_down", fixes)
        return tr.pub

    def _suspect(self, dev: str, name: str, tr: Track, v: float, t: float, power: float | None, kind: str,
                 fixes: list[Correction]) -> None:
        """Hold the last good value; after ``confirm_readings`` consistent values, continue from them."""
        if power is not None and power > tr.peak_w:
            tr.peak_w = power
        tr.pending.append([t, v])
        if not self._consistent(tr, power):
            tr.pending = [[t, v]]
        self._note(dev, name, tr, kind, v, fixes)
        tr.state = kind
        if len(tr.pending) < self.opts.confirm_readings:
            return
        t0, v0 = tr.pending[0]
        if v < tr.raw and v0 <= self._budget(tr, tr.ts, t0, power):
            # a counter restarted from 0 (cleared, replaced): everything it counted since is new energy
            gained = v
        else:
            gained = v - v0
        if tr.kind == "daily":
            tr.carried = tr.pub
            tr.base = v - gained
        else:
            tr.pub += gained
        self._accept(tr, v, t, power)
        self._note(dev, name, tr, "reset", v, fixes)
        tr.state = "ok"

    def _consistent(self, tr: Track, power: float | None) -> bool:
        p = tr.pending
        for (t0, v0), (t1, v1) in zip(p, p[1:], strict=False):
            if v1 < v0 or v1 - v0 > self._budget(tr, t0, t1, power):
                return False
        return True

    def _daily(self, dev: str, name: str, tr: Track, v: float, t: float, day: int, power: float | None,
               fixes: list[Correction]) -> float:
        if day != tr.day:
            if day < tr.day:
                return tr.pub
            # local midnight passed: today starts at 0 whether or not the device has reset yet
            tr.day, tr.carried, tr.base, tr.pub = day, 0.0, tr.raw, 0.0
        if tr.rebase:
            tr.carried, tr.base = tr.pub, 0.0 if v <= self._budget(tr, tr.ts, t, power) else v
            self._accept(tr, v, t, power)
            tr.pub = tr.carried + v - tr.base
            tr.state = "ok"
            return tr.pub
        budget = self._budget(tr, tr.moved, t, power)
        d = v - tr.raw
        if 0 <= d <= budget:
            self._accept(tr, v, t, power)
            tr.pub = tr.carried + (v - tr.base)
            self._good(dev, name, tr, v, fixes)
            return tr.pub
        if d < 0 and v <= budget and self._near_midnight(t):
            # the device rolled its day over (early, before our midnight, or late, after it): keep what
            # today already counted and add what the device counts from now on
            tr.carried = tr.pub
            tr.base = 0.0
            self._accept(tr, v, t, power)
            tr.pub = tr.carried + v
            self._note(dev, name, tr, "daily_reset_late" if self._after_midnight(t) else "daily_reset_early",
                       v, fixes)
            tr.state = "ok"
            return tr.pub
        if d < 0 and v == 0:
            self._note(dev, name, tr, "zero_ignored", v, fixes)
            tr.state = "zero_ignored"
            return tr.pub
        self._suspect(dev, name, tr, v, t, power, "spike" if d > 0 else "step_down", fixes)
        if tr.state == "ok":  # confirmed: _suspect moved the baseline
            tr.pub = tr.carried + (v - tr.base)
        return tr.pub

    def _local_hour(self, t: float) -> float:
        lt = datetime.fromtimestamp(t, self.tz) if self.tz else datetime.fromtimestamp(t).astimezone()
        return lt.hour + lt.minute / 60

    def _near_midnight(self, t: float) -> bool:
        """Resets from 22:00 to 03:00 local are the device's day rolling over (early or late)."""
        h = self._local_hour(t)
        return h >= 22.0 or h < 3.0

    def _after_midnight(self, t: float) -> bool:
        return self._local_hour(t) < 3.0


_NUMBER_TYPES = (int, float)


def _none(_m: dict[str, Any]) -> float | None:
    return None


def _tidy(pub: float, original: Any) -> float | int:
    """Published values keep the counter's type and carry no float noise (Wh to 3 decimals)."""
    if isinstance(original, int) and pub == int(pub):
        return int(pub)
    return round(pub, 3)


# --------------------------------------------------------------------------- the runtime stage


class CounterStage(Stage):
    """Counter hygiene for every source that has it enabled; corrections counted in ``health``."""

    name = "counters"

    def __init__(self, options: dict[str, CounterOptions], state_path: Path | None, health: Any = None) -> None:
        self.options = options  # by source name; a source not listed gets the defaults
        self.default = CounterOptions()
        self.cleaners: dict[str, CounterCleaner] = {}
        self.state_path = state_path
        self.health = health
        self.dirty = False
        if state_path is not None and state_path.exists():
            try:
                data = json.loads(state_path.read_text())
                for src, d in data.get("sources", {}).items():
                    self._cleaner(src).load(d)
            except (OSError, ValueError, TypeError, KeyError) as e:
                log.warning("counter state %s unreadable (%s); starting fresh", state_path, e)

    def _cleaner(self, source: str) -> CounterCleaner:
        c = self.cleaners.get(source)
        if c is None:
            c = self.cleaners[source] = CounterCleaner(self.options.get(source, self.default))
        return c

    def enabled(self, source: str) -> bool:
        return self.options.get(source, self.default).enabled

    def process(self, reading: Reading, out: Out) -> None:
        if reading.metrics and self.enabled(reading.source):
            cleaner = self._cleaner(reading.source)
            serial = reading.info.serial if reading.info is not None else ""
            cleaned, fixes = cleaner.clean(reading.device_id, reading.timestamp, reading.metrics, serial)
            self.dirty = True
            if cleaned is not reading.metrics:
                raw = {k: v for k, v in reading.metrics.items() if cleaned.get(k) != v}
                reading.extra = {**reading.extra, "raw_counters": raw}
                reading.metrics = cleaned
            for f in fixes:
                self._report(f)
        out(reading)

    def _report(self, f: Correction) -> None:
        if f.kind != "recovered" and self.health is not None:
            self.health.count("counter_" + f.kind)
            self.health.count("corrections")
        if f.kind not in EVENTS and f.was == f.kind:
            return  # still in the same state: counted, not logged again
        if f.kind in ("spike", "step_down", "zero_ignored"):
            log.warning("%s %s: %s (device sent %s), holding %s until it is good again", f.device_id, f.metric,
                        f.kind.replace("_", " "), _fmt(f.raw), _fmt(f.published))
        else:
            log.info("%s %s: %s, continuing at %s (device sent %s)", f.device_id, f.metric,
                     f.kind.replace("_", " "), _fmt(f.published), _fmt(f.raw))

    def save(self) -> None:
        if self.state_path is None or not self.dirty:
            return
        from ..util.atomic import atomic_write

        data = {"version": 1, "sources": {s: c.dump() for s, c in self.cleaners.items()}}
        try:
            self.state_path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write(self.state_path, json.dumps(data, separators=(",", ":")))
            self.dirty = False
        except OSError as e:
            log.error("could not save counter state to %s: %s", self.state_path, e)


def _fmt(v: float) -> str:
    return f"{v:.3f}".rstrip("0").rstrip(".")
