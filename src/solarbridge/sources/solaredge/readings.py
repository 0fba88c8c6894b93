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
from datetime import UTC, datetime
from typing import Any

from ...model import Reading
from .records import LEGACY, METER_REC_TYPES, RecordError, iter_records, parse_id, parse_table_record

_TS = struct.Struct("<L")


def _finite(metrics: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in metrics.items()
            if v is not None and not (isinstance(v, float) and not math.isfinite(v))}


def _inverter(rec: dict[str, Any], three_phase: bool) -> dict[str, Any]:
    m: dict[str, Any] = {
        "pv_energy_today_wh": rec["Eday"], "pv_energy_total_wh": rec["Etot"],
        "inverter_temperature_c": rec["Temp"], "dc_voltage_v": rec["Vdc"],
    }
    if three_phase:
        total = 0.0
        for i in (1, 2, 3):
            v, a, cos = rec[f"Vac{i}"], rec[f"Iac{i}"], rec[f"CosPhi{i}"]
            m[f"grid_voltage_v_l{i}"], m[f"ac_current_a_l{i}"] = v, a
            m[f"grid_frequency_hz_l{i}"] = rec[f"Freq{i}"]
            if all(math.isfinite(x) for x in (v, a, cos)):
                total += v * a * cos
        m["pv_power_w"] = m["inverter_power_w"] = max(0.0, total)
    else:
        m.update({"pv_power_w": max(0.0, rec["Pac"]), "inverter_power_w": rec["Pac"], "grid_voltage_v": rec["Vac"],
                  "grid_frequency_hz": rec["Freq"], "ac_current_a": rec["Iac"]})
    return m


def _optimizer(rec: dict[str, Any]) -> dict[str, Any]:
    return {"module_power_w": rec["Vmod"] * rec["Imod"], "module_voltage_v": rec["Vmod"],
            "optimizer_voltage_v": rec["Vopt"], "module_current_a": rec["Imod"],
            "module_energy_today_wh": rec["Eday"], "optimizer_temperature_c": rec["Temp"]}


def _battery(rec: dict[str, Any]) -> dict[str, Any]:
    status = rec["BattChargingStatus"]
    current = abs(rec["Idc"]) if status == 4 else -abs(rec["Idc"]) if status == 3 else 0.0
    cap = rec["BattCapacityActual"]
    m = {"battery_voltage_v": rec["Vdc"], "battery_current_a": current,
         "battery_power_w": rec["Vdc"] * current, "battery_capacity_wh": cap,
         "battery_temperature_c": rec["Temp"],
         "battery_charge_energy_total_wh": rec["TotalEnergyIn"],
         "battery_discharge_energy_total_wh": rec["TotalEnergyOut"]}
    if cap and math.isfinite(cap) and math.isfinite(rec["BattCharge"]):
        m["battery_soc_pct"] = round(max(0.0, min(100.0, 100.0 * rec["BattCharge"] / cap)), 2)
    return m


def _nz(x: float) -> float:
    return x if math.isfinite(x) else 0.0


def _meter(rec: dict[str, Any]) -> dict[str, Any]:
    t = rec["recType"]
    to_x, from_x = _nz(rec["P2X"]), _nz(rec["PfromX"])
    if t == 5:
        m: dict[str, Any] = {"grid_power_w": from_x - to_x}
        if not rec["onlyIntervalData"]:
            m["grid_import_energy_total_wh"] = rec["TotalEfromGrid"]
            m["grid_export_energy_total_wh"] = rec["TotalE2Grid"]
        return m
    if t == 3:
        return {"load_power_w": from_x}
    if t == 9:
        return {"pv_power_w": to_x}
    if t == 7:
        return {"battery_power_w": from_x - to_x}
    return {}


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
                    metrics = _inverter(rec, se_type == 0x0011)
                    device_type = "inverter"
                elif group == "optimizers":
                    metrics, device_type = _optimizer(rec), "optimizer"
                else:
                    metrics, device_type = {}, "event"
            else:
                dev_type, rec = parse_table_record(se_type, raw_id, dev_len, data)
                if se_type == 0x0030:
                    dev_id, device_type, metrics = f"{rec['seId']}-{rec['batteryId']}", "battery", _battery(rec)
                elif se_type == 0x0022:
                    label = METER_REC_TYPES.get(rec["recType"], f"{rec['recType']}_unknown")
                    dev_id, device_type, metrics = f"{rec['seId']}-meter-{label}", "meter", _meter(rec)
                else:
                    dev_id, device_type, metrics = f"{rec['seId']}-{dev_type}", dev_type, {}
        except (RecordError, KeyError, struct.error):
            continue
        out.append(Reading(dev_id, device_type, ts, _finite(metrics), source,
                           extra={"se_type": f"0x{se_type:04x}", "record": rec}))
    return out
