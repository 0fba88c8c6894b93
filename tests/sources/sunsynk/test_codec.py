"""The shared real report decodes to the reference values exactly (file mode, pcap and pcapng)."""

from __future__ import annotations

import json
import struct
from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from solarbridge.sources.sunsynk import codec
from solarbridge.sources.sunsynk.fields import BY_ID, FIELDS, LAYOUTS
from support.sunsynk import DATA, DERIVED_PCAP, FRAME, fields, run_file, write_dpkt_pcap

ORACLE = json.loads((DATA / "oracle_292.json").read_text())
PAYLOAD = FRAME[54:]


def test_payload_is_recognised_as_the_reference_says():
    assert len(PAYLOAD) == 292 and PAYLOAD[0] == 0xA5
    assert codec.identify(PAYLOAD) == 292
    assert codec.identify(PAYLOAD[:-1]) is None
    assert codec.identify(b"\x00" + PAYLOAD[1:]) is None


def test_original_19_fields_raw_words_match_oracle():
    # the original read each field as a signed 16-bit word at its offset: check the table's raw values
    for _, (off, raw, _value) in ORACLE["original_19"].items():
        assert struct.unpack_from(">h", PAYLOAD, off)[0] == raw


@pytest.mark.parametrize("ng", [False, True], ids=["pcap", "pcapng"])
def test_real_report_file_mode_exact_values(tmp_path, ng):
    path = DERIVED_PCAP if not ng else write_dpkt_pcap(tmp_path / "f.pcapng", [(1667629966.0, FRAME)], ng=True)
    readings, src = run_file(path, timezone=ORACLE["timezone"])
    assert len(readings) == 1
    r = readings[0]
    got = fields(r)
    assert r.device_id == ORACLE["serial"]
    assert r.extra["sunsniff"]["serial"] == ORACLE["serial"]
    ns = int(r.timestamp.timestamp()) * 1_000_000_000
    assert ns == ORACLE["timestamp_ns"]
    assert r.extra["sunsynk"]["time_source"] == "dongle"
    for key, (_, _, value) in ORACLE["original_19"].items():
        fid = key.split("@")[0]
        if "@" in key:
            continue  # offsets the later table moved (grid/load power) or turned into a sum (pv_power)
        # the original's f64 product (212.20000000000002) to within its rounding, written as measured
        assert got[fid] == pytest.approx(value, rel=1e-12, abs=1e-12), fid
        assert decimals(got[fid]) <= decimals(BY_ID[fid].scale), (fid, got[fid])
    for fid, value in ORACLE["later_fields"].items():
        # the reference lists these as displayed (e.g. 163.7; the f64 is 1637 * 0.1 = 163.70000000000002)
        assert got[fid] == value, fid
    # the moved fields hold the same numbers in this report at both offsets
    assert got["grid_power"] == ORACLE["original_19"]["grid_power@216"][2]
    assert got["load_power"] == ORACLE["original_19"]["load_power@228"][2]
    assert got["pv_power_1"] == ORACLE["original_19"]["pv_power@248"][2]
    assert src.pipeline is not None and src.pipeline.stats()["reports"] == 1


def decimals(x: float) -> int:
    """Digits after the point in the shortest repr (212.2 -> 1, 930.0 -> 0)."""
    text = repr(float(x))
    assert "e" not in text, text
    return len(text.split(".")[1].rstrip("0"))


def test_real_report_canonical_metrics_and_signs():
    (r,), _ = run_file(DERIVED_PCAP)
    m = r.metrics
    assert m["pv_power_w"] == 930  # sum of strings: 930 + 0 + 0
    assert m["battery_power_w"] == -639  # PV 930 W > load 230 W: the battery charges, negative
    assert m["battery_current_a"] == -11.96
    assert m["grid_power_w"] == 0
    assert m["load_power_w"] == 230
    assert m["battery_soc_pct"] == 54
    assert m["grid_voltage_v"] == 233.3
    assert m["battery_charge_energy_total_wh"] == 212200
    assert m["pv_energy_total_wh"] == 357800
    assert m["inverter_temperature_c"] == 43.9
    assert m["grid_available"] is True
    # no time zone: capture time, as the original did
    assert r.timestamp == datetime.fromtimestamp(1667629966, UTC)
    assert r.extra["sunsynk"]["time_source"] == "capture"


