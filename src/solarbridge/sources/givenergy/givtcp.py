"""GivTCP's JSON structures, computed from a :class:`~.model.Plant` register cache, for every family.

``layout="v1"`` gives the key names of GivTCP v1/v2 (``"Energy/Total"``, ``"Power/Flows"``,
``"Invertor Details"`` ... with spaces in leaf names); ``layout="v3"`` the nested
underscore names of GivTCP v3. 32-bit totals are ``(hi << 16 | lo) / 10`` kWh, not the
string-concatenation of the v1 code.

Families (:func:`family`): ``single`` (hybrid, AC, AIO, Hybrid HV Gen3: IR 0-59/180-183, HR 0-359),
``3ph`` (three-phase hybrid/AC, AIO commercial/hybrid: IR 1000-1413, HR 1000-1124), ``ems``
(IR 2040-2094, HR 2040-2075) and ``gateway`` (IR 1600-1859). The power, energy and control
figures of each come from its own registers (named in :mod:`.registers` and :mod:`.tables`);
the sections and key names are the same for all, plus ``Power/Phases`` (three-phase), ``Meters``,
``Battery Details`` (LV packs, HV stacks and their modules), ``EMS`` and ``Gateway`` where present.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from ...metricmap import quantize
from .controls import mode_name, mode_number
from .model import Plant
from .registers import SINGLE_PHASE_CONTROL, SINGLE_PHASE_LIVE, Field, hhmm, registers_of
from .tables import (
    BATTERY_TYPES,
    CALIBRATION_STAGES,
    EMS_HOLDING_TABLE,
    EMS_INPUT_TABLE,
    GATEWAY_INPUT_TABLE,
    THREE_PHASE_HOLDING_TABLE,
    THREE_PHASE_INPUT_TABLE,
)

LAYOUTS = ("v1", "v3")
#: the live data a family's power/energy output needs complete (the gateway's: its IR 1600-1657 summary)
LIVE_TABLES: dict[str, tuple[Field, ...]] = {
    "3ph": THREE_PHASE_INPUT_TABLE, "ems": EMS_INPUT_TABLE,
    "gateway": tuple(f for f in GATEWAY_INPUT_TABLE if f.register < 1660),
}
#: nominal LiFePO4 cell voltage, for an HV stack's nominal capacity (cells x 3.2 V x Ah)
CELL_NOMINAL_V = 3.2


def _enable(v: Any) -> str:
    return "enable" if v else "disable"


def _hhmm_int(t: tuple[int, int] | None) -> int:
    """v1 slots are HHMM integers; an impossible time reads as 0 (no slot)."""
    return t[0] * 100 + t[1] if t else 0


def _hhmm_str(t: tuple[int, int] | None, seconds: bool = True) -> str:
    t = t or (0, 0)
    return f"{t[0]:02d}:{t[1]:02d}" + (":00" if seconds else "")


def family(plant: Plant) -> str:
    key = plant.model.key
    if key in ("ems", "gateway"):
        return key
    return "3ph" if plant.three_phase else "single"


def _sum(*vals: Any) -> Any:
    return None if any(v is None for v in vals) else round(sum(vals), 3)


# --------------------------------------------------------------------------- derived values


def _flows(pv: float, load: float, imp: float, exp: float, charge: float, discharge: float) -> dict[str, float]:
    s2h = min(pv, load)
    s2b = max(pv - s2h - exp, 0)
    s2g = max(pv - s2h - s2b, 0)
    b2h = max(discharge - exp, 0)
    g2b = max(charge - max(pv - load, 0), 0) if imp > 0 else 0
    g2h = max(imp - charge, 0) if imp > 0 else 0
    b2g = max(discharge - b2h, 0) if exp > 0 else 0
    return {k: round(v, 1) for k, v in (("Solar to House", s2h), ("Solar to Battery", s2b), ("Solar to Grid", s2g),
                                       ("Battery to House", b2h), ("Grid to Battery", g2b), ("Grid to House", g2h),
                                       ("Battery to Grid", b2g))}


def _power_values(plant: Plant) -> dict[str, Any]:
    """The power figures of the plant, by family (None where a validity gate drops them).

    ``grid`` is GivTCP's sign (+ export), ``battery`` + discharge; ``soc`` is the inverter's (three-phase:
    IR1132), the EMS's managed inverters' mean, or the gateway's AIOs' mean."""
    fam = family(plant)
    v = plant.values()
    if fam == "3ph":
        pv = _sum(v.get("p_pv1"), v.get("p_pv2")) or 0
        grid_out = quantize((v.get("p_meter_export") or 0) - (v.get("p_meter_import") or 0))
        batt = v.get("p_battery", 0)
        inv = v.get("p_inverter_out", 0)
        load = v.get("p_load_all", 0)
        eps = _sum(v.get("p_eps_ac1"), v.get("p_eps_ac2"), v.get("p_eps_ac3")) or 0
        soc = v.get("battery_soc")
        inv_limit = 100000
    elif fam == "gateway":
        g = plant.gateway_values()
        pv, load, grid_out = g.get("p_pv", 0), g.get("p_load", 0), g.get("p_ac1", 0)
        batt = -g.get("p_aio_total_charge", 0)  # + charging on the wire
        inv = batt + pv if g else 0
        eps = 0
        socs = [g[f"aio{n}_soc"] for n in range(1, g.get("parallel_aio_num", 0) + 1) if g.get(f"aio{n}_soc")]
        soc = round(sum(socs) / len(socs)) if socs else None
        inv_limit = 100000
    elif fam == "ems":
        e = plant.ems_values()
        pv = e.get("total_generation_load_power", 0)
        grid_out = -e.get("grid_meter_power", 0)  # + import on the wire
        batt = e.get("total_battery_power", 0)
        load = e.get("calc_load_power", 0)
        inv = sum(e.get(f"inverter_{n}_power", 0) for n in range(1, 5))
        eps = 0
        socs = [e[f"inverter_{n}_soc"] for n in range(1, 5) if e.get(f"inverter_{n}_serial_number")]
        soc = round(sum(socs) / len(socs)) if socs else None
        inv_limit = 100000
    else:
        pv = v.get("p_pv1", 0) + v.get("p_pv2", 0)
        grid_out = v.get("p_grid_out", 0)
        batt = v.get("p_battery", 0)
        inv = v.get("p_inverter_out", 0)
        load = v.get("p_load_demand", 0)
        eps = v.get("p_backup", 0)
        soc = v.get("battery_soc")
        inv_limit = 6000
    imp = -grid_out if grid_out < 0 else 0
    exp = grid_out if grid_out > 0 else 0
    charge = -batt if batt < 0 else 0
    discharge = batt if batt > 0 else 0
    return {
        "pv": pv if pv < 15000 or fam != "single" else None, "grid": grid_out, "import": imp, "export": exp,
        "eps": eps, "inverter": inv if -inv_limit <= inv <= inv_limit else None,
        "ac_charge": -inv if inv < 0 else 0, "load": load if load < 15500 or fam != "single" else None,
        "self_consumption": max(quantize(load - imp), 0), "battery": batt, "charge": charge, "discharge": discharge,
        "soc": soc if soc is not None and soc > 3 else None,
        "flows": _flows(pv, load, imp, exp, charge, discharge),
    }


def phase_values(plant: Plant) -> dict[str, dict[str, Any]]:
    """Per-phase figures of a three-phase inverter (L1..L3); empty on other families."""
    if family(plant) != "3ph":
        return {}
    v = plant.values()
    out: dict[str, dict[str, Any]] = {}
    for n in (1, 2, 3):
        d = {
            "Grid Voltage": v.get(f"v_ac{n}"), "Grid Current": v.get(f"i_ac{n}"),
            "Grid Power": v.get(f"p_meter_active_ac{n}"), "Invertor Power": v.get(f"p_inverter_active_ac{n}"),
            "Output Voltage": v.get(f"v_out_ac{n}"), "EPS Voltage": v.get(f"v_eps_ac{n}"),
            "EPS Current": v.get(f"i_eps_ac{n}"), "EPS Power": v.get(f"p_eps_ac{n}"),
        }
        d = _drop_none(d)
        if d:
            out[f"L{n}"] = d
    return out


def _energy_ok(v: float | None, limit: float) -> float | None:
    if v is None or v < 0 or v >= limit:
        return None
    r = round(v, 1)  # the registers count 0.1 kWh
    return int(r) if r == int(r) else r


def _energy_values(plant: Plant) -> dict[str, dict[str, float | None]]:
    fam = family(plant)
    v = plant.values()
    if fam == "3ph":
        total = {"Export": v.get("e_export_total"), "Import": v.get("e_import_total"), "PV": v.get("e_pv_total"),
                 "AC Charge": v.get("e_ac_charge_total"), "Invertor": v.get("e_inverter_out_total"),
                 "Battery Charge": v.get("e_battery_charge_total"),
                 "Battery Discharge": v.get("e_battery_discharge_total"), "Load": v.get("e_load_total"),
                 "Battery Throughput": v.get("e_battery_throughput")}
        today = {"Export": v.get("e_export_today"), "Import": v.get("e_import_today"), "PV": v.get("e_pv_today"),
                 "AC Charge": v.get("e_ac_charge_today"), "Invertor": v.get("e_inverter_out_today"),
                 "Battery Charge": v.get("e_battery_charge_today"),
                 "Battery Discharge": v.get("e_battery_discharge_today"), "Load": v.get("e_load_today"),
                 "Battery Throughput": _sum(v.get("e_battery_charge_today"), v.get("e_battery_discharge_today"))}
    elif fam == "gateway":
        # battery energy: IR 1795-1800, the sum of the per-AIO counters (IR 1705+ / 1750+) in the capture
        g = plant.gateway_values()
        total = {"Export": g.get("e_grid_export_total"), "Import": g.get("e_grid_import_total"),
                 "PV": g.get("e_pv_total"), "Load": g.get("e_load_total"),
                 "Battery Charge": g.get("e_battery_charge_total"),
                 "Battery Discharge": g.get("e_battery_discharge_total"),
                 "Battery Throughput": _sum(g.get("e_battery_charge_total"), g.get("e_battery_discharge_total"))}
        today = {"Export": g.get("e_grid_export_today"), "Import": g.get("e_grid_import_today"),
                 "PV": g.get("e_pv_today"), "Load": g.get("e_load_today"),
                 "Battery Charge": g.get("e_battery_charge_today"),
                 "Battery Discharge": g.get("e_battery_discharge_today"),
                 "Battery Throughput": _sum(g.get("e_battery_charge_today"), g.get("e_battery_discharge_today"))}
    elif fam == "ems":
        return {"total": {}, "today": {}}  # the EMS has no energy counters (its inverters do)
    else:
        hv = plant.holding_values()
        fw = hv.get("arm_firmware_version", 0)
        key = plant.model.key
        has_bat_totals = (key == "hybrid" and fw >= 449) or (key == "ac" and fw >= 533)
        total = {
            "Export": v.get("e_grid_out_total"), "Battery Throughput": v.get("e_battery_throughput"),
            "AC Charge": v.get("e_inverter_in_total"), "Import": v.get("e_grid_in_total"),
            "Invertor": v.get("e_inverter_out_total"), "PV": v.get("e_pv_total"),
        }
        today = {
            "Battery Throughput": _sum(v.get("e_battery_charge_today"), v.get("e_battery_discharge_today")),
            "PV": _sum(v.get("e_pv1_day"), v.get("e_pv2_day")),
            "Import": v.get("e_grid_in_day"), "Export": v.get("e_grid_out_day"),
            "AC Charge": v.get("e_inverter_in_day"), "Invertor": v.get("e_inverter_out_day"),
        }
        if has_bat_totals:
            total["Battery Charge"] = v.get("e_battery_charge_total_alt1")
            total["Battery Discharge"] = v.get("e_battery_discharge_total_alt1")
            today["Battery Charge"] = v.get("e_battery_charge_today_alt2")
            today["Battery Discharge"] = v.get("e_battery_discharge_today_alt2")
        for d in (total, today):
            if None not in (d["Invertor"], d["AC Charge"], d["Export"], d["Import"]):
                load = (d["Invertor"] - d["AC Charge"]) - (d["Export"] - d["Import"])  # type: ignore[operator]
                if key == "ac" and d["PV"] is not None:
                    load += d["PV"]  # type: ignore[operator]
                d["Load"] = max(load, 0.0)
    for d in (total, today):
        if d.get("PV") is not None and d.get("Export") is not None:
            d["Self Consumption"] = max(d["PV"] - d["Export"], 0.0)  # type: ignore[operator]
    return {
        "total": {k: _energy_ok(x, 100000) for k, x in total.items()},
        "today": {k: _energy_ok(x, 100 if fam == "single" else 1000) for k, x in today.items()},
    }


def _control_values(plant: Plant) -> dict[str, Any]:
    """The control state, by family: three-phase models keep target SOC (HR1111), reserve (HR1109),
    cutoff (HR1078) and battery type (HR1080) in their own bank; the eco / enable flags stay HR27/59/96/20."""
    v = plant.values()
    if family(plant) == "ems":
        e = plant.ems_values()
        return {"target": e.get("charge_target_1"), "reserve": e.get("discharge_target_1"),
                "plant_enabled": bool(e["plant_status"]) if "plant_status" in e else None,
                "export_limit": e.get("export_power_limit"), "car_charge_boost": e.get("car_charge_boost"),
                "slot_targets": {(kind, n): e.get(f"{kind}_target_{n}") for kind in ("charge", "discharge", "export")
                                 for n in (1, 2, 3)}}
    three = family(plant) == "3ph"
    reserve = v.get("battery_soc_reserve")
    return {
        "eco": v.get("battery_power_mode"), "discharge_enable": v.get("enable_discharge"),
        "charge_enable": v.get("enable_charge"), "target_enable": v.get("enable_charge_target"),
        "target": v.get("charge_target_soc"), "reserve": reserve,
        "cutoff": v.get("battery_reserve_soc") if three else v.get("battery_discharge_min_power_reserve"),
        "battery_type": v.get("battery_type"), "calibration": v.get("battery_calibration_stage"),
        "charge_limit": v.get("battery_charge_limit"), "discharge_limit": v.get("battery_discharge_limit"),
        "active_power_rate": v.get("active_rate") if three else v.get("active_power_rate"),
        "force_charge": v.get("force_charge_enable"), "force_discharge": v.get("force_discharge_enable"),
        "ac_charge": v.get("ac_charge_enable"), "export_limit": v.get("export_power_limit"),
        "eps": v.get("backup_enable") if three else v.get("enable_eps"),
    }


def _ems_target_key(kind: str, n: int, sep: str) -> str:
    """GivTCP's names of the EMS slot targets: EMS_Charge_Target_SOC_1, EMS_Discharge_Target_SOC_1,
    Export_Target_SOC_1 (v3; v1 the same with spaces)."""
    words = ["Export"] if kind == "export" else ["EMS", kind.capitalize()]
    return sep.join([*words, "Target", "SOC", str(n)])


def battery_mode(c: dict[str, Any]) -> tuple[int | str, str]:
    """(GivTCP v1 numeric Mode, v2/v3 mode name) of :func:`control_values`."""
    eco = None if c.get("eco") is None else int(c["eco"])
    dis = None if c.get("discharge_enable") is None else int(c["discharge_enable"])
    name = mode_name(eco, dis, c.get("reserve"))
    number = mode_number(eco, dis, c.get("reserve"))
    if number == "unknown":  # GivTCP v1 also wanted reserve 4 (Eco, Timed Export) / 100 (Timed Demand)
        number = {"Eco": 1, "Timed Demand": 3, "Timed Export": 4}.get(name, "unknown")
    return number, name


def slot_values(plant: Plant) -> list[tuple[str, int, tuple[int, int] | None, tuple[int, int] | None]]:
    """(kind, n, start, end) of every slot this model has (None = unset or impossible time)."""
    hr = plant.holding
    out = []
    for kind, pairs in plant.slots().items():
        for n, (a, b) in enumerate(pairs, 1):
            if a in hr and b in hr:
                out.append((kind, n, hhmm(hr[a]), hhmm(hr[b])))
    return out


def power_values(plant: Plant) -> dict[str, Any]:
    """The power figures of the plant, by family (see :func:`_power_values`); cached until the registers change."""
    return plant._cached("power", lambda: _power_values(plant))  # type: ignore[no-any-return]


def energy_values(plant: Plant) -> dict[str, dict[str, float | None]]:
    """Energy today / total by GivTCP name, by family; cached until the registers change."""
    return plant._cached("energy", lambda: _energy_values(plant))  # type: ignore[no-any-return]


def control_values(plant: Plant) -> dict[str, Any]:
    """The control state, by family (see :func:`_control_values`); cached until the registers change."""
    return plant._cached("control", lambda: _control_values(plant))  # type: ignore[no-any-return]


def _drop_none(d: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in d.items() if v is not None}


def _energy_key(name: str, period: str) -> str:
    # GivTCP says "Battery Throughput Total", but "PV Energy Total" for everything else
    return f"{name} {period}" if name == "Battery Throughput" else f"{name} Energy {period}"


def battery_capacity_kwh(plant: Plant) -> float:
    """Nominal capacity: HV stacks cells x 3.2 V x Ah per BCU; otherwise HR55 (Ah) x the family's voltage."""
    total = 0.0
    for b in plant.bcu_values():
        if b.get("total_cell_count") and b.get("battery_nominal_capacity_ah"):
            total += b["total_cell_count"] * CELL_NOMINAL_V * b["battery_nominal_capacity_ah"] / 1000
    if total:
        return round(total, 2)
    return plant.battery_capacity_kwh


