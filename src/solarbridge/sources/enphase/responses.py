"""Sans-IO parsers for the IQ Gateway responses enphase-monitor reads.

Text in, small typed values out. Anything unexpected (HTML error pages,
truncated JSON, wrong types) yields ``None`` or an empty result, never an
exception: the caller treats it as "no data" for that call, like the original.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any

Number = int | float

RELAY_PATH = "ivp/ensemble/relay"
LIVEDATA_PATH = "ivp/livedata/status"
SECCTRL_PATH = "ivp/ensemble/secctrl"
INFO_PATH = "info.xml"
REPORTS_PATH = "ivp/meters/reports"


def load_json(text: str | bytes | None) -> Any:
    if not text:
        return None
    try:
        return json.loads(text)
    except (ValueError, RecursionError):
        return None


def number(value: object) -> Number | None:
    """A finite JSON number (a quoted number counts); None for null, booleans and anything else."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, str):
        try:
            d = Decimal(value.strip())
        except InvalidOperation:
            return None
        if not d.is_finite():
            return None
        return int(d) if d == d.to_integral_value() and abs(d) < 10**18 else float(d)
    return None


@dataclass(frozen=True, slots=True)
class MeterRow:
    """One row of a meters report (the cumulative row or one line); None where the gateway gave no number."""

    real_w: Number | None = None  # currW
    apparent_va: Number | None = None  # apprntPwr
    voltage_v: Number | None = None  # rmsVoltage
    power_factor: Number | None = None  # pwrFactor
    frequency_hz: Number | None = None  # freqHz

    @classmethod
    def from_report(cls, row: object) -> MeterRow:
        if not isinstance(row, dict):
            return cls()

        def num(key: str) -> Number | None:
            v = row.get(key)
            return v if isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) else None

        return cls(num("currW"), num("apprntPwr"), num("rmsVoltage"), num("pwrFactor"), num("freqHz"))

    def as_extra(self) -> dict[str, Number | None]:
        """The row under the documented ``meter_rows`` keys (see :mod:`solarbridge.model`)."""
        return {"real_w": self.real_w, "apparent_va": self.apparent_va, "voltage_v": self.voltage_v,
                "power_factor": self.power_factor, "frequency_hz": self.frequency_hz}


@dataclass(frozen=True, slots=True)
class Relay:
    """``mains_oper_state``: ``online`` for closed, ``onbatt`` for open, else a warning."""

    state: str  # "online", "onbatt" or "nocomms"
    warning: str = ""


def parse_relay(text: str | bytes | None) -> Relay | None:
    """None when the call gave nothing usable at all (no body / not JSON)."""
    doc = load_json(text)
    if not isinstance(doc, dict):
        return None
    value = doc.get("mains_oper_state")
    if value == "closed":
        return Relay("online")
    if value == "open":
        return Relay("onbatt")
    if value is None or value == "":
        return Relay("nocomms", "envoy relay API missing mains_oper_state")
    return Relay("nocomms", f"envoy relay API unknown mains_oper_state '{value}'")


@dataclass(frozen=True, slots=True)
class LiveData:
    soc: Number | None = None
    phase_count: int | None = None
    capacity_wh: Number | None = None
    #: instantaneous powers in W from the livedata meters (pv, storage, grid, load), when present
    powers: dict[str, float] = field(default_factory=dict)


def parse_livedata(text: str | bytes | None) -> LiveData | None:
    doc = load_json(text)
    meters = doc.get("meters") if isinstance(doc, dict) else None
    if not isinstance(meters, dict):
        return None
    pc = meters.get("phase_count")
    powers: dict[str, float] = {}
    for key in ("pv", "storage", "grid", "load"):
        obj = meters.get(key)
        if isinstance(obj, dict):
            mw = obj.get("agg_p_mw")
            if isinstance(mw, int | float) and not isinstance(mw, bool):
                powers[key] = mw / 1000.0
            for n, ph in enumerate("abc", 1):
                v = obj.get(f"agg_p_ph_{ph}_mw")
                if isinstance(v, int | float) and not isinstance(v, bool):
                    powers[f"{key}_l{n}"] = v / 1000.0
    return LiveData(
        soc=number(meters.get("soc")),
        phase_count=pc if isinstance(pc, int) and not isinstance(pc, bool) else None,
        capacity_wh=number(meters.get("enc_agg_energy")),
        powers=powers,
    )


def parse_secctrl(text: str | bytes | None) -> Number | None:
    """``soc_recovery_exit`` (the battery reserve the system restarts at, %) or None."""
    doc = load_json(text)
    if not isinstance(doc, dict):
        return None
    return number(doc.get("soc_recovery_exit"))


def parse_info(text: str | bytes | None) -> str | None:
    """The ``<software>`` value of info.xml, found per line like the original."""
    if not text:
        return None
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("<software>") and line.endswith("</software>"):
            value = line[len("<software>"):-len("</software>")].strip()
            return value or None
    return None


def firmware_major(software: str | None) -> int | None:
    """The major version of an info.xml ``<software>`` value (``D3.17.3`` -> 3, ``R4.10.35`` -> 4)."""
    if not software:
        return None
    digits = ""
    for ch in software.lstrip("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"):
        if not ch.isdigit():
            break
        digits += ch
    return int(digits) if digits else None


@dataclass(slots=True)
class Reports:
    """Rows of ``ivp/meters/reports`` by report type: [cumulative, line1, line2, ...]."""

    net: list[MeterRow] | None = None  # net-consumption (grid, + import)
    total: list[MeterRow] | None = None  # total-consumption (load)
    storage: MeterRow | None = None  # storage cumulative (battery, + discharge)
    production: list[MeterRow] | None = None
    #: whDlvdCum of production/total/net cumulative rows (energy counters for the daemon source)
    energy: dict[str, float] = field(default_factory=dict)


def parse_reports(text: str | bytes | None) -> Reports | None:
    doc = load_json(text)
    if not isinstance(doc, list):
        return None
    out = Reports()
    for rep in doc:
        if not isinstance(rep, dict):
            continue
        kind = rep.get("reportType")
        cum = rep.get("cumulative")
        lines = rep.get("lines")
        rows = [MeterRow.from_report(cum)]
        if isinstance(lines, list):
            rows.extend(MeterRow.from_report(x) for x in lines)
        if isinstance(cum, dict):
            for key in ("whDlvdCum", "whRcvdCum"):
                v = cum.get(key)
                if isinstance(v, int | float) and not isinstance(v, bool):
                    out.energy[f"{kind}.{key}"] = float(v)
        if kind == "net-consumption":
            out.net = rows
        elif kind == "total-consumption":
            out.total = rows
        elif kind == "storage":
            out.storage = rows[0]
        elif kind == "production":
            out.production = rows
    return out
