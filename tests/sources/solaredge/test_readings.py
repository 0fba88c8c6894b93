"""SolarEdge readings: every metric of every recorded record is the device's float32 value written as its
shortest decimal (no 239.8000030517578), with our sign convention.

The expected float32 values come from struct's own single-precision decoding of the recorded bytes, not
from the metric map.
"""

from __future__ import annotations

import struct

import pytest

from solarbridge.sources.solaredge.readings import readings_from_payload
from solarbridge.sources.solaredge.records import parse_post_data
from support.solaredge import load_table

RECORDS = load_table("records.txt")
F32 = struct.Struct("<f")


def _same_float32(a: float, b: float) -> bool:
    return F32.pack(a) == F32.pack(b)


def _significant(x: float) -> int:
    digits = repr(abs(x)).replace(".", "").lstrip("0").split("e")[0]
    return len(digits.rstrip("0")) or 1


@pytest.mark.parametrize("name", sorted(RECORDS))
def test_recorded_records_publish_float32_values_without_noise(name: str) -> None:
    readings = readings_from_payload(RECORDS[name])
    assert readings, name
    for r in readings:
        assert r.metrics, (name, r.device_type)
        for metric, value in r.metrics.items():
            if isinstance(value, float):
                assert _significant(value) <= 9, (metric, value)
        rec = r.extra["record"]
        direct = {"pv_energy_total_wh": "Etot", "inverter_temperature_c": "Temp", "module_voltage_v": "Vmod",
                  "module_current_a": "Imod", "optimizer_voltage_v": "Vopt", "grid_voltage_v": "Vac"}
        for metric, field in direct.items():
            if metric in r.metrics:
                assert _same_float32(r.metrics[metric], rec[field]), (metric, r.metrics[metric], rec[field])
                assert len(repr(r.metrics[metric])) <= len(repr(rec[field]))


def test_optimizer_power_is_v_times_i_and_inverter_power_sign() -> None:
    opt = readings_from_payload(RECORDS["i8_rec_0000_1016AB88"])[0]
    rec = parse_post_data(RECORDS["i8_rec_0000_1016AB88"])["optimizers"]["1016AB88"]
    assert opt.metrics["module_power_w"] == pytest.approx(rec["Vmod"] * rec["Imod"], rel=1e-6)
    inv = readings_from_payload(RECORDS["i8_rec_0010_7F404A16"])[0]
    assert inv.metrics["pv_power_w"] >= 0
    assert _same_float32(inv.metrics["inverter_power_w"], inv.extra["record"]["Pac"])


def test_meter_grid_power_is_import_minus_export() -> None:
    meter = readings_from_payload(RECORDS["i178_rec_meter0022"])
    assert meter
    for r in meter:
        rec = r.extra["record"]
        if "grid_power_w" in r.metrics:
            exp = (rec["PfromX"] if rec["PfromX"] == rec["PfromX"] else 0.0) - (rec["P2X"] if rec["P2X"] == rec["P2X"] else 0.0)
            assert r.metrics["grid_power_w"] == pytest.approx(exp, rel=1e-6)
