"""Device records and payload parsers against documented/recorded decodes and the original's output."""

from __future__ import annotations

import json
import math
import os
import struct
import subprocess
import sys
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from solarbridge.sources.solaredge import simulator as sim
from solarbridge.sources.solaredge.framing import decode
from solarbridge.sources.solaredge.jsonout import dumps
from solarbridge.sources.solaredge.messages import parse_data
from solarbridge.sources.solaredge.records import RecordError, hex_data, parse_id, parse_post_data
from support.solaredge import DATA, EXAMPLES


@pytest.fixture
def utc(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    from solarbridge.sources.solaredge import records

    records.date_time.cache_clear()
    records.asctime.cache_clear()
    yield
    monkeypatch.undo()
    time.tzset()
    records.date_time.cache_clear()
    records.asctime.cache_clear()


# issue #178 (semonitor output quoted there; Date/Time converted from CEST to UTC)
I178 = {
    "156752FD": ("08:25:35", 14244, 30.75, 51.5, 9.11875),
    "156E3DA4": ("08:25:45", 14252, 30.375, 51.125, 9.175),
    "15675227": ("08:26:10", 14279, 30.625, 53.0, 11.1875),
    "173675DF": ("08:26:19", 14288, 30.125, 49.375, 7.7625),
    "156949E9": ("08:26:23", 14292, 30.875, 48.625, 6.987500000000001),
}


@pytest.mark.parametrize("opt_id", sorted(I178))
def test_s440_optimizer_matches_issue_178(records: dict[str, bytes], utc: None, opt_id: str) -> None:
    out = parse_post_data(records[f"i178_rec_opt0082_{opt_id}"])
    t, uptime, vmod, vopt, imod = I178[opt_id]
    assert out == {"inverters": {}, "events": {}, "optimizers": {opt_id: {
        "Date": "2019-10-12", "Time": t, "ID": opt_id, "Inverter": 0, "Uptime": uptime, "Vmod": vmod,
        "Vopt": vopt, "Imod": imod, "Eday": 0, "Temp": 0}}}


def test_meter_frame_issue_136(frames: dict[str, bytes], utc: None) -> None:
    f = decode(frames["i136_0500_meter0022"])
    rec = parse_data(f.function, f.payload)["meters_0x0022"]["73123D96"]["9_PVProduction"]
    assert rec["dateTime"] == 1563466491 and rec["Date"] == "2019-07-18" and rec["Time"] == "16:14:51"
    assert (rec["Interval"], rec["onlyIntervalData"], rec["recType"], rec["devLen"]) == (300, 1, 9, 58)
    assert rec["P2X"] == 0.0 and math.isnan(rec["PfromX"])  # FF FF 7F FF = not reported
    assert rec["Flag_off12_hex"] == "00 80" and rec["seType"] == "0x0022" and rec["devType"] == "meters_0x0022"
    assert '"PfromX": NaN' in dumps(parse_data(f.function, f.payload))


def test_legacy_optimizer_and_inverter_records(records: dict[str, bytes], utc: None) -> None:
    opt = parse_post_data(records["i8_rec_0000_1016AB88"])["optimizers"]["1016AB88"]
    assert opt["Inverter"] == "7F104A16"  # 0x7f904a16 with bit 23 cleared
    assert (opt["Vmod"], opt["Vopt"], opt["Eday"], opt["Temp"], opt["Uptime"]) == (36.625, 21.75, 14.0, 16.0, 3543)
    inv = parse_post_data(records["i8_rec_0010_7F404A16"])["inverters"]["7F404A16"]
    assert inv["Pac"] == 285.0 and inv["Pmax"] == 5000.0 and inv["Interval"] == 300
    assert set(inv) == {"Date", "Time", "ID", "Uptime", "Interval", "Temp", "Eday", "Eac", "Vac", "Iac", "Freq",
                        "Vdc", "Etot", "Pmax", "Pac"}


def test_packed_optimizer_bits(utc: None) -> None:
    payload = sim.record(0x0080, 0x20800001, sim.optimizer_0080(0, 7, 127.875, 64.5, 25.59375, 16383.75, -20.0))
    rec = parse_post_data(payload)["optimizers"]["20000001"]
    assert (rec["Vmod"], rec["Vopt"], rec["Imod"], rec["Eday"], rec["Temp"]) == (127.875, 64.5, 25.59375, 16383.75, -20.0)
    assert rec["Date"] == "1970-01-01" and rec["Time"] == "00:00:00"


def test_three_phase_event_battery_unknown(utc: None) -> None:
    ts = 1511078404
    payload = (sim.record(0x0011, 0x7F904A17, sim.inverter_0011(ts, 1, 300, 40.0, 2.0, 3.0, (230.0, 231.0, 229.5),
                                                                 (5.0, 5.5, 4.5), 50.0, 600.0, 2.0e7))
               + sim.record(0x0300, 0x7F104920, sim.event_0300(ts, 1, ts - 60, -28800, ts + 600))
               + sim.record(0x0030, 0x7F104920, sim.battery_0030(ts, "BAT1", 400.0, 1.0, 9800.0, 9700.0, 5000.0, 1, 2,
                                                                  25.0, 4, 300, 0, 10))
               + sim.record(0x0017, 0x7F104920, struct.pack("<L", ts) + bytes(range(20))))
    out = parse_post_data(payload)
    inv = out["inverters"]["7F104A17"]
    assert (inv["Vac2"], inv["Iac3"], inv["mode"], inv["Etot"]) == (231.0, 4.5, 4, 2.0e7)
    ev = out["events"]["7F104920"]
    assert ev == {"Date": "2017-11-19", "Time": "08:00:04", "ID": "7F104920", "Type": 1,
                  "Event1": "Sun Nov 19 07:59:04 2017", "Event2": -28800, "Event3": "Sun Nov 19 08:10:04 2017"}
    bat = out["batteries_0x0030"]["7F104920"]["BAT1"]
    assert bat["BattChargingStatus"] == 4 and bat["HexConst_52"] == "01 00 00 00" and bat["devLen"] == 86
    unk = out["Unknown_device_0x0017"]["7F104920"]
    assert unk == {"seType": "0x0017", "seId": "7F104920", "devLen": 24, "devType": "Unknown_device_0x0017",
                   "dateTime": ts, "Date": "2017-11-19", "Time": "08:00:04",
                   "Undeciphered_data": "00 01 02 03 04 05 06 07 08 09 0a 0b 0c 0d 0e 0f | 10 11 12 13"}


def test_short_records_fail_the_message() -> None:
    with pytest.raises(RecordError):
        parse_post_data(sim.record(0x0010, 1, bytes(100)))
    with pytest.raises(RecordError):
        parse_post_data(sim.record(0x0300, 1, bytes(30)))
    with pytest.raises(RecordError):
        parse_post_data(sim.record(0x0022, 1, bytes(50)))
    with pytest.raises(RecordError):
        parse_post_data(b"\x00\x00\x01")  # a header cut short


def test_ids_and_hex() -> None:
    assert parse_id(0x15E752FD) == "156752FD" and parse_id(0x7F990FF7) == "7F190FF7" and parse_id(0x00000ABC) == "ABC"
    assert hex_data(bytes(range(17))) == "00 01 02 03 04 05 06 07 08 09 0a 0b 0c 0d 0e 0f | 10"
    assert hex_data(b"") == ""


def test_payload_parsers() -> None:
    assert parse_data(0x0090, struct.pack("<LH", 0x232599E1, 0)) == {"value": 0x232599E1, "type": 0}
    assert parse_data(0x0011, struct.pack("<HL", 0x329, 1)) == {"param": 0x329, "value": 1}
    assert parse_data(0x0012, struct.pack("<H", 0x239)) == {"param": 0x239}
    assert parse_data(0x00B0, struct.pack("<HH", 3, 2468)) == {"version": "0003.2468"}
    assert parse_data(0x0580, struct.pack("<Ll", 100, -3600)) == {"time": 100, "tz": -3600}
    assert parse_data(0x039F, b"\x01\x02") == {"status": 0}
    assert parse_data(0x0080, b"") == ""
    assert parse_data(0x04D2, b"I am") == "4920616d"  # unknown function: hex
    assert parse_data(0x0090, b"\x01") == "01"  # wrong length: hex, no exception
    e = parse_data(0x038D, struct.pack("<ffffL", 1.5, 2.5, 3.5, 4.5, 0))
    assert e["Eday"] == 1.5 and e["Etot"] == 4.5 and isinstance(e["Time1"], str)


@settings(max_examples=EXAMPLES, deadline=None)
@given(st.integers(0, 0xFFFF), st.binary(max_size=400))
def test_any_payload_never_crashes(function: int, payload: bytes) -> None:
    try:
        out = parse_data(function, payload)
    except RecordError:
        assert function == 0x0500
        return
    json.dumps(out, default=lambda b: b.hex())


def test_sample_identical_to_original_semonitor(tmp_path) -> None:
    """sample.rec decoded by our semonitor == the original semonitor's output (TZ=US/Pacific)."""
    out = tmp_path / "out.json"
    env = dict(os.environ, TZ="US/Pacific")
    r = subprocess.run([sys.executable, "-m", "solarbridge.cli.semonitor", "-o", str(out), str(DATA / "sample.rec")],
                       env=env, capture_output=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert out.read_bytes() == (DATA / "sample.json").read_bytes()


def _record_strategy():
    layouts = {0x0080: 13, 0x0082: 15, 0x0000: 36, 0x0010: 104, 0x0011: 128, 0x0300: 28, 0x0030: 86, 0x0022: 58,
               0x0017: 24, 0x0800: 4}

    @st.composite
    def rec(draw):
        se_type = draw(st.sampled_from(sorted(layouts)))
        n = layouts[se_type] + draw(st.sampled_from([0, 0, 0, 3, -1]))
        raw_id = draw(st.sampled_from([0x20800001, 0x20000002, 0x7F104920]))
        data = draw(st.binary(min_size=max(0, n), max_size=max(0, n)))
        if se_type == 0x0030 and draw(st.booleans()):
            data = data[:4] + b"BATTERY1\x00\x00\x00\x00" + data[16:]
        return sim.record(se_type, raw_id, data)

    return rec()


@settings(max_examples=EXAMPLES, deadline=None)
@given(st.lists(_record_strategy(), max_size=8), st.binary(max_size=3))
def test_fast_rendering_equals_json_of_parse(recs: list[bytes], tail: bytes) -> None:
    """render_post_data (semonitor's fast path) == json.dumps(parse_post_data(...), sort_keys=True)."""
    from solarbridge.sources.solaredge.render import render_post_data

    payload = b"".join(recs) + (tail if len(tail) < 3 else b"")
    try:
        expected = dumps(parse_post_data(payload))
    except RecordError:
        with pytest.raises(RecordError):
            render_post_data(payload)
        return
    assert render_post_data(payload) == expected


def test_date_time_and_asctime_fast_paths_match_the_time_module(monkeypatch: pytest.MonkeyPatch) -> None:
    from solarbridge.sources.solaredge import records

    for tz in ("UTC", "US/Pacific", "Europe/Berlin", "Australia/Lord_Howe", "Asia/Kolkata"):
        monkeypatch.setenv("TZ", tz)
        time.tzset()
        records.date_time.cache_clear()
        # across both DST changes of 2021 and random times
        rng = __import__("random").Random(tz)
        stamps = list(range(1615690800 - 7200, 1615690800 + 7200, 599)) + list(
            range(1636250400 - 7200, 1636250400 + 7200, 601)) + [rng.randrange(0, 2**32) for _ in range(2000)]
        for ts in stamps:
            lt = time.localtime(ts)
            assert records.date_time(ts) == (time.strftime("%Y-%m-%d", lt), time.strftime("%H:%M:%S", lt)), (tz, ts)
            assert records.asctime(ts) == time.asctime(lt), (tz, ts)  # the event times' text
    monkeypatch.undo()
    time.tzset()
    records.date_time.cache_clear()


def test_fast_rendering_across_time_zones_and_dst(monkeypatch: pytest.MonkeyPatch) -> None:
    from solarbridge.sources.solaredge import records, render

    stamps = list(range(1615690800 - 5400, 1615690800 + 5400, 97)) + list(range(1636250400 - 5400, 1636250400 + 5400, 89))
    payload = b"".join(sim.record(0x0080, 0x20000000 + i, sim.optimizer_0080(ts, i, 30.0, 40.0, 5.0, 100.0, 20.0))
                       for i, ts in enumerate(stamps))
    try:
        for tz in ("UTC", "US/Pacific", "Europe/Berlin", "Australia/Lord_Howe", "Asia/Kathmandu"):
            monkeypatch.setenv("TZ", tz)
            time.tzset()
            records.date_time.cache_clear()
            assert render.render_post_data(payload) == dumps(parse_post_data(payload)), tz
    finally:
        monkeypatch.undo()
        time.tzset()
        records.date_time.cache_clear()
