"""GivEnergy controls: GivTCP commands and payloads -> validated holding-register writes.

Everything here is pure: :func:`plan` turns a command and its payload into the list
of ``(register, value)`` writes, or raises :class:`ControlError` naming the field and
the allowed range. Nothing is sent for an invalid request because nothing is sent
here at all; the client executes a plan only after it validated completely.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from ...model import ControlError, ControlSpec
from .registers import HR, WRITE_SAFE_REGISTERS
from .tables import EMS_HOLDING_TABLE, THREE_PHASE_HOLDING_TABLE

# --------------------------------------------------------------------------- registers by name

ENABLE_CHARGE_TARGET = HR["enable_charge_target"]
BATTERY_POWER_MODE = HR["battery_power_mode"]  # 1 = eco (match demand), 0 = max power (export)
SOC_FORCE_ADJUST = HR["battery_calibration_stage"]  # written 0 stop, 1 start, 3 charge only
CLOCK = tuple(HR[f"system_time_{p}"] for p in ("year", "month", "day", "hour", "minute", "second"))
ACTIVE_POWER_RATE = HR["active_power_rate"]
ENABLE_DISCHARGE = HR["enable_discharge"]
ENABLE_CHARGE = HR["enable_charge"]
BATTERY_SOC_RESERVE = HR["battery_soc_reserve"]
BATTERY_CHARGE_LIMIT = HR["battery_charge_limit"]
BATTERY_DISCHARGE_LIMIT = HR["battery_discharge_limit"]
BATTERY_CUTOFF = HR["battery_discharge_min_power_reserve"]
CHARGE_TARGET_SOC = HR["charge_target_soc"]
REBOOT = HR["inverter_reboot"]
ENABLE_RTC = HR["enable_rtc"]
AC_CHARGE_RATE = HR["battery_charge_limit_ac"]
AC_DISCHARGE_RATE = HR["battery_discharge_limit_ac"]
ENABLE_EPS = HR["enable_eps"]
BATTERY_PAUSE_MODE = HR["battery_pause_mode"]
PAUSE_SLOT = (HR["battery_pause_slot_1_start"], HR["battery_pause_slot_1_end"])

MAX_SLOTS = 10
REBOOT_VALUE = 100


def slot_registers(kind: str, n: int) -> tuple[int, int, int]:
    """(start, end, target SOC) holding registers of charge or discharge slot ``n`` (1..10)."""
    return (HR[f"{kind}_slot_{n}_start"], HR[f"{kind}_slot_{n}_end"], HR[f"{kind}_target_soc_{n}"])


SLOT_TIME_REGISTERS = frozenset(r for k in ("charge", "discharge") for n in range(1, MAX_SLOTS + 1)
                                for r in slot_registers(k, n)[:2])
SLOT_TARGET_REGISTERS = frozenset(slot_registers(k, n)[2] for k in ("charge", "discharge")
                                  for n in range(1, MAX_SLOTS + 1))

# --------------------------------------------------------------------------- three-phase bank

#: three-phase hybrids and AC keep their controls in their own HR 1000+ bank (fact sheet 2.1 "three-phase
#: equivalents", THREE_PHASE_HOLDING_TABLE names): single-phase register -> three-phase register. Slots
#: 3-10 sit where the single-phase ten-slot bank has them. What is not here these models do not offer.
_T3 = {f.name: f.register for f in THREE_PHASE_HOLDING_TABLE}
THREE_PHASE_BANK: dict[int, int] = {
    HR["charge_target_soc"]: _T3["charge_target_soc"],
    HR["battery_soc_reserve"]: _T3["battery_soc_reserve"],
    HR["battery_discharge_min_power_reserve"]: _T3["battery_reserve_soc"],
    HR["enable_charge"]: _T3["ac_charge_enable"],
    HR["battery_charge_limit_ac"]: _T3["battery_charge_limit_ac"],
    HR["battery_discharge_limit_ac"]: _T3["battery_discharge_limit_ac"],
    **{HR[f"{k}_slot_{n}_{e}"]: _T3[f"{k}_slot_{n}_{e}"] for k in ("charge", "discharge") for n in (1, 2)
       for e in ("start", "end")},
    **{r: r for k in ("charge", "discharge") for n in range(3, MAX_SLOTS + 1) for r in slot_registers(k, n)[:2]},
    # every slot's own target SOC sits in the single-phase ten-slot bank (HR 242-269 / 272-299): GivTCP writes
    # them on three-phase too (its givenergy-modbus patches, "per-slot target SOC ... on three-phase")
    **{r: r for r in SLOT_TARGET_REGISTERS},
    # EPS (backup) switch: HR1105 ``backup_enable`` of givenergy-modbus's three-phase inventory
    HR["enable_eps"]: _T3["backup_enable"],
    # battery calibration: HR29 stays on givenergy-modbus's three-phase write list (WRITE_SAFE_THREE_PHASE is
    # the single-phase set minus what moved to HR 1000+), and its three-phase model decodes the stage there
    HR["battery_calibration_stage"]: HR["battery_calibration_stage"],
}
_NATIVE_3PH = frozenset(_T3.values())
FORCE_CHARGE_ENABLE_3PH = _T3["force_charge_enable"]
FORCE_DISCHARGE_ENABLE_3PH = _T3["force_discharge_enable"]
THREE_PHASE_KEYS = frozenset({"3ph", "ac3ph"})

# --------------------------------------------------------------------------- EMS plant controller bank

#: the EMS plant controller's controls, HR 2040-2075 (tables.EMS_HOLDING_TABLE; givenergy-modbus
#: ``RegisterMap.EMS_*`` and ``model/slot_map.py`` ``EMS_SLOTS``): three charge, discharge and export slots,
#: each (start, end, target SOC), the plant enable (HR2040), export limit (HR2071) and car charge boost
#: (HR2073, GivTCP's ``setCarChargeBoost``, 0..22000 W)
_E = {f.name: f.register for f in EMS_HOLDING_TABLE}
EMS_SLOTS = 3
EMS_KINDS = ("charge", "discharge", "export")


def ems_slot_registers(kind: str, n: int) -> tuple[int, int, int]:
    """(start, end, target SOC) of the EMS's charge, discharge or export slot ``n`` (1..3)."""
    return (_E[f"{kind}_slot_{n}_start"], _E[f"{kind}_slot_{n}_end"], _E[f"{kind}_target_{n}"])


#: single-phase register -> the EMS's: the charge/discharge slots 1-3 and their targets (what setChargeSlotN,
#: setDischargeStartN, setChargeTargetN ... write); the export slots have no single-phase equivalent
EMS_BANK: dict[int, int] = {
    single: ems for kind in ("charge", "discharge") for n in range(1, EMS_SLOTS + 1)
    for single, ems in zip((HR[f"{kind}_slot_{n}_start"], HR[f"{kind}_slot_{n}_end"],
                            HR[f"{kind}_target_soc_{n}"]), ems_slot_registers(kind, n), strict=True)}
_NATIVE_EMS = frozenset(_E.values())
EMS_PLANT_ENABLE = _E["plant_status"]
EMS_CAR_CHARGE_BOOST = _E["car_charge_boost"]
EMS_TIME_REGISTERS = frozenset(r for k in EMS_KINDS for n in range(1, EMS_SLOTS + 1)
                               for r in ems_slot_registers(k, n)[:2])
EMS_TARGET_REGISTERS = frozenset(ems_slot_registers(k, n)[2] for k in EMS_KINDS for n in range(1, EMS_SLOTS + 1))


# --------------------------------------------------------------------------- whitelist and ranges

#: registers the client (and the simulator) accept writes to: the published write-safe list
#: (registers.WRITE_SAFE_REGISTERS) plus the per-slot time and target SOC registers of the 10-slot tables
#: (GivTCP's fork writes them, with the range 4..100)
WRITE_SAFE: frozenset[int] = WRITE_SAFE_REGISTERS | SLOT_TIME_REGISTERS | SLOT_TARGET_REGISTERS

TIME_REGISTERS = SLOT_TIME_REGISTERS | set(PAUSE_SLOT) | EMS_TIME_REGISTERS | {
    _T3[f"{k}_slot_{n}_{e}"] for k in ("charge", "discharge") for n in (1, 2) for e in ("start", "end")}

