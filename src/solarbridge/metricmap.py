"""Declarative maps from a device's own fields to canonical metrics.

Every family describes *what* it publishes as a tuple of :class:`MetricDesc` rows (data, in the spirit of
Home Assistant's entity descriptions) and one function, :func:`apply`, turns a decoded record (a mapping of
the device's own field names to raw values) into ``Reading.metrics``. A row says:

- ``metric``: the canonical name (``grid_power_w``; see DESIGN.md and :mod:`solarbridge.model`);
- ``field``: the source field in the decoded record (a register name, a JSON key, a record field), or
  ``value``: a function of the whole record when the metric is computed from several fields;
- ``scale`` and ``offset``: ``metric = raw * scale + offset``, given as decimal text or numbers and kept as
  exact fractions, so ``2122 * 0.1`` is ``212.2`` and not ``212.20000000000002``;
- ``sign``: ``-1`` where the device's convention is the opposite of ours (grid import +, battery
  discharge +);
- ``resolution``: the device's step in the metric's unit (``0.1`` V, ``1`` Wh). The value is rounded to it,
  and a whole-number resolution yields an ``int``. Without it, an integer raw value keeps the exact
  resolution of the scale and a float raw value is rounded to 10 significant digits (binary noise only);
  ``FLOAT32`` says the device sends IEEE single-precision floats: the value is written as the shortest
  decimal that is the same single-precision number (``239.8``, not ``239.8000030517578``);
- ``kind``: ``bool`` / ``str`` / ``int`` metrics are converted instead of scaled.

Rows whose field is missing or ``None`` are skipped: a device that does not report a value publishes no
metric rather than a made-up zero. :func:`quantize` is the rounding used here, for code that computes
values outside a map (sums, derived energy, API means).
"""

from __future__ import annotations

import math
import struct
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from dataclasses import field as dc_field
from fractions import Fraction
from typing import Any, Literal

from .model import MetricValue

Number = int | float | str | Fraction

#: resolution of a device that sends IEEE single-precision floats (see :func:`shortest_float32`)
FLOAT32 = "float32"
_F32 = struct.Struct("<f")


def shortest_float32(value: float) -> float:
    """The shortest decimal that a single-precision float reads back as the same number.

    A device that measures in float32 has about 7 significant digits; widening to a double shows
    digits it never had (``239.8000030517578``). Values outside float32's range are returned as they are.
    """
    if not math.isfinite(value) or value == 0:
        return value
    try:
        want = _F32.pack(value)
    except OverflowError:
        return value
    for digits in range(1, 10):
        candidate = float(f"{value:.{digits}g}")
        try:
            if _F32.pack(candidate) == want:
                return candidate
        except OverflowError:  # near float32's limit a short decimal can round past it
            continue
    return value


def _fraction(x: Number) -> Fraction:
    # str() of a float is its shortest repr, so 0.1 becomes exactly 1/10, not the binary double
    return x if isinstance(x, Fraction) else Fraction(str(x)) if isinstance(x, float) else Fraction(x)


def decimals_of(resolution: Number) -> int:
    """Decimal places needed to write multiples of ``resolution`` (0.1 -> 1, 0.25 -> 2, 5 -> 0)."""
    f = _fraction(resolution)
    if f <= 0:
        raise ValueError(f"resolution must be > 0 (got {resolution})")
    d = 0
    while (f * 10**d).denominator != 1:
        d += 1
        if d > 12:
            break
    return d


def quantize(value: float | int, resolution: Number | None = None) -> float | int:
    """``value`` rounded to ``resolution`` (an int when the resolution is whole), free of binary noise.

    Without a resolution, floats are rounded to 10 significant digits, which removes the noise of
    binary arithmetic (``938.1662499999999`` -> ``938.16625``) and nothing a device measures.
    Non-finite values are returned unchanged.
    """
    if isinstance(value, bool):
        return value
    if resolution == FLOAT32:
        return value if isinstance(value, int) else shortest_float32(value)
    if resolution is None:
        if isinstance(value, int) or not math.isfinite(value) or value == 0:
            return value
        return float(f"{value:.10g}")
    if isinstance(value, float) and not math.isfinite(value):
        return value
    res = _fraction(resolution)
    steps = round(Fraction(value) / res) if isinstance(value, int) else round(value / float(res))
    exact = steps * res
    if res.denominator == 1:
        # a whole resolution gives an int; a fractional one always a float, also for 230.0: one metric
        # must keep one type (InfluxDB refuses an integer into a float field)
        return int(exact)
    return round(float(exact), decimals_of(res))


Kind = Literal["float", "int", "bool", "str"]


@dataclass(frozen=True, slots=True)
class MetricDesc:
    """One canonical metric and how it is obtained from a device's record (see the module docstring)."""

    metric: str
    field: str = ""
    scale: Number = 1
    offset: Number = 0
    sign: Literal[1, -1] = 1
    resolution: Number | None = None
    kind: Kind = "float"
    #: computes the raw value from the whole record instead of reading ``field``
    value: Callable[[Mapping[str, Any]], Any] | None = None
    #: a short human description (docs, HA entity names)
    description: str = ""
    _num: int = dc_field(init=False, repr=False, compare=False, default=1)
    _den: int = dc_field(init=False, repr=False, compare=False, default=1)
    _off: Fraction = dc_field(init=False, repr=False, compare=False, default=Fraction(0))

    def __post_init__(self) -> None:
        if not self.field and self.value is None:
            raise ValueError(f"{self.metric}: a MetricDesc needs a field or a value function")
        f = _fraction(self.scale) * self.sign
        object.__setattr__(self, "_num", f.numerator)
        object.__setattr__(self, "_den", f.denominator)
        object.__setattr__(self, "_off", _fraction(self.offset))
        if self.resolution is not None and self.resolution != FLOAT32:
            decimals_of(self.resolution)  # validates > 0

    def raw(self, record: Mapping[str, Any]) -> Any:
        return self.value(record) if self.value is not None else record.get(self.field)

    def convert(self, raw: Any) -> MetricValue | None:
        """The metric's value for one raw value, or None when there is none."""
        if raw is None:
            return None
        if self.kind == "bool":
            return bool(raw)
        if self.kind == "str":
            return str(raw)
        if isinstance(raw, bool):
            raw = int(raw)
        if isinstance(raw, int):
            if self._off:
                v: float | int = float(Fraction(raw * self._num, self._den) + self._off)
            elif self._den == 1:
                v = raw * self._num
            else:
                v = raw * self._num / self._den  # int / int is correctly rounded: 2122 / 10 == 212.2
        elif isinstance(raw, float):
            if not math.isfinite(raw):
                return None
            v = raw * self._num / self._den + float(self._off)
        else:
            raise TypeError(f"{self.metric}: raw value {raw!r} is not a number")
        if self.resolution is not None:
            v = quantize(v, self.resolution)
        elif isinstance(v, float) and not (isinstance(raw, int) and not self._off):
            v = quantize(v)
        if self.kind == "int":
            return int(round(v))
        return v


def apply(descs: Iterable[MetricDesc], record: Mapping[str, Any],
          into: dict[str, MetricValue] | None = None) -> dict[str, MetricValue]:
    """The metrics of ``record`` by ``descs``; rows without a value are left out."""
    out: dict[str, MetricValue] = {} if into is None else into
    for d in descs:
        v = d.convert(d.raw(record))
        if v is not None:
            out[d.metric] = v
    return out


def fields_used(descs: Iterable[MetricDesc]) -> set[str]:
    """The source fields a map reads (for tests that check every field exists in the device's table)."""
    return {d.field for d in descs if d.field}
