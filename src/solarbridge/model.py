"""The one data model every source produces and every sink consumes.

Units are SI (W, Wh, V, A, Hz, %, degC, s). Sign conventions:
``grid_power_w`` is positive when importing from the grid; ``battery_power_w``
is positive when the battery discharges. Per-phase metrics add ``_l1``..``_l3``.

``Reading`` is a slotted dataclass rather than a pydantic model on purpose: the
bus moves hundreds of thousands of them per second and validation belongs at
the edges (codecs and config), not on the hot path.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

MetricValue = float | int | bool | str


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(slots=True)
class DeviceInfo:
    """What a source knows about a device; sinks use it for discovery and the API."""

    device_id: str
    device_type: str
    manufacturer: str = ""
    model: str = ""
    serial: str = ""
    sw_version: str = ""
    name: str = ""
    source: str = ""
    #: controls this device accepts (see :class:`ControlSpec`)
    controls: tuple[ControlSpec, ...] = ()

    def display_name(self) -> str:
        return self.name or f"{self.manufacturer} {self.model} {self.serial or self.device_id}".strip()


@dataclass(slots=True)
class Reading:
    """One observation of one device: a set of metrics at one instant.

    ``online=False`` with empty ``metrics`` means "the source lost comms with
    this device"; sinks that publish availability (MQTT, NUT, API) use it.
    """

    device_id: str
    device_type: str
    timestamp: datetime
    metrics: dict[str, MetricValue]
    source: str = ""
    extra: dict[str, Any] = field(default_factory=dict)
    info: DeviceInfo | None = None
    online: bool = True

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "device_id": self.device_id,
            "device_type": self.device_type,
            "timestamp": self.timestamp.isoformat(),
            "source": self.source,
            "online": self.online,
            "metrics": self.metrics,
        }
        if self.extra:
            d["extra"] = self.extra
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Reading:
        return cls(
            device_id=str(d["device_id"]),
            device_type=str(d["device_type"]),
            timestamp=datetime.fromisoformat(d["timestamp"]),
            metrics=dict(d.get("metrics", {})),
            source=str(d.get("source", "")),
            extra=dict(d.get("extra", {})),
            online=bool(d.get("online", True)),
        )


# --------------------------------------------------------------------------- extras for UPS-style sinks

#: ``Reading.extra`` key: meter rows for sinks that render one variable set per meter row (the ``nut``
#: sink does, like NUT's enphase-monitor). ``{"grid" | "load" | "battery": [row, ...]}``: row 0 is the
#: meter's cumulative row, then one row per line (L1, L2, L3). A row is a dict of ``real_w``,
#: ``apparent_va``, ``voltage_v``, ``power_factor``, ``frequency_hz`` (missing or None counts as 0).
#: "grid" is the net meter (+ import), "load" the consumption meter, "battery" the storage meter
#: (+ discharge; absent when there is none). Numbers are as the device sent them.
EXTRA_METER_ROWS = "meter_rows"
#: ``Reading.extra`` key: the number of lines the meter rows describe (int): 3 on a three-phase site, 2 on a
#: split-phase site; per-line rows are ignored without it (enphase-monitor sends 3 or nothing, like the original)
EXTRA_PHASE_COUNT = "phase_count"


ControlKind = Literal["number", "select", "switch", "time", "text", "button"]


@dataclass(slots=True, frozen=True)
class ControlSpec:
    """A command a device accepts; MQTT discovery and the API are generated from these."""

    name: str  # e.g. "charge_target_pct"
    kind: ControlKind
    label: str = ""
    unit: str = ""
    minimum: float | None = None
    maximum: float | None = None
    step: float | None = None
    options: tuple[str, ...] = ()
    #: metric whose value reflects the current state of this control
    state_metric: str = ""


@dataclass(slots=True)
class ControlRequest:
    device_id: str
    command: str
    value: Any = None
    origin: str = ""  # "api", "mqtt", "cli"


@dataclass(slots=True)
class ControlResult:
    ok: bool
    message: str = ""
    #: the new state read back from the device, in the control's state metric's own type and unit
    value: Any = None
    #: what was done (e.g. the writes by name); for replies and logs, never published as state
    details: dict[str, Any] = field(default_factory=dict)


class ControlError(ValueError):
    """A control request that is invalid (field and allowed range in the message) or failed."""

    def __init__(self, message: str, *, field_name: str = "", status: int = 400) -> None:
        super().__init__(message)
        self.field_name = field_name
        self.status = status


# --------------------------------------------------------------------------- metric metadata


@dataclass(slots=True, frozen=True)
class MetricSpec:
    unit: str  # display unit: "W", "Wh", "V", "A", "Hz", "%", "°C", "s", "VA", "var", ""
    device_class: str | None  # Home Assistant device class
    state_class: str | None  # "measurement", "total_increasing", "total" or None
    kind: Literal["float", "int", "bool", "str"] = "float"
    description: str = ""

    def ha_attributes(self) -> dict[str, str]:
        """Home Assistant's device_class, state_class and unit_of_measurement, where this metric has them."""
        out: dict[str, str] = {}
        if self.device_class:
            out["device_class"] = self.device_class
        if self.state_class:
            out["state_class"] = self.state_class
        if self.unit:
            out["unit_of_measurement"] = self.unit
        return out


