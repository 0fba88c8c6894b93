"""Port-file variables and formulas against the worked examples and the original's own output."""

from __future__ import annotations

import json
from decimal import Decimal as D

import pytest
from hypothesis import given
from hypothesis import strategies as st

from solarbridge.sinks.nut.portfile import (
    MeterRow,
    NutInputs,
    PortFile,
    PortFileError,
    battery_runtime,
    battery_voltage,
    classify,
    current,
    full_status,
    generate,
    render,
    ups_load,
)
from solarbridge.sources.enphase.responses import parse_reports
from support.enphase import EXAMPLE, FIXTURES, example_settings, port_values


@pytest.mark.parametrize("soc,expected", [
    (100, "86.4"), (95, "85.2"), (90, "84.0"), (50, "79.2"), (24, "75.3"), (20, "74.4"), (0, "60.0"),
    (110, "87.6"), (-5, "60.0"), (200, "87.6"),
])
def test_battery_voltage_examples(soc: int, expected: str) -> None:
    assert battery_voltage(D(soc), D("86.4")) == expected


def test_battery_voltage_scales_with_high() -> None:
    # 100 % reads exactly voltage.high whatever it is
    assert battery_voltage(D(100), D("57.6")) == "57.6"
    assert battery_voltage(D(100), D("43.2")) == "43.2"


@given(st.decimals(min_value=0, max_value=110, places=2), st.decimals(min_value=0, max_value=110, places=2))
def test_battery_voltage_monotonic(a: D, b: D) -> None:
    lo, hi = sorted((a, b))
    assert D(battery_voltage(lo, D("86.4"))) <= D(battery_voltage(hi, D("86.4")))


def test_runtime_and_load_examples() -> None:
    assert battery_runtime(D(100), D(10), 5000, D("3069.4")) == 5277
    assert battery_runtime(D(90), D(10), 5000, D("3069.4")) == 4691
    assert battery_runtime(D(24), D(10), 5000, D("3069.4")) == 821
    assert ups_load(D("3069.4"), 5000, 768) == "79.9"


def test_runtime_edges() -> None:
    assert battery_runtime(D(50), D(10), 5000, D(0)) == 172800  # no load: capped
    assert battery_runtime(D(50), D(10), 5000, D(-20)) == 172800
    assert battery_runtime(D(5), D(10), 5000, D(100)) == 0  # below the restart floor
    assert battery_runtime(D(100), D(0), 100000, D("0.1")) == 172800  # capped at two days


def test_load_edges() -> None:
    assert ups_load(D(0), 5000, 768) == "0.0"
    assert ups_load(D("-384"), 5000, 768) == "-10.0"
    assert ups_load(D(100), 5000, 0) is None  # LOADKWH=0 disables ups.load
    assert ups_load(D(100), 5, 768) is None  # capacity below 10 Wh: no division by zero


def test_current_truncates_not_rounds() -> None:
    assert current("173.4", "248.4") == "0.69"  # 0.698...
    assert current("3069.4", "248.4") == "12.35"  # 12.356...
    assert current("-1500.5", "240.2") == "-6.24"  # sign kept, truncated toward zero
    assert current("100.0", "0.0") == "0.00"


def test_lb_is_strictly_below_charge_low() -> None:
    i = NutInputs(status="OB", charge="20")
    assert full_status(i, {"battery.charge.low": "20"}) == "OB"
    i.charge = "19.99"
    assert full_status(i, {"battery.charge.low": "20"}) == "OB LB"
    i.status = "OL"
    assert full_status(i, {"battery.charge.low": "20"}) == "OL LB"
    i.status = ""
    assert full_status(i, {"battery.charge.low": "20"}) == ""


def _reports(name: str) -> list:
    return json.loads((FIXTURES / name / "ivp_meters_reports").read_text())


def test_example_matches_original_output() -> None:
    """The example TEST config through our mapping gives the original script's test.dev (same set of lines)."""
    rep = parse_reports(example_settings("TEST_REPORTS"))
    assert rep is not None and rep.total and rep.net and rep.storage
    inputs = NutInputs(status="OL", charge="100", capacity="5000", restart="10", firmware="D8.3.5169",
                       serial="202439990001", input=rep.net, output=rep.total, storage=rep.storage)
    kept, overrides = classify((EXAMPLE / "test.dev.initial").read_text().splitlines(), keep_user_lines=False)
    text = render(kept, generate(inputs, overrides))
    expected = (EXAMPLE / "test.dev").read_text()
    assert port_values(text) == port_values(expected)
    assert sorted(text.splitlines()) == sorted(expected.splitlines())
    assert text.splitlines()[:2] == ["ups.delay.shutdown: 20", "foo.bar: baz"]  # kept lines first, in order


def test_user_lines_kept_by_default() -> None:
    lines = (EXAMPLE / "test.dev.initial").read_text().splitlines()
    kept, overrides = classify(lines)
    assert kept == ["ups.delay.shutdown: 20", "battery.mfr.date: 2024", "foo.bar: baz", "input.transfer.low: 100"]
    assert overrides == {"battery.charge.low": "25", "device.model": "My Gateway"}
    kept, _ = classify(lines, keep_user_lines=False)
    assert kept == ["ups.delay.shutdown: 20", "foo.bar: baz"]  # the original loses the other two


