"""Sites: which device measures which flow, and a power balance that adds up.

A site is a set of devices with roles: the grid connection (import +, export -), PV (one or more), batteries
(one or more, discharge +), and the load, measured by a device or derived as
``pv + grid + battery`` (so ``load = pv + import - export + discharge - charge``). Devices named in
``exclude`` are never summed (a PV meter that measures what the inverter already reports).

For every reading of a member device, :class:`SiteStage` publishes a derived device ``site:<name>`` with
the site's flows, self-consumption and self-sufficiency, the residual when a measured load disagrees with
the other flows, and energy totals. Totals grow by the *increase* of each member's (cleaned) counter, so a
member that appears late or returns after an outage never makes a site total jump; a member flow without
a counter is integrated from its power (:mod:`solarbridge.stages.energy`) and listed in ``extra.derived``.

Without ``[[sites]]`` every device that reports at least two of the pv/grid/battery/load power flows is
its own site, and a site ``all`` sums them while no flow could be counted twice (no source reports the
same flow from two devices) and the daemon is not one worker of a sharded fleet.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator, model_validator

from ..model import DeviceInfo, Reading
from ..util.timeparse import check_zone
from . import Out, Stage, number
from .energy import Integrator

log = logging.getLogger("solarbridge.stages.sites")

FLOW_METRICS = ("pv_power_w", "grid_power_w", "battery_power_w", "load_power_w")
#: energy flows of a site, and the metric each is published as (and read from history by the energy view)
ENERGY_METRICS: dict[str, str] = {
    "pv": "pv_energy_total_wh",
    "import": "grid_import_energy_total_wh",
    "export": "grid_export_energy_total_wh",
    "charge": "battery_charge_energy_total_wh",
    "discharge": "battery_discharge_energy_total_wh",
    "load": "load_energy_total_wh",
    "self_consumption": "self_consumption_energy_total_wh",
}
SITE_PREFIX = "site:"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


# --------------------------------------------------------------------------- config


def _entry(value: Any) -> Any:
    """A role entry may be written as just the device id."""
    return {"device": value} if isinstance(value, str) else value


def _entries(value: Any) -> Any:
    """A role with one or more devices: a table, a device id, or a list of either."""
    if value is None:
        return []
    if isinstance(value, str | dict):
        value = [value]
    return [_entry(v) for v in value] if isinstance(value, list) else value


class _Role(BaseModel):
    model_config = ConfigDict(extra="forbid")
    device: str = Field(min_length=1, description="device_id of the device that measures this flow")


class GridRole(_Role):
    metric: str = Field("grid_power_w", description="power metric, + import, - export")
    import_energy: str = Field("grid_import_energy_total_wh", description="import counter (if the device has one)")
    export_energy: str = Field("grid_export_energy_total_wh", description="export counter (if the device has one)")


class PvRole(_Role):
    metric: str = Field("pv_power_w", description="power metric (>= 0)")
    energy: str = Field("pv_energy_total_wh", description="lifetime counter (if the device has one)")


class BatteryRole(_Role):
    metric: str = Field("battery_power_w", description="power metric, + discharge, - charge")
    soc: str = Field("battery_soc_pct", description="state of charge metric")
    capacity: str = Field("battery_capacity_wh", description="capacity metric (weights the site's SoC)")
    charge_energy: str = Field("battery_charge_energy_total_wh", description="charge counter")
    discharge_energy: str = Field("battery_discharge_energy_total_wh", description="discharge counter")


class LoadRole(_Role):
    metric: str = Field("load_power_w", description="power metric (>= 0)")
    energy: str = Field("load_energy_total_wh", description="lifetime counter (if the device has one)")


Roles = Annotated[list[Any], BeforeValidator(_entries)]


class SiteConfig(BaseModel):
    """One ``[[sites]]`` table."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(description="published as device site:<name>")
    devices: list[str] = Field(default_factory=list, description="member devices; with no roles given, each "
                               "member's roles are taken from the power metrics it reports")
    sources: list[str] = Field(default_factory=list, description="sources whose every device is a member (roles "
                               "from its metrics; per source, each flow counted from the first device reporting it)")
    timezone: str = Field("", description="local time of the site: days and months of the energy view")
    grid: Annotated[list[GridRole], BeforeValidator(_entries)] = Field(default_factory=list,
                                                                       description="grid connection(s)")
    pv: Annotated[list[PvRole], BeforeValidator(_entries)] = Field(default_factory=list, description="PV")
    battery: Annotated[list[BatteryRole], BeforeValidator(_entries)] = Field(default_factory=list,
                                                                             description="batteries")
    load: Literal["derived"] | Annotated[list[LoadRole], BeforeValidator(_entries)] = Field(
        "derived", description='"derived" (pv + grid + battery) or the device(s) that measure the load')
    exclude: list[str] = Field(default_factory=list, description="devices never summed in this site")

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not _NAME.match(v):
            raise ValueError("must be 1-64 letters, digits, '_', '-' or '.', starting with a letter or digit")
        return v

    @field_validator("timezone")
    @classmethod
    def _tz(cls, v: str) -> str:
        return check_zone(v)

    @model_validator(mode="after")
    def _no_double_count(self) -> SiteConfig:
        seen: dict[tuple[str, str], str] = {}
        loads = self.load if isinstance(self.load, list) else []
        for role, items in (("grid", self.grid), ("pv", self.pv), ("battery", self.battery), ("load", loads)):
            for i, item in enumerate(items):
                where = f"{role}[{i}]"
                if item.device in self.exclude:
                    raise ValueError(f"{where}.device: {item.device!r} is also in exclude; a device is either "
                                     "counted or excluded")
                key = (item.device, item.metric)
                if key in seen:
                    raise ValueError(f"{where}: {item.device} {item.metric} is already counted as {seen[key]};"
                                     " each flow may be counted once")
                seen[key] = where
        if not self.devices and not self.sources and not seen:
            raise ValueError("give the site's devices or sources, or its roles (grid, pv, battery, load)")
        return self

    def explicit(self) -> bool:
        return bool(self.grid or self.pv or self.battery or isinstance(self.load, list))

    def members(self) -> list[str]:
        out: list[str] = []
        loads = self.load if isinstance(self.load, list) else []
        for d in [*self.devices, *(r.device for r in [*self.grid, *self.pv, *self.battery, *loads])]:
            if d not in out and d not in self.exclude:
                out.append(d)
        return out