#: EMS plant controller: export power limit in W (fact sheet 2.1)
EMS_EXPORT_LIMIT = _E["export_power_limit"]
CAR_CHARGE_BOOST_MAX = 22000

#: value ranges per register (inclusive); registers not listed accept any u16
WRITE_RANGES: dict[int, tuple[int, int]] = {
    ENABLE_CHARGE_TARGET: (0, 1), BATTERY_POWER_MODE: (0, 1), SOC_FORCE_ADJUST: (0, 3),
    **dict(zip(CLOCK, ((0, 99), (1, 12), (1, 31), (0, 23), (0, 59), (0, 59)), strict=True)),
    ACTIVE_POWER_RATE: (0, 100), ENABLE_DISCHARGE: (0, 1), ENABLE_CHARGE: (0, 1), BATTERY_SOC_RESERVE: (4, 100),
    BATTERY_CHARGE_LIMIT: (0, 50), BATTERY_DISCHARGE_LIMIT: (0, 50), BATTERY_CUTOFF: (4, 100),
    CHARGE_TARGET_SOC: (4, 100), REBOOT: (REBOOT_VALUE, REBOOT_VALUE), ENABLE_RTC: (0, 1),
    AC_CHARGE_RATE: (1, 100), AC_DISCHARGE_RATE: (1, 100), ENABLE_EPS: (0, 1), BATTERY_PAUSE_MODE: (0, 3),
    EMS_EXPORT_LIMIT: (0, 65000), EMS_PLANT_ENABLE: (0, 1), EMS_CAR_CHARGE_BOOST: (0, CAR_CHARGE_BOOST_MAX),
    # the EMS's slot targets: 0..100 (givenergy-modbus ``_ems_target_soc``)
    **{r: (0, 100) for r in EMS_TARGET_REGISTERS},
    **{r: (0, 2359) for r in TIME_REGISTERS},
    # an unused slot's target reads 0 and must be restorable; commands themselves take 4..100
    **{r: (0, 100) for r in SLOT_TARGET_REGISTERS},
}

# the three-phase bank: the ranges of its single-phase equivalents; its rates are % of the battery's maximum
for _single, _three in THREE_PHASE_BANK.items():
    if _single in WRITE_RANGES and _three != _single:
        WRITE_RANGES[_three] = WRITE_RANGES[_single]
WRITE_RANGES.update({_T3["battery_charge_limit_ac"]: (0, 100), _T3["battery_discharge_limit_ac"]: (0, 100),
                     FORCE_CHARGE_ENABLE_3PH: (0, 1), FORCE_DISCHARGE_ENABLE_3PH: (0, 1)})

#: register number -> name, for messages, logs and control replies (never raw numbers to a user)
#: (the three-phase bank's names carry a prefix: several of them repeat single-phase names)
REGISTER_NAMES: dict[int, str] = ({r: f"three_phase_{name}" for name, r in _T3.items()}
                                  | {r: name for name, r in HR.items()} | {r: f"ems_{name}" for name, r in _E.items()})
assert len(set(REGISTER_NAMES.values())) == len(REGISTER_NAMES), "register names must be unique"


def register_name(register: int) -> str:
    return REGISTER_NAMES.get(register, f"HR{register}")


def named(writes: list[tuple[int, int]] | dict[int, int]) -> dict[str, int]:
    """Register writes as ``{register name: value}`` (what replies and logs show)."""
    items = writes.items() if isinstance(writes, dict) else writes
    return {register_name(r): v for r, v in items}


def check_write(register: int, value: int) -> None:
    """Raise ControlError unless the write is whitelisted and in range."""
    name = register_name(register)
    if register not in WRITE_SAFE:
        raise ControlError(f"{name}: not writable (not on the write whitelist)", field_name="register", status=403)
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= 0xFFFF:
        raise ControlError(f"{name}: must be an integer 0..65535 (got {value!r})", field_name=name)
    lo, hi = WRITE_RANGES.get(register, (0, 0xFFFF))
    if not lo <= value <= hi:
        raise ControlError(f"{name}: must be {lo}..{hi} (got {value})", field_name=name)
    if register in TIME_REGISTERS and value % 100 > 59:
        raise ControlError(f"{name}: must be a time HHMM 0000..2359 (got {value})", field_name=name)


# --------------------------------------------------------------------------- value parsing


def parse_percent(field_name: str, value: Any, lo: int = 4, hi: int = 100) -> int:
    try:
        if isinstance(value, bool):
            raise ValueError
        f = float(str(value).strip().rstrip("%"))
        if f != int(f):
            raise ValueError
        n = int(f)
    except (TypeError, ValueError, OverflowError):
        raise ControlError(f"{field_name}: must be a whole percentage {lo}..{hi} (got {value!r})",
                           field_name=field_name) from None
    if not lo <= n <= hi:
        raise ControlError(f"{field_name}: must be {lo}..{hi} (got {n})", field_name=field_name)
    return n


_TIME_RE = re.compile(r"^(\d{1,2}):(\d{2})(?::\d{2})?$|^(\d{3,4})$")


def parse_time(field_name: str, value: Any) -> int:
    """'HH:MM', 'HH:MM:SS', 'HHMM' or an int HHMM -> HHMM int."""
    text = str(value).strip() if not isinstance(value, bool) else ""
    if isinstance(value, int) and not isinstance(value, bool):
        text = f"{value:04d}"
    m = _TIME_RE.match(text)
    if m:
        if m.group(3):
            h, mi = divmod(int(m.group(3)), 100)
        else:
            h, mi = int(m.group(1)), int(m.group(2))
        if h <= 23 and mi <= 59:
            return h * 100 + mi
    raise ControlError(f"{field_name}: must be a time HH:MM or HHMM between 00:00 and 23:59 (got {value!r})",
                       field_name=field_name)


_TRUE = {"1", "true", "on", "enable", "enabled", "yes", "active", "resume"}
_FALSE = {"0", "false", "off", "disable", "disabled", "no", "paused", "pause"}


