"""NUT dummy-ups port file: the variables, the formulas and the file rules of NUT's enphase-monitor.

Used by the ``nut`` sink (which the ``enphase-monitor`` command drives). Pure
functions up to :class:`PortFile`, which owns the file itself (read, atomic
replace, ``-nocomms`` rename).

Arithmetic follows the original's integer-x100 formulas so the numbers match
its output digit for digit (see tests/sinks/nut/test_enphase_nut.py for worked examples).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation, localcontext
from fractions import Fraction
from pathlib import Path

from ...util.atomic import atomic_write

#: per-cell LiFePO4 open-circuit voltage (centivolts) at SoC 0, 10, ... 110 %
LIFEPO4_CV = (250, 290, 310, 320, 325, 330, 335, 340, 345, 350, 360, 365)
RUNTIME_CAP_S = 172800  # two days
_DEC_LIMIT = Decimal(10) ** 15

#: defaults a user may override by writing the line into the port file
DEFAULT_SETTINGS: dict[str, str] = {
    "battery.charge.low": "20",
    "battery.voltage.nominal": "76.8",
    "battery.voltage.high": "86.4",
    "battery.voltage.low": "68.5",
    "device.mfr": "Enphase Energy",
    "device.model": "IQ Gateway",
    "ups.mfr": "Enphase Energy",
    "ups.model": "IQ Gateway",
}
OVERRIDABLE = frozenset(DEFAULT_SETTINGS)

#: names regenerated from internal values (dropped from the old file on rewrite)
INTERNAL = frozenset({
    "ups.status", "battery.charge", "ups.load", "battery.capacity", "battery.charge.restart",
    "battery.type", "device.serial", "device.type", "ups.serial", "ups.firmware", "input.phases",
    "output.phases", "output.current.high.critical", "battery.current", "battery.voltage",
    "battery.runtime",
})
#: names read from an existing file at start-up as initial values
STARTUP_VALUES = INTERNAL | OVERRIDABLE

_METER_FIELDS = ("realpower", "power", "voltage", "powerfactor", "frequency", "current")
_GENERATED_METER_RE = re.compile(
    r"^(input|output)(\.L[123](-N)?)?\.(realpower|power|voltage|powerfactor|frequency|current)$"
)


# --------------------------------------------------------------------------- numbers


def dec(text: str | float | int | None) -> Decimal | None:
    """A decimal from a port-file or JSON value; None when it is not a finite number."""
    if text is None or isinstance(text, bool):
        return None
    try:
        d = Decimal(str(text).strip().replace(",", "."))
    except InvalidOperation:
        return None
    # beyond any real reading; keeps the x100 integer arithmetic inside Decimal's precision
    return d if d.is_finite() and abs(d) < _DEC_LIMIT else None


def x100(value: Decimal) -> int:
    """round(value*100) the way printf %.0f does (half to even on the exact value)."""
    return int((value * 100).quantize(Decimal(1), rounding=ROUND_HALF_EVEN))


#: significand bits of the x87 80-bit long double that bash's printf parses numbers into
LONG_DOUBLE_BITS = 64


def long_double(text: str) -> Fraction:
    """The exact value ``strtold`` gives for a decimal text: nearest 64-bit significand, ties to even."""
    exact = Fraction(Decimal(text))
    if exact == 0:
        return exact
    a = abs(exact)
    e = a.numerator.bit_length() - a.denominator.bit_length()  # 2**e <= a < 2**(e+1), give or take one
    if a < Fraction(2) ** e:
        e -= 1
    scale = Fraction(2) ** (LONG_DOUBLE_BITS - 1 - e)
    rounded = Fraction(round(a * scale)) / scale  # round() on a Fraction is half to even
    return rounded if exact > 0 else -rounded


def printf_f(text: str, places: int) -> str:
    """``printf "%.<places>f" <text>`` as the original's bash does it: parse to a long double, round exactly."""
    v = long_double(text)
    with localcontext() as ctx:
        ctx.prec = 80  # exact enough: a 64-bit significand needs fewer digits than that around our range
        q = Decimal(v.numerator) / Decimal(v.denominator)
        out = q.quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_EVEN)
    neg = v < 0 or (v == 0 and text.lstrip().startswith("-"))
    body = f"{abs(out):.{places}f}"
    return f"-{body}" if neg else body