def check_sites(sites: list[SiteConfig]) -> None:
    names = [s.name for s in sites]
    for i, n in enumerate(names):
        if names.index(n) != i:
            raise ValueError(f"sites[{i}].name: {n!r} is used twice; give each site its own name")
        if n == "all" and not sites[i].devices and not sites[i].explicit():
            raise ValueError(f"sites[{i}]: the site 'all' needs devices or roles")


def describe(sites: list[SiteConfig]) -> list[str]:
    """The resolved roles as lines for ``check-config``."""
    if not sites:
        return ["# no [[sites]]: each device reporting at least two of pv/grid/battery/load power is its own",
                "# site (site:<device_id>); site:all sums them while no source reports one flow twice"]
    lines: list[str] = []
    for s in sites:
        lines.append(f"# site {SITE_PREFIX}{s.name}" + (f" ({s.timezone})" if s.timezone else ""))
        if s.explicit():
            lines.append("#   grid:    " + (", ".join(f"{r.device} {r.metric} (import {r.import_energy}, export "
                                                       f"{r.export_energy})" for r in s.grid) or "none"))
            lines.append("#   pv:      " + (", ".join(f"{r.device} {r.metric}" for r in s.pv) or "none"))
            lines.append("#   battery: " + (", ".join(f"{r.device} {r.metric}" for r in s.battery) or "none"))
            if isinstance(s.load, list):
                lines.append("#   load:    measured: " + ", ".join(f"{r.device} {r.metric}" for r in s.load))
            else:
                lines.append("#   load:    derived = pv + grid + battery")
            others = [d for d in s.devices if d not in _role_devices(s) and d not in s.exclude]
            if others:
                lines.append("#   roles inferred from their metrics: " + ", ".join(others))
        else:
            if s.members():
                lines.append("#   roles inferred from the metrics of: " + ", ".join(s.members()))
            if s.sources:
                lines.append("#   and of every device of the source(s): " + ", ".join(s.sources))
            lines.append("#   (pv_power_w -> pv, grid_power_w -> grid, battery_power_w -> battery, load_power_w ->"
                         " measured load, else load derived)")
        if s.exclude:
            lines.append("#   excluded: " + ", ".join(s.exclude))
    return lines