def parse_bool(field_name: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ControlError(f"{field_name}: must be enable/disable (on/off, true/false, 1/0) (got {value!r})",
                       field_name=field_name)


# --------------------------------------------------------------------------- battery modes

MODE_NAMES = ("Eco", "Eco (Paused)", "Timed Demand", "Timed Export")
MODE_NUMBERS = {"1": "Dynamic", "2": "Storage (16:00-07:00)", "3": "Timed Demand", "4": "Timed Export"}


def mode_writes(mode: str, saved_reserve: int = 4) -> list[tuple[int, int]]:
    """Register writes for a mode: numeric 1-4 (GivTCP v1) or a mode name (v2/v3)."""
    reserve, discharge, eco = BATTERY_SOC_RESERVE, ENABLE_DISCHARGE, BATTERY_POWER_MODE
    d1_start, d1_end, _ = slot_registers("discharge", 1)
    table: dict[str, list[tuple[int, int]]] = {
        "1": [(reserve, 4), (discharge, 0), (eco, 1)],
        "2": [(reserve, 100), (discharge, 1), (eco, 1), (d1_start, 1600), (d1_end, 700)],
        "3": [(reserve, 100), (discharge, 1), (eco, 1)],
        "4": [(reserve, 4), (discharge, 1), (eco, 0)],
        "Eco": [(eco, 1), (discharge, 0), (reserve, saved_reserve)],
        "Eco (Paused)": [(eco, 1), (discharge, 0), (reserve, 100)],
        "Timed Demand": [(eco, 1), (discharge, 1)],
        "Timed Export": [(eco, 0), (discharge, 1)],
    }
    if mode not in table:
        raise ValueError(mode)
    return table[mode]


def parse_mode(value: Any) -> str:
    text = str(value).strip()
    if text in ("1", "2", "3", "4"):
        return text
    for name in MODE_NAMES:
        if text.lower() == name.lower():
            return name
    raise ControlError(f"mode: must be 1..4 or one of {', '.join(MODE_NAMES)} (got {value!r})", field_name="mode")


def mode_name(eco: int | None, discharge: int | None, reserve: int | None) -> str:
    """GivTCP's Mode derivation (v2/v3 names) from the eco flag, discharge enable and reserve."""
    if eco == 1 and discharge == 0:
        return "Eco (Paused)" if reserve == 100 else "Eco"
    if eco == 1 and discharge == 1:
        return "Timed Demand"
    if eco == 0 and discharge == 1:
        return "Timed Export"
    if eco == 0 and discharge == 0:
        return "Export (Paused)"
    return "Unknown"


def mode_number(eco: int | None, discharge: int | None, reserve: int | None) -> int | str:
    """GivTCP v1's numeric Mode: 1, 3, 4 or "unknown"."""
    if reserve == 4 and eco == 1 and discharge == 0:
        return 1
    if reserve == 100 and eco == 1 and discharge == 1:
        return 3
    if reserve == 4 and eco == 0 and discharge == 1:
        return 4
    return "unknown"


CALIBRATION_NAMES = {0: "Off", 1: "Start", 3: "Charge Only"}
PAUSE_MODE_NAMES = ("Disabled", "Pause Charge", "Pause Discharge", "Pause Both")


# --------------------------------------------------------------------------- what a plant offers


def slot_count(holding: dict[int, int]) -> int:
    """10 on models whose 10-slot tables were read (HR 240-299 answered), else 2 (Gen1 hybrid layout)."""
    if all(r in holding for r in slot_registers("discharge", MAX_SLOTS)):
        return MAX_SLOTS
    return 2


def has_register(holding: dict[int, int], register: int) -> bool:
    return register in holding


# --------------------------------------------------------------------------- commands


@dataclass
class PlanContext:
    """What some commands need to know about the plant (rates in W, slots, model) or the clock."""

    saved_reserve: int = 4
    battery_capacity_wh: float | None = None
    max_battery_w: float | None = None
    now: datetime | None = None
    slots: int = MAX_SLOTS  # charge/discharge slots the model has
    slot_targets: bool = False  # per-slot target SOC registers (10-slot models)
    extended: bool = True  # HR 300-359 (EPS, pause mode, AC rates) answered
    model_key: str = ""
    allow_reboot: bool = False
    three_phase: bool = False  # controls live in the HR 1000+ bank (THREE_PHASE_BANK)
    ems: bool = False  # an EMS plant controller: controls in HR 2040-2075 (EMS_BANK)
    gateway: bool = False  # a gateway: the single-phase bank, rates through HR313/314, pauses through HR318

    @classmethod
    def for_plant(cls, plant: Any, *, saved_reserve: int = 4, allow_reboot: bool = False,
                  now: datetime | None = None) -> PlanContext:
        hr = plant.holding
        three = bool(hr) and plant.model.key in THREE_PHASE_KEYS
        ems = bool(hr) and plant.model.key == "ems"
        gateway = bool(hr) and plant.model.key == "gateway"
        slots = EMS_SLOTS if ems else slot_count(hr)
        return cls(saved_reserve=saved_reserve, battery_capacity_wh=plant.battery_capacity_kwh * 1000 or None,
                   max_battery_w=plant.model.max_battery_w if hr else None, now=now, slots=slots,
                   slot_targets=ems or slots == MAX_SLOTS,
                   extended=ENABLE_EPS in hr and BATTERY_PAUSE_MODE in hr and not three and not ems,
                   model_key=plant.model.key if hr else "", allow_reboot=allow_reboot, three_phase=three, ems=ems,
                   gateway=gateway)


@dataclass
class WritePlan:
    command: str
    writes: list[tuple[int, int]]
    description: str
    #: a reserve to remember for a later "Eco" (set by setBatteryReserve)
    saved_reserve: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    #: registers whose read-back cannot match the write (the clock runs on; a reboot restarts)
    unverified: frozenset[int] = frozenset()
    #: a timed control (forceCharge ...): what to do when it runs out; None for plain writes
    timed: TimedSpec | None = None

    def success_message(self) -> str:
        return f"Setting {self.description} was a success"


@dataclass(frozen=True)
class TimedSpec:
    """A timed control: ``minutes`` from now, then the saved values of ``restore`` are written back.

    ``cancel`` means "end the running one now". The saved values are read from the inverter just
    before the control's own writes, so the revert puts back exactly what was there.
    """

    kind: str  # forceCharge, forceExport, tempPauseCharge, tempPauseDischarge, tempPauseBattery
    minutes: int
    restore: tuple[int, ...]  # registers to restore, in write order
    cancel: bool = False


def _payload(command: str, value: Any, main_key: str | None) -> dict[str, Any]:
    """Accept a dict, a JSON object string, or a bare scalar for the command's main field."""
    if isinstance(value, bytes | bytearray):
        value = value.decode("utf-8", "replace")
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("{"):
            try:
                value = json.loads(text)
            except json.JSONDecodeError as e:
                raise ControlError(f"{command}: payload is not valid JSON ({e.msg})", field_name="payload") from None
        elif text == "":
            value = {}
        elif main_key:
            value = {main_key: text}
        else:
            value = {}
    if value is None:
        return {}
    if isinstance(value, dict):
        return value
    if main_key:
        return {main_key: value}
    raise ControlError(f"{command}: payload must be a JSON object", field_name="payload")


def _required(command: str, payload: dict[str, Any], *keys: str) -> tuple[str, Any]:
    for k in keys:
        if k in payload and payload[k] not in (None, ""):
            return k, payload[k]
    raise ControlError(f"{keys[0]}: required for {command}", field_name=keys[0])


Builder = Callable[[str, dict[str, Any], PlanContext], WritePlan]


def _state_cmd(register: int, fixed: bool | None, what: str) -> Builder:
    def build(command: str, payload: dict[str, Any], ctx: PlanContext) -> WritePlan:
        if fixed is None:
            _, v = _required(command, payload, "state")
            on = parse_bool("state", v)
        else:
            on = fixed
        return WritePlan(command, [(register, int(on))], f"{what} to {'enable' if on else 'disable'}")
    return build


def _target_writes(p: int, ctx: PlanContext) -> list[tuple[int, int]]:
    """The charge target as GivTCP writes it: 100 % means "no target" (enable flag off; three-phase has none)."""
    if ctx.three_phase:
        return [(CHARGE_TARGET_SOC, p)]
    if p == 100:
        return [(ENABLE_CHARGE_TARGET, 0), (CHARGE_TARGET_SOC, 100)]
    return [(ENABLE_CHARGE_TARGET, 1), (CHARGE_TARGET_SOC, p)]


def _charge_target(command: str, payload: dict[str, Any], ctx: PlanContext) -> WritePlan:
    k, v = _required(command, payload, "chargeToPercent", "value")
    p = parse_percent(k, v)
    return WritePlan(command, [(ENABLE_CHARGE, 1), *_target_writes(p, ctx)], "Charge Target")


def _reserve(command: str, payload: dict[str, Any], ctx: PlanContext) -> WritePlan:
    k, v = _required(command, payload, "dischargeToPercent", "reservePercent", "value")
    p = parse_percent(k, v)
    return WritePlan(command, [(BATTERY_SOC_RESERVE, p)], "Battery Reserve", saved_reserve=p if p < 100 else None)


def _cutoff(command: str, payload: dict[str, Any], ctx: PlanContext) -> WritePlan:
    k, v = _required(command, payload, "dischargeToPercent", "value")
    return WritePlan(command, [(BATTERY_CUTOFF, parse_percent(k, v))], "Battery Cutoff")


def _check_slot(command: str, n: int, ctx: PlanContext) -> None:
    if n > ctx.slots:
        raise ControlError(f"{command}: this inverter has {ctx.slots} slots of each kind (slot {n} asked)",
                           field_name="slot")


def _slot(kind: str, n: int) -> Builder:
    pct_key = "chargeToPercent" if kind == "charge" else "dischargeToPercent"
    start_reg, end_reg, target_reg = slot_registers(kind, n)

    def build(command: str, payload: dict[str, Any], ctx: PlanContext) -> WritePlan:
        _check_slot(command, n, ctx)
        _, s = _required(command, payload, "start")
        _, f = _required(command, payload, "finish", "end")
        writes = [(start_reg, parse_time("start", s)), (end_reg, parse_time("finish", f))]
        if payload.get(pct_key) not in (None, ""):
            p = parse_percent(pct_key, payload[pct_key])
            if ctx.slot_targets:  # 10-slot models: each slot has its own target
                writes.append((target_reg, p))
            elif kind == "charge":  # Gen1: one charge target for every slot
                writes += _target_writes(p, ctx)
            else:
                writes.append((BATTERY_CUTOFF, p))
        return WritePlan(command, writes, f"{kind.capitalize()} Slot {n}")
    return build


def _slot_edge(kind: str, n: int, edge: str) -> Builder:
    register = HR[f"{kind}_slot_{n}_{edge}"]

    def build(command: str, payload: dict[str, Any], ctx: PlanContext) -> WritePlan:
        _check_slot(command, n, ctx)
        k, v = _required(command, payload, "time", "value", "start", "finish")
        return WritePlan(command, [(register, parse_time(k, v))], f"{kind.capitalize()} {edge.capitalize()} {n}")
    return build


def _slot_target(kind: str, n: int) -> Builder:
    register = slot_registers(kind, n)[2]

    def build(command: str, payload: dict[str, Any], ctx: PlanContext) -> WritePlan:
        _check_slot(command, n, ctx)
        if not ctx.slot_targets:
            raise ControlError(f"{command}: this inverter has no per-slot target SOC (use setChargeTarget)",
                               field_name="slot")
        k, v = _required(command, payload, "percent", "value")
        # 0 is what an unused slot holds (no target of its own); a target proper is 4..100 (the EMS: 0..100)
        p = parse_percent(k, v, 0, 100)
        if 0 < p < 4 and not ctx.ems:
            raise ControlError(f"{k}: must be 0 (no target) or 4..100 (got {p})", field_name=k)
        return WritePlan(command, [(register, p)], f"{kind.capitalize()} Slot {n} Target")
    return build


def _battery_mode(command: str, payload: dict[str, Any], ctx: PlanContext) -> WritePlan:
    _, v = _required(command, payload, "mode", "value")
    m = parse_mode(v)
    return WritePlan(command, mode_writes(m, ctx.saved_reserve), f"Battery Mode to {MODE_NUMBERS.get(m, m)}")


def _parse_watts(key: str, v: Any, hi: float = 100000) -> float:
    try:
        if isinstance(v, bool):
            raise ValueError
        watts = float(str(v).strip())
        if watts != watts or watts < 0 or watts > hi:
            raise ValueError
    except (TypeError, ValueError):
        raise ControlError(f"{key}: must be a power in W, 0..{hi:g} (got {v!r})", field_name=key) from None
    return watts


def _rate(register: int, key: str, what: str) -> Builder:
    def build(command: str, payload: dict[str, Any], ctx: PlanContext) -> WritePlan:
        k, v = _required(command, payload, key, "value")
        watts = _parse_watts(k, v)
        if not ctx.battery_capacity_wh:
            raise ControlError(f"{command}: the battery capacity is not known yet (no poll so far)",
                               field_name=k, status=503)
        if ctx.max_battery_w:
            watts = min(watts, ctx.max_battery_w)  # GivTCP caps at the inverter's battery rate
        if (ctx.three_phase or ctx.gateway) and ctx.max_battery_w:  # the AC limits: % of the battery rate
            ac = AC_CHARGE_RATE if register == BATTERY_CHARGE_LIMIT else AC_DISCHARGE_RATE
            pct = min(100, round(watts / ctx.max_battery_w * 100))
            if ctx.gateway:  # HR313/314 take 1..100 (GivTCP: "the closest to a pause is 1 %")
                pct = max(1, pct)
            return WritePlan(command, [(ac, pct)], what, extra={"watts": watts})
        # the charge/discharge limits are in % of the battery capacity per hour, 0..50
        value = min(50, round(watts / ctx.battery_capacity_wh * 100))
        return WritePlan(command, [(register, value)], what, extra={"watts": watts})
    return build


def _needs_extended(command: str, ctx: PlanContext) -> None:
    if not ctx.extended and not ctx.three_phase:
        raise ControlError(f"{command}: not supported by this inverter (it does not answer HR 300-359)",
                           field_name="command")


def _ac_rate(register: int, key: str, what: str) -> Builder:
    def build(command: str, payload: dict[str, Any], ctx: PlanContext) -> WritePlan:
        _needs_extended(command, ctx)
        k, v = _required(command, payload, key, "value")
        return WritePlan(command, [(register, parse_percent(k, v, 1, 100))], what)
    return build


def _eps(command: str, payload: dict[str, Any], ctx: PlanContext) -> WritePlan:
    if ctx.gateway:
        raise ControlError(f"{command}: not supported by this gateway (GivTCP offers no EPS switch for it)",
                           field_name="command")
    _needs_extended(command, ctx)
    _, v = _required(command, payload, "state", "value")
    on = parse_bool("state", v)
    return WritePlan(command, [(ENABLE_EPS, int(on))], f"EPS to {'enable' if on else 'disable'}")


def _pause_mode(command: str, payload: dict[str, Any], ctx: PlanContext) -> WritePlan:
    _needs_extended(command, ctx)
    _, v = _required(command, payload, "state", "mode", "value")
    text = str(v).strip()
    for i, name in enumerate(PAUSE_MODE_NAMES):
        if text.lower() == name.lower() or text == str(i):
            return WritePlan(command, [(BATTERY_PAUSE_MODE, i)], f"Battery Pause Mode to {name}")
    raise ControlError(f"state: must be one of {', '.join(PAUSE_MODE_NAMES)} or 0..3 (got {v!r})",
                       field_name="state")


def _pause_slot(command: str, payload: dict[str, Any], ctx: PlanContext) -> WritePlan:
    _needs_extended(command, ctx)
    _, s = _required(command, payload, "start")
    _, f = _required(command, payload, "finish", "end")
    return WritePlan(command, [(PAUSE_SLOT[0], parse_time("start", s)), (PAUSE_SLOT[1], parse_time("finish", f))],
                     "Pause Slot")


_CALIBRATION_WORDS = {"off": 0, "stop": 0, "0": 0, "start": 1, "on": 1, "1": 1, "discharge and charge": 1,
                      "charge only": 3, "3": 3}


def _calibration(command: str, payload: dict[str, Any], ctx: PlanContext) -> WritePlan:
    _, v = _required(command, payload, "state", "value")
    value = _CALIBRATION_WORDS.get(str(v).strip().lower())
    if value is None or isinstance(v, bool):
        raise ControlError(f"state: must be Off, Start or Charge Only (got {v!r})", field_name="state")
    return WritePlan(command, [(SOC_FORCE_ADJUST, value)], f"Battery Calibration to {CALIBRATION_NAMES[value]}")


def _export_limit(command: str, payload: dict[str, Any], ctx: PlanContext) -> WritePlan:
    k, v = _required(command, payload, "state", "exportLimit", "value")
    watts = _parse_watts(k, v, 65000)
    if ctx.model_key and ctx.model_key != "ems":
        raise ControlError(f"{command}: not supported by this inverter: the export power limit is writable only on "
                           "an EMS plant controller (single-phase models have no writable export-limit register)",
                           field_name="command")
    return WritePlan(command, [(EMS_EXPORT_LIMIT, round(watts))], "Export Limit")


def _needs_ems(command: str, ctx: PlanContext) -> None:
    if ctx.model_key and not ctx.ems:
        raise ControlError(f"{command}: not supported by this inverter (only an EMS plant controller has it)",
                           field_name="command")


def _export_slot(n: int) -> Builder:
    start_reg, end_reg, target_reg = ems_slot_registers("export", n)

    def build(command: str, payload: dict[str, Any], ctx: PlanContext) -> WritePlan:
        _needs_ems(command, ctx)
        _, s = _required(command, payload, "start")
        _, f = _required(command, payload, "finish", "end")
        writes = [(start_reg, parse_time("start", s)), (end_reg, parse_time("finish", f))]
        if payload.get("exportToPercent") not in (None, ""):
            writes.append((target_reg, parse_percent("exportToPercent", payload["exportToPercent"], 0, 100)))
        return WritePlan(command, writes, f"Export Slot {n}")
    return build


def _export_edge(n: int, edge: str) -> Builder:
    register = ems_slot_registers("export", n)[0 if edge == "start" else 1]

    def build(command: str, payload: dict[str, Any], ctx: PlanContext) -> WritePlan:
        _needs_ems(command, ctx)
        k, v = _required(command, payload, "time", "value", "start", "finish")
        return WritePlan(command, [(register, parse_time(k, v))], f"Export {edge.capitalize()} {n}")
    return build


def _export_target(n: int) -> Builder:
    register = ems_slot_registers("export", n)[2]

    def build(command: str, payload: dict[str, Any], ctx: PlanContext) -> WritePlan:
        _needs_ems(command, ctx)
        k, v = _required(command, payload, "percent", "exportToPercent", "value")
        return WritePlan(command, [(register, parse_percent(k, v, 0, 100))], f"Export Target {n}")
    return build


def _ems_plant(command: str, payload: dict[str, Any], ctx: PlanContext) -> WritePlan:
    _needs_ems(command, ctx)
    _, v = _required(command, payload, "state", "value")
    on = parse_bool("state", v)
    return WritePlan(command, [(EMS_PLANT_ENABLE, int(on))], f"EMS Plant Operation to {'enable' if on else 'disable'}")


def _car_charge_boost(command: str, payload: dict[str, Any], ctx: PlanContext) -> WritePlan:
    k, v = _required(command, payload, "boost", "value")
    watts = _parse_watts(k, v, CAR_CHARGE_BOOST_MAX)
    _needs_ems(command, ctx)
    return WritePlan(command, [(EMS_CAR_CHARGE_BOOST, round(watts))], "Car Charge Boost")


#: GivTCP's slot commands that name the slot in the payload (``{"slot": 2, "start": ..}``) -> the numbered
#: command and, for the targets, the payload key of the percentage
_SLOT_IN_PAYLOAD: dict[str, tuple[str, str | None]] = {
    "setChargeSlot": ("setChargeSlot", None), "setDischargeSlot": ("setDischargeSlot", None),
    "setExportSlot": ("setExportSlot", None),
    "setChargeSlotStart": ("setChargeStart", None), "setChargeSlotEnd": ("setChargeEnd", None),
    "setDischargeSlotStart": ("setDischargeStart", None), "setDischargeSlotEnd": ("setDischargeEnd", None),
    "setExportSlotStart": ("setExportStart", None), "setExportSlotEnd": ("setExportEnd", None),
    "setChargeTarget2": ("setChargeTarget", "chargeToPercent"),
    "setDischargeTarget": ("setDischargeTarget", "dischargeToPercent"),
    "setExportTarget": ("setExportTarget", "exportToPercent"),
}


def _slot_in_payload(name: str) -> Builder:
    numbered, pct_key = _SLOT_IN_PAYLOAD[name]

    def build(command: str, payload: dict[str, Any], ctx: PlanContext) -> WritePlan:
        if "slot" not in payload and name == "setChargeTarget2":  # also our own slot-2 target command
            if "chargeToPercent" in payload and "percent" not in payload:
                payload = {"percent": payload["chargeToPercent"]}
            return _slot_target("charge", 2)(command, payload, ctx)
        _, v = _required(command, payload, "slot")
        top = EMS_SLOTS if numbered.startswith("setExport") else MAX_SLOTS
        try:
            if isinstance(v, bool):
                raise ValueError
            n = int(str(v).strip())
        except ValueError:
            raise ControlError(f"slot: must be a slot number 1..{top} (got {v!r})", field_name="slot") from None
        if not 1 <= n <= top:
            raise ControlError(f"slot: must be 1..{top} (got {n})", field_name="slot")
        rest = {k: val for k, val in payload.items() if k != "slot"}
        if pct_key is not None:
            _, pct = _required(command, payload, pct_key)
            rest = {"percent": pct}
        if "Start" in numbered and "start" in rest:
            rest["time"] = rest["start"]
        if "End" in numbered and "finish" in rest:
            rest["time"] = rest["finish"]
        return COMMANDS[f"{numbered}{n}"][1](f"{numbered}{n}", rest, ctx)
    return build


def _reboot(command: str, payload: dict[str, Any], ctx: PlanContext) -> WritePlan:
    if not ctx.allow_reboot:
        raise ControlError(f"{command}: disabled; set allow_reboot = true in the givenergy source's config to allow it",
                           field_name="command", status=403)
    return WritePlan(command, [(REBOOT, REBOOT_VALUE)], "Inverter Reboot", unverified=frozenset({REBOOT}))


def _date_time(command: str, payload: dict[str, Any], ctx: PlanContext) -> WritePlan:
    if command == "syncDateTime":
        when = ctx.now or datetime.now()
    else:
        _, v = _required(command, payload, "dateTime", "value")
        try:
            when = datetime.strptime(str(v).strip(), "%d/%m/%Y %H:%M:%S")
        except ValueError:
            raise ControlError(f"dateTime: must be 'DD/MM/YYYY HH:MM:SS' (got {v!r})", field_name="dateTime") from None
    if not 2000 <= when.year <= 2099:
        raise ControlError(f"dateTime: year must be 2000..2099 (got {when.year})", field_name="dateTime")
    values = (when.year - 2000, when.month, when.day, when.hour, when.minute, when.second)
    # the clock runs on by itself: the write's echo is its confirmation, not a read-back
    return WritePlan(command, list(zip(CLOCK, values, strict=True)), "Date and Time", unverified=frozenset(CLOCK))


# --------------------------------------------------------------------------- timed controls

MAX_MINUTES = 24 * 60
_CANCEL_WORDS = {"cancel", "normal", "stop", "off", "0"}


def parse_minutes(command: str, value: Any) -> int | None:
    """Minutes 1..1440, or None for "Cancel" (also "Normal" and 0)."""
    text = str(value).strip()
    if not isinstance(value, bool) and text.lower() in _CANCEL_WORDS:
        return None
    try:
        if isinstance(value, bool):
            raise ValueError
        f = float(text)
        if f != int(f):
            raise ValueError
        n = int(f)
    except (TypeError, ValueError, OverflowError):
        raise ControlError(f"duration: must be whole minutes 1..{MAX_MINUTES} or Cancel (got {value!r})",
                           field_name="duration") from None
    if not 1 <= n <= MAX_MINUTES:
        raise ControlError(f"duration: must be 1..{MAX_MINUTES} minutes or Cancel (got {n})", field_name="duration")
    return n


def _hhmm_after(now: datetime, minutes: int) -> tuple[int, int]:
    """The slot now .. now + minutes as HHMM values; a full day stops one minute short (start == end is no slot)."""
    start = now.hour * 100 + now.minute
    end_min = (now.hour * 60 + now.minute + min(minutes, MAX_MINUTES - 1)) % MAX_MINUTES
    return start, (end_min // 60) * 100 + end_min % 60


def _timed(kind: str) -> Builder:
    def build(command: str, payload: dict[str, Any], ctx: PlanContext) -> WritePlan:
        _, v = _required(command, payload, "duration", "minutes", "value")
        minutes = parse_minutes(command, v)
        if minutes is None:
            return WritePlan(command, [], f"{kind} Cancel", timed=TimedSpec(kind, 0, (), cancel=True))
        now = ctx.now or datetime.now()
        writes: list[tuple[int, int]]
        ac = ctx.three_phase or ctx.gateway  # rates through the AC limits (% of the battery rate)
        charge_limit, discharge_limit = ((AC_CHARGE_RATE, AC_DISCHARGE_RATE) if ac
                                         else (BATTERY_CHARGE_LIMIT, BATTERY_DISCHARGE_LIMIT))
        full = 100 if ac else 50
        if kind == "forceCharge" and ctx.three_phase:
            start, end, _ = slot_registers("charge", 1)
            t0, t1 = _hhmm_after(now, minutes)
            writes = [(CHARGE_TARGET_SOC, 100), (start, t0), (end, t1), (ENABLE_CHARGE, 1), (charge_limit, full),
                      (FORCE_CHARGE_ENABLE_3PH, 1)]
            if ctx.slot_targets:
                writes.append((slot_registers("charge", 1)[2], 100))
            what = "Force Charge"
        elif kind == "forceExport" and ctx.three_phase:
            start, end, _ = slot_registers("discharge", 1)
            t0, t1 = _hhmm_after(now, minutes)
            writes = [(BATTERY_SOC_RESERVE, 4), (discharge_limit, full), (start, t0), (end, t1),
                      (FORCE_CHARGE_ENABLE_3PH, 0), (FORCE_DISCHARGE_ENABLE_3PH, 1)]
            if ctx.slot_targets:
                writes.append((slot_registers("discharge", 1)[2], 4))
            what = "Force Export"
        elif kind == "forceCharge":
            start, end, target = slot_registers("charge", 1)
            t0, t1 = _hhmm_after(now, minutes)
            writes = [(CHARGE_TARGET_SOC, 100), (start, t0), (end, t1), (ENABLE_CHARGE, 1), (charge_limit, full)]
            if ctx.slot_targets:
                writes.append((target, 100))
            what = "Force Charge"
        elif kind == "forceExport":
            start, end, target = slot_registers("discharge", 1)
            t0, t1 = _hhmm_after(now, minutes)
            writes = [(BATTERY_SOC_RESERVE, 4), (discharge_limit, full), (BATTERY_POWER_MODE, 0),
                      (ENABLE_DISCHARGE, 1), (start, t0), (end, t1)]
            if ctx.slot_targets:
                writes.append((target, 4))
            what = "Force Export"
        elif ctx.gateway:  # its AC rates take no 0: the pause mode (HR318) pauses it, as GivTCP does
            mode = {"tempPauseCharge": 1, "tempPauseDischarge": 2, "tempPauseBattery": 3}[kind]
            writes, what = [(BATTERY_PAUSE_MODE, mode)], PAUSE_MODE_NAMES[mode]
        elif kind == "tempPauseCharge":
            writes, what = [(charge_limit, 0)], "Pause Charge"
        elif kind == "tempPauseDischarge":
            writes, what = [(discharge_limit, 0)], "Pause Discharge"
        else:  # tempPauseBattery
            writes, what = [(charge_limit, 0), (discharge_limit, 0)], "Pause Battery"
        if kind in ("forceCharge", "forceExport") and ctx.extended:
            writes.append((BATTERY_PAUSE_MODE, 0))  # a pause would defeat the force
        restore = tuple(r for r, _ in writes)
        return WritePlan(command, writes, f"{what} for {minutes} minutes", timed=TimedSpec(kind, minutes, restore))
    return build


TIMED_KINDS = ("forceCharge", "forceExport", "tempPauseCharge", "tempPauseDischarge", "tempPauseBattery")
#: daemon control (HA number, minutes) and the metric showing the minutes left, per timed kind
TIMED_CONTROLS: dict[str, tuple[str, str, str]] = {
    "forceCharge": ("force_charge_min", "force_charge_remaining_min", "Force charge"),
    "forceExport": ("force_export_min", "force_export_remaining_min", "Force export"),
    "tempPauseCharge": ("pause_charge_min", "pause_charge_remaining_min", "Pause charge"),
    "tempPauseDischarge": ("pause_discharge_min", "pause_discharge_remaining_min", "Pause discharge"),
    "tempPauseBattery": ("pause_battery_min", "pause_battery_remaining_min", "Pause charge and discharge"),
}


def restore_plan(kind: str, saved: dict[int, int]) -> WritePlan:
    """The writes that end a timed control: the saved values, in the order they were changed.

    A saved slot time that is no time of day (uninitialised slots read e.g. 52800) is restored as 00:00,
    which the inverter shows the same way (no slot); any other unwritable saved value is left out.
    """
    writes = []
    for reg, val in saved.items():
        try:
            check_write(reg, val)
        except ControlError:
            if reg not in TIME_REGISTERS:
                continue
            val = 0
        writes.append((reg, val))
    return WritePlan(f"{kind}Revert", writes, f"{kind} revert")


# --------------------------------------------------------------------------- the command table


def _slot_commands() -> dict[str, tuple[str | None, Builder]]:
    out: dict[str, tuple[str | None, Builder]] = {}
    for kind, cap in (("charge", "Charge"), ("discharge", "Discharge")):
        for n in range(1, MAX_SLOTS + 1):
            out[f"set{cap}Slot{n}"] = (None, _slot(kind, n))
            out[f"set{cap}Start{n}"] = ("time", _slot_edge(kind, n, "start"))
            out[f"set{cap}End{n}"] = ("time", _slot_edge(kind, n, "end"))
            out[f"set{cap}Target{n}"] = ("percent", _slot_target(kind, n))
    return out


COMMANDS: dict[str, tuple[str | None, Builder]] = {
    "enableChargeTarget": ("state", lambda c, p, s: _state_cmd(ENABLE_CHARGE_TARGET, None if "state" in p else True,
                                                                 "Charge Target")(c, p, s)),
    "disableChargeTarget": (None, _state_cmd(ENABLE_CHARGE_TARGET, False, "Charge Target")),
    "enableChargeSchedule": ("state", _state_cmd(ENABLE_CHARGE, None, "Charge Schedule")),
    "enableDischargeSchedule": ("state", _state_cmd(ENABLE_DISCHARGE, None, "Discharge Schedule")),
    "enableDischarge": ("state", _state_cmd(ENABLE_DISCHARGE, None, "Discharge")),
    "pauseChargeSchedule": (None, _state_cmd(ENABLE_CHARGE, False, "Charge Schedule")),
    "resumeChargeSchedule": (None, _state_cmd(ENABLE_CHARGE, True, "Charge Schedule")),
    "pauseDischargeSchedule": (None, _state_cmd(ENABLE_DISCHARGE, False, "Discharge Schedule")),
    "resumeDischargeSchedule": (None, _state_cmd(ENABLE_DISCHARGE, True, "Discharge Schedule")),
    "setChargeTarget": ("chargeToPercent", _charge_target),
    "setBatteryReserve": ("dischargeToPercent", _reserve),
    "setBatteryCutoff": ("dischargeToPercent", _cutoff),
    **_slot_commands(),
    "setBatteryMode": ("mode", _battery_mode),
    "setChargeRate": ("chargeRate", _rate(BATTERY_CHARGE_LIMIT, "chargeRate", "Charge Rate")),
    "setDischargeRate": ("dischargeRate", _rate(BATTERY_DISCHARGE_LIMIT, "dischargeRate", "Discharge Rate")),
    "setChargeRateAC": ("chargeRate", _ac_rate(AC_CHARGE_RATE, "chargeRate", "AC Charge Rate")),
    "setDischargeRateAC": ("dischargeRate", _ac_rate(AC_DISCHARGE_RATE, "dischargeRate", "AC Discharge Rate")),
    "setExportLimit": ("state", _export_limit),
    "setEmsPlant": ("state", _ems_plant),
    "setCarChargeBoost": ("boost", _car_charge_boost),
    **{f"setExportSlot{n}": (None, _export_slot(n)) for n in range(1, EMS_SLOTS + 1)},
    **{f"setExport{e.capitalize()}{n}": ("time", _export_edge(n, e)) for n in range(1, EMS_SLOTS + 1)
       for e in ("start", "end")},
    **{f"setExportTarget{n}": ("percent", _export_target(n)) for n in range(1, EMS_SLOTS + 1)},
    **{name: ("percent" if name == "setChargeTarget2" else None, _slot_in_payload(name)) for name in _SLOT_IN_PAYLOAD},
    "enableEPS": ("state", _eps),
    "setBatteryPauseMode": ("state", _pause_mode),
    "setPauseSlot": (None, _pause_slot),
    "setBatteryCalibration": ("state", _calibration),
    "rebootInverter": (None, _reboot),
    "setDateTime": ("dateTime", _date_time),
    "syncDateTime": (None, _date_time),
    **{kind: ("duration", _timed(kind)) for kind in TIMED_KINDS},
}
# GivTCP accepts the command names in any case on MQTT; map lower-case names too
_BY_LOWER = {k.lower(): k for k in COMMANDS}


def _edge_controls() -> dict[str, tuple[str, str]]:
    out = {}
    for kind, cap in (("charge", "Charge"), ("discharge", "Discharge")):
        for n in range(1, MAX_SLOTS + 1):
            out[f"{kind}_slot_{n}_start"] = (f"set{cap}Start{n}", "time")
            out[f"{kind}_slot_{n}_end"] = (f"set{cap}End{n}", "time")
            out[f"{kind}_slot_{n}_target_pct"] = (f"set{cap}Target{n}", "percent")
    return out


#: daemon control names -> (GivTCP command, payload key)
CONTROL_NAMES: dict[str, tuple[str, str]] = {
    "charge_target_pct": ("setChargeTarget", "chargeToPercent"),
    "battery_reserve_pct": ("setBatteryReserve", "dischargeToPercent"),
    "battery_cutoff_pct": ("setBatteryCutoff", "dischargeToPercent"),
    "battery_mode": ("setBatteryMode", "mode"),
    "charge_target_enabled": ("enableChargeTarget", "state"),
    "charge_schedule_enabled": ("enableChargeSchedule", "state"),
    "discharge_schedule_enabled": ("enableDischargeSchedule", "state"),
    "battery_charge_rate_w": ("setChargeRate", "chargeRate"),
    "battery_discharge_rate_w": ("setDischargeRate", "dischargeRate"),
    "eps_enabled": ("enableEPS", "state"),
    "battery_pause_mode": ("setBatteryPauseMode", "state"),
    "battery_calibration": ("setBatteryCalibration", "state"),
    "export_limit_w": ("setExportLimit", "state"),
    "ems_plant_enabled": ("setEmsPlant", "state"),
    "car_charge_boost_w": ("setCarChargeBoost", "boost"),
    **{f"export_slot_{n}_{e}": (f"setExport{e.capitalize()}{n}", "time") for n in range(1, EMS_SLOTS + 1)
       for e in ("start", "end")},
    **{f"export_slot_{n}_target_pct": (f"setExportTarget{n}", "percent") for n in range(1, EMS_SLOTS + 1)},
    "reboot": ("rebootInverter", "value"),
    **_edge_controls(),
    **{name: (kind, "duration") for kind, (name, _m, _l) in TIMED_CONTROLS.items()},
}

#: daemon control name -> the metric that shows its state (read back after the control)
STATE_METRICS: dict[str, str] = {name: name for name in CONTROL_NAMES if name != "reboot"} | {
    name: metric for name, metric, _label in TIMED_CONTROLS.values()}


def plan(command: str, value: Any = None, *, saved_reserve: int = 4, context: PlanContext | None = None) -> WritePlan:
    """Validate a GivTCP command (or daemon control name) with its payload into a write plan."""
    ctx = context or PlanContext(saved_reserve=saved_reserve)
    if command in CONTROL_NAMES:
        gcmd, key = CONTROL_NAMES[command]
        if isinstance(value, dict):
            payload = value
        else:
            if isinstance(value, bool):
                value = "enable" if value else "disable"
            payload = {key: value}
        try:
            p = COMMANDS[gcmd][1](gcmd, payload, ctx)
        except ControlError as e:  # name the control the user sent, not GivTCP's payload key
            if e.field_name != key:
                raise
            raise ControlError(f"{command}:{str(e).partition(':')[2]}", field_name=command, status=e.status) from None
        p.command = command
    else:
        name = _BY_LOWER.get(command.lower())
        if name is None:
            raise ControlError(f"command: unknown command {command!r} (allowed: {', '.join(sorted(COMMANDS))},"
                               f" {', '.join(sorted(CONTROL_NAMES))})", field_name="command", status=404)
        main_key, builder = COMMANDS[name]
        p = builder(name, _payload(name, value, main_key), ctx)
    if ctx.three_phase:
        p = _to_three_phase(p)
    elif ctx.ems:
        p = _to_ems(p)
    for reg, val in p.writes:
        check_write(reg, val)
    return p


def _three_phase_register(command: str, register: int) -> int:
    if register in THREE_PHASE_BANK:
        return THREE_PHASE_BANK[register]
    if register in _NATIVE_3PH:
        return register
    if register in (BATTERY_PAUSE_MODE, *PAUSE_SLOT):
        raise ControlError(f"{command}: not supported by this three-phase inverter (it has no pause mode register; "
                           "tempPauseCharge, tempPauseDischarge and tempPauseBattery pause it for N minutes through "
                           "its AC charge/discharge rates)", field_name="command")
    raise ControlError(f"{command}: not supported by this three-phase inverter (it has no {register_name(register)})",
                       field_name="command")


def _to_three_phase(p: WritePlan) -> WritePlan:
    """The same plan in the three-phase bank's registers; a register it lacks makes the command unsupported."""
    p.writes = [(_three_phase_register(p.command, r), v) for r, v in p.writes]
    p.unverified = frozenset(_three_phase_register(p.command, r) for r in p.unverified)
    if p.timed is not None and p.timed.restore:
        p.timed = TimedSpec(p.timed.kind, p.timed.minutes,
                            tuple(_three_phase_register(p.command, r) for r in p.timed.restore), p.timed.cancel)
    return p


def _to_ems(p: WritePlan) -> WritePlan:
    """The same plan in the EMS plant controller's registers; a register it lacks makes the command unsupported."""
    def reg(r: int) -> int:
        if r in EMS_BANK:
            return EMS_BANK[r]
        if r in _NATIVE_EMS:
            return r
        raise ControlError(f"{p.command}: not supported by this EMS plant controller (it has no {register_name(r)}; "
                           "its controls are the plant enable, three charge/discharge/export slots with targets, the "
                           "export limit and the car charge boost)", field_name="command")
    p.writes = [(reg(r), v) for r, v in p.writes]
    if p.timed is not None and p.timed.restore:
        p.timed = TimedSpec(p.timed.kind, p.timed.minutes, tuple(reg(r) for r in p.timed.restore), p.timed.cancel)
    return p


def givtcp_name(command: str) -> str:
    """The GivTCP command a control name or command (any case) stands for."""
    if command in CONTROL_NAMES:
        return CONTROL_NAMES[command][0]
    return _BY_LOWER.get(command.lower(), command)


#: commands whose plan needs the plant's battery capacity (read HR 0-59 first)
NEEDS_PLANT = frozenset({"setChargeRate", "setDischargeRate"})


def validate(command: str, value: Any = None, *, allow_reboot: bool = True) -> WritePlan:
    """Check a payload's form before the plant is known (HTTP/CLI front doors): raises ControlError."""
    # the form only: what the model has (slots, per-slot targets, its bank) is checked again with the plant
    return plan(command, value, context=PlanContext(battery_capacity_wh=10000.0, max_battery_w=10000.0,
                                                    allow_reboot=allow_reboot, slot_targets=True))


# --------------------------------------------------------------------------- state and entities


def _hhmm_text(v: int | None) -> str | None:
    if v is None:
        return None
    h, m = divmod(v, 100)
    return f"{h:02d}:{m:02d}" if h <= 23 and m <= 59 else "00:00"


def control_family(plant: Any) -> str:
    """Where a plant keeps its controls: "single" (single-phase HR 0-359), "three" (HR 1000+ bank), "ems"
    (the plant controller's HR 2040+), or "none" (nothing read yet)."""
    if not plant.holding:
        return "none"
    key = plant.model.key
    if key in THREE_PHASE_KEYS:
        return "three"
    if key == "ems":
        return "ems"
    return "single"  # also a gateway: its HR 0-359 bank is the single-phase one (rates: HR313/314)


def control_metrics(plant: Any) -> dict[str, Any]:
    """The state of every control the plant offers, under the controls' state metric names."""
    hr = plant.holding
    family = control_family(plant)
    m: dict[str, Any] = {}
    if family == "ems":
        if EMS_EXPORT_LIMIT in hr:
            m["export_limit_w"] = hr[EMS_EXPORT_LIMIT]
        if EMS_PLANT_ENABLE in hr:
            m["ems_plant_enabled"] = bool(hr[EMS_PLANT_ENABLE])
        if EMS_CAR_CHARGE_BOOST in hr:
            m["car_charge_boost_w"] = hr[EMS_CAR_CHARGE_BOOST]
        for kind in EMS_KINDS:
            for n in range(1, EMS_SLOTS + 1):
                start, end, target = ems_slot_registers(kind, n)
                if start in hr and end in hr:
                    m[f"{kind}_slot_{n}_start"] = _hhmm_text(hr[start])
                    m[f"{kind}_slot_{n}_end"] = _hhmm_text(hr[end])
                if target in hr:
                    m[f"{kind}_slot_{n}_target_pct"] = hr[target]
        return m
    if family == "none":
        return m
    three = family == "three"

    def get(register: int) -> int | None:
        """A single-phase register's value, from wherever this family keeps it."""
        if three:
            r = THREE_PHASE_BANK.get(register)
            return None if r is None else hr.get(r)
        return hr.get(register)

    for name, reg in (("charge_target_pct", CHARGE_TARGET_SOC), ("battery_reserve_pct", BATTERY_SOC_RESERVE),
                      ("battery_cutoff_pct", BATTERY_CUTOFF)):
        if (v := get(reg)) is not None:
            m[name] = v
    eco, discharge = get(BATTERY_POWER_MODE), get(ENABLE_DISCHARGE)
    if eco is not None and discharge is not None:
        m["battery_mode"] = mode_name(eco, discharge, get(BATTERY_SOC_RESERVE))
    gateway = plant.model.key == "gateway"
    for name, reg in (("charge_target_enabled", ENABLE_CHARGE_TARGET), ("charge_schedule_enabled", ENABLE_CHARGE),
                      ("discharge_schedule_enabled", ENABLE_DISCHARGE), ("eps_enabled", ENABLE_EPS)):
        if name == "eps_enabled" and gateway:
            continue
        if (v := get(reg)) is not None:
            m[name] = bool(v)
    slots = slot_count(hr)
    for kind in ("charge", "discharge"):
        for n in range(1, slots + 1):
            start, end, target = slot_registers(kind, n)
            a, b = get(start), get(end)
            if a is not None and b is not None:
                m[f"{kind}_slot_{n}_start"] = _hhmm_text(a)
                m[f"{kind}_slot_{n}_end"] = _hhmm_text(b)
            if slots == MAX_SLOTS and (t := get(target)) is not None:
                m[f"{kind}_slot_{n}_target_pct"] = t
    limit = plant.model.max_battery_w
    if three or gateway:  # the AC limits, in % of the inverter's battery rate
        for name, reg in (("battery_charge_rate_w", AC_CHARGE_RATE), ("battery_discharge_rate_w", AC_DISCHARGE_RATE)):
            if (v := get(reg)) is not None:
                m[name] = int(limit * min(v, 100) / 100)
    elif (cap := plant.battery_capacity_kwh * 1000):
        for name, reg in (("battery_charge_rate_w", BATTERY_CHARGE_LIMIT),
                          ("battery_discharge_rate_w", BATTERY_DISCHARGE_LIMIT)):
            if (v := get(reg)) is not None:
                m[name] = int(min(v / 100 * cap, limit))
    if (stage := get(SOC_FORCE_ADJUST)) is not None:  # reads the stage a running calibration is in
        m["battery_calibration"] = "Off" if stage == 0 else CALIBRATION_NAMES.get(stage, "Start")
    if (pm := get(BATTERY_PAUSE_MODE)) is not None:
        m["battery_pause_mode"] = PAUSE_MODE_NAMES[pm] if pm < len(PAUSE_MODE_NAMES) else f"Unknown ({pm})"
    return m


def _all_specs(max_w: float, slots: int, slot_targets: bool, allow_reboot: bool) -> list[ControlSpec]:
    specs = [
        ControlSpec("charge_target_pct", "number", "Charge target", "%", 4, 100, 1, state_metric="charge_target_pct"),
        ControlSpec("battery_reserve_pct", "number", "Battery reserve", "%", 4, 100, 1,
                    state_metric="battery_reserve_pct"),
        ControlSpec("battery_cutoff_pct", "number", "Battery cutoff", "%", 4, 100, 1,
                    state_metric="battery_cutoff_pct"),
        ControlSpec("battery_mode", "select", "Battery mode", options=MODE_NAMES, state_metric="battery_mode"),
        ControlSpec("charge_target_enabled", "switch", "Charge target enabled", state_metric="charge_target_enabled"),
        ControlSpec("charge_schedule_enabled", "switch", "Charge schedule enabled",
                    state_metric="charge_schedule_enabled"),
        ControlSpec("discharge_schedule_enabled", "switch", "Discharge schedule enabled",
                    state_metric="discharge_schedule_enabled"),
    ]
    for name, label in (("battery_charge_rate_w", "Battery charge rate"),
                        ("battery_discharge_rate_w", "Battery discharge rate")):
        specs.append(ControlSpec(name, "number", label, "W", 0, max_w, 1, state_metric=name))
    for kind in ("charge", "discharge"):
        for n in range(1, slots + 1):
            for edge in ("start", "end"):
                name = f"{kind}_slot_{n}_{edge}"
                specs.append(ControlSpec(name, "time", f"{kind.capitalize()} slot {n} {edge}", state_metric=name))
            if slot_targets:
                name = f"{kind}_slot_{n}_target_pct"
                specs.append(ControlSpec(name, "number", f"{kind.capitalize()} slot {n} target (0 = none)", "%", 0,
                                         100, 1, state_metric=name))
    for _kind, (name, metric, label) in TIMED_CONTROLS.items():
        specs.append(ControlSpec(name, "number", f"{label} (minutes, 0 = cancel)", "min", 0, MAX_MINUTES, 1,
                                 state_metric=metric))
    specs += [
        ControlSpec("battery_calibration", "select", "Battery calibration",
                    options=tuple(CALIBRATION_NAMES.values()), state_metric="battery_calibration"),
        ControlSpec("eps_enabled", "switch", "EPS enabled", state_metric="eps_enabled"),
        ControlSpec("battery_pause_mode", "select", "Battery pause mode", options=PAUSE_MODE_NAMES,
                    state_metric="battery_pause_mode"),
        ControlSpec("export_limit_w", "number", "Export limit", "W", 0, 65000, 1, state_metric="export_limit_w"),
        ControlSpec("ems_plant_enabled", "switch", "EMS plant operation", state_metric="ems_plant_enabled"),
        ControlSpec("car_charge_boost_w", "number", "Car charge boost", "W", 0, CAR_CHARGE_BOOST_MAX, 1,
                    state_metric="car_charge_boost_w"),
    ]
    for n in range(1, EMS_SLOTS + 1):  # the EMS's export slots (offered where the state shows them)
        for edge in ("start", "end"):
            name = f"export_slot_{n}_{edge}"
            specs.append(ControlSpec(name, "time", f"Export slot {n} {edge}", state_metric=name))
        specs.append(ControlSpec(f"export_slot_{n}_target_pct", "number", f"Export slot {n} target", "%", 0, 100, 1,
                                 state_metric=f"export_slot_{n}_target_pct"))
    if allow_reboot:
        specs.append(ControlSpec("reboot", "button", "Reboot inverter"))
    return specs


_TIMED_METRICS = frozenset(metric for _n, metric, _l in TIMED_CONTROLS.values())
_OPTIONAL = frozenset({"eps_enabled", "battery_pause_mode", "export_limit_w", "ems_plant_enabled",
                       "car_charge_boost_w", *(f"export_slot_{n}_{e}" for n in range(1, EMS_SLOTS + 1)
                                               for e in ("start", "end", "target_pct"))})


def control_specs(plant: Any = None, *, allow_reboot: bool = False) -> tuple[ControlSpec, ...]:
    """The controls a GivEnergy inverter offers, for HA discovery and the API: those whose state the plant
    shows (so a three-phase unit offers what its HR 1000+ bank has, an EMS its export limit). Without a
    plant: a two-slot single-phase inverter's."""
    if plant is None or not plant.holding:
        specs = _all_specs(10000.0, 2, False, allow_reboot)
        return tuple(s for s in specs if s.name not in _OPTIONAL)
    family = control_family(plant)
    state = control_metrics(plant)
    slots = EMS_SLOTS if family == "ems" else slot_count(plant.holding)
    specs = _all_specs(float(plant.model.max_battery_w), slots, any(k.endswith("_target_pct") and "slot" in k
                                                                  for k in state), allow_reboot)
    return tuple(s for s in specs
                 if s.state_metric in state
                 or (s.state_metric in _TIMED_METRICS and family in ("single", "three"))
                 or (s.name == "reboot" and family != "none"))
