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

# --------------------------------------------------------------------------- whitelist and ranges

#: registers the client (and the simulator) accept writes to (givenergy-modbus WRITE_SAFE_REGISTERS)
WRITE_SAFE: frozenset[int] = frozenset(
    {20, 27, 29, 31, 32, *range(35, 41), 44, 45, 50, 56, 57, 59, 94, 95, 96, 104, 110, 111, 112, 114, 116,
     163, 166, 172, 199, 299, 311, 313, 314, 317, 318, 319, 320, 331, *range(554, 574), 1005, 1078,
     *range(1108, 1117), *range(1118, 1124), 2040, *range(2044, 2072), 5010, 5014}
    | {r for n in range(3, 11) for r in (237 + 3 * n, 238 + 3 * n)}
    | {r for n in range(3, 11) for r in (267 + 3 * n, 268 + 3 * n)}
)

TIME_REGISTERS = frozenset({31, 32, 44, 45, 56, 57, 94, 95})

#: value ranges per register (inclusive); registers not listed accept any u16
WRITE_RANGES: dict[int, tuple[int, int]] = {
    20: (0, 1), 27: (0, 1), 29: (0, 3), 35: (0, 99), 36: (1, 12), 37: (1, 31), 38: (0, 23), 39: (0, 59),
    40: (0, 59), 50: (0, 100), 59: (0, 1), 96: (0, 1), 110: (4, 100), 111: (0, 50), 112: (0, 50),
    114: (4, 100), 116: (4, 100), 163: (100, 100), 166: (0, 1), 313: (1, 100), 314: (1, 100), 318: (0, 3),
    **{r: (0, 2359) for r in TIME_REGISTERS},
}

REGISTER_NAMES: dict[int, str] = {
    20: "enable_charge_target", 27: "battery_power_mode", 29: "soc_force_adjust", 31: "charge_slot_2_start",
    32: "charge_slot_2_end", 44: "discharge_slot_2_start", 45: "discharge_slot_2_end", 50: "active_power_rate",
    56: "discharge_slot_1_start", 57: "discharge_slot_1_end", 59: "enable_discharge", 94: "charge_slot_1_start",
    95: "charge_slot_1_end", 96: "enable_charge", 110: "battery_soc_reserve", 111: "battery_charge_limit",
    112: "battery_discharge_limit", 114: "battery_discharge_min_power_reserve", 116: "charge_target_soc",
    163: "reboot", 166: "enable_rtc",
}


def check_write(register: int, value: int) -> None:
    """Raise ControlError unless the write is whitelisted and in range."""
    name = REGISTER_NAMES.get(register, f"HR{register}")
    if register not in WRITE_SAFE:
        raise ControlError(f"register {register}: not writable (not on the write whitelist)",
                           field_name="register", status=403)
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
    if mode == "1":
        return [(110, 4), (59, 0), (27, 1)]
    if mode == "2":
        return [(110, 100), (59, 1), (27, 1), (56, 1600), (57, 700)]
    if mode == "3":
        return [(110, 100), (59, 1), (27, 1)]
    if mode == "4":
        return [(110, 4), (59, 1), (27, 0)]
    if mode == "Eco":
        return [(27, 1), (59, 0), (110, saved_reserve)]
    if mode == "Eco (Paused)":
        return [(27, 1), (59, 0), (110, 100)]
    if mode == "Timed Demand":
        return [(27, 1), (59, 1)]
    if mode == "Timed Export":
        return [(27, 0), (59, 1)]
    raise ValueError(mode)


def parse_mode(value: Any) -> str:
    text = str(value).strip()
    if text in ("1", "2", "3", "4"):
        return text
    for name in MODE_NAMES:
        if text.lower() == name.lower():
            return name
    raise ControlError(f"mode: must be 1..4 or one of {', '.join(MODE_NAMES)} (got {value!r})", field_name="mode")


