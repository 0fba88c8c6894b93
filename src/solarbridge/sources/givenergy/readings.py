"""Canonical :class:`~solarbridge.model.Reading` from a GivEnergy register cache."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from ...model import DeviceInfo, MetricValue, Reading, utcnow
from .controls import control_metrics, control_specs
from .givtcp import energy_values, run_all
from .model import Plant

DEVICE_TYPE = "inverter"


def device_info(plant: Plant, source: str = "", *, allow_reboot: bool = False) -> DeviceInfo:
    serial = plant.serial
    return DeviceInfo(
        device_id=serial, device_type=DEVICE_TYPE, manufacturer="GivEnergy", model=plant.model.label,
        serial=serial, sw_version=plant.firmware(), name=f"GivEnergy {serial}", source=source,
        controls=control_specs(plant, allow_reboot=allow_reboot),
    )


def metrics(plant: Plant) -> dict[str, MetricValue]:
    iv = plant.input_values()
    hr = plant.holding
    m: dict[str, MetricValue] = {}

    def put(name: str, value: Any) -> None:
        if value is not None:
            m[name] = value

    if iv:
        pv = iv.get("p_pv1", 0) + iv.get("p_pv2", 0)
        put("pv_power_w", pv)
        if "e_pv1_day" in iv and "e_pv2_day" in iv:
            put("pv_energy_today_wh", round((iv["e_pv1_day"] + iv["e_pv2_day"]) * 1000))
        if "e_pv_total" in iv:
            put("pv_energy_total_wh", round(iv["e_pv_total"] * 1000))
        if "p_grid_out" in iv:
            put("grid_power_w", -iv["p_grid_out"])
        if "e_grid_in_total" in iv:
            put("grid_import_energy_total_wh", round(iv["e_grid_in_total"] * 1000))
        if "e_grid_out_total" in iv:
            put("grid_export_energy_total_wh", round(iv["e_grid_out_total"] * 1000))
        put("grid_voltage_v", iv.get("v_ac1"))
        put("grid_frequency_hz", iv.get("f_ac1"))
        if "v_ac1" in iv:
            put("grid_available", iv["v_ac1"] >= 100 and iv.get("f_ac1", 0) >= 40)
        put("battery_power_w", iv.get("p_battery"))
        soc = iv.get("battery_percent")
        if soc is not None and (soc > 0 or hr.get(29)):  # SOC 0 is a known glitch unless calibrating
            put("battery_soc_pct", soc)
        put("battery_voltage_v", iv.get("v_battery"))
        put("battery_current_a", iv.get("i_battery"))
        put("battery_temperature_c", iv.get("temp_battery"))
        put("load_power_w", iv.get("p_load_demand"))
        put("inverter_temperature_c", iv.get("temp_inverter_heatsink"))
        put("inverter_power_w", iv.get("p_inverter_out"))
        put("eps_power_w", iv.get("p_eps_backup"))
        for i in (1, 2):
            put(f"pv{i}_power_w", iv.get(f"p_pv{i}"))
            put(f"pv{i}_voltage_v", iv.get(f"v_pv{i}"))
            put(f"pv{i}_current_a", iv.get(f"i_pv{i}"))
        put("grid_import_energy_today_wh", _wh(iv.get("e_grid_in_day")))
        put("grid_export_energy_today_wh", _wh(iv.get("e_grid_out_day")))
        put("battery_charge_energy_today_wh", _wh(iv.get("e_battery_charge_today")))
        put("battery_discharge_energy_today_wh", _wh(iv.get("e_battery_discharge_today")))
        put("battery_throughput_energy_total_wh", _wh(iv.get("e_battery_throughput_total")))
        put("ac_charge_energy_total_wh", _wh(iv.get("e_inverter_in_total")))
        put("inverter_energy_total_wh", _wh(iv.get("e_inverter_out_total")))
        e = energy_values(plant)
        put("battery_charge_energy_total_wh", _wh(e["total"].get("Battery Charge")))
        put("battery_discharge_energy_total_wh", _wh(e["total"].get("Battery Discharge")))
        put("load_energy_total_wh", _wh(e["total"].get("Load")))
        put("load_energy_today_wh", _wh(e["today"].get("Load")))
        put("status_code", iv.get("status"))
    if 55 in hr:
        put("battery_capacity_wh", round(plant.battery_capacity_kwh * 1000))
    # control state (each control's state_metric)
    m.update(control_metrics(plant))
    hv = plant.hv_modules()
    if hv["bcu"] or hv["bmu"]:
        put("battery_modules", len(hv["bmu"]))
    for b in plant.battery_values():
        n = b["index"] + 1
        put(f"battery_{n}_soc_pct", b.get("soc"))
        put(f"battery_{n}_voltage_v", b.get("v_cells_sum"))
        put(f"battery_{n}_temperature_c", b.get("t_max"))
        put(f"battery_{n}_cycles", b.get("num_cycles"))
    return m


def _wh(kwh: float | None) -> int | None:
    return None if kwh is None else round(kwh * 1000)


def build_reading(plant: Plant, *, source: str = "givenergy", layout: str = "v1", raw: bool = False,
                  timestamp: datetime | None = None, allow_reboot: bool = False) -> Reading:
    """One reading with canonical metrics, the GivTCP runAll dict in ``extra["givtcp"]`` and DeviceInfo."""
    info = device_info(plant, source, allow_reboot=allow_reboot)
    extra: dict[str, Any] = {"givtcp": run_all(plant, raw=raw, layout=layout), "givtcp_layout": layout}
    if raw:
        extra["raw"] = {"holding": {str(k): v for k, v in sorted(plant.holding.items())},
                        "input": {str(k): v for k, v in sorted(plant.input.items())}}
        if plant.hv:  # HV BCU/BMU blocks, by device address
            extra["raw"]["hv"] = {f"0x{a:02x}": {str(k): v for k, v in sorted(regs.items())}
                                  for a, regs in sorted(plant.hv.items())}
    return Reading(device_id=info.device_id, device_type=DEVICE_TYPE, timestamp=timestamp or utcnow(),
                   metrics=metrics(plant), source=source, extra=extra, info=info)