# --------------------------------------------------------------------------- per-unit details


def battery_details(plant: Plant, v3: bool = False) -> dict[str, dict[str, Any]]:
    """Each battery unit: LV packs (cells), HV stacks (BCU) and HV modules (BMU, 24 cells)."""
    sep = "_" if v3 else " "

    def k(*words: str) -> str:
        return sep.join(words)

    out: dict[str, dict[str, Any]] = {}
    for b in plant.battery_values():
        name = b.get("serial_number") or f"Battery{sep}{b['index'] + 1}"
        d = _drop_none({
            k("Battery", "Serial", "Number"): name, k("Battery", "SOC"): b.get("soc"),
            k("Battery", "Capacity"): b.get("cap_calibrated"), k("Battery", "Design", "Capacity"): b.get("cap_design"),
            k("Battery", "Remaining", "Capacity"): b.get("cap_remaining"),
            k("Battery", "Firmware", "Version"): b.get("bms_firmware_version"),
            k("Battery", "Cells"): b.get("num_cells"), k("Battery", "Cycles"): b.get("num_cycles"),
            k("Battery", "USB", "present"): bool(b.get("usb_device_inserted")),
            k("Battery", "Temperature"): b.get("t_max"), k("Battery", "Voltage"): b.get("v_cells_sum"),
        })
        for i in range(1, 17):
            c = b.get(f"v_cell_{i:02d}")
            if c:
                d[k("Battery", "Cell", str(i), "Voltage")] = c
        out[name] = d
    for b in plant.bcu_values():
        name = b.get("serial_number") or f"BCU{sep}{b['index'] + 1}"
        out[name] = _drop_none({
            k("Battery", "Serial", "Number"): name, k("Battery", "Type"): "HV stack",
            k("Battery", "SOC"): b.get("battery_soc_max"), k("Battery", "SOC", "Min"): b.get("battery_soc_min"),
            k("Battery", "SOH"): b.get("battery_soh"), k("Battery", "Voltage"): b.get("battery_voltage"),
            k("Battery", "Current"): b.get("battery_current"), k("Battery", "Cycles"): b.get("number_of_cycles"),
            k("Battery", "Modules"): b.get("number_of_modules"), k("Battery", "Cells"): b.get("total_cell_count"),
            k("Battery", "Design", "Capacity"): b.get("battery_nominal_capacity_ah"),
            k("Battery", "Remaining", "Capacity"): b.get("remaining_battery_capacity_ah"),
            k("Battery", "Firmware", "Version"): b.get("pack_software_version"),
            k("Battery", "Charge", "Energy", "Total", "kWh"): b.get("charge_energy_total"),
            k("Battery", "Discharge", "Energy", "Total", "kWh"): b.get("discharge_energy_total"),
        })
    for b in plant.bmu_values():
        name = b.get("serial_number") or f"Module{sep}{b['index'] + 1}"
        if name in out:
            name = f"{name}{sep}{b['address']:02x}"
        d = _drop_none({
            k("Battery", "Serial", "Number"): name, k("Battery", "Type"): "HV module",
            k("Battery", "Voltage"): b.get("v_cells_sum"), k("Battery", "Cells"): b.get("num_cells"),
            k("Battery", "Temperature"): b.get("t_max"),
        })
        for i in range(1, 25):
            c = b.get(f"v_cell_{i:02d}")
            if c:
                d[k("Battery", "Cell", str(i), "Voltage")] = c
            t = b.get(f"t_cell_{i:02d}")
            if t and -60 <= t <= 150:
                d[k("Battery", "Cell", str(i), "Temperature")] = t
        out[name] = d
    return out