def _role_devices(s: SiteConfig) -> set[str]:
    loads = s.load if isinstance(s.load, list) else []
    return {r.device for r in [*s.grid, *s.pv, *s.battery, *loads]}


# --------------------------------------------------------------------------- runtime


@dataclass
class _Counter:
    """One member counter feeding one site energy flow (``last`` persisted so downtime is not lost)."""

    last: float | None = None
    seen: bool = False


@dataclass
class Site:
    name: str
    grid: list[GridRole] = field(default_factory=list)
    pv: list[PvRole] = field(default_factory=list)
    battery: list[BatteryRole] = field(default_factory=list)
    load: list[LoadRole] = field(default_factory=list)
    load_measured: bool = False
    infer: set[str] = field(default_factory=set)  # members whose roles come from their metrics
    exclude: set[str] = field(default_factory=set)
    timezone: str = ""
    auto: bool = False
    #: sources whose every device joins the site, and per source the flows already counted from one of them
    sources: dict[str, set[str]] = field(default_factory=dict)
    totals: dict[str, float] = field(default_factory=lambda: {k: 0.0 for k in ENERGY_METRICS})
    counters: dict[str, _Counter] = field(default_factory=dict)
    integrators: dict[str, Integrator] = field(default_factory=dict)
    derived: set[str] = field(default_factory=set)
    disabled: str = ""  # why this site is not published (auto "all" with a flow counted twice)
    _info: DeviceInfo | None = None
    _members: list[str] | None = None
    _roles: dict[str, list[tuple[str, Any]]] = field(default_factory=dict)

    @property
    def device_id(self) -> str:
        return SITE_PREFIX + self.name

    def members(self) -> set[str]:
        return {r.device for r in [*self.grid, *self.pv, *self.battery, *self.load]} | self.infer

    def member_list(self) -> list[str]:
        if self._members is None:
            self._members = sorted(self.members())
        return self._members

    def info(self) -> DeviceInfo:
        if self._info is None:
            self._info = DeviceInfo(self.device_id, "site", manufacturer="solarbridge", model="Site",
                                    name=f"Site {self.name}", source="sites", serial=self.device_id)
        return self._info

    def roles_of(self, dev: str) -> list[tuple[str, Any]]:
        out = self._roles.get(dev)
        if out is None:
            out = []
            for kind, items in (("grid", self.grid), ("pv", self.pv), ("battery", self.battery),
                                ("load", self.load)):
                out += [(kind, r) for r in items if r.device == dev]
            self._roles[dev] = out
        return out

    def adopt(self, dev: str, metrics: dict[str, Any], taken: set[str] | None = None) -> None:
        """Give an inferred member the roles its metrics show (once, at its first reading with metrics).

        ``taken``: flows its source already has counted from another device (an inverter and its battery
        both reporting battery_power_w); those are left out, and the ones this device adds are recorded.
        """
        self.infer.discard(dev)
        self._roles.clear()
        self._members = None
        skip = taken if taken is not None else set()
        flows = [m for m in ("pv_power_w", "grid_power_w", "battery_power_w", "load_power_w")
                 if m in metrics and m not in skip]
        if taken is not None:
            taken.update(flows)
        if "pv_power_w" in flows:
            self.pv.append(PvRole(device=dev))
        if "grid_power_w" in flows:
            self.grid.append(GridRole(device=dev))
        if "battery_power_w" in flows:
            self.battery.append(BatteryRole(device=dev))
        if "load_power_w" in flows:
            self.load.append(LoadRole(device=dev))
            self.load_measured = True

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name, "device_id": self.device_id, "timezone": self.timezone, "auto": self.auto,
            "grid": [r.device + " " + r.metric for r in self.grid], "pv": [r.device + " " + r.metric for r in self.pv],
            "battery": [r.device + " " + r.metric for r in self.battery],
            "load": [r.device + " " + r.metric for r in self.load] if self.load_measured else "derived",
            "pending": sorted(self.infer), "exclude": sorted(self.exclude), "disabled": self.disabled,
            "sources": sorted(self.sources),
        }