def test_sunsniff_contract_shape():
    (r,), _ = run_file(DERIVED_PCAP)
    ss = r.extra["sunsniff"]
    assert set(ss) == {"serial", "fields"}
    ids = [f["id"] for f in ss["fields"]]
    assert len(ids) == len(set(ids)) == len(FIELDS) + 1
    by = {f["id"]: f for f in ss["fields"]}
    assert by["battery_soc"] == {"id": "battery_soc", "name": "SOC", "group": "Battery", "unit": "%",
                                 "value": 54.0, "device_class": "battery", "state_class": "measurement"}
    assert by["grid_frequency"]["device_class"] is None and by["grid_frequency"]["unit"] == "Hz"
    assert by["pv_production_total"]["state_class"] == "total_increasing"
    assert by["battery_temperature"]["unit"] == "°C"
    assert by["grid_connected"]["unit"] == ""


def test_dongle_clock_fallbacks():
    rep = codec.decode(PAYLOAD)
    from zoneinfo import ZoneInfo

    tz = ZoneInfo("Europe/London")
    assert codec.clock_to_utc((2022, 10, 30, 1, 30, 0), tz) is None  # ambiguous (clocks go back)
    assert codec.clock_to_utc((2022, 3, 27, 1, 30, 0), tz) is None  # does not exist
    assert codec.clock_to_utc((2022, 6, 1, 12, 0, 0), tz) == datetime(2022, 6, 1, 11, 0, tzinfo=UTC)
    bad = bytearray(PAYLOAD)
    bad[38] = 13  # month 13
    assert codec.decode(bytes(bad)).clock is None
    assert rep.clock == (2022, 11, 5, 8, 32, 46)


def test_32bit_counters_combine_low_word_first():
    values = {"pv_production_total": 123456.7, "battery_charge_total": 6553.6, "grid_import_total": 0.1}
    for layout in LAYOUTS:
        p = codec.encode(values, serial="ABCDEFGHIJ", clock=(2024, 1, 2, 3, 4, 5), layout=layout)
        rep = codec.decode(p)
        assert rep.layout == layout and rep.serial == "ABCDEFGHIJ"
        assert repr(rep.values["pv_production_total"]) == "123456.7"  # not 1234567 * 0.1 = 123456.70000000001
        assert repr(rep.values["battery_charge_total"]) == "6553.6"
        lo, hi = next(f for f in FIELDS if f.id == "pv_production_total").offsets(layout)
        assert struct.unpack_from(">H", p, lo)[0] == 1234567 & 0xFFFF
        assert struct.unpack_from(">H", p, hi)[0] == 1234567 >> 16


def test_302_layout_offsets_shifted():
    p302 = codec.encode({"battery_soc": 77, "bms_temperature": 25.0, "grid_voltage": 240.1},
                        serial="X" * 10, clock=(2024, 1, 1, 0, 0, 0), layout=302)
    assert struct.unpack_from(">h", p302, 252)[0] == 77  # 244 + 8
    assert struct.unpack_from(">h", p302, 300)[0] == 1250  # BMS: 290 + 10
    v = codec.decode(p302).values
    assert v["battery_soc"] == 77 and v["bms_temperature"] == 25.0 and repr(v["grid_voltage"]) == "240.1"


@given(st.binary(min_size=0, max_size=400))
def test_decoder_never_crashes_on_garbage(data):
    try:
        rep = codec.decode(data)
    except codec.DecodeError:
        assert codec.identify(data) is None
    else:
        assert len(data) in LAYOUTS and data[0] == 0xA5
        assert len(rep.values) == len(FIELDS) + 1


@given(st.sampled_from(LAYOUTS), st.binary(min_size=302, max_size=302))
def test_any_report_body_decodes(layout, body):
    rep = codec.decode(b"\xa5" + body[1:layout])
    assert rep.layout == layout
    assert rep.values["pv_power"] == rep.values["pv_power_1"] + rep.values["pv_power_2"] + rep.values["pv_power_3"]


@given(st.lists(st.integers(-0x8000, 0x7FFF), min_size=146, max_size=146), st.sampled_from(LAYOUTS))
def test_metrics_fast_plan_equals_the_metric_map(words, layout):
    """The source's compiled plan gives exactly what metricmap.apply gives from the declared METRIC_MAP
    (same values, same types), and no value carries more decimals than its field's resolution."""
    from solarbridge.sources.sunsynk.source import metrics_by_map, report_to_reading

    payload = bytearray(struct.pack(f">{layout // 2}h", *(words + [0] * (layout // 2 - len(words)))))
    payload[0] = 0xA5
    rep = codec.decode(bytes(payload))
    reading, _ = report_to_reading(rep, 1.7e9, None)
    expected = metrics_by_map(rep.values)
    got = {k: v for k, v in reading.metrics.items() if k != "grid_available"}
    assert got == expected
    assert {k: type(v) for k, v in got.items()} == {k: type(v) for k, v in expected.items()}
    for fid, value in rep.values.items():
        assert decimals(value) <= decimals(BY_ID[fid].scale), (fid, value)