def meter_details(plant: Plant, v3: bool = False) -> dict[str, dict[str, Any]]:
    sep = "_" if v3 else " "
    out = {}
    for addr, m in plant.meter_values().items():
        d: dict[str, Any] = {}
        for n in (1, 2, 3):
            if m.get(f"v_phase_{n}"):
                d[sep.join(("Voltage", "Phase", str(n)))] = m[f"v_phase_{n}"]
                d[sep.join(("Current", "Phase", str(n)))] = m.get(f"i_phase_{n}")
                d[sep.join(("Active", "Power", "Phase", str(n)))] = m.get(f"p_active_phase_{n}")
        d.update({sep.join(("Active", "Power", "Total")): m.get("p_active_total"),
                  sep.join(("Power", "Factor")): m.get("pf_total"), "Frequency": m.get("frequency"),
                  sep.join(("Import", "Energy", "kWh")): m.get("e_import_active"),
                  sep.join(("Export", "Energy", "kWh")): m.get("e_export_active")})
        out[sep.join(("Meter", str(addr)))] = _drop_none(d)
    return out


def unit_details(plant: Plant, v3: bool = False) -> dict[str, dict[str, Any]]:
    """EMS managed inverters or gateway AIOs, by slot."""
    sep = "_" if v3 else " "
    out: dict[str, dict[str, Any]] = {}
    e = plant.ems_values()
    for n in range(1, 5):
        if e.get(f"inverter_{n}_serial_number"):
            out[sep.join(("Inverter", str(n)))] = _drop_none({
                sep.join(("Serial", "Number")): e[f"inverter_{n}_serial_number"],
                "Power": e.get(f"inverter_{n}_power"), "SOC": e.get(f"inverter_{n}_soc"),
                "Temperature": e.get(f"inverter_{n}_temp")})
    g = plant.gateway_values()
    for n in range(1, g.get("parallel_aio_num", 0) + 1):
        out[sep.join(("AIO", str(n)))] = _drop_none({
            sep.join(("Serial", "Number")): g.get(f"aio{n}_serial_number") or None, "SOC": g.get(f"aio{n}_soc"),
            sep.join(("Battery", "Power")): -g[f"p_aio{n}_inverter_charge"] if f"p_aio{n}_inverter_charge" in g
            else None,
            sep.join(("Charge", "Energy", "Today", "kWh")): g.get(f"e_aio{n}_charge_today"),
            sep.join(("Discharge", "Energy", "Today", "kWh")): g.get(f"e_aio{n}_discharge_today"),
            sep.join(("Charge", "Energy", "Total", "kWh")): g.get(f"e_aio{n}_charge_total"),
            sep.join(("Discharge", "Energy", "Total", "kWh")): g.get(f"e_aio{n}_discharge_total")})
    return out


