"""Canonical :class:`~solarbridge.model.Reading` objects from 0x0500 telemetry.

Each device record becomes one Reading with the semonitor record in ``extra["record"]``:

- inverter (0x0010/0x0011): ``pv_power_w``, ``inverter_power_w``, ``pv_energy_today_wh``,
  ``pv_energy_total_wh``, ``inverter_temperature_c``, ``grid_voltage_v``, ``grid_frequency_hz``,
  ``ac_current_a``, ``dc_voltage_v`` (three-phase: per phase ``_l1.._l3``; power = sum V*I*cosphi)
- optimizer (0x0000/0x0080/0x0082): ``module_power_w`` (Vmod*Imod), ``module_voltage_v``,
  ``optimizer_voltage_v``, ``module_current_a``, ``module_energy_today_wh``, ``optimizer_temperature_c``
- battery (0x0030): ``battery_voltage_v``, ``battery_current_a`` and ``battery_power_w`` (+ discharge),
  ``battery_soc_pct``, ``battery_capacity_wh``, ``battery_temperature_c``, lifetime in/out energy
- meter (0x0022): by record type: grid (``grid_power_w`` + import/export totals), consumption
  (``load_power_w``), PV production (``pv_power_w``), battery (``battery_power_w``)
Events and unknown records keep only their raw record.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from ...metricmap import FLOAT32, MetricDesc, apply
from ...model import Reading
from .records import LEGACY, METER_REC_TYPES, RecordError, iter_records, parse_id, parse_table_record

_TS = struct.Struct("<L")
F32 = FLOAT32  # every SolarEdge telemetry value is an IEEE single-precision float


def _finite(x: float) -> bool:
    return isinstance(x, int | float) and math.isfinite(x)


def _three_phase_power(rec: Mapping[str, Any]) -> float:
    total = 0.0
    for i in (1, 2, 3):
        v, a, cos = rec[f"Vac{i}"], rec[f"Iac{i}"], rec[f"CosPhi{i}"]
        if _finite(v) and _finite(a) and _finite(cos):
            total += v * a * cos
    return max(0.0, total)


_INVERTER_COMMON = (
    MetricDesc("pv_energy_today_wh", "Eday", resolution=F32),
    MetricDesc("pv_energy_total_wh", "Etot", resolution=F32),
    MetricDesc("inverter_temperature_c", "Temp", resolution=F32),
    MetricDesc("dc_voltage_v", "Vdc", resolution=F32),
)
INVERTER_1PH: tuple[MetricDesc, ...] = _INVERTER_COMMON + (
    MetricDesc("pv_power_w", value=lambda r: max(0.0, r["Pac"]), resolution=F32),
    MetricDesc("inverter_power_w", "Pac", resolution=F32),
    MetricDesc("grid_voltage_v", "Vac", resolution=F32),
    MetricDesc("grid_frequency_hz", "Freq", resolution=F32),
    MetricDesc("ac_current_a", "Iac", resolution=F32),
)
INVERTER_3PH: tuple[MetricDesc, ...] = _INVERTER_COMMON + tuple(
    d for i in (1, 2, 3) for d in (
        MetricDesc(f"grid_voltage_v_l{i}", f"Vac{i}", resolution=F32),
        MetricDesc(f"ac_current_a_l{i}", f"Iac{i}", resolution=F32),
        MetricDesc(f"grid_frequency_hz_l{i}", f"Freq{i}", resolution=F32),
    )
) + (
    MetricDesc("pv_power_w", value=_three_phase_power, resolution="0.1"),
    MetricDesc("inverter_power_w", value=_three_phase_power, resolution="0.1"),
)
OPTIMIZER: tuple[MetricDesc, ...] = (
    MetricDesc("module_power_w", value=lambda r: r["Vmod"] * r["Imod"], resolution=F32),
    MetricDesc("module_voltage_v", "Vmod", resolution=F32),
    MetricDesc("optimizer_voltage_v", "Vopt", resolution=F32),
    MetricDesc("module_current_a", "Imod", resolution=F32),
    MetricDesc("module_energy_today_wh", "Eday", resolution=F32),
    MetricDesc("optimizer_temperature_c", "Temp", resolution=F32),
)


def _battery_current(r: Mapping[str, Any]) -> float:
    status, idc = r["BattChargingStatus"], r["Idc"]
    return abs(idc) if status == 4 else -abs(idc) if status == 3 else 0.0  # 4 discharging, 3 charging


def _battery_soc(r: Mapping[str, Any]) -> float | None:
    cap, charge = r["BattCapacityActual"], r["BattCharge"]
    if not cap or not _finite(cap) or not _finite(charge):
        return None
    return max(0.0, min(100.0, 100.0 * charge / cap))


BATTERY: tuple[MetricDesc, ...] = (
    MetricDesc("battery_voltage_v", "Vdc", resolution=F32),
    MetricDesc("battery_current_a", value=_battery_current, resolution=F32),
    MetricDesc("battery_power_w", value=lambda r: r["Vdc"] * _battery_current(r), resolution=F32),
    MetricDesc("battery_capacity_wh", "BattCapacityActual", resolution=F32),
    MetricDesc("battery_temperature_c", "Temp", resolution=F32),
    MetricDesc("battery_charge_energy_total_wh", "TotalEnergyIn", resolution=F32),
    MetricDesc("battery_discharge_energy_total_wh", "TotalEnergyOut", resolution=F32),
    MetricDesc("battery_soc_pct", value=_battery_soc, resolution="0.01"),
)


def _nz(x: float) -> float:
    return x if math.isfinite(x) else 0.0


#: meter record type -> its metrics (5 grid, 3 consumption, 9 PV production, 7 battery)
METER: dict[int, tuple[MetricDesc, ...]] = {
    5: (MetricDesc("grid_power_w", value=lambda r: _nz(r["PfromX"]) - _nz(r["P2X"]), resolution=F32),
        MetricDesc("grid_import_energy_total_wh", value=lambda r: None if r["onlyIntervalData"]
                   else r["TotalEfromGrid"], resolution=F32),
        MetricDesc("grid_export_energy_total_wh", value=lambda r: None if r["onlyIntervalData"]
                   else r["TotalE2Grid"], resolution=F32)),
    3: (MetricDesc("load_power_w", value=lambda r: _nz(r["PfromX"]), resolution=F32),),
    9: (MetricDesc("pv_power_w", value=lambda r: _nz(r["P2X"]), resolution=F32),),
    7: (MetricDesc("battery_power_w", value=lambda r: _nz(r["PfromX"]) - _nz(r["P2X"]), resolution=F32),),
}


def readings_from_payload(payload: bytes, source: str = "solaredge") -> list[Reading]:
    """Readings for every decodable record of a 0x0500 payload (bad records are skipped, not fatal)."""
    out: list[Reading] = []
    try:
        records = iter_records(payload)
    except RecordError:
        return out
    for se_type, raw_id, dev_len, data in records:
        if len(data) < 4:
            continue
        ts = datetime.fromtimestamp(_TS.unpack_from(data)[0], UTC)
        try:
            legacy = LEGACY.get(se_type)
            if legacy is not None:
                group = legacy[0]
                dev_id = parse_id(raw_id)
                rec = legacy[1](dev_id, data)
                if group == "inverters":
                    metrics = apply(INVERTER_3PH if se_type == 0x0011 else INVERTER_1PH, rec)
                    device_type = "inverter"
                elif group == "optimizers":
                    metrics, device_type = apply(OPTIMIZER, rec), "optimizer"
                else:
                    metrics, device_type = {}, "event"
            else:
                dev_type, rec = parse_table_record(se_type, raw_id, dev_len, data)
                if se_type == 0x0030:
                    dev_id, device_type, metrics = f"{rec['seId']}-{rec['batteryId']}", "battery", apply(BATTERY, rec)
                elif se_type == 0x0022:
                    label = METER_REC_TYPES.get(rec["recType"], f"{rec['recType']}_unknown")
                    dev_id, device_type = f"{rec['seId']}-meter-{label}", "meter"
                    metrics = apply(METER.get(rec["recType"], ()), rec)
                else:
                    dev_id, device_type, metrics = f"{rec['seId']}-{dev_type}", dev_type, {}
        except (RecordError, KeyError, struct.error):
            continue
        out.append(Reading(dev_id, device_type, ts, metrics, source,
                           extra={"se_type": f"0x{se_type:04x}", "record": rec}))
    return out