def mode_name(hr27: int | None, hr59: int | None, hr110: int | None) -> str:
    """GivTCP's Mode derivation (v2/v3 names) from the eco flag, discharge enable and reserve."""
    if hr27 == 1 and hr59 == 0:
        return "Eco (Paused)" if hr110 == 100 else "Eco"
    if hr27 == 1 and hr59 == 1:
        return "Timed Demand"
    if hr27 == 0 and hr59 == 1:
        return "Timed Export"
    if hr27 == 0 and hr59 == 0:
        return "Export (Paused)"
    return "Unknown"


def mode_number(hr27: int | None, hr59: int | None, hr110: int | None) -> int | str:
    """GivTCP v1's numeric Mode: 1, 3, 4 or "unknown"."""
    if hr110 == 4 and hr27 == 1 and hr59 == 0:
        return 1
    if hr110 == 100 and hr27 == 1 and hr59 == 1:
        return 3
    if hr110 == 4 and hr27 == 0 and hr59 == 1:
        return 4
    return "unknown"


# --------------------------------------------------------------------------- commands


@dataclass
class PlanContext:
    """What some commands need to know about the plant (rates in W) or the clock (syncDateTime)."""

    saved_reserve: int = 4
    battery_capacity_wh: float | None = None
    max_battery_w: float | None = None
    now: datetime | None = None


@dataclass
class WritePlan:
    command: str
    writes: list[tuple[int, int]]
    description: str
    #: a reserve to remember for a later "Eco" (set by setBatteryReserve)
    saved_reserve: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def success_message(self) -> str:
        return f"Setting {self.description} was a success"


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


def _state_cmd(register: int, fixed: bool | None, what: str) -> Callable[[str, dict[str, Any], PlanContext], WritePlan]:
    def build(command: str, payload: dict[str, Any], ctx: PlanContext) -> WritePlan:
        if fixed is None:
            _, v = _required(command, payload, "state")
            on = parse_bool("state", v)
        else:
            on = fixed
        return WritePlan(command, [(register, int(on))], f"{what} to {'enable' if on else 'disable'}")
    return build


def _charge_target(command: str, payload: dict[str, Any], ctx: PlanContext) -> WritePlan:
    k, v = _required(command, payload, "chargeToPercent", "value")
    p = parse_percent(k, v)
    writes = [(96, 1)] + ([(20, 0), (116, 100)] if p == 100 else [(20, 1), (116, p)])
    return WritePlan(command, writes, "Charge Target")


def _reserve(command: str, payload: dict[str, Any], ctx: PlanContext) -> WritePlan:
    k, v = _required(command, payload, "dischargeToPercent", "reservePercent", "value")
    p = parse_percent(k, v)
    return WritePlan(command, [(110, p)], "Battery Reserve", saved_reserve=p if p < 100 else None)


def _cutoff(command: str, payload: dict[str, Any], ctx: PlanContext) -> WritePlan:
    k, v = _required(command, payload, "dischargeToPercent", "value")
    return WritePlan(command, [(114, parse_percent(k, v))], "Battery Cutoff")


def _slot(kind: str, n: int, start_reg: int) -> Callable[[str, dict[str, Any], PlanContext], WritePlan]:
    pct_key = "chargeToPercent" if kind == "Charge" else "dischargeToPercent"

    def build(command: str, payload: dict[str, Any], ctx: PlanContext) -> WritePlan:
        _, s = _required(command, payload, "start")
        _, f = _required(command, payload, "finish", "end")
        writes = [(start_reg, parse_time("start", s)), (start_reg + 1, parse_time("finish", f))]
        if payload.get(pct_key) not in (None, ""):
            p = parse_percent(pct_key, payload[pct_key])
            if kind == "Charge":
                writes += [(20, 0), (116, 100)] if p == 100 else [(20, 1), (116, p)]
            else:
                writes.append((114, p))
        return WritePlan(command, writes, f"{kind} Slot {n}")
    return build


def _slot_edge(register: int, what: str) -> Callable[[str, dict[str, Any], PlanContext], WritePlan]:
    def build(command: str, payload: dict[str, Any], ctx: PlanContext) -> WritePlan:
        k, v = _required(command, payload, "time", "value", "start", "finish")
        return WritePlan(command, [(register, parse_time(k, v))], what)
    return build