# --------------------------------------------------------------------------- v1 functions


def get_timeslots(plant: Plant) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for kind, n, start, end in slot_values(plant):
        out[f"{kind.capitalize()} start time slot {n}"] = _hhmm_int(start)
        out[f"{kind.capitalize()} end time slot {n}"] = _hhmm_int(end)
    return out


def _has_live_data(plant: Plant) -> bool:
    fam = family(plant)
    ir = plant.input
    if fam in LIVE_TABLES:
        return all(r in ir for r in registers_of(LIVE_TABLES[fam]))
    return all(r in ir for r in SINGLE_PHASE_LIVE) and sum(1 for r in SINGLE_PHASE_LIVE if ir[r] == 0) < 50


def get_combined_stats(plant: Plant, raw: bool = False) -> dict[str, Any]:
    """Energy and power from the family's live registers; empty if they are incomplete or mostly zero."""
    if not _has_live_data(plant):
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
    phases = phase_values(plant)
    if phases:
        out["Power/Phases"] = phases
    if raw:
        out["raw/input"] = plant.input_values()
    return out


def _details(plant: Plant) -> dict[str, Any]:
    c = control_values(plant)
    hv = plant.holding_values()
    return {
        "Battery Type": BATTERY_TYPES.get(c.get("battery_type"), "Unknown") if c.get("battery_type") is not None
        else None,
        "Battery Capacity kWh": battery_capacity_kwh(plant),
        "Invertor Serial Number": plant.serial,
        "Battery Serial Number": hv.get("first_battery_serial_number", ""),
        "Modbus Version": f"{hv.get('modbus_version', 0):.2f}",
        "Meter Type": "EM115" if hv.get("meter_type") == 1 else "EM418",
        "Invertor Type": plant.model.label,
        "Invertor Firmware": plant.firmware(),
    }