#: canonical metrics with a fixed meaning (see DESIGN.md)
CANONICAL: dict[str, MetricSpec] = {
    "pv_power_w": MetricSpec("W", "power", "measurement", description="PV generation power (>= 0)"),
    "pv_energy_today_wh": MetricSpec("Wh", "energy", "total_increasing", description="PV energy today"),
    "pv_energy_total_wh": MetricSpec("Wh", "energy", "total_increasing", description="PV energy lifetime"),
    "grid_power_w": MetricSpec("W", "power", "measurement", description="grid power, + import, - export"),
    "grid_import_energy_total_wh": MetricSpec("Wh", "energy", "total_increasing", description="grid import"),
    "grid_export_energy_total_wh": MetricSpec("Wh", "energy", "total_increasing", description="grid export"),
    "grid_voltage_v": MetricSpec("V", "voltage", "measurement"),
    "grid_frequency_hz": MetricSpec("Hz", "frequency", "measurement"),
    "grid_available": MetricSpec("", None, None, kind="bool", description="grid is up"),
    "battery_power_w": MetricSpec("W", "power", "measurement", description="battery, + discharge, - charge"),
    "battery_soc_pct": MetricSpec("%", "battery", "measurement", description="battery state of charge"),
    "battery_voltage_v": MetricSpec("V", "voltage", "measurement"),
    "battery_current_a": MetricSpec("A", "current", "measurement", description="+ discharge, - charge"),
    "battery_temperature_c": MetricSpec("°C", "temperature", "measurement"),
    "battery_capacity_wh": MetricSpec("Wh", "energy_storage", None, description="usable battery capacity"),
    "battery_charge_energy_total_wh": MetricSpec("Wh", "energy", "total_increasing"),
    "battery_discharge_energy_total_wh": MetricSpec("Wh", "energy", "total_increasing"),
    "battery_runtime_s": MetricSpec("s", "duration", "measurement", description="estimated runtime"),
    "load_power_w": MetricSpec("W", "power", "measurement", description="home consumption (>= 0)"),
    "load_energy_total_wh": MetricSpec("Wh", "energy", "total_increasing"),
    "inverter_temperature_c": MetricSpec("°C", "temperature", "measurement"),
    "inverter_power_w": MetricSpec("W", "power", "measurement", description="inverter AC output"),
    # a site's derived metrics (solarbridge.stages.sites)
    "self_consumption_w": MetricSpec("W", "power", "measurement", description="PV used on site (pv - export)"),
    "self_consumption_pct": MetricSpec("%", None, "measurement", description="share of PV used on site"),
    "self_sufficiency_pct": MetricSpec("%", None, "measurement", description="share of the load not imported"),
    "balance_residual_w": MetricSpec("W", "power", "measurement",
                                     description="pv + grid + battery - measured load (0 when balanced)"),
    "self_consumption_energy_total_wh": MetricSpec("Wh", "energy", "total_increasing",
                                                   description="PV energy used on site"),
}

_SUFFIX_SPECS: tuple[tuple[str, MetricSpec], ...] = (
    ("_wh", MetricSpec("Wh", "energy", "total_increasing")),
    ("_kwh", MetricSpec("kWh", "energy", "total_increasing")),
    ("_w", MetricSpec("W", "power", "measurement")),
    ("_va", MetricSpec("VA", "apparent_power", "measurement")),
    ("_var", MetricSpec("var", "reactive_power", "measurement")),
    ("_v", MetricSpec("V", "voltage", "measurement")),
    ("_a", MetricSpec("A", "current", "measurement")),
    ("_hz", MetricSpec("Hz", "frequency", "measurement")),
    ("_pct", MetricSpec("%", None, "measurement")),
    ("_c", MetricSpec("°C", "temperature", "measurement")),
    ("_s", MetricSpec("s", "duration", "measurement")),
)

_PHASE_RE = re.compile(r"_l[123]$")


def metric_spec(name: str) -> MetricSpec:
    """Metadata for a metric: canonical table first, then the unit suffix, per-phase aware."""
    spec = CANONICAL.get(name)
    if spec is not None:
        return spec
    base = _PHASE_RE.sub("", name)
    spec = CANONICAL.get(base)
    if spec is not None:
        return spec
    if base.endswith("_soc_pct"):
        return MetricSpec("%", "battery", "measurement")
    for suffix, s in _SUFFIX_SPECS:
        if base.endswith(suffix):
            return s
    if base.startswith(("is_", "has_")) or base.endswith(("_available", "_enabled", "_ok")):
        return MetricSpec("", None, None, kind="bool")
    return MetricSpec("", None, "measurement")


_SLUG_RE = re.compile(r"[^a-z0-9]+")


def slug(text: str) -> str:
    """A safe identifier for topics, metric names and file names."""
    return _SLUG_RE.sub("_", text.lower()).strip("_")