def test_generated_lines_never_kept() -> None:
    lines = ["ups.status: OB", "battery.charge: 5", "ups.load: 3", "input.L2-N.voltage: 1", "output.L3.current: 9",
             "input.phases: 3", "battery.runtime: 7", "ups.firmware: x", "my.var: 1"]
    kept, _ = classify(lines)
    assert kept == ["my.var: 1"]


def test_overrides_are_honoured() -> None:
    inputs = NutInputs(status="OB", charge="24", capacity="5000")
    out = generate(inputs, {"battery.charge.low": "25", "battery.voltage.high": "57.6", "ups.mfr": "Me"})
    assert out["ups.status"] == "OB LB"
    assert out["battery.charge.low"] == "25"
    assert out["battery.voltage"] == battery_voltage(D(24), D("57.6"))
    assert out["ups.mfr"] == "Me" and out["device.mfr"] == "Enphase Energy"


def test_three_phase_naming() -> None:
    rows = [MeterRow(900, 950, 230.1, 0.95, 50.0)] + [MeterRow(300, 310, 230.0 + n, 0.97, 50.0) for n in range(3)]
    out = generate(NutInputs(status="OL", phases=3, input=rows, output=rows), {})
    assert out["input.phases"] == out["output.phases"] == "3"
    for g in ("input", "output"):
        assert out[f"{g}.voltage"] == "230.1"
        for n in (1, 2, 3):
            assert out[f"{g}.L{n}-N.voltage"] == f"{230.0 + n - 1:.1f}"
            assert out[f"{g}.L{n}.realpower"] == "300.0"
            assert out[f"{g}.L{n}.current"] == current("300.0", f"{230.0 + n - 1:.1f}")
            assert f"{g}.L{n}.voltage" not in out


def test_split_phase_gives_totals_only() -> None:
    rep = parse_reports((FIXTURES / "8.3.5169_with_generator" / "ivp_meters_reports").read_text())
    assert rep is not None and rep.net is not None and len(rep.net) == 3  # cumulative + 2 lines
    out = generate(NutInputs(status="OL", input=rep.net, output=rep.total), {})
    assert not any(".L1" in k or ".L2" in k for k in out)
    assert "input.phases" not in out
    assert out["input.realpower"] == "173.4" and out["output.realpower"] == "3069.4"


def test_no_meters_writes_zeros() -> None:
    out = generate(NutInputs(status="OL", charge="50", capacity="5000"), {})
    assert out["input.realpower"] == "0.0" and out["input.powerfactor"] == "0.00"
    assert out["input.current"] == "0.00" and out["battery.current"] == "0.00"
    assert out["ups.load"] == "0.0" and out["battery.runtime"] == "172800"


def test_no_status_means_nothing_to_write() -> None:
    assert generate(NutInputs(status="", charge="50"), {}) == {}


def test_port_file_rewrites_only_on_change(tmp_path) -> None:
    p = tmp_path / "ups.dev"
    p.write_text("my.note: hello\nups.status: OL\n")
    pf = PortFile(p)
    values = generate(NutInputs(status="OB", charge="80"), {})
    assert pf.update(values) is True
    ino = p.stat().st_ino
    assert pf.update(values) is False
    assert p.stat().st_ino == ino  # untouched
    text = p.read_text()
    assert text.startswith("my.note: hello\nups.status: OB\n")
    assert pf.update(generate(NutInputs(status="OL", charge="80"), {})) is True
    assert p.stat().st_ino != ino  # atomic replace: a new inode, never a truncated file
    assert not list(tmp_path.glob(".ups.dev.*"))  # no temp files left behind


def test_port_file_keeps_mode(tmp_path) -> None:
    p = tmp_path / "ups.dev"
    p.write_text("")
    p.chmod(0o640)
    PortFile(p).update({"ups.status": "OL"})
    assert p.stat().st_mode & 0o777 == 0o640


def test_nocomms_rename_and_back(tmp_path) -> None:
    p = tmp_path / "ups.dev"
    p.write_text("ups.status: OL\n")
    pf = PortFile(p)
    assert pf.hide() is True
    assert not p.exists() and (tmp_path / "ups.dev-nocomms").read_text() == "ups.status: OL\n"
    values, hidden = pf.initial()
    assert hidden and "ups.status" not in values
    assert pf.hide() is False
    assert pf.restore() is True
    assert p.exists() and not (tmp_path / "ups.dev-nocomms").exists()


def test_port_file_must_exist(tmp_path) -> None:
    pf = PortFile(tmp_path / "missing.dev")
    with pytest.raises(PortFileError, match="Port file '.*missing.dev' unreadable"):
        pf.initial()
    with pytest.raises(PortFileError, match="missing/write-protected"):
        pf.update({"ups.status": "OL"})


@given(st.lists(st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=40), max_size=20))
def test_classify_never_crashes_and_render_roundtrips(lines: list[str]) -> None:
    kept, overrides = classify(lines)
    text = render(kept, {"ups.status": "OL"})
    assert text.endswith("ups.status: OL\n")
