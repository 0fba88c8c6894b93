"""Canonical :class:`~solarbridge.model.Reading` from a GivEnergy register cache.

The device's fields (named in :mod:`.registers` / :mod:`.tables`, plus the family-aware power, energy
and control figures of :mod:`.givtcp`) are gathered into one flat record per unit, and declarative
:class:`~solarbridge.metricmap.MetricDesc` maps turn them into canonical metrics: sign (GivEnergy's
grid is + export, ours + import), kWh -> Wh, and each value at the device's resolution.
Per-phase metrics end in ``_l1``.. ``_l3``; per-cell ones are ``battery_<n>_cell_<i>_voltage_v`` (LV
packs) and ``battery_module_<m>_cell_<i>_voltage_v`` / ``_temperature_c`` (HV modules).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from ...metricmap import MetricDesc, apply
from ...model import DeviceInfo, MetricValue, Reading, utcnow
from .controls import control_metrics, control_specs
from .givtcp import (
    battery_capacity_kwh,
    battery_mode,
    control_values,
    energy_values,
    family,
    power_values,
    run_all,
    slot_values,
)
from .model import Plant
from .tables import BMU_CELLS

DEVICE_TYPE = "inverter"
KWH = 1000  # kWh -> Wh
DECI_KWH_WH = 100  # a 0.1 kWh register step, in Wh


def _wh(metric: str, key: str) -> MetricDesc:
    return MetricDesc(metric, key, scale=KWH, resolution=DECI_KWH_WH)


#: plant-level metrics of every family, from the record :func:`record` builds
PLANT_MAP: tuple[MetricDesc, ...] = (
    MetricDesc("pv_power_w", "pv"),
    MetricDesc("grid_power_w", "grid", sign=-1),
    MetricDesc("battery_power_w", "battery"),
    MetricDesc("load_power_w", "load"),
    MetricDesc("inverter_power_w", "inverter"),
    MetricDesc("eps_power_w", "eps"),
    MetricDesc("battery_soc_pct", "soc_canonical", kind="int"),
    _wh("pv_energy_today_wh", "today_PV"), _wh("pv_energy_total_wh", "total_PV"),
    _wh("grid_import_energy_today_wh", "today_Import"), _wh("grid_export_energy_today_wh", "today_Export"),
    _wh("grid_import_energy_total_wh", "total_Import"), _wh("grid_export_energy_total_wh", "total_Export"),
    _wh("battery_charge_energy_today_wh", "today_Battery Charge"),
    _wh("battery_discharge_energy_today_wh", "today_Battery Discharge"),
    _wh("battery_charge_energy_total_wh", "total_Battery Charge"),
    _wh("battery_discharge_energy_total_wh", "total_Battery Discharge"),
    _wh("battery_throughput_energy_total_wh", "total_Battery Throughput"),
    _wh("ac_charge_energy_total_wh", "total_AC Charge"), _wh("inverter_energy_total_wh", "total_Invertor"),
    _wh("load_energy_total_wh", "total_Load"), _wh("load_energy_today_wh", "today_Load"),
    MetricDesc("battery_capacity_wh", "capacity_kwh", scale=KWH, resolution=10),
    # control state (each control's state_metric)
    MetricDesc("charge_target_pct", "target", kind="int"),
    MetricDesc("battery_reserve_pct", "reserve", kind="int"),
    MetricDesc("battery_cutoff_pct", "cutoff", kind="int"),
    MetricDesc("battery_mode", "mode", kind="str"),
    MetricDesc("charge_target_enabled", "target_enable", kind="bool"),
    MetricDesc("charge_schedule_enabled", "charge_enable", kind="bool"),
    MetricDesc("discharge_schedule_enabled", "discharge_enable", kind="bool"),
    MetricDesc("battery_calibration_stage", "calibration", kind="int"),
    MetricDesc("battery_modules", "modules", kind="int"),
)

#: single-phase inverter fields (IR 0-59)
SINGLE_PHASE_MAP: tuple[MetricDesc, ...] = (
    MetricDesc("grid_voltage_v", "v_ac1"), MetricDesc("grid_frequency_hz", "f_ac1"),
    MetricDesc("grid_available", "grid_up", kind="bool"),
    MetricDesc("battery_voltage_v", "v_battery"), MetricDesc("battery_current_a", "i_battery"),
    MetricDesc("battery_temperature_c", "t_battery"), MetricDesc("inverter_temperature_c", "t_inverter_heatsink"),
    MetricDesc("status_code", "status", kind="int"),
    *(MetricDesc(f"pv{i}_{q}", f"{r}_pv{i}") for i in (1, 2) for q, r in (("power_w", "p"), ("voltage_v", "v"),
                                                                          ("current_a", "i"))),
)

#: three-phase inverter fields (IR 1000-1413): per phase L1..L3
THREE_PHASE_MAP: tuple[MetricDesc, ...] = (
    MetricDesc("grid_frequency_hz", "f_ac1"), MetricDesc("grid_available", "grid_up", kind="bool"),
    MetricDesc("battery_voltage_v", "v_battery_bms"), MetricDesc("battery_current_a", "i_battery"),
    MetricDesc("inverter_temperature_c", "t_inverter"), MetricDesc("status_code", "status", kind="int"),
    *(MetricDesc(f"pv{i}_{q}", f"{r}_pv{i}") for i in (1, 2) for q, r in (("power_w", "p"), ("voltage_v", "v"),
                                                                          ("current_a", "i"))),
    *(row for n in (1, 2, 3) for row in (
        MetricDesc(f"grid_voltage_v_l{n}", f"v_ac{n}"), MetricDesc(f"grid_current_a_l{n}", f"i_ac{n}"),
        # meter active power per phase is + export on the wire (the phases sum to p_meter_export)
        MetricDesc(f"grid_power_w_l{n}", f"p_meter_active_ac{n}", sign=-1),
        MetricDesc(f"inverter_power_w_l{n}", f"p_inverter_active_ac{n}"),
        MetricDesc(f"inverter_voltage_v_l{n}", f"v_out_ac{n}"),
        MetricDesc(f"eps_voltage_v_l{n}", f"v_eps_ac{n}"), MetricDesc(f"eps_power_w_l{n}", f"p_eps_ac{n}"))),
)

#: LV pack n (BMS IR 60-119 at 0x32+n)
LV_PACK_MAP: tuple[MetricDesc, ...] = (
    MetricDesc("soc_pct", "soc", kind="int"), MetricDesc("voltage_v", "v_cells_sum"),
    MetricDesc("current_a", "i_battery"), MetricDesc("temperature_c", "t_max"),
    MetricDesc("cycles", "num_cycles", kind="int"), MetricDesc("remaining_capacity_ah", "cap_remaining"),
    *(MetricDesc(f"cell_{i}_voltage_v", f"v_cell_{i:02d}") for i in range(1, 17)),
)

#: HV stack n (BCU IR 60-142 at 0x70+n); metric names get ``battery_stack_<n>_`` in front
BCU_MAP: tuple[MetricDesc, ...] = (
    MetricDesc("soc_pct", "battery_soc_max", kind="int"), MetricDesc("soh_pct", "battery_soh", kind="int"),
    MetricDesc("voltage_v", "battery_voltage"), MetricDesc("current_a", "battery_current", sign=-1),
    MetricDesc("cycles", "number_of_cycles"), MetricDesc("modules", "number_of_modules", kind="int"),
    MetricDesc("remaining_capacity_ah", "remaining_battery_capacity_ah"),
    MetricDesc("design_capacity_ah", "battery_nominal_capacity_ah"),
    MetricDesc("charge_energy_total_wh", "charge_energy_total", scale=KWH, resolution=DECI_KWH_WH),
    MetricDesc("discharge_energy_total_wh", "discharge_energy_total", scale=KWH, resolution=DECI_KWH_WH),
)

#: HV module m (BMU IR 60-118 at 0x50+m): 24 cells; metric names get ``battery_module_<m>_`` in front
BMU_MAP: tuple[MetricDesc, ...] = (
    MetricDesc("voltage_v", "v_cells_sum"), MetricDesc("cell_min_voltage_v", "v_cell_min"),
    MetricDesc("cell_max_voltage_v", "v_cell_max"), MetricDesc("temperature_c", "t_max"),
    *(MetricDesc(f"cell_{i}_voltage_v", f"v_cell_{i:02d}") for i in range(1, BMU_CELLS + 1)),
    *(MetricDesc(f"cell_{i}_temperature_c", f"t_cell_{i:02d}") for i in range(1, BMU_CELLS + 1)),
)

#: external meter at address a (IR 60-88); metric names get ``meter_<a>_`` in front. Meter power is
#: + import (the EMS's grid meter reads + while importing); a single-phase meter's is its phase-1 power
METER_MAP: tuple[MetricDesc, ...] = (
    MetricDesc("power_w", "p_active"), MetricDesc("frequency_hz", "frequency"),
    MetricDesc("import_energy_total_wh", "e_import_active", scale=KWH, resolution=DECI_KWH_WH),
    MetricDesc("export_energy_total_wh", "e_export_active", scale=KWH, resolution=DECI_KWH_WH),
    *(row for n in (1, 2, 3) for row in (MetricDesc(f"voltage_v_l{n}", f"v_phase_{n}"),
                                         MetricDesc(f"current_a_l{n}", f"i_phase_{n}"),
                                         MetricDesc(f"power_w_l{n}", f"p_active_phase_{n}"))),
)

#: EMS managed inverter n / gateway AIO n, from the record :func:`unit_records` builds
UNIT_MAP: tuple[MetricDesc, ...] = (
    MetricDesc("power_w", "power"), MetricDesc("soc_pct", "soc", kind="int"),
    MetricDesc("temperature_c", "temp"),
    MetricDesc("charge_energy_today_wh", "charge_today", scale=KWH, resolution=DECI_KWH_WH),
    MetricDesc("discharge_energy_today_wh", "discharge_today", scale=KWH, resolution=DECI_KWH_WH),
    MetricDesc("charge_energy_total_wh", "charge_total", scale=KWH, resolution=DECI_KWH_WH),
    MetricDesc("discharge_energy_total_wh", "discharge_total", scale=KWH, resolution=DECI_KWH_WH),
)


def device_info(plant: Plant, source: str = "", *, allow_reboot: bool = False) -> DeviceInfo:
    serial = plant.serial
    return DeviceInfo(
        device_id=serial, device_type=DEVICE_TYPE, manufacturer="GivEnergy", model=plant.model.label,
        serial=serial, sw_version=plant.firmware(), name=f"GivEnergy {serial}", source=source,
        controls=control_specs(plant, allow_reboot=allow_reboot),
    )


def record(plant: Plant) -> dict[str, Any]:
    """The inverter's fields plus the plant-level figures, flat, for :data:`PLANT_MAP` and the family map."""
    rec: dict[str, Any] = dict(plant.values())
    fam = family(plant)
    live = bool(plant.input) and (fam != "single" or plant.has_single_phase_live)
    if live:
        p = power_values(plant)
        rec.update({k: p[k] for k in ("pv", "grid", "battery", "load", "inverter", "eps")})
        soc = p["soc"] if fam != "single" else rec.get("battery_soc")
        # SOC 0 is a known glitch of single-phase units unless a calibration is running
        if soc is not None and (soc > 0 or rec.get("battery_calibration_stage")):
            rec["soc_canonical"] = soc
        for period, values in energy_values(plant).items():
            for k, v in values.items():
                rec[f"{period}_{k}"] = v
        if "v_ac1" in rec:
            rec["grid_up"] = rec["v_ac1"] >= 100 and rec.get("f_ac1", 0) >= 40
    c = control_values(plant)
    rec.update({k: c.get(k) for k in ("target", "reserve", "cutoff", "target_enable", "charge_enable",
                                      "discharge_enable", "calibration")})
    if c.get("eco") is not None and c.get("discharge_enable") is not None:
        rec["mode"] = battery_mode(c)[1]
    if "battery_capacity_ah" in rec or plant.bcu_values():
        rec["capacity_kwh"] = battery_capacity_kwh(plant)
    hv = plant.hv_modules()
    if hv["bcu"] or hv["bmu"]:
        rec["modules"] = len(hv["bmu"])
    return rec


