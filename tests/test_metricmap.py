"""The declarative metric map: exact scaling, resolution and the rules for missing values.

Expected values come from Python's decimal module (exact decimal arithmetic), an implementation
independent of the fractions used by the map.
"""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from solarbridge.metricmap import MetricDesc, apply, decimals_of, fields_used, quantize

SCALES = ["0.1", "0.01", "0.001", "1000", "0.5", "100", "1", "0.25"]


def _decimal_places(x: float) -> int:
    text = repr(x)
    if "e" in text or "E" in text:
        return int(Decimal(text).as_tuple().exponent) * -1
    return len(text.split(".")[1].rstrip("0")) if "." in text else 0


@given(raw=st.integers(-(2**32), 2**32), scale=st.sampled_from(SCALES), sign=st.sampled_from([1, -1]))
def test_integer_raw_scales_exactly(raw: int, scale: str, sign: int) -> None:
    d = MetricDesc("x_w", "f", scale=float(scale), sign=sign)  # float given on purpose: 0.1 must mean 1/10
    got = d.convert(raw)
    exact = Decimal(raw) * Decimal(scale) * sign
    assert got == float(exact)
    assert Decimal(repr(got)) == exact
    if exact == exact.to_integral_value() and Decimal(scale) >= 1:
        assert isinstance(got, int)


@given(raw=st.integers(0, 20000))
def test_offset_temperature_like_sunsynk(raw: int) -> None:
    d = MetricDesc("t_c", "f", scale="0.1", offset=-100)
    exact = Decimal(raw) * Decimal("0.1") - 100
    assert Decimal(repr(d.convert(raw))) == exact


@given(value=st.floats(-1e9, 1e9, allow_nan=False), res=st.sampled_from(["0.1", "0.01", "1", "0.5", "10"]))
def test_quantize_is_a_multiple_of_the_resolution_without_noise(value: float, res: str) -> None:
    q = quantize(value, res)
    r = Decimal(res)
    assert Decimal(repr(q)) % r == 0
    assert abs(Decimal(repr(q)) - Decimal(value)) <= r / 2 + Decimal("1e-6") * abs(Decimal(value))
    assert _decimal_places(float(q)) <= decimals_of(res)


def test_quantize_known_noise() -> None:
    assert quantize(212.20000000000002, "0.1") == 212.2
    assert repr(quantize(58.400000000000006)) == "58.4"
    assert repr(quantize(938.1662499999999)) == "938.16625"
    assert quantize(1234.6, 1) == 1235 and isinstance(quantize(1234.6, 1), int)
    # a fractional resolution keeps the float type when the value happens to be whole
    assert repr(quantize(230.04, "0.1")) == "230.0" and repr(quantize(0, "0.01")) == "0.0"
    assert quantize(float("nan")) != quantize(float("nan"))  # NaN passes through
    assert quantize(True) is True


def test_decimals_of() -> None:
    assert [decimals_of(x) for x in ("0.1", 0.01, "0.25", 5, "1000")] == [1, 2, 2, 0, 0]
    with pytest.raises(ValueError, match="resolution must be > 0"):
        decimals_of(0)


def test_apply_skips_missing_and_none_and_converts_kinds() -> None:
    descs = (
        MetricDesc("grid_power_w", "p_grid_out", sign=-1),
        MetricDesc("pv_energy_total_wh", "e_pv_total", scale="0.1", resolution=100),
        MetricDesc("grid_available", "relay", kind="bool"),
        MetricDesc("status", "st", kind="str"),
        MetricDesc("pv_power_w", value=lambda r: r.get("p1", 0) + r.get("p2", 0)),
        MetricDesc("absent_w", "nope"),
        MetricDesc("none_w", "n"),
        MetricDesc("soc_pct", "soc", kind="int"),
    )
    rec = {"p_grid_out": 1500, "e_pv_total": 21224, "relay": 1, "st": 3, "p1": 100, "p2": 250, "n": None,
           "soc": 55.6}
    out = apply(descs, rec)
    assert out == {"grid_power_w": -1500, "pv_energy_total_wh": 2100, "grid_available": True, "status": "3",
                   "pv_power_w": 350, "soc_pct": 56}
    assert fields_used(descs) == {"p_grid_out", "e_pv_total", "relay", "st", "nope", "n", "soc"}


def test_float_raw_is_denoised_and_non_finite_dropped() -> None:
    d = MetricDesc("e_wh", "e", scale=1000)
    assert d.convert(212.2) == 212200
    assert repr(MetricDesc("v", "v", scale="0.1").convert(584.0)) == "58.4"
    assert d.convert(float("inf")) is None


def test_bad_rows_are_refused() -> None:
    with pytest.raises(ValueError, match="needs a field or a value"):
        MetricDesc("x_w")
    with pytest.raises(ValueError, match="resolution must be > 0"):
        MetricDesc("x_w", "f", resolution=0)
    with pytest.raises(TypeError, match="is not a number"):
        MetricDesc("x_w", "f").convert("12")


@given(st.floats(width=32, allow_nan=False, allow_infinity=False))
def test_shortest_float32_reads_back_as_the_same_single(value: float) -> None:
    import struct

    from solarbridge.metricmap import FLOAT32, shortest_float32

    got = shortest_float32(value)
    assert struct.pack("<f", got) == struct.pack("<f", value)
    assert len(repr(got)) <= max(len(repr(value)), len(f"{value:.9g}"))
    assert quantize(value, FLOAT32) == got


def test_shortest_float32_known_values() -> None:
    import struct

    from solarbridge.metricmap import shortest_float32

    wide = struct.unpack("<f", struct.pack("<f", 239.8))[0]
    assert wide != 239.8 and shortest_float32(wide) == 239.8
    assert shortest_float32(1e300) == 1e300  # not a float32: unchanged
