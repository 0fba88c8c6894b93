"""Golden-file tests: each converter on semonitor JSON produced by the SolarEdge codec and simulator.

Inputs (tests/data/converters/*.json) come from make_inputs.py; expected outputs live in
tests/data/converters/golden/. Regenerate them with SOLARBRIDGE_UPDATE_GOLDEN=1 after a deliberate
change and review the diff. Besides the files, values documented in the reference (decodes quoted in
jbuehl/solaredge issue #178) are checked directly.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from solarbridge.cli import pickle2graphite, se2csv, se2graphite, se2state
from solarbridge.sinks.graphite.wire import decode_pickle, decode_text, encode_pickle
from support.convtools import DATA, update_golden

GOLDEN = DATA / "golden"
INPUTS = ["recorded", "simulated"]

sys.path.insert(0, str(DATA))


def check(name: str, actual: bytes) -> None:
    path = GOLDEN / name
    if update_golden():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(actual)
    assert path.exists(), f"missing golden file {path}; run with SOLARBRIDGE_UPDATE_GOLDEN=1"
    assert actual == path.read_bytes(), f"{name} differs from the golden file"


def test_inputs_are_what_the_codec_produces_from_the_reference_records(utc):
    """recorded.json is exactly the SolarEdge codec's decode of the reference's recorded records."""
    import make_inputs

    assert b"".join(make_inputs.recorded_lines()) == (DATA / "recorded.json").read_bytes()


@pytest.mark.parametrize("name", INPUTS)
def test_se2graphite_lines(name, capsysbinary):
    rc = se2graphite.main(["--dry-run", "--tz", "UTC", "-b", "solar", str(DATA / f"{name}.json")])
    out = capsysbinary.readouterr()
    assert rc == 0 and out.err == b""
    check(f"{name}.graphite.txt", out.out)


@pytest.mark.parametrize("name", INPUTS)
def test_pickle2graphite_dry_run_sends_the_same_metrics(name, capsysbinary):
    rc = pickle2graphite.main(["--dry-run", "--tz", "UTC", "-b", "solar", str(DATA / f"{name}.json")])
    out = capsysbinary.readouterr().out
    assert rc == 0
    assert out == (GOLDEN / f"{name}.graphite.txt").read_bytes()


@pytest.mark.parametrize("name", INPUTS)
def test_pickle_frames_carry_the_golden_points(name):
    """Frames for the golden points decode back to exactly those points (the pickle path of the tool)."""
    points = decode_text((GOLDEN / f"{name}.graphite.txt").read_bytes()).points
    frames = b"".join(encode_pickle(points, max_frame=4096))
    decoded = decode_pickle(frames, max_frame=4096)
    assert decoded.errors == 0 and decoded.rest == b""
    assert decoded.points == points


@pytest.mark.parametrize("name", INPUTS)
def test_se2csv_files(name, tmp_path):
    rc = se2csv.main(["-h", "-p", str(tmp_path / name), str(DATA / f"{name}.json")])
    assert rc == 0
    produced = sorted(p.name for p in tmp_path.glob("*.csv"))
    if update_golden():
        for old in GOLDEN.glob(f"{name}.*.csv"):
            old.unlink()
    for f in produced:
        check(f, (tmp_path / f).read_bytes())
    assert produced == sorted(p.name for p in GOLDEN.glob(f"{name}.*.csv"))


@pytest.mark.parametrize("name", INPUTS)
def test_se2state_file(name, tmp_path, utc):
    out = tmp_path / "state.json"
    rc = se2state.main(["--once", "-o", str(out), str(DATA / f"{name}.json")])
    assert rc == 0
    check(f"{name}.state.json", out.read_bytes())


# ----------------------------------------------------------------------------- values from the reference


def _lines(name: str) -> dict[str, tuple[float, float]]:
    pts = decode_text((GOLDEN / f"{name}.graphite.txt").read_bytes()).points
    return {p: (ts, v) for p, ts, v in pts}


@pytest.mark.parametrize(("opt", "utc_time", "uptime", "vmod", "vopt", "imod"), [
    # jbuehl/solaredge issue #178: semonitor's decode of 0x0082 records (times there are CEST = UTC+2)
    ("156752FD", "2019-10-12T08:25:35", 14244, 30.75, 51.5, 9.11875),
    ("156E3DA4", "2019-10-12T08:25:45", 14252, 30.375, 51.125, 9.175),
    ("15675227", "2019-10-12T08:26:10", 14279, 30.625, 53.0, 11.1875),
    ("173675DF", "2019-10-12T08:26:19", 14288, 30.125, 49.375, 7.7625),
    ("156949E9", "2019-10-12T08:26:23", 14292, 30.875, 48.625, 6.9875),
])
def test_documented_optimizer_values_reach_graphite_paths(opt, utc_time, uptime, vmod, vopt, imod):
    from datetime import datetime

    ts = datetime.fromisoformat(utc_time + "+00:00").timestamp()
    pts = _lines("recorded")
    base = f"solar.optimizers.{opt}"
    assert pts[f"{base}.Uptime"] == (ts, uptime)
    assert pts[f"{base}.Vmod"] == (ts, vmod)
    assert pts[f"{base}.Vopt"] == (ts, vopt)
    assert pts[f"{base}.Imod"][0] == ts and pts[f"{base}.Imod"][1] == pytest.approx(imod, abs=1e-9)
    assert f"{base}.ID" not in pts and f"{base}.Date" not in pts  # strings are not metrics


def test_csv_columns_follow_the_original_order():
    header = (GOLDEN / "simulated.optimizers.csv").read_bytes().split(b"\r\n")[0].decode()
    assert header == "__Identifier__,Date,Eday,ID,Imod,Inverter,Temp,Time,Uptime,Vmod,Vopt"
    inv = (GOLDEN / "simulated.inverters.csv").read_bytes().split(b"\r\n")[0].decode().split(",")
    # single-phase keys first (first record seen), the three-phase inverter's extra keys appended
    assert inv[:16] == ["__Identifier__", "Date", "Eac", "Eday", "Etot", "Freq", "ID", "Iac", "Interval", "Pac",
                        "Pmax", "Temp", "Time", "Uptime", "Vac", "Vdc"]
    assert "Vac3" in inv[16:] and "GndFrR" in inv[16:]


def test_state_stats_are_consistent_with_the_last_records():
    state = json.loads((GOLDEN / "simulated.state.json").read_text())
    invs = {k: v for k, v in state["inverters"].items() if k != "stats"}
    assert set(invs) == {"7F104920", "7F105920"}
    # the last line holds an event: Pac/Eac zeroed everywhere, as the original
    assert state["inverters"]["stats"]["Pac"] == 0.0
    assert all(v["Pac"] == 0.0 and v["Eac"] == 0.0 for v in invs.values())
    assert state["inverters"]["stats"]["Etot"] == pytest.approx(sum(v["Etot"] for v in invs.values()))
    opts = {k: v for k, v in state["optimizers"].items() if k != "stats"}
    assert len(opts) == 6 and all("Pdc" in v for v in opts.values())


def test_golden_dir_is_complete():
    names = {p.name for p in GOLDEN.iterdir()}
    for n in INPUTS:
        assert {f"{n}.graphite.txt", f"{n}.state.json"} <= names
    assert Path(DATA / "PROVENANCE.md").exists()


def test_recorded_frame_meter_values_documented_in_issue_136():
    """Frame i136_0500_meter0022 (CRC-valid): dateTime 1563466491, Interval 300, recType 9, onlyIntervalData 1."""
    pts = _lines("recorded")
    base = "solar.meters_0x0022.73123D96.9_PVProduction"
    assert pts[f"{base}.Interval"] == (1563466491.0, 300)
    assert pts[f"{base}.dateTime"] == (1563466491.0, 1563466491)
    assert pts[f"{base}.recType"] == (1563466491.0, 9)
    assert pts[f"{base}.onlyIntervalData"] == (1563466491.0, 1)
    assert pts[f"{base}.E2X"] == (1563466491.0, 0) and pts[f"{base}.P2X"] == (1563466491.0, 0.0)