def unit_records(plant: Plant) -> dict[str, dict[str, Any]]:
    """EMS managed inverters (``ems_inverter_<n>``) and gateway AIOs (``aio_<n>``), by metric prefix."""
    out: dict[str, dict[str, Any]] = {}
    e = plant.ems_values()
    for n in range(1, 5):
        if e.get(f"inverter_{n}_serial_number"):
            out[f"ems_inverter_{n}"] = {"power": e.get(f"inverter_{n}_power"), "soc": e.get(f"inverter_{n}_soc"),
                                        "temp": e.get(f"inverter_{n}_temp")}
    g = plant.gateway_values()
    for n in range(1, g.get("parallel_aio_num", 0) + 1):
        charge = g.get(f"p_aio{n}_inverter_charge")
        out[f"aio_{n}"] = {"power": None if charge is None else -charge, "soc": g.get(f"aio{n}_soc"),
                           "charge_today": g.get(f"e_aio{n}_charge_today"),
                           "discharge_today": g.get(f"e_aio{n}_discharge_today"),
                           "charge_total": g.get(f"e_aio{n}_charge_total"),
                           "discharge_total": g.get(f"e_aio{n}_discharge_total")}
    return out


def _prefixed(prefix: str, descs: tuple[MetricDesc, ...], rec: Mapping[str, Any],
              into: dict[str, MetricValue]) -> None:
    for k, v in apply(descs, rec).items():
        into[f"{prefix}_{k}"] = v