def _battery_mode(command: str, payload: dict[str, Any], ctx: PlanContext) -> WritePlan:
    _, v = _required(command, payload, "mode", "value")
    m = parse_mode(v)
    return WritePlan(command, mode_writes(m, ctx.saved_reserve), f"Battery Mode to {MODE_NUMBERS.get(m, m)}")


def _rate(register: int, key: str, what: str) -> Callable[[str, dict[str, Any], PlanContext], WritePlan]:
    def build(command: str, payload: dict[str, Any], ctx: PlanContext) -> WritePlan:
        k, v = _required(command, payload, key, "value")
        try:
            watts = float(str(v).strip())
            if watts != watts or watts < 0 or watts > 100000:
                raise ValueError
        except (TypeError, ValueError):
            raise ControlError(f"{k}: must be a power in W, 0 or more (got {v!r})", field_name=k) from None
        if not ctx.battery_capacity_wh:
            raise ControlError(f"{command}: the battery capacity is not known yet (no poll so far)",
                               field_name=k, status=503)
        if ctx.max_battery_w:
            watts = min(watts, ctx.max_battery_w)  # GivTCP caps at the inverter's battery rate
        # HR111/HR112 are in % of the battery capacity per hour, 0..50
        value = min(50, round(watts / ctx.battery_capacity_wh * 100))
        return WritePlan(command, [(register, value)], what, extra={"watts": watts})
    return build


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
    writes = [(35, when.year - 2000), (36, when.month), (37, when.day), (38, when.hour), (39, when.minute),
              (40, when.second)]
    return WritePlan(command, writes, "Date and Time")


COMMANDS: dict[str, tuple[str | None, Callable[[str, dict[str, Any], PlanContext], WritePlan]]] = {
    "enableChargeTarget": ("state", lambda c, p, s: _state_cmd(20, None if "state" in p else True,
                                                                 "Charge Target")(c, p, s)),
    "disableChargeTarget": (None, _state_cmd(20, False, "Charge Target")),
    "enableChargeSchedule": ("state", _state_cmd(96, None, "Charge Schedule")),
    "enableDischargeSchedule": ("state", _state_cmd(59, None, "Discharge Schedule")),
    "enableDischarge": ("state", _state_cmd(59, None, "Discharge")),
    "pauseChargeSchedule": (None, _state_cmd(96, False, "Charge Schedule")),
    "resumeChargeSchedule": (None, _state_cmd(96, True, "Charge Schedule")),
    "pauseDischargeSchedule": (None, _state_cmd(59, False, "Discharge Schedule")),
    "resumeDischargeSchedule": (None, _state_cmd(59, True, "Discharge Schedule")),
    "setChargeTarget": ("chargeToPercent", _charge_target),
    "setBatteryReserve": ("dischargeToPercent", _reserve),
    "setBatteryCutoff": ("dischargeToPercent", _cutoff),
    "setChargeSlot1": (None, _slot("Charge", 1, 94)),
    "setChargeSlot2": (None, _slot("Charge", 2, 31)),
    "setDischargeSlot1": (None, _slot("Discharge", 1, 56)),
    "setDischargeSlot2": (None, _slot("Discharge", 2, 44)),
    "setChargeStart1": ("time", _slot_edge(94, "Charge Start 1")),
    "setChargeEnd1": ("time", _slot_edge(95, "Charge End 1")),
    "setChargeStart2": ("time", _slot_edge(31, "Charge Start 2")),
    "setChargeEnd2": ("time", _slot_edge(32, "Charge End 2")),
    "setDischargeStart1": ("time", _slot_edge(56, "Discharge Start 1")),
    "setDischargeEnd1": ("time", _slot_edge(57, "Discharge End 1")),
    "setDischargeStart2": ("time", _slot_edge(44, "Discharge Start 2")),
    "setDischargeEnd2": ("time", _slot_edge(45, "Discharge End 2")),
    "setBatteryMode": ("mode", _battery_mode),
    "setChargeRate": ("chargeRate", _rate(111, "chargeRate", "Charge Rate")),
    "setDischargeRate": ("dischargeRate", _rate(112, "dischargeRate", "Discharge Rate")),
    "setDateTime": ("dateTime", _date_time),
    "syncDateTime": (None, _date_time),
}
# GivTCP accepts the command names in any case on MQTT; map lower-case names too
_BY_LOWER = {k.lower(): k for k in COMMANDS}

