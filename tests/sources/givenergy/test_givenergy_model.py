"""Register model, GivTCP outputs and the simulator's physics (pure, no sockets)."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from solarbridge.config import ConfigError, build
from solarbridge.sources.givenergy.framing import Framer, ReadResponse, parse_capture_line
from solarbridge.sources.givenergy.givtcp import flatten, get_combined_stats
from solarbridge.sources.givenergy.model import Plant
from solarbridge.sources.givenergy.readings import build_reading
from solarbridge.sources.givenergy.registers import INPUT_TABLE, decode, hhmm, identify
from solarbridge.sources.givenergy.simulator import SimInverter, main
from support.paths import DATA as DATA_ROOT

DATA = DATA_ROOT / "givenergy"


def plant_from_capture(name: str) -> Plant:
    plant = Plant()
    framer = Framer()
    for line in (DATA / name).read_text().splitlines():
        p = parse_capture_line(line)
        if p and p[0] == "rx":
            for f in framer.feed(p[1]):
                if isinstance(f, ReadResponse):
                    plant.apply(f)
    return plant


def test_hhmm_and_garbage_times() -> None:
    assert hhmm(2330) == (23, 30) and hhmm(430) == (4, 30) and hhmm(0) == (0, 0)
    assert hhmm(52800) is None and hhmm(16390) is None and hhmm(1275) is None and hhmm(2400) is None


def test_u32_high_word_first_and_signed() -> None:
    regs = {i: 0 for i in range(60)}
    regs[11], regs[12] = 3, 0x3A02  # (3 << 16 | 0x3A02) = 211458 deci-kWh
    regs[30] = 0xFD2F  # -721 W: importing
    regs[52] = 0x0168  # +360 W: discharging
    d = decode(INPUT_TABLE, regs)
    assert d["e_pv_total"] == 21145.8
    assert d["p_grid_out"] == -721 and d["p_battery"] == 360


def test_identify_models() -> None:
    assert identify(0x2001, 449).label == "Gen1 Hybrid"
    assert identify(0x2001, 912).label == "Gen2 Hybrid"
    assert identify(0x2001, 302).label == "Gen3 Hybrid"
    assert identify(0x3001, 533).key == "ac"
    assert identify(0x8001, 612).key == "aio"
    assert identify(0x2003, 193).max_inverter_w == 3600


def test_hybrid_capture_reading() -> None:
    plant = plant_from_capture("hybrid_2_bat_a/hybrid_gen1_arm449_0x11_poll_10min.log")
    r = build_reading(plant)
    m = r.metrics
    assert r.device_id == "SA2114G000" and r.info is not None and r.info.model == "Gen1 Hybrid"
    iv = plant.input_values()
    # sign conventions: canonical grid is + import, GivEnergy IR30 is + export
    assert m["grid_power_w"] == -iv["p_grid_out"]
    assert m["battery_power_w"] == iv["p_battery"]
    assert m["pv_power_w"] == iv["p_pv1"] + iv["p_pv2"]
    assert m["pv_energy_total_wh"] == round(((plant.input[11] << 16) | plant.input[12]) * 100)
    assert [b["serial_number"][:2] for b in plant.battery_values()] == ["BG", "DZ"]
    tree = r.extra["givtcp"]
    assert tree["Invertor Details"]["Battery Capacity kWh"] == round(plant.holding[55] * 51.2 / 1000, 2)
    assert tree["Timeslots"]["Charge start time slot 1"] == plant.holding[94]
    leaves = flatten(tree)
    assert "Power/Flows/Solar to House" in leaves and "Energy/Total/PV Energy Total kWh" in leaves


@pytest.mark.parametrize("name", ["aio_a/aio_arm620_redetect_7min.log", "hybrid_hv_gen3_a/givhy80g3hv_hass295_120s.log",
                                  "gateway_2aio_a/gateway_gaaa0014_10min_night.log"])
def test_other_captures_do_not_break_outputs(name: str) -> None:
    plant = plant_from_capture(name)
    r = build_reading(plant, layout="v3")
    assert isinstance(r.extra["givtcp"], dict)


regs_st = st.dictionaries(st.integers(0, 240), st.integers(0, 0xFFFF), max_size=240)


@given(regs_st, regs_st, st.dictionaries(st.integers(0, 5), st.dictionaries(st.integers(60, 119),
                                                                           st.integers(0, 0xFFFF)), max_size=3))
def test_outputs_never_crash_on_any_registers(hr: dict[int, int], ir: dict[int, int],
                                              bats: dict[int, dict[int, int]]) -> None:
    plant = Plant(holding=dict(hr), input=dict(ir), batteries=bats)
    for layout in ("v1", "v3"):
        r = build_reading(plant, layout=layout, raw=True)
        flatten(r.extra["givtcp"])
    stats = get_combined_stats(plant)
    if stats:
        assert stats["Power"].get("PV Power", 0) < 15000
        assert all(v < 100000 for v in stats["Energy/Total"].values())


def test_validity_gates() -> None:
    plant = Plant()
    plant.input.update({i: 1 for i in range(60)})
    plant.input[18], plant.input[20] = 9000, 9000  # 18 kW PV: glitch
    plant.input[42] = 20000  # 20 kW load: glitch
    plant.input[59] = 2  # SOC <= 3 dropped
    power = get_combined_stats(plant)["Power"]
    assert "PV Power" not in power and "Load Power" not in power and "SOC" not in power
    plant.input.update({i: 0 for i in range(55)})
    plant.version += 1  # direct writes to the banks announce themselves (decoded views are cached)
    assert get_combined_stats(plant) == {}  # mostly zero block: publish nothing


# --------------------------------------------------------------------------- simulator physics


def sim_at(hour: int, minute: int = 0, **kw: object) -> SimInverter:
    inv = SimInverter(**kw)  # type: ignore[arg-type]
    inv.set_time(datetime(2026, 1, 15, hour, minute))
    inv.speed = 0.0  # freeze the clock; tick() advances physics only
    return inv


def test_charge_slot_charges_to_target_from_grid() -> None:
    inv = sim_at(2)  # night, inside the default slot 00:30-04:30
    inv.soc = 40.0
    inv.holding[20], inv.holding[116] = 1, 60
    inv.tick(60)
    assert inv.batt_w < 0  # charging
    assert inv.input[30] > 0x7FFF  # grid import (IR30 negative)
    for _ in range(400):
        inv.tick(60)
    assert 59.0 <= inv.soc <= 61.5  # stops at the target
    assert inv.batt_w >= 0


def test_schedule_disabled_no_night_charge() -> None:
    inv = sim_at(2)
    inv.soc = 40.0
    inv.holding[96] = 0
    inv.tick(60)
    assert inv.batt_w > 0  # eco: covers the house load instead


def test_reserve_stops_discharge() -> None:
    inv = sim_at(20)
    inv.soc = 10.0
    inv.holding[110] = 10
    inv.tick(60)
    assert inv.batt_w == 0
    inv.holding[110] = 4
    inv.tick(60)
    assert inv.batt_w > 0


def test_timed_export_discharges_at_full_power_in_slot() -> None:
    inv = sim_at(17, 30)
    inv.soc = 90.0
    inv.holding[27], inv.holding[59] = 0, 1
    inv.holding[56], inv.holding[57] = 1700, 1900
    inv.tick(60)
    assert inv.batt_w == pytest.approx(inv.max_battery_w)
    grid = inv.input[30] - 0x10000 if inv.input[30] & 0x8000 else inv.input[30]
    load = inv.input[42]
    assert grid > 0 or load > inv.max_battery_w  # exporting unless the house takes it all
    inv.holding[27] = 1  # timed demand: only the house load
    inv.tick(60)
    pv, load = inv.input[18] + inv.input[20], inv.input[42]
    assert inv.batt_w == pytest.approx(max(load - pv, 0), abs=2)


def test_timed_mode_outside_slot_keeps_battery() -> None:
    inv = sim_at(21)
    inv.soc = 90.0
    inv.holding[27], inv.holding[59] = 1, 1
    inv.holding[56], inv.holding[57] = 1700, 1900
    inv.tick(60)
    assert inv.batt_w == 0


def test_energy_counters_monotonic() -> None:
    inv = sim_at(12)
    before = dict(inv.energy_wh)
    plant = Plant()
    for _ in range(30):
        inv.tick(60)
    for k in ("pv_total", "grid_in_total", "grid_out_total", "inverter_out_total"):
        assert inv.energy_wh[k] >= before[k]
    plant.input.update(enumerate(inv.input[:60]))
    assert plant.input_values()["e_pv_total"] == pytest.approx(inv.energy_wh["pv_total"] / 1000, abs=0.1)


def test_simulator_cli_rejects_bad_options(capsys: pytest.CaptureFixture[str]) -> None:
    for argv in (["--batteries", "9"], ["--corrupt-rate", "2"], ["--model", "tesla"], ["--port", "70000"],
                 ["--replay", "/nonexistent.log"]):
        with pytest.raises(SystemExit) as ei:
            main(argv)
        assert ei.value.code == 2
    assert "--batteries must be 0..6" in capsys.readouterr().err


def test_daemon_config_validation(tmp_path: Path) -> None:
    cfg = build({"sources": [{"type": "givenergy", "host": "127.0.0.1", "poll_interval": 5}]})
    assert cfg.sources[0].host == "127.0.0.1" and cfg.sources[0].layout == "v1"
    with pytest.raises(ConfigError, match=r"sources\[0\]\.poll_interval"):
        build({"sources": [{"type": "givenergy", "host": "127.0.0.1", "poll_interval": 0}]})
    with pytest.raises(ConfigError, match=r"sources\[0\]\.colour: unknown key"):
        build({"sources": [{"type": "givenergy", "host": "x", "colour": "red"}]})
    with pytest.raises(ConfigError, match=r"sources\[0\]\.host: required"):
        build({"sources": [{"type": "givenergy"}]})
