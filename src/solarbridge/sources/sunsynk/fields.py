"""The dongle report's field table, as data.

Each row gives the byte offset of a big-endian 16-bit word in the TCP payload for both known layouts
(292-byte reports from older dongle firmware, 302-byte reports from newer firmware), an optional second
offset holding the high word of a 32-bit counter (combined low word first), the scale and bias
(value = raw * scale + bias), the unit and the original tool's id, group and name (MQTT unique ids and
InfluxDB tags are built from those, so dashboards keep working). ``metric`` is the canonical solarbridge
metric name with its own scale to SI units (:data:`METRIC_MAP`).

Values are computed as a division of integers, ``(raw + bias / scale) / (1 / scale)``, so each is the
decimal the device measured at its resolution (2122 -> 212.2 kWh; the original's float product was
212.20000000000002).

Facts from the original tool's field table (sunsniff ``fields.csv``) and the Sunsynk register map; every
value is read as signed at its combined width.
"""

from __future__ import annotations

from dataclasses import dataclass

from ...metricmap import MetricDesc

LAYOUTS: tuple[int, ...] = (292, 302)
MAGIC = 0xA5
SERIAL_SLICE = slice(11, 21)
CLOCK_OFFSET = 37  # YY MM DD hh mm ss, one byte each, inverter local time


@dataclass(frozen=True, slots=True)
class Field:
    id: str
    group: str
    name: str
    unit: str
    off292: int
    off302: int
    hi292: int | None = None
    hi302: int | None = None
    scale: float = 1.0
    bias: float = 0.0
    #: canonical metric name in Reading.metrics ("" = only in extra)
    metric: str = ""
    #: factor from the field's unit to the metric's unit (kWh -> Wh)
    metric_factor: float = 1.0

    @property
    def divisor(self) -> int:
        """``1 / scale`` as an integer (10 for 0.1): values are ``(raw + raw_bias) / divisor``."""
        d = round(1 / self.scale)
        assert abs(d * self.scale - 1) < 1e-12, self
        return d

    @property
    def raw_bias(self) -> int:
        """The bias in raw steps (-1000 for -100 °C at 0.1 °C)."""
        b = round(self.bias / self.scale)
        assert abs(b * self.scale - self.bias) < 1e-9, self
        return b

    def offsets(self, layout: int) -> tuple[int, int | None]:
        if layout == 292:
            return self.off292, self.hi292
        return self.off302, self.hi302

    @property
    def device_class(self) -> str | None:
        return _DEVICE_CLASS.get(self.unit)

    @property
    def state_class(self) -> str:
        return "total_increasing" if self.unit == "kWh" else "measurement"


# The original's unit -> Home Assistant class mapping (Hz, Ah and unitless have no device class there).
_DEVICE_CLASS: dict[str, str] = {
    "°C": "temperature", "W": "power", "A": "current", "V": "voltage", "kWh": "energy", "%": "battery",
}


def _energy(id_: str, group: str, name: str, o292: int, h292: int, o302: int, h302: int, metric: str) -> Field:
    return Field(id_, group, name, "kWh", o292, o302, h292, h302, scale=0.1, metric=metric, metric_factor=1000.0)


def _temp(id_: str, group: str, name: str, o292: int, o302: int, metric: str = "") -> Field:
    return Field(id_, group, name, "°C", o292, o302, scale=0.1, bias=-100.0, metric=metric)