def get_modes_and_times(plant: Plant, raw: bool = False) -> dict[str, Any]:
    """Control state, timeslots and inverter details (HR 0-119; three-phase also HR 1000-1124, EMS HR 2040+)."""
    hr = plant.holding
    fam = family(plant)
    if fam == "ems":
        if not all(r in hr for r in registers_of(EMS_HOLDING_TABLE)):
            return {}
    elif not all(r in hr for r in SINGLE_PHASE_CONTROL) or (
            fam == "3ph" and not all(r in hr for r in registers_of(THREE_PHASE_HOLDING_TABLE))):
        return {}
    c = control_values(plant)
    if fam == "ems":
        control: dict[str, Any] = {"Plant Enabled": _enable(c["plant_enabled"]), "Target SOC": c["target"],
                                   "Battery Power Reserve": c["reserve"], "Export Power Limit": c["export_limit"],
                                   "Car Charge Boost": c["car_charge_boost"],
                                   **{_ems_target_key(kind, n, " "): t for (kind, n), t in c["slot_targets"].items()}}
    else:
        number, name = battery_mode(c)
        control = {
            "Mode": number, "Battery Mode": name,
            "Battery Power Reserve": c["reserve"] if fam == "3ph" else max(c["reserve"] or 4, 4),
            "Battery Power Cutoff": c["cutoff"] if fam == "3ph" else max(c["cutoff"] or 4, 4),
            "Target SOC": c["target"],
            "Enable Charge Target": _enable(c["target_enable"]),
            "Charge Schedule State": "Active" if c["charge_enable"] else "Paused",
            "Discharge Schedule State": "Active" if c["discharge_enable"] else "Paused",
            "Eco Mode": c["eco"],
            "Battery Calibration": CALIBRATION_STAGES.get(c["calibration"], c["calibration"]),
        }
        if fam == "3ph":
            control.update({"Force Charge": _enable(c["force_charge"]), "Force Discharge": _enable(c["force_discharge"]),
                            "AC Charge": _enable(c["ac_charge"]), "Export Power Limit": c["export_limit"],
                            "EPS": _enable(c["eps"])})
        elif c["eps"] is not None:
            control["EPS"] = _enable(c["eps"])
    out: dict[str, Any] = {
        "Control": _drop_none(control),
        "Timeslots": get_timeslots(plant),
        "Invertor Details": _drop_none(_details(plant)),
    }
    if raw:
        out["raw/holding"] = plant.holding_values()
    return out


