"""GivTCP's JSON structures, computed from a :class:`~.model.Plant` register cache.

``layout="v1"`` gives the key names of GivTCP v1/v2 (``"Energy/Total"``, ``"Power/Flows"``,
``"Invertor Details"`` ... with spaces in leaf names); ``layout="v3"`` the nested
underscore names of GivTCP v3. 32-bit totals are ``(hi << 16 | lo) / 10`` kWh, not the
string-concatenation of the v1 code.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from .controls import mode_name, mode_number
from .model import Plant
from .registers import hhmm

LAYOUTS = ("v1", "v3")


def _enable(v: Any) -> str:
    return "enable" if v else "disable"


def _hhmm_int(v: int | None) -> int:
    """v1 slots are raw HHMM integers; an impossible time reads as 0 (no slot)."""
    if v is None:
        return 0
    return v if hhmm(v) is not None else 0


def _hhmm_str(v: int | None, seconds: bool = True) -> str:
    t = hhmm(v) if v is not None else None
    if t is None:
        t = (0, 0)
    return f"{t[0]:02d}:{t[1]:02d}" + (":00" if seconds else "")


# --------------------------------------------------------------------------- derived values


def power_values(plant: Plant) -> dict[str, Any]:
    """The power figures GivTCP derives from IR 0-59 (None where a validity gate drops them)."""
    iv = plant.input_values()
    pv = iv.get("p_pv1", 0) + iv.get("p_pv2", 0)
    grid_out = iv.get("p_grid_out", 0)
    imp = -grid_out if grid_out < 0 else 0
    exp = grid_out if grid_out > 0 else 0
    batt = iv.get("p_battery", 0)
    charge = -batt if batt < 0 else 0
    discharge = batt if batt > 0 else 0
    inv = iv.get("p_inverter_out", 0)
    load = iv.get("p_load_demand", 0)
    s2h = min(pv, load)
    s2b = max(pv - s2h - exp, 0)
    s2g = max(pv - s2h - s2b, 0)
    b2h = max(discharge - exp, 0)
    g2b = max(charge - max(pv - load, 0), 0) if imp > 0 else 0
    g2h = max(imp - charge, 0) if imp > 0 else 0
    b2g = max(discharge - b2h, 0) if exp > 0 else 0
    soc = iv.get("battery_percent")
    return {
        "pv": pv if pv < 15000 else None, "grid": grid_out, "import": imp, "export": exp,
        "eps": iv.get("p_eps_backup", 0), "inverter": inv if -6000 <= inv <= 6000 else None,
        "ac_charge": -inv if inv < 0 else 0, "load": load if load < 15500 else None,
        "self_consumption": max(load - imp, 0), "battery": batt, "charge": charge, "discharge": discharge,
        "soc": soc if soc is not None and soc > 3 else None,
        "flows": {"Solar to House": s2h, "Solar to Battery": s2b, "Solar to Grid": s2g, "Battery to House": b2h,
                  "Grid to Battery": g2b, "Grid to House": g2h, "Battery to Grid": b2g},
    }


def _energy_ok(v: float | None, limit: float) -> float | None:
    if v is None or v < 0 or v >= limit:
        return None
    return round(v, 1)


def energy_values(plant: Plant) -> dict[str, dict[str, float | None]]:
    iv = plant.input_values()
    hv = plant.holding_values()
    model = plant.model
    fw = hv.get("arm_firmware_version", 0)
    has_bat_totals = (model.key == "hybrid" and fw >= 449) or (model.key == "ac" and fw >= 533)
    total = {
        "Export": iv.get("e_grid_out_total"), "Battery Throughput": iv.get("e_battery_throughput_total"),
        "AC Charge": iv.get("e_inverter_in_total"), "Import": iv.get("e_grid_in_total"),
        "Invertor": iv.get("e_inverter_out_total"), "PV": iv.get("e_pv_total"),
    }
    today = {
        "Battery Throughput": (iv["e_battery_charge_today"] + iv["e_battery_discharge_today"])
        if "e_battery_charge_today" in iv and "e_battery_discharge_today" in iv else None,
        "PV": (iv["e_pv1_day"] + iv["e_pv2_day"]) if "e_pv1_day" in iv and "e_pv2_day" in iv else None,
        "Import": iv.get("e_grid_in_day"), "Export": iv.get("e_grid_out_day"),
        "AC Charge": iv.get("e_inverter_in_day"), "Invertor": iv.get("e_inverter_out_day"),
    }
    if has_bat_totals:
        total["Battery Charge"] = iv.get("e_battery_charge_total_2")
        total["Battery Discharge"] = iv.get("e_battery_discharge_total_2")
        today["Battery Charge"] = iv.get("e_battery_charge_today_2")
        today["Battery Discharge"] = iv.get("e_battery_discharge_today_2")
    for d in (total, today):
        if None not in (d["Invertor"], d["AC Charge"], d["Export"], d["Import"]):
            load = (d["Invertor"] - d["AC Charge"]) - (d["Export"] - d["Import"])  # type: ignore[operator]
            if model.key == "ac" and d["PV"] is not None:
                load += d["PV"]  # type: ignore[operator]
            d["Load"] = max(load, 0.0)
        if d["PV"] is not None and d["Export"] is not None:
            d["Self Consumption"] = max(d["PV"] - d["Export"], 0.0)  # type: ignore[operator]
    return {
        "total": {k: _energy_ok(v, 100000) for k, v in total.items()},
        "today": {k: _energy_ok(v, 100) for k, v in today.items()},
    }


def _energy_key(name: str, period: str) -> str:
    # GivTCP says "Battery Throughput Total", but "PV Energy Total" for everything else
    return f"{name} {period}" if name == "Battery Throughput" else f"{name} Energy {period}"


def _drop_none(d: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in d.items() if v is not None}


# --------------------------------------------------------------------------- v1 functions


def get_timeslots(plant: Plant) -> dict[str, Any]:
    hr = plant.holding
    return {
        "Discharge start time slot 1": _hhmm_int(hr.get(56)), "Discharge end time slot 1": _hhmm_int(hr.get(57)),
        "Discharge start time slot 2": _hhmm_int(hr.get(44)), "Discharge end time slot 2": _hhmm_int(hr.get(45)),
        "Charge start time slot 1": _hhmm_int(hr.get(94)), "Charge end time slot 1": _hhmm_int(hr.get(95)),
        "Charge start time slot 2": _hhmm_int(hr.get(31)), "Charge end time slot 2": _hhmm_int(hr.get(32)),
    }


def get_combined_stats(plant: Plant, raw: bool = False) -> dict[str, Any]:
    """Energy and power (IR 0-59 +180-183); empty if the block is incomplete or mostly zero."""
    if not all(r in plant.input for r in range(60)) or sum(1 for r in range(60) if plant.input[r] == 0) >= 50:
        return {}
    p = power_values(plant)
    e = energy_values(plant)
    out: dict[str, Any] = {
        "Energy/Total": _drop_none({_energy_key(k, "Total") + " kWh": v for k, v in e["total"].items()}),
        "Energy/Today": _drop_none({_energy_key(k, "Today") + " kWh": v for k, v in e["today"].items()}),
        "Power": _drop_none({
            "PV Power": p["pv"], "Grid Power": p["grid"], "Import Power": p["import"], "Export Power": p["export"],
            "EPS Power": p["eps"], "Invertor Power": p["inverter"], "AC Charge Power": p["ac_charge"],
            "Load Power": p["load"], "Self Consumption Power": p["self_consumption"],
            "Battery Power": p["battery"], "Charge Power": p["charge"], "Discharge Power": p["discharge"],
            "SOC": p["soc"],
        }),
        "Power/Flows": dict(p["flows"]),
    }
    if raw:
        out["raw/input"] = plant.input_values()
    return out


def get_modes_and_times(plant: Plant, raw: bool = False) -> dict[str, Any]:
    """Control state, timeslots and inverter details (HR 0-119)."""
    hr = plant.holding
    if not all(r in hr for r in range(120)):
        return {}
    hv = plant.holding_values()
    out: dict[str, Any] = {
        "Control": {
            "Mode": mode_number(hr.get(27), hr.get(59), hr.get(110)),
            "Battery Mode": mode_name(hr.get(27), hr.get(59), hr.get(110)),
            "Battery Power Reserve": max(hr.get(110, 4), 4),
            "Battery Power Cutoff": max(hr.get(114, 4), 4),
            "Target SOC": hr.get(116),
            "Enable Charge Target": _enable(hr.get(20)),
            "Charge Schedule State": "Active" if hr.get(96) else "Paused",
            "Discharge Schedule State": "Active" if hr.get(59) else "Paused",
            "Eco Mode": hr.get(27),
        },
        "Timeslots": get_timeslots(plant),
        "Invertor Details": {
            "Battery Type": "Lithium" if hr.get(54) == 1 else "Lead Acid",
            "Battery Capacity kWh": plant.battery_capacity_kwh,
            "Invertor Serial Number": plant.serial,
            "Battery Serial Number": hv.get("first_battery_serial_number", ""),
            "Modbus Version": f"{hr.get(34, 0) / 100:.2f}",
            "Meter Type": "EM115" if hr.get(47) == 1 else "EM418",
            "Invertor Type": plant.model.label,
            "Invertor Firmware": plant.firmware(),
        },
    }
    if raw:
        out["raw/holding"] = hv
    return out


def run_all(plant: Plant, raw: bool = False, layout: str = "v1") -> dict[str, Any]:
    if layout == "v3":
        return run_all_v3(plant, raw=raw)
    out = get_combined_stats(plant, raw=raw)
    out.update(get_modes_and_times(plant, raw=raw))
    return out


# --------------------------------------------------------------------------- v3 layout


def _underscore(d: dict[str, Any], suffix: str = "") -> dict[str, Any]:
    return {k.replace(" ", "_") + suffix: v for k, v in d.items() if v is not None}


def run_all_v3(plant: Plant, raw: bool = False, now: datetime | None = None) -> dict[str, Any]:
    iv = plant.input_values()
    hv = plant.holding_values()
    hr = plant.holding
    p = power_values(plant)
    e = energy_values(plant)
    model = plant.model
    cap = plant.battery_capacity_kwh
    power = _drop_none({
        "PV_Power": p["pv"], "PV_Power_String_1": iv.get("p_pv1"), "PV_Power_String_2": iv.get("p_pv2"),
        "PV_Voltage_String_1": iv.get("v_pv1"), "PV_Voltage_String_2": iv.get("v_pv2"),
        "PV_Current_String_1": iv.get("i_pv1"), "PV_Current_String_2": iv.get("i_pv2"),
        "Grid_Power": p["grid"], "Import_Power": p["import"], "Export_Power": p["export"], "EPS_Power": p["eps"],
        "Invertor_Power": p["inverter"], "AC_Charge_Power": p["ac_charge"], "Load_Power": p["load"],
        "Self_Consumption_Power": p["self_consumption"], "Battery_Power": p["battery"],
        "Battery_Voltage": iv.get("v_battery"), "Battery_Current": iv.get("i_battery"),
        "Charge_Power": p["charge"], "Discharge_Power": p["discharge"], "SOC": p["soc"],
        "SOC_kWh": round((p["soc"] or 0) * cap / 100, 2), "Grid_Voltage": iv.get("v_ac1"),
        "Grid_Current": iv.get("i_ac1"), "Grid_Frequency": iv.get("f_ac1"),
        "Inverter_Output_Frequency": iv.get("f_eps_backup"),
    })
    flows = {k.replace(" ", "_"): v for k, v in p["flows"].items()}
    control = {
        "Mode": mode_name(hr.get(27), hr.get(59), hr.get(110)), "Eco_Mode": _enable(hr.get(27)),
        "Target_SOC": hr.get(116), "Enable_Charge_Target": _enable(hr.get(20)),
        "Enable_Charge_Schedule": _enable(hr.get(96)), "Enable_Discharge_Schedule": _enable(hr.get(59)),
        "Battery_Power_Reserve": hr.get(110), "Battery_Power_Cutoff": hr.get(114),
        "Battery_Charge_Rate": int(min(hr.get(111, 0) / 100 * cap * 1000, model.max_battery_w)),
        "Battery_Discharge_Rate": int(min(hr.get(112, 0) / 100 * cap * 1000, model.max_battery_w)),
        "Active_Power_Rate": hr.get(50), "Battery_Calibration": hr.get(29),
    }
    timeslots = {
        "Charge_start_time_slot_1": _hhmm_str(hr.get(94)), "Charge_end_time_slot_1": _hhmm_str(hr.get(95)),
        "Charge_start_time_slot_2": _hhmm_str(hr.get(31)), "Charge_end_time_slot_2": _hhmm_str(hr.get(32)),
        "Discharge_start_time_slot_1": _hhmm_str(hr.get(56)), "Discharge_end_time_slot_1": _hhmm_str(hr.get(57)),
        "Discharge_start_time_slot_2": _hhmm_str(hr.get(44)), "Discharge_end_time_slot_2": _hhmm_str(hr.get(45)),
    }
    serial = plant.serial or "unknown"
    details = _drop_none({
        "Invertor_Serial_Number": serial, "Invertor_Type": model.label, "Invertor_Firmware": plant.firmware(),
        "Modbus_Version": f"{hr.get(34, 0) / 100:.2f}", "Meter_Type": "EM115" if hr.get(47) == 1 else "EM418",
        "Battery_Type": "Lithium" if hr.get(54) == 1 else "Lead Acid", "Battery_Capacity_kWh": cap,
        "Invertor_Max_Inv_Rate": model.max_inverter_w, "Invertor_Max_Bat_Rate": model.max_battery_w,
        "Invertor_Temperature": iv.get("temp_inverter_heatsink"),
    })
    stack: dict[str, Any] = {}
    for b in plant.battery_values():
        bsn = b.get("battery_serial_number") or f"battery_{b['index'] + 1}"
        entry = _drop_none({
            "Battery_Serial_Number": bsn, "Battery_SOC": b.get("soc"),
            "Battery_Capacity": b.get("cap_calibrated"), "Battery_Design_Capacity": b.get("cap_design"),
            "Battery_Remaining_Capacity": b.get("cap_remaining"),
            "Battery_Firmware_Version": b.get("bms_firmware_version"), "Battery_Cells": b.get("num_cells"),
            "Battery_Cycles": b.get("num_cycles"), "Battery_USB_present": bool(b.get("usb_inserted")),
            "Battery_Temperature": b.get("t_max"), "Battery_Voltage": b.get("v_cells_sum"),
        })
        for i in range(1, 17):
            v = b.get(f"v_cell_{i:02d}")
            if v:
                entry[f"Battery_Cell_{i}_Voltage"] = v
        stack[bsn] = entry
    now = now or datetime.now(UTC)
    out: dict[str, Any] = {
        "Power": {"Power": power, "Flows": flows},
        "Energy": {"Today": _underscore({_energy_key(k, "Today"): v for k, v in e["today"].items()}, "_kWh"),
                   "Total": _underscore({_energy_key(k, "Total"): v for k, v in e["total"].items()}, "_kWh")},
        "Control": control,
        "Timeslots": timeslots,
        serial: details,
        "Battery_Details": {"Battery_Stack_1": stack} if stack else {},
        "Stats": {"Last_Updated_Time": now.isoformat(), "status": "online"},
    }
    if raw:
        out["raw"] = {"invertor": {**hv, **iv}, "batteries": {b.get("battery_serial_number", str(b["index"])): b
                                                               for b in plant.battery_values()}}
    return out


def flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested dict -> ``{"a/b/leaf": value}`` (the MQTT topic layout)."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        path = f"{prefix}/{k}" if prefix else str(k)
        if isinstance(v, dict):
            out.update(flatten(v, path))
        else:
            out[path] = v
    return out