def metrics(plant: Plant) -> dict[str, MetricValue]:
    rec = record(plant)
    m: dict[str, MetricValue] = {}
    apply(PLANT_MAP, rec, into=m)
    fam = family(plant)
    if fam == "single" and plant.has_single_phase_live:
        apply(SINGLE_PHASE_MAP, rec, into=m)
    elif fam == "3ph":
        apply(THREE_PHASE_MAP, rec, into=m)
    for kind, n, start, end in slot_values(plant):
        for edge, t in (("start", start), ("end", end)):
            m[f"{kind}_slot_{n}_{edge}"] = f"{t[0]:02d}:{t[1]:02d}" if t else "00:00"
    # each control's state metric as the controls read it back, from the registers they write (three-phase
    # models keep target, reserve, AC charge enable and slots in HR 1000-1124): one source of truth
    m.update(control_metrics(plant))
    for b in plant.battery_values():
        _prefixed(f"battery_{b['index'] + 1}", LV_PACK_MAP, b, m)
    for b in plant.bcu_values():
        _prefixed(f"battery_stack_{b['index'] + 1}", BCU_MAP, b, m)
    for b in plant.bmu_values():
        _prefixed(f"battery_module_{b['index'] + 1}", BMU_MAP, b, m)
    for addr, mv in plant.meter_values().items():
        _prefixed(f"meter_{addr}", METER_MAP, mv, m)
    for prefix, ur in unit_records(plant).items():
        _prefixed(prefix, UNIT_MAP, ur, m)
    return m


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
        if plant.meters:
            extra["raw"]["meters"] = {str(a): {str(k): v for k, v in sorted(regs.items())}
                                      for a, regs in sorted(plant.meters.items())}
    return Reading(device_id=info.device_id, device_type=DEVICE_TYPE, timestamp=timestamp or utcnow(),
                   metrics=metrics(plant), source=source, extra=extra, info=info)