#: daemon control names -> (GivTCP command, payload key); slot edges are single-register commands
CONTROL_NAMES: dict[str, tuple[str, str]] = {
    "charge_target_pct": ("setChargeTarget", "chargeToPercent"),
    "battery_reserve_pct": ("setBatteryReserve", "dischargeToPercent"),
    "battery_mode": ("setBatteryMode", "mode"),
    "charge_target_enabled": ("enableChargeTarget", "state"),
    "charge_schedule_enabled": ("enableChargeSchedule", "state"),
    "discharge_schedule_enabled": ("enableDischargeSchedule", "state"),
    "charge_slot_1_start": ("setChargeStart1", "time"), "charge_slot_1_end": ("setChargeEnd1", "time"),
    "charge_slot_2_start": ("setChargeStart2", "time"), "charge_slot_2_end": ("setChargeEnd2", "time"),
    "discharge_slot_1_start": ("setDischargeStart1", "time"), "discharge_slot_1_end": ("setDischargeEnd1", "time"),
    "discharge_slot_2_start": ("setDischargeStart2", "time"), "discharge_slot_2_end": ("setDischargeEnd2", "time"),
}


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
        p = COMMANDS[gcmd][1](gcmd, payload, ctx)
        p.command = command
    else:
        name = _BY_LOWER.get(command.lower())
        if name is None:
            raise ControlError(f"command: unknown command {command!r} (allowed: {', '.join(sorted(COMMANDS))},"
                               f" {', '.join(sorted(CONTROL_NAMES))})", field_name="command", status=404)
        main_key, builder = COMMANDS[name]
        p = builder(name, _payload(name, value, main_key), ctx)
    for reg, val in p.writes:
        check_write(reg, val)
    return p


#: commands whose plan needs the plant's battery capacity (read HR 0-59 first)
NEEDS_PLANT = frozenset({"setChargeRate", "setDischargeRate"})


def validate(command: str, value: Any = None) -> WritePlan:
    """Check a payload's form before the plant is known (HTTP/CLI front doors): raises ControlError."""
    return plan(command, value, context=PlanContext(battery_capacity_wh=10000.0, max_battery_w=10000.0))


def control_specs() -> tuple[ControlSpec, ...]:
    """The controls a GivEnergy inverter offers, for HA discovery and the API."""
    specs = [
        ControlSpec("charge_target_pct", "number", "Charge target", "%", 4, 100, 1, state_metric="charge_target_pct"),
        ControlSpec("battery_reserve_pct", "number", "Battery reserve", "%", 4, 100, 1,
                    state_metric="battery_reserve_pct"),
        ControlSpec("battery_mode", "select", "Battery mode", options=MODE_NAMES, state_metric="battery_mode"),
        ControlSpec("charge_target_enabled", "switch", "Charge target enabled", state_metric="charge_target_enabled"),
        ControlSpec("charge_schedule_enabled", "switch", "Charge schedule enabled",
                    state_metric="charge_schedule_enabled"),
        ControlSpec("discharge_schedule_enabled", "switch", "Discharge schedule enabled",
                    state_metric="discharge_schedule_enabled"),
    ]
    for kind in ("charge", "discharge"):
        for n in (1, 2):
            for edge in ("start", "end"):
                name = f"{kind}_slot_{n}_{edge}"
                specs.append(ControlSpec(name, "time", f"{kind.capitalize()} slot {n} {edge}", state_metric=name))
    return tuple(specs)