def _site_from_config(c: SiteConfig) -> Site:
    roles = _role_devices(c)
    loads = list(c.load) if isinstance(c.load, list) else []
    return Site(c.name, grid=list(c.grid), pv=list(c.pv), battery=list(c.battery), load=loads,
                load_measured=bool(loads), infer={d for d in c.devices if d not in roles and d not in c.exclude},
                exclude=set(c.exclude), timezone=c.timezone, sources={name: set() for name in c.sources})


class SiteStage(Stage):
    """Publishes ``site:<name>`` after every reading of a member device (see the module docstring)."""

    name = "sites"

    def __init__(self, sites: list[SiteConfig], state_path: Path | None = None, health: Any = None,
                 stale_after: float = 300.0, auto_all: bool = True, auto: bool = True) -> None:
        self.auto = auto and not sites
        #: make the automatic site "all" (not in a sharded fleet worker: it sees only its share of devices)
        self.auto_all = auto_all
        self.sites: dict[str, Site] = {c.name: _site_from_config(c) for c in sites}
        self.latest: dict[str, tuple[float, dict[str, Any], bool]] = {}
        self.by_device: dict[str, list[Site]] = {}
        #: sites that take every device of a source, and the devices already given to them
        self.by_source: dict[str, list[Site]] = {}
        for site in self.sites.values():
            for name in site.sources:
                self.by_source.setdefault(name, []).append(site)
        self._source_devices: set[tuple[str, str]] = set()
        self.state_path = state_path
        self.health = health
        self.stale_after = stale_after
        self.dirty = False
        self._sources: dict[str, dict[str, set[str]]] = {}  # auto: source -> flow metric -> devices
        self._auto_seen: set[str] = set()
        self._reindex()
        self._saved: dict[str, Any] = {}
        if state_path is not None and state_path.exists():
            try:
                self._saved = json.loads(state_path.read_text()).get("sites", {})
            except (OSError, ValueError, AttributeError) as e:
                log.warning("site state %s unreadable (%s); totals start at 0", state_path, e)
        for s in self.sites.values():
            self._restore(s)

    def _restore(self, s: Site) -> None:
        saved = self._saved.get(s.name)
        if not saved:
            return
        for k, v in saved.get("totals", {}).items():
            if k in s.totals:
                s.totals[k] = float(v)
        for k, v in saved.get("counters", {}).items():
            s.counters[k] = _Counter(last=v, seen=True)

    def _reindex(self) -> None:
        self.by_device = {}
        for s in self.sites.values():
            for d in s.members():
                self.by_device.setdefault(d, []).append(s)

    # ------------------------------------------------------------------ auto sites
    def _auto(self, r: Reading) -> None:
        if r.device_id in self._auto_seen:
            return
        self._auto_seen.add(r.device_id)
        flows = [m for m in FLOW_METRICS if number(r.metrics, m) is not None]
        per = self._sources.setdefault(r.source, {})
        twice = False
        for m in flows:
            devs = per.setdefault(m, set())
            devs.add(r.device_id)
            twice = twice or len(devs) > 1
        changed = False
        if len(flows) >= 2 and r.device_id not in self.sites and not r.device_id.startswith(SITE_PREFIX):
            s = Site(r.device_id, auto=True, infer={r.device_id})
            self._restore(s)
            self.sites[r.device_id] = s
            changed = True
        all_site = self.sites.get("all")
        device_sites = [s for s in self.sites.values() if s.auto and s.name != "all"]
        if twice and all_site is not None and not all_site.disabled:
            all_site.disabled = f"source {r.source} reports one flow from two devices; configure [[sites]]"
            log.info("site all is not published: %s", all_site.disabled)
            changed = True
        if changed and self.auto_all and len(device_sites) >= 2 and not twice:
            if all_site is None:
                all_site = self.sites["all"] = Site("all", auto=True)
                self._restore(all_site)
            if not all_site.disabled:
                all_site.infer |= {s.name for s in device_sites} - all_site.members()
                all_site._members = None
        if changed:
            self._reindex()

    def _join(self, source: str, dev: str) -> None:
        """A device of a member source reports for the first time: it joins those sites."""
        self._source_devices.add((source, dev))
        for s in self.by_source[source]:
            if dev not in s.members() and dev not in s.exclude:
                s.infer.add(dev)
                s._members = None
        self._reindex()

    # ------------------------------------------------------------------ the stage
    def process(self, reading: Reading, out: Out) -> None:
        out(reading)
        dev = reading.device_id
        if dev.startswith(SITE_PREFIX):
            return
        if self.auto and reading.metrics:
            self._auto(reading)
        if reading.metrics and reading.source in self.by_source and (reading.source, dev) not in self._source_devices:
            self._join(reading.source, dev)
        sites = self.by_device.get(dev)
        if not sites:
            return
        t = reading.timestamp.timestamp()
        if reading.metrics:
            prev = self.latest.get(dev)
            merged = {**prev[1], **reading.metrics} if prev is not None else dict(reading.metrics)
            self.latest[dev] = (t, merged, reading.online)
        elif dev in self.latest:
            t0, m, _ = self.latest[dev]
            self.latest[dev] = (t0, m, reading.online)
        for s in sites:
            if s.disabled:
                continue
            if dev in s.infer and reading.metrics:
                s.adopt(dev, reading.metrics, s.sources.get(reading.source))
            if reading.metrics:
                self._energy(s, dev, t, reading.metrics)
            site_reading = self._balance(s, reading)
            if site_reading is not None:
                out(site_reading)

    def _flow(self, s: Site, key: str, t: float, counter: float | None, power: float | None,
              pos: str, neg: str | None = None, neg_counter: float | None = None) -> None:
        """Add one member's energy to the site: from its counter(s) when it has them, else integrated power."""
        for flow, value in ((pos, counter), (neg, neg_counter)):
            if flow is None:
                continue
            c = s.counters.get(key + ":" + flow)
            if value is not None:
                if c is None:
                    c = s.counters[key + ":" + flow] = _Counter()
                if c.last is not None and value > c.last:
                    s.totals[flow] += value - c.last
                if c.last is None or value >= c.last:
                    c.last = value
                c.seen = True
                self.dirty = True
        have_pos = (key + ":" + pos) in s.counters
        have_neg = neg is None or (key + ":" + neg) in s.counters
        if power is None or (have_pos and have_neg):
            return
        integ = s.integrators.get(key)
        if integ is None:
            integ = s.integrators[key] = Integrator()
        e_pos, e_neg = integ.add(t, power)
        if not have_pos:
            s.totals[pos] += e_pos
            s.derived.add(ENERGY_METRICS[pos])
        if neg is not None and not have_neg:
            s.totals[neg] += e_neg
            s.derived.add(ENERGY_METRICS[neg])
        self.dirty = True

    def _energy(self, s: Site, dev: str, t: float, m: dict[str, Any]) -> None:
        for kind, r in s.roles_of(dev):
            key = f"{kind}:{dev}:{r.metric}"
            if kind == "pv":
                p = number(m, r.metric)
                self._flow(s, key, t, number(m, r.energy), None if p is None else max(p, 0.0), "pv")
            elif kind == "grid":
                self._flow(s, key, t, number(m, r.import_energy), number(m, r.metric), "import", "export",
                           number(m, r.export_energy))
            elif kind == "battery":
                self._flow(s, key, t, number(m, r.discharge_energy), number(m, r.metric), "discharge", "charge",
                           number(m, r.charge_energy))
            elif kind == "load":
                p = number(m, r.metric)
                self._flow(s, key, t, number(m, r.energy), None if p is None else max(p, 0.0), "load")
        tot = s.totals
        if not s.load_measured:
            derived = tot["pv"] + tot["import"] - tot["export"] + tot["discharge"] - tot["charge"]
            tot["load"] = max(tot["load"], derived)  # never decreases; catches up when counters lag
            s.derived.add(ENERGY_METRICS["load"])
        tot["self_consumption"] = max(tot["self_consumption"], tot["pv"] - tot["export"])

    def _balance(self, s: Site, trigger: Reading) -> Reading | None:
        t_now = trigger.timestamp.timestamp()
        if s.infer:
            return None  # wait until every member has reported once
        members = s.member_list()
        if not members:
            return None
        stale = []
        for d in members:
            lt = self.latest.get(d)
            if lt is None:
                return None
            if not lt[2] or t_now - lt[0] > self.stale_after:
                stale.append(d)
        info = s.info()
        extra: dict[str, Any] = {"members": members, "load": "measured" if s.load_measured else "derived",
                                 "derived": sorted(s.derived)}
        if stale:
            extra["stale"] = sorted(stale)
        if len(stale) == len(members):
            # no member has comms: the site is offline too (its flows would be made up)
            return Reading(s.device_id, "site", trigger.timestamp, {}, source="sites", extra=extra, info=info,
                           online=False)

        def total(items: list[Any]) -> float | None:
            vals = [number(self.latest[r.device][1], r.metric) for r in items if r.device not in stale]
            vals = [v for v in vals if v is not None]
            return sum(vals) if vals else None

        pv, grid, bat = total(s.pv), total(s.grid), total(s.battery)
        pv_v, grid_v, bat_v = pv or 0.0, grid or 0.0, bat or 0.0
        m: dict[str, Any] = {}
        if pv is not None:
            m["pv_power_w"] = round(pv_v, 1)
        if grid is not None:
            m["grid_power_w"] = round(grid_v, 1)
        if bat is not None:
            m["battery_power_w"] = round(bat_v, 1)
        if s.load_measured:
            load = total(s.load)
            load_v = load if load is not None else pv_v + grid_v + bat_v
            m["balance_residual_w"] = round(pv_v + grid_v + bat_v - load_v, 1)
        else:
            load_v = pv_v + grid_v + bat_v
            m["balance_residual_w"] = 0.0
        m["load_power_w"] = round(load_v, 1)
        export_w, import_w = max(-grid_v, 0.0), max(grid_v, 0.0)
        self_w = max(pv_v - export_w, 0.0)
        m["self_consumption_w"] = round(self_w, 1)
        if pv_v > 0:
            m["self_consumption_pct"] = round(min(100.0, 100 * self_w / pv_v), 1)
        if load_v > 0:
            m["self_sufficiency_pct"] = round(min(100.0, max(0.0, 100 * (load_v - import_w) / load_v)), 1)
        soc = self._soc(s, stale)
        if soc is not None:
            m["battery_soc_pct"] = soc
        for k, metric in ENERGY_METRICS.items():
            m[metric] = round(s.totals[k], 1)
        if self.health is not None:
            self.health.count("site_readings")
        return Reading(s.device_id, "site", trigger.timestamp, m, source="sites", extra=extra, info=info)

    def _soc(self, s: Site, stale: list[str]) -> float | None:
        num = den = 0.0
        plain: list[float] = []
        for r in s.battery:
            if r.device in stale:
                continue
            lm = self.latest[r.device][1]
            soc, cap = number(lm, r.soc), number(lm, r.capacity)
            if soc is None:
                continue
            plain.append(soc)
            if cap:
                num, den = num + soc * cap, den + cap
        if den and len(plain) == len([r for r in s.battery if r.device not in stale]):
            return round(num / den, 1)
        return round(sum(plain) / len(plain), 1) if plain else None

    # ------------------------------------------------------------------ state
    def describe(self) -> list[dict[str, Any]]:
        return [s.describe() for s in self.sites.values()]

    def save(self) -> None:
        if self.state_path is None or not self.dirty:
            return
        from ..util.atomic import atomic_write

        data = dict(self._saved)
        for s in self.sites.values():
            data[s.name] = {"totals": dict(s.totals),
                            "counters": {k: c.last for k, c in s.counters.items() if c.last is not None}}
        try:
            self.state_path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write(self.state_path, json.dumps({"version": 1, "sites": data}, separators=(",", ":")))
            self.dirty = False
        except OSError as e:
            log.error("could not save site state to %s: %s", self.state_path, e)