FIELDS: tuple[Field, ...] = (
    _energy("battery_charge_total", "Battery", "Total charge", 70, 72, 78, 80, "battery_charge_energy_total_wh"),
    _energy("battery_discharge_total", "Battery", "Total discharge", 74, 76, 82, 84,
            "battery_discharge_energy_total_wh"),
    _energy("grid_import_total", "Grid", "Total import", 82, 86, 90, 94, "grid_import_energy_total_wh"),
    Field("grid_frequency", "Grid", "Frequency", "Hz", 84, 92, scale=0.01, metric="grid_frequency_hz"),
    _energy("grid_export_total", "Grid", "Total export", 88, 90, 96, 98, "grid_export_energy_total_wh"),
    _energy("load_consumption_total", "Load", "Total consumption", 96, 98, 104, 106, "load_energy_total_wh"),
    _temp("inverter_temperature_dc", "Inverter", "DC Temperature", 106, 114, "inverter_dc_temperature_c"),
    _temp("inverter_temperature_ac", "Inverter", "AC Temperature", 108, 116, "inverter_temperature_c"),
    _energy("pv_production_total", "PV", "Total production", 118, 120, 126, 128, "pv_energy_total_wh"),
    Field("battery_capacity", "Battery", "Capacity", "Ah", 140, 148, metric="battery_capacity_ah"),
    Field("pv_voltage_1", "PV", "Voltage 1", "V", 144, 152, scale=0.1, metric="pv1_voltage_v"),
    Field("pv_current_1", "PV", "Current 1", "A", 146, 154, scale=0.1, metric="pv1_current_a"),
    Field("pv_voltage_2", "PV", "Voltage 2", "V", 148, 156, scale=0.1, metric="pv2_voltage_v"),
    Field("pv_current_2", "PV", "Current 2", "A", 150, 158, scale=0.1, metric="pv2_current_a"),
    Field("pv_voltage_3", "PV", "Voltage 3", "V", 152, 160, scale=0.1, metric="pv3_voltage_v"),
    Field("pv_current_3", "PV", "Current 3", "A", 154, 162, scale=0.1, metric="pv3_current_a"),
    Field("grid_voltage", "Grid", "Voltage", "V", 176, 184, scale=0.1, metric="grid_voltage_v"),
    Field("load_voltage", "Load", "Voltage", "V", 184, 192, scale=0.1, metric="load_voltage_v"),
    Field("grid_current", "Grid", "Current", "A", 196, 204, scale=0.01, metric="grid_current_a"),
    Field("load_current", "Load", "Current", "A", 204, 212, scale=0.01, metric="load_current_a"),
    Field("grid_power_l1", "Grid", "Power L1", "W", 210, 218, metric="grid_ld_power_w"),
    Field("grid_power", "Grid", "Power", "W", 214, 222, metric="grid_power_w"),
    Field("grid_power_ct", "Grid", "Power CT", "W", 220, 228, metric="grid_ct_power_w"),
    Field("inverter_power", "Inverter", "Power", "W", 226, 234, metric="inverter_power_w"),
    Field("load_power", "Load", "Power", "W", 232, 240, metric="load_power_w"),
    _temp("battery_temperature", "Battery", "Temperature", 240, 248, "battery_temperature_c"),
    Field("battery_voltage", "Battery", "Voltage", "V", 242, 250, scale=0.01, metric="battery_voltage_v"),
    Field("battery_soc", "Battery", "SOC", "%", 244, 252, metric="battery_soc_pct"),
    Field("pv_power_1", "PV", "Power 1", "W", 248, 256, metric="pv1_power_w"),
    Field("pv_power_2", "PV", "Power 2", "W", 250, 258, metric="pv2_power_w"),
    Field("pv_power_3", "PV", "Power 3", "W", 252, 260, metric="pv3_power_w"),
    Field("battery_power", "Battery", "Power", "W", 256, 264, metric="battery_power_w"),
    Field("battery_current", "Battery", "Current", "A", 258, 266, scale=0.01, metric="battery_current_a"),
    Field("load_frequency", "Load", "Frequency", "Hz", 260, 268, scale=0.01, metric="load_frequency_hz"),
    Field("grid_connected", "Grid", "Connected", "", 264, 272),
    Field("bms_charge_voltage", "BMS", "Charge Voltage", "V", 276, 286, scale=0.01, metric="bms_charge_voltage_v"),
    Field("bms_charge_limit_current", "BMS", "Charge Limit Current", "A", 280, 290,
          metric="bms_charge_limit_current_a"),
    Field("bms_discharge_limit_current", "BMS", "Discharge Limit Current", "A", 282, 292,
          metric="bms_discharge_limit_current_a"),
    Field("bms_voltage", "BMS", "Voltage", "V", 286, 296, scale=0.01, metric="bms_voltage_v"),
    Field("bms_current", "BMS", "Current", "A", 288, 298, metric="bms_current_a"),
    _temp("bms_temperature", "BMS", "Temperature", 290, 300, "bms_temperature_c"),
)

#: the computed total of the PV strings (the original's "PV Power", which later became the sum)
PV_POWER = Field("pv_power", "PV", "Power", "W", -1, -1, metric="pv_power_w")
PV_STRINGS: tuple[str, ...] = ("pv_power_1", "pv_power_2", "pv_power_3")

BY_ID: dict[str, Field] = {f.id: f for f in FIELDS + (PV_POWER,)}


def _metric_desc(f: Field) -> MetricDesc:
    # the field's resolution in the metric's unit (0.1 kWh -> 100 Wh). A fractional one rounds the value
    # to it; a whole one needs no rounding (and would make the value an int, which InfluxDB would take as
    # a different field type from the floats already stored)
    res = f.scale * f.metric_factor
    return MetricDesc(f.metric, field=f.id, scale=str(f.metric_factor) if f.metric_factor != 1 else 1,
                      resolution=str(f.scale) if res < 1 else None, description=f"{f.group} {f.name}")


#: field -> canonical metric, in the order of the table (the PV total after the strings)
METRIC_MAP: tuple[MetricDesc, ...] = tuple(
    _metric_desc(BY_ID[i]) for f in FIELDS for i in ((f.id, PV_POWER.id) if f.id == "pv_power_3" else (f.id,))
    if BY_ID[i].metric
)


def _check() -> None:
    for f in FIELDS:
        for layout in LAYOUTS:
            lo, hi = f.offsets(layout)
            assert 43 <= lo <= layout - 2, f
            assert hi is None or 43 <= hi <= layout - 2, f


_check()