def fmt(value: float | int | None, places: int) -> str:
    """printf("%.Nf") of a JSON number (as bash formats it, see :func:`printf_f`); null and non-numbers are 0."""
    if value is None or isinstance(value, bool) or not isinstance(value, int | float):
        d = dec(value) if isinstance(value, str) else None
        value = float(d) if d is not None else 0.0
    if value != value or value in (float("inf"), float("-inf")):
        value = 0.0
    # the text jq printed for the number: the shortest repr (jq 1.6+ prints 0.765, not 0.76500000000000001)
    return printf_f(repr(value) if isinstance(value, float) else str(value), places)


def json_number(value: object) -> str | None:
    """A JSON number as jq prints it (100, 86.5); None for null or non-numbers."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")):
            return None
        return str(int(value)) if value.is_integer() and abs(value) < 1e17 else repr(value)
    if isinstance(value, str) and dec(value) is not None:
        # a quoted number: the original printed it with its quotes and then computed garbage
        return value.strip()
    return None


def _div_trunc(num: int, den: int) -> int:
    q = abs(num) // abs(den)
    return -q if (num < 0) != (den < 0) else q


def _fixed(q: int, places: int) -> str:
    """An integer scaled by 10**places as text, sign kept (0 never gets a minus)."""
    sign = "-" if q < 0 else ""
    q = abs(q)
    whole, frac = divmod(q, 10**places)
    return f"{sign}{whole}.{frac:0{places}d}"


def current(realpower_1dp: str, voltage_1dp: str) -> str:
    """W / V from the 1-decimal texts, truncated (not rounded) to 2 decimals; 0 V gives 0.00."""
    p, v = dec(realpower_1dp), dec(voltage_1dp)
    if p is None or v is None:
        return "0.00"
    pi, vi = x100(p), x100(v)
    if vi == 0:
        return "0.00"
    return _fixed(_div_trunc(pi * 100, vi), 2)


def battery_voltage(soc: Decimal, high: Decimal) -> str:
    """LiFePO4 curve scaled so that 100 % reads ``battery.voltage.high``; 1 decimal truncated."""
    s = min(max(x100(soc), 0), 11000)
    idx = 10 if s > 10000 else s // 1000
    lo, hi = LIFEPO4_CV[idx], LIFEPO4_CV[idx + 1]
    c = lo + ((hi - lo) * (s - idx * 1000)) // 1000
    c = (c * x100(high)) // 360
    return _fixed(c // 10, 1)


def battery_runtime(soc: Decimal, restart: Decimal, capacity_wh: int, load_w: Decimal) -> int:
    """Seconds until the battery falls to the restart floor at the present output power (capped)."""
    p = x100(load_w)
    if p <= 0:
        return RUNTIME_CAP_S
    s, r = x100(soc), x100(restart)
    if s < r:
        return 0
    return min(((s - r) * capacity_wh * 36) // p, RUNTIME_CAP_S)


def ups_load(load_w: Decimal, capacity_wh: int, loadkwh: int) -> str | None:
    """100 * W / (LOADKWH * kWh), 1 decimal truncated; None when it cannot be computed."""
    den = loadkwh * (capacity_wh // 10)
    if loadkwh <= 0 or den == 0:
        return None
    return _fixed(_div_trunc(x100(load_w) * 1000, den), 1)


# --------------------------------------------------------------------------- mapping


@dataclass(slots=True)
class MeterRow:
    """One meter row (cumulative or one line); None counts as 0."""

    real_w: float | None = None
    apparent_va: float | None = None
    voltage_v: float | None = None
    power_factor: float | None = None
    frequency_hz: float | None = None


@dataclass(slots=True)
class NutInputs:
    """Everything the port-file variables are computed from."""

    status: str = ""  # "OL", "OB" or "" (no comms)
    charge: str | None = None  # battery.charge text as the gateway sent it
    capacity: str | None = None  # Wh
    restart: str | None = None  # battery.charge.restart, default 10
    firmware: str | None = None
    serial: str | None = None
    #: 3 (three-phase: L1..L3 and input/output.phases), 2 (split phase: L1, L2 only; not from
    #: enphase-monitor, which shows totals for split phase) or None (totals only)
    phases: int | None = None
    input: list[MeterRow] = field(default_factory=list)  # [cumulative, L1, L2, L3]
    output: list[MeterRow] = field(default_factory=list)
    storage: MeterRow | None = None
    loadkwh: int = 768
    battery_type: str = "LFP"


def full_status(inputs: NutInputs, settings: dict[str, str]) -> str:
    """``OL``/``OB`` plus `` LB`` when the charge is strictly below battery.charge.low."""
    status = inputs.status
    if not status:
        return ""
    soc, low = dec(inputs.charge), dec(settings.get("battery.charge.low"))
    if soc is not None and low is not None and x100(soc) < x100(low):
        status += " LB"
    return status


def _meter_vars(group: str, rows: list[MeterRow], phases: int | None) -> dict[str, str]:
    out: dict[str, str] = {}
    count = phases if phases in (2, 3) else 0
    for n in range(count + 1):
        row = rows[n] if n < len(rows) else MeterRow()
        prefix = group if n == 0 else f"{group}.L{n}"
        vname = f"{group}.voltage" if n == 0 else f"{group}.L{n}-N.voltage"
        real, volt = fmt(row.real_w, 1), fmt(row.voltage_v, 1)
        out[f"{prefix}.realpower"] = real
        out[f"{prefix}.power"] = fmt(row.apparent_va, 1)
        out[vname] = volt
        out[f"{prefix}.powerfactor"] = fmt(row.power_factor, 2)
        out[f"{prefix}.frequency"] = fmt(row.frequency_hz, 1)
        out[f"{prefix}.current"] = current(real, volt)
    return out


def generate(inputs: NutInputs, overrides: dict[str, str] | None = None,
             defaults: dict[str, str] | None = None) -> dict[str, str]:
    """The generated variables in file order; empty when there is no status (nothing is written)."""
    settings = dict(DEFAULT_SETTINGS if defaults is None else defaults)
    settings.update(overrides or {})
    status = full_status(inputs, settings)
    if not status:
        return {}
    out: dict[str, str] = {"ups.status": status}
    if inputs.charge:
        out["battery.charge"] = inputs.charge
    restart = inputs.restart or "10"
    ident = {
        "battery.charge.low": settings.get("battery.charge.low"),
        "battery.charge.restart": restart,
        "battery.capacity": inputs.capacity,
        "battery.type": inputs.battery_type,
        "battery.voltage.nominal": settings.get("battery.voltage.nominal"),
        "battery.voltage.high": settings.get("battery.voltage.high"),
        "battery.voltage.low": settings.get("battery.voltage.low"),
        "device.type": "ups",
        "device.mfr": settings.get("device.mfr"),
        "device.model": settings.get("device.model"),
        "device.serial": inputs.serial,
        "ups.mfr": settings.get("ups.mfr"),
        "ups.model": settings.get("ups.model"),
        "ups.serial": inputs.serial,
        "ups.firmware": inputs.firmware,
        "input.phases": "3" if inputs.phases == 3 else None,
        "output.phases": "3" if inputs.phases == 3 else None,
    }
    out.update({k: v for k, v in ident.items() if v})
    st = inputs.storage or MeterRow()
    out["battery.current"] = current(fmt(st.real_w, 1), fmt(st.voltage_v, 1))
    out.update(_meter_vars("output", inputs.output, inputs.phases))
    out.update(_meter_vars("input", inputs.input, inputs.phases))

    soc, high = dec(inputs.charge), dec(settings.get("battery.voltage.high"))
    if soc is not None and high is not None:
        out["battery.voltage"] = battery_voltage(soc, high)
    cap = dec(inputs.capacity)
    load_w = dec(out["output.realpower"])
    if cap is not None and load_w is not None:
        cap_i = int(cap)
        rst = dec(restart) or Decimal(10)
        if soc is not None:
            out["battery.runtime"] = str(battery_runtime(soc, rst, cap_i, load_w))
        load = ups_load(load_w, cap_i, inputs.loadkwh)
        if load is not None:
            out["ups.load"] = load
    return out


# --------------------------------------------------------------------------- the file


def parse_line(line: str) -> tuple[str, str]:
    """``name: value`` -> (name, value); one space after the colon belongs to the syntax."""
    line = line.strip()
    name, sep, value = line.partition(":")
    if not sep:
        return line, ""
    return name, value[1:] if value.startswith(" ") else value


def is_generated_name(name: str) -> bool:
    return name in INTERNAL or name in OVERRIDABLE or bool(_GENERATED_METER_RE.match(name))


def classify(lines: list[str], keep_user_lines: bool = True) -> tuple[list[str], dict[str, str]]:
    """Split an existing file into (lines kept verbatim, user overrides).

    ``keep_user_lines=False`` reproduces the original exactly: every other line whose
    name starts with ``input``, ``output`` or ``battery`` is lost.
    """
    kept: list[str] = []
    overrides: dict[str, str] = {}
    for raw in lines:
        name, value = parse_line(raw)
        if name in OVERRIDABLE:
            overrides[name] = value
        elif is_generated_name(name):
            continue
        elif not keep_user_lines and name.startswith(("input", "output", "battery")):
            continue
        else:
            kept.append(raw.strip())
    return kept, overrides


def render(kept: list[str], values: dict[str, str]) -> str:
    return "".join(f"{line}\n" for line in kept) + "".join(f"{k}: {v}\n" for k, v in values.items())


class PortFileError(Exception):
    """A fatal port-file problem (the message is the original's)."""


class PortFile:
    """The dummy-ups port file and its ``-nocomms`` twin."""

    def __init__(self, path: str | os.PathLike[str], keep_user_lines: bool = True) -> None:
        self.path = Path(path)
        self.nocomms_path = Path(f"{self.path}-nocomms")
        self.keep_user_lines = keep_user_lines
        self.writes = 0

    def read_lines(self) -> tuple[list[str], bool]:
        """Lines of the file (or of its -nocomms twin) and whether only the twin exists."""
        for p, hidden in ((self.path, False), (self.nocomms_path, True)):
            try:
                text = p.read_text(errors="replace")
            except (FileNotFoundError, IsADirectoryError, PermissionError):
                continue
            return text.splitlines(), hidden
        raise PortFileError(f"Port file '{self.path}' unreadable")

    def initial(self) -> tuple[dict[str, str], bool]:
        """Start-up values parsed from whichever file exists, and whether it is hidden."""
        lines, hidden = self.read_lines()
        values: dict[str, str] = {}
        for raw in lines:
            name, value = parse_line(raw)
            if name in STARTUP_VALUES:
                values[name] = value
        if hidden:
            values.pop("ups.status", None)
        return values, hidden

    def overrides(self) -> dict[str, str]:
        try:
            lines, _ = self.read_lines()
        except PortFileError:
            return {}
        return classify(lines, self.keep_user_lines)[1]

    def hide(self) -> bool:
        """Comms lost: rename to ``<file>-nocomms`` (dummy-ups then loses its file)."""
        if self.path.is_file():
            try:
                os.replace(self.path, self.nocomms_path)
            except OSError as e:
                raise PortFileError(f"Unable to rename '{self.path}' to '{self.nocomms_path}': {e.strerror}") from e
            return True
        return False

    def restore(self) -> bool:
        """Comms back: rename ``<file>-nocomms`` back to the port file."""
        if self.nocomms_path.is_file():
            try:
                os.replace(self.nocomms_path, self.path)
            except OSError as e:
                raise PortFileError(f"Unable to rename '{self.nocomms_path}' to '{self.path}': {e.strerror}") from e
            return True
        return False

    def update(self, values: dict[str, str]) -> bool:
        """Merge ``values`` into the file; atomic replace, only when the content changes."""
        try:
            text = self.path.read_text(errors="replace")
        except FileNotFoundError:
            text = None
        if text is None or not os.access(self.path, os.W_OK) or not os.access(self.path.parent, os.W_OK):
            raise PortFileError(f"Port file '{self.path}' missing/write-protected!")
        kept, _ = classify(text.splitlines(), self.keep_user_lines)
        new = render(kept, values)
        if new == text:
            return False
        atomic_write(self.path, new)
        self.writes += 1
        return True