def run_all(plant: Plant, raw: bool = False, layout: str = "v1") -> dict[str, Any]:
    if layout == "v3":
        return run_all_v3(plant, raw=raw)
    out = get_combined_stats(plant, raw=raw)
    out.update(get_modes_and_times(plant, raw=raw))
    for key, section in (("Battery Details", battery_details(plant)), ("Meters", meter_details(plant)),
                         ("EMS" if family(plant) == "ems" else "Gateway", unit_details(plant))):
        if section:
            out[key] = section
    return out


# --------------------------------------------------------------------------- v3 layout


def _underscore(d: dict[str, Any], suffix: str = "") -> dict[str, Any]:
    return {k.replace(" ", "_") + suffix: v for k, v in d.items() if v is not None}


def run_all_v3(plant: Plant, raw: bool = False, now: datetime | None = None) -> dict[str, Any]:
    v = plant.values()
    p = power_values(plant)
    e = energy_values(plant)
    model = plant.model
    fam = family(plant)
    cap = battery_capacity_kwh(plant)
    three = fam == "3ph"
    power = _drop_none({
        "PV_Power": p["pv"], "PV_Power_String_1": v.get("p_pv1"), "PV_Power_String_2": v.get("p_pv2"),
        "PV_Voltage_String_1": v.get("v_pv1"), "PV_Voltage_String_2": v.get("v_pv2"),
        "PV_Current_String_1": v.get("i_pv1"), "PV_Current_String_2": v.get("i_pv2"),
        "Grid_Power": p["grid"], "Import_Power": p["import"], "Export_Power": p["export"], "EPS_Power": p["eps"],
        "Invertor_Power": p["inverter"], "AC_Charge_Power": p["ac_charge"], "Load_Power": p["load"],
        "Self_Consumption_Power": p["self_consumption"], "Battery_Power": p["battery"],
        "Battery_Voltage": v.get("v_battery_bms") if three else v.get("v_battery"),
        "Battery_Current": v.get("i_battery"),
        "Charge_Power": p["charge"], "Discharge_Power": p["discharge"], "SOC": p["soc"],
        "SOC_kWh": round((p["soc"] or 0) * cap / 100, 2), "Grid_Voltage": v.get("v_ac1"),
        "Grid_Current": v.get("i_ac1"), "Grid_Frequency": v.get("f_ac1"),
        "Inverter_Output_Frequency": v.get("f_nominal_eps") if three else v.get("f_eps_backup"),
    }) if fam in ("single", "3ph") else _drop_none({
        "PV_Power": p["pv"], "Grid_Power": p["grid"], "Import_Power": p["import"], "Export_Power": p["export"],
        "Invertor_Power": p["inverter"], "Load_Power": p["load"], "Self_Consumption_Power": p["self_consumption"],
        "Battery_Power": p["battery"], "Charge_Power": p["charge"], "Discharge_Power": p["discharge"],
        "SOC": p["soc"]})
    flows = {k.replace(" ", "_"): x for k, x in p["flows"].items()}
    c = control_values(plant)
    if fam == "ems":
        control: dict[str, Any] = _drop_none({"Plant_Enabled": _enable(c["plant_enabled"]), "Target_SOC": c["target"],
                                              "Battery_Power_Reserve": c["reserve"],
                                              "Export_Power_Limit": c["export_limit"],
                                              "Car_Charge_Boost": c["car_charge_boost"],
                                              **{_ems_target_key(kind, n, "_"): t
                                                 for (kind, n), t in c["slot_targets"].items()}})
    else:
        control = _drop_none({
            "Mode": battery_mode(c)[1], "Eco_Mode": _enable(c["eco"]),
            "Target_SOC": c["target"], "Enable_Charge_Target": _enable(c["target_enable"]),
            "Enable_Charge_Schedule": _enable(c["charge_enable"]),
            "Enable_Discharge_Schedule": _enable(c["discharge_enable"]),
            "Battery_Power_Reserve": c["reserve"], "Battery_Power_Cutoff": c["cutoff"],
            "Battery_Charge_Rate": int(min((c["charge_limit"] or 0) / 100 * cap * 1000, model.max_battery_w))
            if not three else None,
            "Battery_Discharge_Rate": int(min((c["discharge_limit"] or 0) / 100 * cap * 1000, model.max_battery_w))
            if not three else None,
            "Active_Power_Rate": c["active_power_rate"], "Battery_Calibration": c["calibration"],
            "Force_Charge": _enable(c["force_charge"]) if three else None,
            "Force_Discharge": _enable(c["force_discharge"]) if three else None,
            "EPS": _enable(c["eps"]) if c["eps"] is not None else None,
        })
    timeslots = {}
    for kind, n, start, end in slot_values(plant):
        timeslots[f"{kind.capitalize()}_start_time_slot_{n}"] = _hhmm_str(start)
        timeslots[f"{kind.capitalize()}_end_time_slot_{n}"] = _hhmm_str(end)
    serial = plant.serial or "unknown"
    details = _drop_none({
        "Invertor_Serial_Number": serial, "Invertor_Type": model.label, "Invertor_Firmware": plant.firmware(),
        "Modbus_Version": f"{v.get('modbus_version', 0):.2f}",
        "Meter_Type": "EM115" if v.get("meter_type") == 1 else "EM418",
        "Battery_Type": BATTERY_TYPES.get(c.get("battery_type"), "Unknown") if c.get("battery_type") is not None
        else None,
        "Battery_Capacity_kWh": cap,
        "Invertor_Max_Inv_Rate": model.max_inverter_w, "Invertor_Max_Bat_Rate": model.max_battery_w,
        "Invertor_Temperature": v.get("t_inverter") if three else v.get("t_inverter_heatsink"),
    })
    now = now or datetime.now(UTC)
    out: dict[str, Any] = {
        "Power": {"Power": power, "Flows": flows},
        "Energy": {"Today": _underscore({_energy_key(k, "Today"): x for k, x in e["today"].items()}, "_kWh"),
                   "Total": _underscore({_energy_key(k, "Total"): x for k, x in e["total"].items()}, "_kWh")},
        "Control": control,
        "Timeslots": timeslots,
        serial: details,
        "Battery_Details": {"Battery_Stack_1": battery_details(plant, v3=True)} if battery_details(plant) else {},
        "Stats": {"Last_Updated_Time": now.isoformat(), "status": "online"},
    }
    phases = phase_values(plant)
    if phases:
        out["Power"]["Phases"] = {k: _underscore(d) for k, d in phases.items()}
    meters = meter_details(plant, v3=True)
    if meters:
        out["Meters"] = meters
    units = unit_details(plant, v3=True)
    if units:
        out["EMS" if fam == "ems" else "Gateway"] = units
    if raw:
        out["raw"] = {"invertor": v, "batteries": {b.get("serial_number") or str(b["index"]): b
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
