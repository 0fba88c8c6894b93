"""The whole site as one IQ Gateway reports it, from a set of its JSON responses (sans-IO).

:func:`parse_site` takes the response texts by *name* (the gateway path with ``/`` written as
``_``: ``ivp_meters_readings`` is ``/ivp/meters/readings``, ``info`` is ``/info.xml``) and returns a
:class:`Site`. Missing, failed or malformed responses leave the parts they feed empty; nothing raises.

Which response feeds what (firmware 3.x to 8.x differ; the first that has data wins):

- **production**: the enabled ``production`` meter of ``ivp/meters`` read from ``ivp/meters/readings``
  (W = ``activePower``, lifetime = ``actEnergyDlvd``, one row per phase from ``channels`` when the
  meter has ``phaseCount`` > 1); else the ``eim`` production entry of ``production.json`` when its
  ``activeCount`` > 0 (``wNow``, ``whLifetime``, ``lines``); else ``api/v1/production`` (``wattsNow``,
  ``wattHoursLifetime``); else the ``inverters`` entry of ``production.json``.
- **consumption** (the CT variant is kept in :attr:`Site.consumption_ct`): an enabled
  ``net-consumption`` meter gives the grid (W + import, import = ``actEnergyDlvd``, export =
  ``actEnergyRcvd``) and the load is production + grid; an enabled ``total-consumption`` meter gives
  the load and the grid is load - production. Without meters, the ``production.json`` ``eim``
  consumption entries with ``activeCount`` > 0 are used as reported.
- **storage**: an enabled ``storage`` meter (W + discharge, per phase).
- **batteries**: IQ Battery / Encharge units from ``ivp/ensemble/inventory`` (SOC ``percentFull``,
  ``temperature`` degC, ``encharge_capacity`` Wh) with their power from ``ivp/ensemble/power``
  (``real_power_mw`` / 1000, + discharge); AC Batteries from the ``inventory`` ACB devices (SOC,
  ``maxCellTemp``) and the ``acb`` storage entry of ``production.json`` (``wNow``, ``whNow``,
  ``percentFull``; + discharge).
- **relay**: ``mains_oper_state`` of ``ivp/ensemble/relay``, else of the ENPOWER (IQ System
  Controller) device, else the IQ Meter Collar's ``grid_state``; grid mode from ``Enpwr_grid_mode``.
- **generator**: ``ivp/ensemble/generator`` (``oper_state``, ``admin_mode``, ``present``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .responses import load_json, parse_info

Number = int | float

#: gateway paths the daemon reads for the site model, by response name (the recorded sets' file names)
SITE_PATHS: dict[str, str] = {
    "ivp_meters": "ivp/meters",
    "ivp_meters_readings": "ivp/meters/readings",
    "production.json": "production.json",
    "api_v1_production": "api/v1/production",
    "api_v1_production_inverters": "api/v1/production/inverters",
    "ivp_ensemble_inventory": "ivp/ensemble/inventory",
    "ivp_ensemble_power": "ivp/ensemble/power",
    "ivp_ensemble_generator": "ivp/ensemble/generator",
    "inventory": "inventory.json",
}


def response_name(path: str) -> str:
    """The response name of a gateway path (``/ivp/meters/readings`` -> ``ivp_meters_readings``)."""
    path = path.split("?", 1)[0].strip("/")
    if path == "info.xml":
        return "info"
    if path == "inventory.json":
        return "inventory"
    return path.replace("/", "_")


def _doc(docs: Mapping[str, str | bytes | None], name: str) -> Any:
    return load_json(docs.get(name))


def _num(value: object) -> Number | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return value if math.isfinite(value) else None


def _list(value: object) -> list[Any]:
    return value if isinstance(value, list) else []


def _dicts(value: object) -> list[dict[str, Any]]:
    return [x for x in _list(value) if isinstance(x, dict)]


@dataclass(slots=True)
class Flow:
    """One power flow: W now, lifetime counters in Wh, and per-phase W (empty on one phase)."""

    watts: Number | None = None
    lifetime_wh: Number | None = None
    #: for the grid: Wh received from the grid side (export) where the meter counts it
    export_wh: Number | None = None
    phases_w: list[Number | None] = field(default_factory=list)
    phases_wh: list[Number | None] = field(default_factory=list)
    #: RMS voltage and frequency where the meter measures them (the cumulative row, then per phase)
    voltage_v: Number | None = None
    frequency_hz: Number | None = None
    phases_v: list[Number | None] = field(default_factory=list)
    #: where the figures came from: "meter", "production.json", "api_v1_production", "inverters", "derived"
    origin: str = ""


@dataclass(slots=True)
class Battery:
    serial: str
    kind: str  # "encharge" (IQ Battery) or "acb" (AC Battery)
    soc_pct: Number | None = None
    power_w: Number | None = None  # + discharge
    temperature_c: Number | None = None
    capacity_wh: Number | None = None


@dataclass(slots=True)
class Inverter:
    serial: str
    watts: Number | None
    max_watts: Number | None = None
    last_report: int | None = None


@dataclass(slots=True)
class Generator:
    oper_state: str | None  # "open" (off) / "closed" (running)
    admin_mode: Number | None = None
    present: bool = False


@dataclass(slots=True)
class Site:
    firmware: str | None = None
    serial: str | None = None
    production: Flow | None = None
    grid: Flow | None = None  # + import
    load: Flow | None = None
    #: the storage CT (IQ Battery sites with a third CT): + discharge
    storage: Flow | None = None
    #: "net" (a net-consumption CT), "total" (a total-consumption CT) or None (no consumption CT)
    consumption_ct: str | None = None
    phase_count: int | None = None
    inverters: list[Inverter] = field(default_factory=list)
    batteries: list[Battery] = field(default_factory=list)
    #: the AC Battery aggregate of production.json: (SOC %, W + discharge, Wh stored)
    acb_total: tuple[Number | None, Number | None, Number | None] | None = None
    relay: str | None = None  # mains_oper_state: "closed" (on grid) / "open"
    grid_mode: str | None = None
    generator: Generator | None = None


def _xml_value(text: str | bytes | None, tag: str) -> str | None:
    """The first ``<tag>value</tag>`` anywhere (firmware 4.2 writes info.xml on one line)."""
    if not text:
        return None
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    start = text.find(f"<{tag}>")
    end = text.find(f"</{tag}>", start)
    return text[start + len(tag) + 2:end].strip() or None if 0 <= start < end else None


def enabled_meters(docs: Mapping[str, Any]) -> dict[str, tuple[dict[str, Any], int, list[dict[str, Any]]]]:
    """Enabled meters with a reading, by measurementType: (the ivp/meters/readings entry, phaseCount, its
    per-phase channels when there are several phases). Meters and readings are matched by ``eid``."""
    readings = {r["eid"]: r for r in _dicts(_doc(docs, "ivp_meters_readings")) if isinstance(r.get("eid"), int | str)}
    out: dict[str, tuple[dict[str, Any], int, list[dict[str, Any]]]] = {}
    for m in _dicts(_doc(docs, "ivp_meters")):
        eid = m.get("eid")
        r = readings.get(eid) if m.get("state") == "enabled" and isinstance(eid, int | str) else None
        if r is None:
            continue
        count = m.get("phaseCount") if isinstance(m.get("phaseCount"), int) else 1
        out[str(m.get("measurementType"))] = (r, count, _dicts(r.get("channels"))[:count] if count > 1 else [])
    return out


def _meter_flows(docs: Mapping[str, Any]) -> dict[str, tuple[Flow, int]]:
    """Enabled meters by measurementType, read from ivp/meters/readings: (flow, phaseCount)."""
    out: dict[str, tuple[Flow, int]] = {}
    for kind, (r, count, chans) in enabled_meters(docs).items():
        flow = Flow(_num(r.get("activePower")), _num(r.get("actEnergyDlvd")), _num(r.get("actEnergyRcvd")),
                    [_num(c.get("activePower")) for c in chans], [_num(c.get("actEnergyDlvd")) for c in chans],
                    origin="meter", voltage_v=_num(r.get("voltage")), frequency_hz=_num(r.get("freq")),
                    phases_v=[_num(c.get("voltage")) for c in chans])
        out[kind] = (flow, count)
    return out


def _eim(entries: object, kind: str) -> Flow | None:
    for e in _dicts(entries):
        if e.get("type") == "eim" and e.get("measurementType") == kind and (_num(e.get("activeCount")) or 0) > 0:
            lines = _dicts(e.get("lines"))
            per_line = len(lines) > 1
            return Flow(_num(e.get("wNow")), _num(e.get("whLifetime")), None,
                        [_num(x.get("wNow")) for x in lines] if per_line else [],
                        [_num(x.get("whLifetime")) for x in lines] if per_line else [],
                        origin="production.json", voltage_v=_num(e.get("rmsVoltage")),
                        phases_v=[_num(x.get("rmsVoltage")) for x in lines] if per_line else [])
    return None


def _add(a: Number | None, b: Number | None, sign: int = 1) -> Number | None:
    return None if a is None or b is None else round(a + sign * b, 6)


def _derive(base: Flow, other: Flow, sign: int) -> Flow:
    """base + sign * other, W and per phase (the lifetime counter is not derived)."""
    phases = [_add(x, y, sign) for x, y in zip(base.phases_w, other.phases_w, strict=False)]
    return Flow(_add(base.watts, other.watts, sign), None, None, phases, [], origin="derived",
                voltage_v=base.voltage_v, frequency_hz=base.frequency_hz, phases_v=list(base.phases_v))


def parse_site(docs: Mapping[str, str | bytes | None]) -> Site:
    info = docs.get("info")
    site = Site(firmware=parse_info(info) or _xml_value(info, "software"), serial=_xml_value(info, "sn"))
    pj = _doc(docs, "production.json")
    pj = pj if isinstance(pj, dict) else {}
    meters = _meter_flows(docs)

    # production
    if "production" in meters:
        site.production, count = meters["production"]
        site.phase_count = count
    else:
        site.production = _eim(pj.get("production"), "production")
        if site.production is None:
            api = _doc(docs, "api_v1_production")
            if isinstance(api, dict) and _num(api.get("wattsNow")) is not None:
                site.production = Flow(_num(api.get("wattsNow")), _num(api.get("wattHoursLifetime")),
                                       origin="api_v1_production")
        if site.production is None:
            for e in _dicts(pj.get("production")):
                if e.get("type") == "inverters":
                    site.production = Flow(_num(e.get("wNow")), _num(e.get("whLifetime")), origin="inverters")

    # consumption
    prod = site.production
    if "net-consumption" in meters:
        site.consumption_ct = "net"
        site.grid, count = meters["net-consumption"]
        site.phase_count = site.phase_count or count
        if prod is not None:
            site.load = _derive(prod, site.grid, 1)
    elif "total-consumption" in meters:
        site.consumption_ct = "total"
        site.load, count = meters["total-consumption"]
        site.phase_count = site.phase_count or count
        if prod is not None:
            site.grid = _derive(site.load, prod, -1)
    else:
        net, total = _eim(pj.get("consumption"), "net-consumption"), _eim(pj.get("consumption"), "total-consumption")
        if net is not None or total is not None:
            site.grid, site.load = net, total
            site.consumption_ct = "net" if net is not None else "total"

    if "storage" in meters:
        site.storage = meters["storage"][0]

    # inverters
    for inv in _dicts(_doc(docs, "api_v1_production_inverters")):
        sn = inv.get("serialNumber")
        if sn is None:
            continue
        last = inv.get("lastReportDate")
        site.inverters.append(Inverter(str(sn), _num(inv.get("lastReportWatts")), _num(inv.get("maxReportWatts")),
                                       last if isinstance(last, int) and not isinstance(last, bool) else None))

    # ensemble: batteries, system controller, collar
    power = {}
    pw = _doc(docs, "ivp_ensemble_power")
    if isinstance(pw, dict):
        for dev in _dicts(pw.get("devices:", pw.get("devices"))):
            mw = _num(dev.get("real_power_mw"))
            power[str(dev.get("serial_num"))] = None if mw is None else round(mw / 1000, 3)
    for group in _dicts(_doc(docs, "ivp_ensemble_inventory")):
        kind = group.get("type")
        for dev in _dicts(group.get("devices")):
            sn = str(dev.get("serial_num"))
            if kind == "ENCHARGE":
                site.batteries.append(Battery(sn, "encharge", _num(dev.get("percentFull")), power.get(sn),
                                              _num(dev.get("temperature")), _num(dev.get("encharge_capacity"))))
            elif kind == "ENPOWER":
                if isinstance(dev.get("mains_oper_state"), str):
                    site.relay = site.relay or dev["mains_oper_state"]
                if isinstance(dev.get("Enpwr_grid_mode"), str):
                    site.grid_mode = dev["Enpwr_grid_mode"]
            elif kind == "COLLAR" and isinstance(dev.get("grid_state"), str) and site.relay is None:
                site.relay = {"on_grid": "closed", "off_grid": "open"}.get(dev["grid_state"], dev["grid_state"])
    relay = _doc(docs, "ivp_ensemble_relay")
    if isinstance(relay, dict) and isinstance(relay.get("mains_oper_state"), str):
        site.relay = relay["mains_oper_state"]

    # AC Batteries
    for group in _dicts(_doc(docs, "inventory")):
        if group.get("type") == "ACB":
            for dev in _dicts(group.get("devices")):
                site.batteries.append(Battery(str(dev.get("serial_num")), "acb", _num(dev.get("percentFull")), None,
                                              _num(dev.get("maxCellTemp"))))
    for e in _dicts(pj.get("storage")):
        if e.get("type") == "acb" and (_num(e.get("activeCount")) or 0) > 0:
            site.acb_total = (_num(e.get("percentFull")), _num(e.get("wNow")), _num(e.get("whNow")))

    gen = _doc(docs, "ivp_ensemble_generator")
    if isinstance(gen, dict) and "oper_state" in gen:
        state = gen.get("oper_state")
        site.generator = Generator(state if isinstance(state, str) else None, _num(gen.get("admin_mode")),
                                   gen.get("present") in (1, True))
    return site
