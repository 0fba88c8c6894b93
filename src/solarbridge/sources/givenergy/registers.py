"""GivEnergy register tables (data, not code) and the one decoder that reads them.

Each row is ``(name, register, kind, scale[, n])``:

* kind ``u16``/``s16``: one register, unsigned / two's complement
* ``u32``/``s32``: two registers, high word first (n = high, n+1 = low), unsigned / signed
* ``str``: ``n`` registers (default 5), two ASCII characters each, big-endian, NULs and blanks dropped
* ``hhmm``: a time packed as hour*100+minute; impossible values decode to None (no slot)
* ``hex``: one register shown as 4 hex digits (device type code)
* ``bool``: one register, non-zero = True
* ``hi8``/``lo8``: the high / low byte of one register
* ``gwver``: four registers: two ASCII words then four bytes as decimal digits (gateway firmware "GAAA0014")

``lo``/``hi`` (optional) bound the decoded value: a non-zero raw value outside them is corruption (the
split module serial that lands on a temperature register, an impossible power factor) and the field
is left out, as if it had not been read; a zero raw value stays (an unused cell reads 0).

``scale`` multiplies the raw integer (0.1 = deci, 0.01 = centi, 0.001 = milli); the result is exact
(``2122`` deci is ``212.2``), at the register's resolution.

Sources: the register map in the fact sheet (single-phase hybrid/AC, LV batteries) and, for the rows
added for HR 120-359 (ten slots and their targets, AC-config block, EPS, pause), the register
inventory of the givenergy-modbus project (``givenergy_modbus/model/inverter.py``,
``SinglePhaseInverterRegisterGetter``, Apache-2.0; field names follow it where it names the same
register). The other families' tables (three-phase, HV BCU/BMU, EMS, gateway, meters) are in
:mod:`.tables`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class Field:
    name: str
    register: int
    kind: str = "u16"
    scale: float = 1.0
    n: int = 0  # registers of a ``str`` (default 5)
    lo: float | None = None
    hi: float | None = None

    @property
    def width(self) -> int:
        if self.kind == "str":
            return self.n or 5
        return {"u32": 2, "s32": 2, "gwver": 4}.get(self.kind, 1)

    @property
    def divisor(self) -> int:
        """10 for deci, 100 for centi, 1000 for milli, 1 for whole units."""
        return round(1 / self.scale) if self.scale < 1 else 1


def _t(*rows: tuple[Any, ...]) -> tuple[Field, ...]:
    return tuple(Field(*r) for r in rows)


DECI, CENTI, MILLI = 0.1, 0.01, 0.001

#: input registers 0-59 and 180-183 at the inverter address (single-phase layout; also AIO, Hybrid HV Gen3)
INPUT_TABLE: tuple[Field, ...] = _t(
    ("status", 0), ("v_pv1", 1, "u16", DECI), ("v_pv2", 2, "u16", DECI),
    ("v_p_bus", 3, "u16", DECI), ("v_n_bus", 4, "u16", DECI), ("v_ac1", 5, "u16", DECI),
    ("e_battery_throughput", 6, "u32", DECI),
    ("i_pv1", 8, "u16", DECI), ("i_pv2", 9, "u16", DECI), ("i_ac1", 10, "u16", DECI),
    ("e_pv_total", 11, "u32", DECI), ("f_ac1", 13, "u16", CENTI), ("charge_status", 14),
    ("v_highbrigh_bus", 15, "u16", DECI), ("power_factor_raw", 16),
    ("e_pv1_day", 17, "u16", DECI), ("p_pv1", 18), ("e_pv2_day", 19, "u16", DECI), ("p_pv2", 20),
    ("e_grid_out_total", 21, "u32", DECI), ("e_solar_diverter", 23, "u16", DECI),
    ("p_inverter_out", 24, "s16"), ("e_grid_out_day", 25, "u16", DECI), ("e_grid_in_day", 26, "u16", DECI),
    ("e_inverter_in_total", 27, "u32", DECI), ("e_discharge_year", 29, "u16", DECI),
    ("p_grid_out", 30, "s16"), ("p_backup", 31), ("e_grid_in_total", 32, "u32", DECI),
    ("e_inverter_in_day", 35, "u16", DECI), ("e_battery_charge_today", 36, "u16", DECI),
    ("e_battery_discharge_today", 37, "u16", DECI), ("countdown", 38),
    ("fault_code", 39), ("warning_code", 40), ("t_inverter_heatsink", 41, "s16", DECI),
    ("p_load_demand", 42), ("p_grid_apparent", 43), ("e_inverter_out_day", 44, "u16", DECI),
    ("e_inverter_out_total", 45, "u32", DECI), ("work_time_total_hours", 47, "u32"), ("system_mode", 49),
    ("v_battery", 50, "u16", CENTI), ("i_battery", 51, "s16", CENTI), ("p_battery", 52, "s16"),
    ("v_eps_backup", 53, "u16", DECI), ("f_eps_backup", 54, "u16", CENTI),
    ("t_charger", 55, "s16", DECI), ("t_battery", 56, "s16", DECI), ("charger_warning_code", 57),
    ("i_grid_port", 58, "u16", CENTI), ("battery_soc", 59),
    ("e_battery_discharge_total_alt1", 180, "u16", DECI), ("e_battery_charge_total_alt1", 181, "u16", DECI),
    ("e_battery_discharge_today_alt2", 182, "u16", DECI), ("e_battery_charge_today_alt2", 183, "u16", DECI),
)

#: holding registers 0-359 (identity, config, the control registers GivTCP writes; HR 240-299 are the
#: Gen3 ten-slot bank, HR 300-359 the AC-config block of AC and AIO models)
HOLDING_TABLE: tuple[Field, ...] = _t(
    ("device_type_code", 0, "hex"), ("module", 1, "u32"), ("num_mppt", 3, "hi8"), ("num_phases", 3, "lo8"),
    ("enable_ammeter", 7, "bool"),
    ("first_battery_serial_number", 8, "str"), ("serial_number", 13, "str"),
    ("first_battery_bms_firmware_version", 18), ("dsp_firmware_version", 19),
    ("enable_charge_target", 20, "bool"), ("arm_firmware_version", 21), ("usb_device_inserted", 22),
    ("grid_port_max_power_output", 26),
    ("battery_power_mode", 27), ("enable_60hz_freq_mode", 28, "bool"), ("battery_calibration_stage", 29),
    ("modbus_address", 30), ("charge_slot_2_start", 31, "hhmm"), ("charge_slot_2_end", 32, "hhmm"),
    ("modbus_version", 34, "u16", CENTI),
    ("system_time_year", 35), ("system_time_month", 36), ("system_time_day", 37),
    ("system_time_hour", 38), ("system_time_minute", 39), ("system_time_second", 40),
    ("enable_drm_rj45_port", 41, "bool"), ("enable_reversed_ct_clamp", 42, "bool"),
    ("charge_soc", 43, "hi8"), ("discharge_soc", 43, "lo8"),
    ("discharge_slot_2_start", 44, "hhmm"), ("discharge_slot_2_end", 45, "hhmm"),
    ("bms_firmware_version", 46), ("meter_type", 47), ("active_power_rate", 50), ("reactive_power_rate", 51),
    ("battery_type", 54), ("battery_capacity_ah", 55),
    ("discharge_slot_1_start", 56, "hhmm"), ("discharge_slot_1_end", 57, "hhmm"),
    ("enable_auto_judge_battery_type", 58, "bool"), ("enable_discharge", 59, "bool"),
    ("v_pv_start", 60, "u16", DECI), ("start_countdown_timer", 61), ("restart_delay_time", 62),
    ("charge_slot_1_start", 94, "hhmm"), ("charge_slot_1_end", 95, "hhmm"), ("enable_charge", 96, "bool"),
    ("battery_low_voltage_protection_limit", 97, "u16", CENTI),
    ("battery_high_voltage_protection_limit", 98, "u16", CENTI),
    ("battery_voltage_adjust", 105, "u16", CENTI), ("battery_low_force_charge_time", 108),
    ("enable_bms_read", 109, "bool"),
    ("battery_soc_reserve", 110), ("battery_charge_limit", 111), ("battery_discharge_limit", 112),
    ("enable_buzzer", 113, "bool"), ("battery_discharge_min_power_reserve", 114), ("charge_target_soc", 116),
    ("charge_soc_stop_2", 117), ("discharge_soc_stop_2", 118), ("charge_soc_stop_1", 119),
    ("discharge_soc_stop_1", 120), ("inverter_reboot", 163), ("enable_rtc", 166, "bool"),
    ("enable_battery_on_pv_or_grid", 175, "bool"), ("enable_ups_mode", 177, "bool"),
    ("enable_g100_limit_switch", 178, "bool"),
    ("enable_inverter_parallel_mode", 199, "bool"), ("inverter_errors", 223, "u32"),
    # Gen3 ten-slot bank: slot n >= 3 at 246 + 3(n-3) / 276 + 3(n-3); the target SOC of slot n at
    # 242 + 3(n-1) (charge) and 272 + 3(n-1) (discharge)
    *((f"charge_target_soc_{n}", 242 + 3 * (n - 1)) for n in range(1, 11)),
    *((f"charge_slot_{n}_{e}", 246 + 3 * (n - 3) + i, "hhmm") for n in range(3, 11)
      for i, e in enumerate(("start", "end"))),
    *((f"discharge_target_soc_{n}", 272 + 3 * (n - 1)) for n in range(1, 11)),
    *((f"discharge_slot_{n}_{e}", 276 + 3 * (n - 3) + i, "hhmm") for n in range(3, 11)
      for i, e in enumerate(("start", "end"))),
    # AC-config block (AC, AIO)
    ("enable_plant_mode", 300, "bool"), ("eps_nominal_voltage", 307, "u16", DECI),
    ("battery_nominal_power", 308), ("battery_max_charge_pct", 310), ("export_priority", 311),
    ("battery_charge_limit_ac", 313), ("battery_discharge_limit_ac", 314), ("enable_eps", 317, "bool"),
    ("battery_pause_mode", 318), ("battery_pause_slot_1_start", 319, "hhmm"),
    ("battery_pause_slot_1_end", 320, "hhmm"),
)

#: LV battery BMS registers, IR 60-119 at device address 0x32 + n
BATTERY_TABLE: tuple[Field, ...] = _t(
    *((f"v_cell_{i + 1:02d}", 60 + i, "u16", MILLI) for i in range(16)),
    ("t_cells_01_04", 76, "s16", DECI), ("t_cells_05_08", 77, "s16", DECI),
    ("t_cells_09_12", 78, "s16", DECI), ("t_cells_13_16", 79, "s16", DECI),
    ("v_cells_sum", 80, "u16", MILLI), ("t_bms_mosfet", 81, "s16", DECI), ("v_out", 82, "u32", MILLI),
    ("cap_calibrated", 84, "u32", CENTI), ("cap_design", 86, "u32", CENTI), ("cap_remaining", 88, "u32", CENTI),
    ("status_1", 90, "hi8"), ("status_2", 90, "lo8"), ("status_3", 91, "hi8"), ("status_4", 91, "lo8"),
    ("status_5", 92, "hi8"), ("status_6", 92, "lo8"), ("status_7", 93, "hi8"),
    ("warning_1", 94, "hi8"), ("warning_2", 94, "lo8"),
    ("i_battery", 95, "s16", CENTI), ("num_cycles", 96), ("num_cells", 97), ("bms_firmware_version", 98),
    ("soc", 100), ("cap_design2", 101, "u32", CENTI), ("t_max", 103, "s16", DECI), ("t_min", 104, "s16", DECI),
    ("e_battery_discharge_total", 105, "u16", DECI), ("e_battery_charge_total", 106, "u16", DECI),
    ("serial_number", 110, "str"), ("usb_device_inserted", 115),
)

#: holding registers a unit accepts writes to, every family (givenergy-modbus WRITE_SAFE_REGISTERS, Apache-2.0:
#: single-phase 20-331 and its 554-573 bank, three-phase 1005-1123, EMS 2040-2073, gateway 5010/5014)
WRITE_SAFE_REGISTERS: frozenset[int] = frozenset(
    {20, 27, 29, 31, 32, *range(35, 41), 44, 45, 50, 56, 57, 59, 94, 95, 96, 104, 110, 111, 112, 114, 116,
     163, 166, 172, 199, 299, 311, 313, 314, 317, 318, 319, 320, 331, *range(554, 574), 1005, 1078,
     1105, *range(1108, 1117), *range(1118, 1124), 2040, *range(2044, 2072), 2073, 5010, 5014})

#: registers each table covers, by 60-register block (what a poll must read)
HOLDING_BLOCKS = (0, 60, 120)
INPUT_BLOCKS = (0, 180)
BATTERY_BLOCK = 60


def hhmm(value: int) -> tuple[int, int] | None:
    """Decode an HHMM register; None when the value cannot be a time of day (uninitialised slot)."""
    h, m = divmod(value, 100)
    if h > 23 or m > 59:
        return None
    return h, m


def _s16(v: int) -> int:
    return v - 0x10000 if v & 0x8000 else v


def decode_field(f: Field, regs: Mapping[int, int]) -> Any:
    """Value of one field; KeyError if a register it needs is missing or the value is out of its bounds."""
    r = f.register
    k = f.kind
    if k == "u16":
        v: Any = regs[r]
    elif k == "s16":
        v = _s16(regs[r])
    elif k == "u32":
        v = (regs[r] << 16) | regs[r + 1]
    elif k == "s32":
        v = (regs[r] << 16) | regs[r + 1]
        if v & 0x80000000:
            v -= 0x100000000
    elif k == "hhmm":
        return hhmm(regs[r])
    elif k == "hex":
        return f"{regs[r]:04x}"
    elif k == "bool":
        return bool(regs[r])
    elif k == "hi8":
        v = regs[r] >> 8
    elif k == "lo8":
        v = regs[r] & 0xFF
    elif k == "str":
        raw = b"".join(regs[r + i].to_bytes(2, "big") for i in range(f.width))
        return raw.decode("latin-1").replace("\x00", "").strip()
    elif k == "gwver":
        words = [regs[r + i] for i in range(4)]
        prefix = b"".join(w.to_bytes(2, "big") for w in words[:2]).decode("latin-1").replace("\x00", "")
        return prefix + "".join(str(b) for w in words[2:] for b in w.to_bytes(2, "big"))
    else:  # pragma: no cover - table error
        raise ValueError(f"unknown kind {k}")
    if f.scale < 1:
        out = v / f.divisor  # int / int is correctly rounded: 2122 / 10 == 212.2
    elif f.scale != 1:
        out = v * f.scale
    else:
        out = v
    if v and ((f.lo is not None and out < f.lo) or (f.hi is not None and out > f.hi)):
        raise KeyError(f.register)  # out of range: treated as not read
    return out


def decode(table: tuple[Field, ...], regs: Mapping[int, int]) -> dict[str, Any]:
    """Decode every field whose registers are all present."""
    out: dict[str, Any] = {}
    for f in table:
        try:
            out[f.name] = decode_field(f, regs)
        except KeyError:
            continue
    return out


# --------------------------------------------------------------------------- model identification


@dataclass(frozen=True, slots=True)
class ModelInfo:
    key: str  # hybrid, ac, aio, 3ph, ems, gateway, ...
    label: str  # GivTCP's "Invertor Type" string
    max_inverter_w: int
    max_battery_w: int


_FAMILY = {
    "20": ("hybrid", "Hybrid"), "21": ("hybrid", "Polar"), "22": ("hybrid", "Hybrid Gen3"),
    "23": ("pv", "PV Inverter"), "30": ("ac", "AC"), "40": ("3ph", "Hybrid 3ph"), "41": ("aio", "AIO Commercial"),
    "50": ("ems", "EMS"), "51": ("ems", "EMS Commercial"), "60": ("ac3ph", "AC 3ph"), "70": ("gateway", "Gateway"),
    "80": ("aio", "All in One"), "81": ("hybrid", "Hybrid HV Gen3"), "82": ("aio", "All in One Hybrid"),
    "83": ("hybrid", "Hybrid Gen4"),
}
_MAX_INV_W = {"2001": 5000, "2002": 4600, "2003": 3600, "2101": 5000, "2104": 6000, "2105": 7000, "2106": 8000,
              "3001": 3000, "3002": 3600, "8001": 6000, "8002": 3600, "8003": 5000, "8102": 8000, "8103": 10000,
              # three-phase hybrid / AC rated powers: givenergy-modbus model/inverter.py _DTC_RATED_POWER
              "4001": 6000, "4002": 8000, "4003": 10000, "4004": 11000, "4005": 15000, "4006": 20000,
              "6001": 6000, "6002": 8000, "6003": 10000, "6004": 11000, "6005": 15000, "6006": 20000, "7001": 12000}
_MAX_BAT_W = {"3001": 3000, "3002": 3000, "2201": 5400, "8001": 6000, "8102": 8000, "8103": 10000,
              # the gateway: its rated 12 kW (givenergy-modbus _DTC_RATED_POWER), the reference of its AC rates
              "7001": 12000}


def identify(device_type_code: int, arm_firmware: int) -> ModelInfo:
    """Model from HR0 (as 4 hex digits) and, for the 20xx family, the ARM firmware (HR21)."""
    code = f"{device_type_code:04x}"
    key, label = _FAMILY.get(code[:2], ("unknown", f"Unknown ({code})"))
    max_bat = _MAX_BAT_W.get(code, 0)
    if code[:2] == "20":
        gen = arm_firmware // 100
        if gen == 3:
            label = "Gen3 Hybrid"
            max_bat = 3600
        elif gen in (8, 9):
            label = "Gen2 Hybrid"
            max_bat = 3600
        else:
            label = "Gen1 Hybrid"
            max_bat = 2600
    max_inv = _MAX_INV_W.get(code, 5000)
    return ModelInfo(key, label, max_inv, max_bat or 3000)


#: model keys the simulator offers and the device type code it reports for each
SIM_MODELS: dict[str, tuple[int, int]] = {  # key -> (HR0, HR21 ARM firmware)
    "hybrid": (0x2001, 449),  # Gen1 hybrid (hybrid_2_bat_a)
    "gen2": (0x2001, 920),  # Gen2 hybrid (hybrid_gen2_1_bat_a)
    "ac": (0x3001, 533),
    "aio": (0x8001, 612),  # All in One (aio_a)
    "hvgen3": (0x8102, 300),  # Hybrid HV Gen3 (hybrid_hv_gen3_a)
    "3ph": (0x4004, 1036),  # three-phase HV hybrid GIV-3HY-11 (three_phase_hv_a)
    "ems": (0x5001, 1036),  # EMS with two managed inverters (ems_2_inv_3_bat_a)
    "gateway": (0x7001, 14),  # Gateway with two AIOs (gateway_2aio_a)
}


# --------------------------------------------------------------------------- poll plan by model family

#: a block to read: (first register, register count)
Block = tuple[int, int]

#: every model: IR 0-59 and 180-239 on each poll, HR 0-59 on each poll, HR 0-179 on a full refresh
BASE_INPUT: tuple[Block, ...] = ((0, 60), (180, 60))
BASE_HOLDING_FAST: tuple[Block, ...] = ((0, 60),)
BASE_HOLDING_FULL: tuple[Block, ...] = ((0, 60), (60, 60), (120, 60))

_EXT_HR: tuple[Block, ...] = ((180, 60), (240, 60), (300, 60))
_3PH_IR: tuple[Block, ...] = ((240, 60), (1000, 60), (1060, 60), (1120, 60), (1180, 60), (1240, 60), (1300, 60),
                              (1360, 54))
#: HR 1000-1124: the last block is 5 registers, as the three-phase capture reads it (the register map ends at
#: HR 1124; whether a real unit answers HR 1125+ is not known)
_3PH_HR: tuple[Block, ...] = ((180, 60), (240, 60), (1000, 60), (1060, 60), (1120, 5))


@dataclass(frozen=True, slots=True)
class FamilyBlocks:
    """What a model family is polled with: the optional blocks are probed once after detection."""

    read_address: int  # device address for reads (0x31 for Gen1 hybrid and AC, else 0x11)
    extra_input: tuple[Block, ...]  # optional IR blocks, read on every poll when supported
    extra_holding: tuple[Block, ...]  # optional HR blocks, read on full refreshes when supported
    batteries: str  # "lv" (BMS at 0x32+n), "hv" (BCU 0x70+n, BMUs 0x50+m) or "none"
    #: probe the external meters at device addresses 1..8 after detection (the Gen1 hybrid's capture shows
    #: none of those addresses answering, so it is not probed: 8 probe timeouts for nothing)
    meters: bool = True


#: by ModelInfo.key; fact sheet section 3.7 ("additional blocks probed by model")
MODEL_BLOCKS: dict[str, FamilyBlocks] = {
    "hybrid": FamilyBlocks(0x11, ((240, 60),), _EXT_HR, "lv"),
    "ac": FamilyBlocks(0x31, (), _EXT_HR, "lv"),
    "3ph": FamilyBlocks(0x11, _3PH_IR, _3PH_HR, "hv"),
    # the fact sheet names AC 3ph without a block list: probe the 3-phase blocks, drop what is missing
    "ac3ph": FamilyBlocks(0x11, _3PH_IR, _3PH_HR, "hv"),
    "ems": FamilyBlocks(0x11, ((2040, 55),), ((2040, 36),), "none"),  # IR 2040-2094, HR 2040-2075
    "gateway": FamilyBlocks(0x11, ((1600, 60), (1660, 60), (1720, 60), (1780, 60), (1840, 60)), _EXT_HR, "none"),
    "aio": FamilyBlocks(0x11, ((240, 60),), _EXT_HR, "hv"),
    "pv": FamilyBlocks(0x11, (), _EXT_HR, "none"),
    "unknown": FamilyBlocks(0x11, (), (), "lv"),
}
#: Hybrid HV Gen3 (81xx): a single-phase hybrid with an HV battery stack whose capture
#: (hybrid_hv_gen3_a) also reads the 3-phase style IR 1000-1413 and HR 1060+ blocks
_HV_HYBRID = FamilyBlocks(0x11, _3PH_IR, _3PH_HR + ((300, 60),), "hv")


def family_blocks(device_type_code: int, arm_firmware: int) -> FamilyBlocks:
    """The poll plan's data for the model HR0 (device type code) and HR21 (ARM firmware) describe."""
    info = identify(device_type_code, arm_firmware)
    if f"{device_type_code:04x}"[:2] == "81":
        return _HV_HYBRID
    fam = MODEL_BLOCKS.get(info.key, MODEL_BLOCKS["unknown"])
    if info.label == "Gen1 Hybrid":
        return FamilyBlocks(0x31, fam.extra_input, fam.extra_holding, fam.batteries, meters=False)
    return fam


# --------------------------------------------------------------------------- registers by name

#: register number of every named holding register of the single-phase table (what controls.py writes)
HR: dict[str, int] = {f.name: f.register for f in HOLDING_TABLE}
#: register number of every named input register of the single-phase table
IR: dict[str, int] = {f.name: f.register for f in INPUT_TABLE}
#: the fields of the LV battery table, by name
BATTERY_FIELDS: dict[str, Field] = {f.name: f for f in BATTERY_TABLE}


def registers_of(table: tuple[Field, ...], below: int | None = None) -> frozenset[int]:
    """Every register the fields of ``table`` read (only those below ``below`` if given)."""
    regs = {f.register + i for f in table for i in range(f.width)}
    return frozenset(r for r in regs if below is None or r < below)


#: the single-phase live data (IR 0-59) and control/config (HR 0-119) a GivTCP output needs complete
SINGLE_PHASE_LIVE = registers_of(INPUT_TABLE, below=60)
SINGLE_PHASE_CONTROL = registers_of(HOLDING_TABLE, below=120)
