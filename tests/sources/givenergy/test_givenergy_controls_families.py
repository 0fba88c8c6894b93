"""The EMS plant controller's and the three-phase inverter's own controls, round-tripped against the simulator
over real sockets: validated (one message naming the field and range, nothing written), written (the
simulator's write log), read back and reported as the control's state.

The registers each command must write come from the givenergy-modbus package's own write commands
(``givenergy_modbus.client.commands``): an independent oracle for the register numbers and values.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from datetime import time
from pathlib import Path
from typing import Any

import pytest
from givenergy_modbus.client import commands as lib
from givenergy_modbus.model import TimeSlot
from givenergy_modbus.model.battery import BatteryPauseMode
from givenergy_modbus.model.inverter import SinglePhaseInverterRegisterGetter
from givenergy_modbus.model.inverter_threephase import ThreePhaseInverterRegisterGetter
from givenergy_modbus.model.slot_map import EXTENDED_SLOTS, THREE_PHASE_SLOTS

from servers import async_wait_for
from solarbridge.model import ControlError, ControlRequest, Reading
from solarbridge.plugin import Context
from solarbridge.sources.givenergy.simulator import DongleSimulator, SimInverter
from solarbridge.sources.givenergy.source import GivEnergyConfig, GivEnergySource


def run(coro: Any, timeout: float = 60.0) -> Any:
    async def wrapped() -> Any:
        return await asyncio.wait_for(coro, timeout)
    return asyncio.run(wrapped())


def writes(requests: list[Any]) -> dict[int, int]:
    """The library's write requests as {register: value}."""
    return {r.register: r.value for r in requests}


def slot(a: str, b: str) -> TimeSlot:
    return TimeSlot(time(*map(int, a.split(":"))), time(*map(int, b.split(":"))))


@contextlib.asynccontextmanager
async def running(model: str, state_dir: Path) -> AsyncIterator[tuple[DongleSimulator, GivEnergySource, list[Reading]]]:
    sim = DongleSimulator(SimInverter(model, 2), "127.0.0.1", 0)
    await sim.start()
    cfg = GivEnergyConfig(type="givenergy", name="ge", host="127.0.0.1", port=sim.port, poll_interval=0.1,
                          request_gap=0)
    src = GivEnergySource(cfg, Context.standalone("ge", "source", "givenergy", state_dir))
    src.timer_tick = 0.02
    readings: list[Reading] = []
    task = asyncio.create_task(src.run(readings.append))
    try:
        await async_wait_for(lambda: readings and readings[-1].metrics, 15, "first reading")
        yield sim, src, readings
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await sim.stop()


async def control(src: GivEnergySource, command: str, value: Any = None) -> Any:
    return await src.control(ControlRequest(src.client.plant.serial, command, value, origin="test"))


# ---------------------------------------------------------------------------------------------- EMS

# (control or command, value, the library's writes for the same, the state read back (daemon controls))
EMS_CASES = [
    ("charge_slot_2_start", "01:15", lib.set_ems_charge_slot_start(2, time(1, 15)), "01:15"),
    ("discharge_slot_3_end", "19:30", lib.set_ems_discharge_slot_end(3, time(19, 30)), "19:30"),
    ("export_slot_1_start", "16:00", lib.set_ems_export_slot_start(1, time(16, 0)), "16:00"),
    ("export_slot_3_end", "18:45", lib.set_ems_export_slot_end(3, time(18, 45)), "18:45"),
    ("charge_slot_1_target_pct", 85, lib.set_ems_charge_target_soc(1, 85), 85),
    ("discharge_slot_2_target_pct", 15, lib.set_ems_discharge_target_soc(2, 15), 15),
    ("export_slot_2_target_pct", 25, lib.set_ems_export_target_soc(2, 25), 25),
    ("export_limit_w", 3000, lib.set_ems_export_power_limit(3000), 3000),
    ("ems_plant_enabled", False, lib.set_ems_plant(False), False),
    # GivTCP command names and payloads
    ("setChargeSlot2", {"start": "01:00", "finish": "03:00", "chargeToPercent": "90"},
     lib.set_ems_charge_slot(2, slot("01:00", "03:00")) + lib.set_ems_charge_target_soc(2, 90), None),
    ("setDischargeSlot", {"slot": 1, "start": "16:30", "finish": "19:00", "dischargeToPercent": 20},
     lib.set_ems_discharge_slot(1, slot("16:30", "19:00")) + lib.set_ems_discharge_target_soc(1, 20), None),
    ("setExportSlot", {"slot": 3, "start": "17:00", "finish": "18:00"}, lib.set_ems_export_slot(3, slot("17:00", "18:00")),
     None),
    ("setExportTarget", {"slot": 2, "exportToPercent": 40}, lib.set_ems_export_target_soc(2, 40), None),
    ("setChargeSlotEnd", {"slot": 3, "finish": "06:10"}, lib.set_ems_charge_slot_end(3, time(6, 10)), None),
    ("setEmsPlant", {"state": "enable"}, lib.set_ems_plant(True), None),
    ("setExportLimit", {"state": "4500"}, lib.set_ems_export_power_limit(4500), None),
]


def round_trip(model: str, state_dir: Path, command: str, value: Any, want: dict[int, int], shown: Any) -> Any:
    """One control against the simulated ``model``: exactly the ``want`` register writes, accepted and read
    back from the unit, and (when ``shown`` is given) the reply and the next reading show ``shown``."""
    async def go() -> Any:
        async with running(model, state_dir) as (sim, src, readings):
            res = await control(src, command, value)
            log = sim.inverter.write_log
            assert [(w.register, w.value) for w in log] == list(want.items()) and all(w.accepted for w in log)
            assert {r: sim.inverter.holding[r] for r in want} == want
            assert res.ok and res.details["writes"] == res.details["read_back"]
            if shown is not None:
                assert res.value == shown and type(res.value) is type(shown)
                assert readings[-1].metrics[command] == shown
            return res
    return run(go())


@pytest.mark.parametrize(("command", "value", "expected", "shown"), EMS_CASES, ids=[c[0] for c in EMS_CASES])
def test_ems_control_round_trip(tmp_path: Path, command: str, value: Any, expected: list[Any], shown: Any) -> None:
    res = round_trip("ems", tmp_path, command, value, writes(expected), shown)
    assert all(k.startswith("ems_") for k in res.details["writes"])


def test_ems_controls_are_reported_in_givtcp_names(tmp_path: Path) -> None:
    async def go() -> None:
        async with running("ems", tmp_path) as (_sim, src, readings):
            await control(src, "setExportSlot", {"slot": 3, "start": "17:00", "finish": "18:00",
                                                 "exportToPercent": "35"})
            await control(src, "setDischargeTarget", {"slot": 2, "dischargeToPercent": "12"})
            await control(src, "setCarChargeBoost", {"boost": "3600"})
            tree = readings[-1].extra["givtcp"]
            assert (tree["Timeslots"]["Export start time slot 3"], tree["Timeslots"]["Export end time slot 3"]) \
                == (1700, 1800)
            assert tree["Control"]["Export Target SOC 3"] == 35 and tree["Control"]["EMS Discharge Target SOC 2"] == 12
            assert tree["Control"]["Car Charge Boost"] == 3600
            m = readings[-1].metrics
            assert (m["export_slot_3_start"], m["export_slot_3_target_pct"]) == ("17:00", 35)
    run(go())


def test_ems_car_charge_boost_round_trip(tmp_path: Path) -> None:
    # not in the library's writers (it reads HR2073 only); GivTCP writes it, 0..22000 W
    async def go() -> None:
        async with running("ems", tmp_path) as (sim, src, readings):
            res = await control(src, "car_charge_boost_w", 7400)
            assert [(w.register, w.value, w.accepted) for w in sim.inverter.write_log] == [(2073, 7400, True)]
            assert res.value == 7400 and readings[-1].metrics["car_charge_boost_w"] == 7400
    run(go())


# (command, value, message, field)
EMS_BAD = [
    ("setExportTarget1", "101", "percent: must be 0..100 (got 101)", "percent"),
    ("setCarChargeBoost", "23000", "boost: must be a power in W, 0..22000 (got '23000')", "boost"),
    ("setChargeSlot4", {"start": "01:00", "finish": "02:00"}, "3 slots of each kind (slot 4 asked)", "slot"),
    ("setExportSlot", {"slot": 4, "start": "01:00", "finish": "02:00"}, "slot: must be 1..3 (got 4)", "slot"),
    ("setExportSlot1", {"start": "25:00", "finish": "02:00"}, "start: must be a time HH:MM", "start"),
    ("export_limit_w", 70000, "export_limit_w: must be a power in W, 0..65000 (got 70000)", "export_limit_w"),
    ("setBatteryReserve", "10", "not supported by this EMS plant controller", "command"),
    ("forceCharge", "30", "not supported by this EMS plant controller", "command"),
]


def test_ems_bad_payloads_write_nothing_and_name_the_field(tmp_path: Path) -> None:
    async def go() -> None:
        async with running("ems", tmp_path) as (sim, src, readings):
            for command, value, message, field in EMS_BAD:
                with pytest.raises(ControlError) as ei:
                    await control(src, command, value)
                assert message in str(ei.value) and ei.value.field_name == field, (command, str(ei.value))
                assert ei.value.status == 400 and "\n" not in str(ei.value)
            assert sim.inverter.write_log == []
    run(go())


def test_ems_offers_its_own_controls(tmp_path: Path) -> None:
    async def go() -> None:
        async with running("ems", tmp_path) as (_sim, _src, readings):
            names = {c.name for c in readings[-1].info.controls}
            assert {"export_limit_w", "ems_plant_enabled", "car_charge_boost_w", "export_slot_3_end",
                    "export_slot_1_target_pct", "charge_slot_3_start", "discharge_slot_2_target_pct"} <= names
            assert not names & {"charge_slot_4_start", "battery_mode", "force_charge_min", "battery_reserve_pct",
                                "eps_enabled", "battery_calibration"}
    run(go())


def test_export_slots_and_the_plant_switch_are_refused_on_an_inverter(tmp_path: Path) -> None:
    async def go() -> None:
        async with running("ac", tmp_path) as (sim, src, _readings):
            for command, value in (("setExportSlot1", {"start": "01:00", "finish": "02:00"}),
                                   ("setEmsPlant", "enable"), ("setCarChargeBoost", "100")):
                with pytest.raises(ControlError, match="only an EMS plant controller") as ei:
                    await control(src, command, value)
                assert ei.value.status == 400
            assert sim.inverter.write_log == []
    run(go())


# ---------------------------------------------------------------------------------------------- three-phase

def lut_register(name: str) -> int:
    """Where givenergy-modbus's three-phase model reads ``name`` (one holding register)."""
    (reg,) = ThreePhaseInverterRegisterGetter.REGISTER_LUT[name].registers
    assert str(reg).startswith("HR"), reg
    return int(str(reg).removeprefix("HR_").removeprefix("HR(").rstrip(")"))


# (control, value, the library's writes (or {register from its three-phase model: value}), state read back)
THREE_CASES = [
    ("charge_slot_3_target_pct", 80, {lut_register("charge_target_soc_3"): 80}, 80),
    ("charge_slot_1_target_pct", 95, {lut_register("charge_target_soc_1"): 95}, 95),
    ("discharge_slot_10_target_pct", 30, {lut_register("discharge_target_soc_10"): 30}, 30),
    ("eps_enabled", False, {lut_register("backup_enable"): 0}, False),
    ("battery_calibration", "Start", writes(lib.set_calibrate_battery_soc(1)), "Start"),
    ("battery_calibration", "Charge Only", writes(lib.set_calibrate_battery_soc(3)), "Charge Only"),
    ("setChargeSlot4", {"start": "02:00", "finish": "03:30", "chargeToPercent": "70"},
     {**writes(lib.set_charge_slot_start(4, time(2, 0), THREE_PHASE_SLOTS)),
      **writes(lib.set_charge_slot_end(4, time(3, 30), THREE_PHASE_SLOTS)), lut_register("charge_target_soc_4"): 70},
     None),
]


@pytest.mark.parametrize(("command", "value", "expected", "shown"), THREE_CASES,
                         ids=[f"{c[0]}={c[1]}" for c in THREE_CASES])
def test_three_phase_control_round_trip(tmp_path: Path, command: str, value: Any, expected: dict[int, int],
                                        shown: Any) -> None:
    round_trip("3ph", tmp_path, command, value, expected, shown)


def test_three_phase_calibration_stage_is_readable(tmp_path: Path) -> None:
    async def go() -> None:
        async with running("3ph", tmp_path) as (sim, src, readings):
            await control(src, "battery_calibration", "Start")
            # the unit moves through its stages in HR29 (givenergy-modbus BatteryCalibrationStage, e.g. 2 "Set
            # Lower Limit"); the control shows it is running, the stage metric which stage
            sim.inverter.holding[29] = 2
            await async_wait_for(lambda: readings[-1].metrics.get("battery_calibration_stage") == 2, 10,
                                 "the stage read back")
            assert readings[-1].metrics["battery_calibration"] == "Start"
            await control(src, "battery_calibration", "Off")
            assert sim.inverter.holding[29] == 0 and readings[-1].metrics["battery_calibration"] == "Off"
    run(go())


@pytest.mark.parametrize(("kind", "registers"), [("tempPauseCharge", (1110,)), ("tempPauseDischarge", (1108,)),
                                                 ("tempPauseBattery", (1110, 1108))])
def test_three_phase_timed_pause_zeroes_its_ac_rates_then_reverts(tmp_path: Path, kind: str,
                                                                 registers: tuple[int, ...]) -> None:
    assert {lut_register("battery_charge_limit_ac"), lut_register("battery_discharge_limit_ac")} == {1110, 1108}

    async def go() -> None:
        async with running("3ph", tmp_path) as (sim, src, readings):
            inv = sim.inverter
            before = {r: inv.holding[r] for r in registers}
            assert all(v > 0 for v in before.values())
            charging = inv.battery_power(6000.0, 300.0, 1200)  # a sunny noon: the surplus charges the battery
            res = await control(src, kind, 30)
            assert [(w.register, w.value) for w in inv.write_log] == [(r, 0) for r in registers]
            metric = {"tempPauseCharge": "pause_charge_remaining_min", "tempPauseDischarge":
                      "pause_discharge_remaining_min", "tempPauseBattery": "pause_battery_remaining_min"}[kind]
            assert res.ok and readings[-1].metrics[metric] == 30
            if 1110 in registers:  # the simulated unit obeys: no charging while paused
                assert charging < 0 and inv.battery_power(6000.0, 300.0, 1200) == 0
            res = await control(src, kind, "Cancel")
            assert "cancelled" in res.message and {r: inv.holding[r] for r in registers} == before
    run(go())


def test_three_phase_has_no_pause_mode_and_says_what_it_has(tmp_path: Path) -> None:
    async def go() -> None:
        async with running("3ph", tmp_path) as (sim, src, readings):
            names = {c.name for c in readings[-1].info.controls}
            assert {"eps_enabled", "battery_calibration", "charge_slot_1_target_pct", "discharge_slot_10_target_pct",
                    "pause_charge_min", "pause_discharge_min"} <= names
            assert not names & {"battery_pause_mode", "battery_mode", "charge_target_enabled"}
            for command, value in (("setBatteryPauseMode", "Pause Charge"),
                                   ("setPauseSlot", {"start": "01:00", "finish": "02:00"})):
                with pytest.raises(ControlError, match="no pause mode register; tempPauseCharge") as ei:
                    await control(src, command, value)
                assert ei.value.status == 400
            with pytest.raises(ControlError, match=r"percent: must be 0 \(no target\) or 4..100 \(got 2\)"):
                await control(src, "setChargeTarget3", "2")
            assert sim.inverter.write_log == []
    run(go())


# ---------------------------------------------------------------------------------------------- gateway

def single_phase_register(name: str) -> int:
    """Where givenergy-modbus's single-phase model reads ``name`` (one holding register)."""
    (reg,) = SinglePhaseInverterRegisterGetter.REGISTER_LUT[name].registers
    return int(str(reg).removeprefix("HR_"))


# GivTCP's gateway controls (its givenergy-modbus patches: the rates HR313/314, the pause mode and slot, the
# ten-slot bank); the registers from givenergy-modbus's own commands and single-phase model
GATEWAY_CASES = [
    # 6 kW of the gateway's rated 12 kW is 50 %
    ("battery_charge_rate_w", 6000, writes(lib.set_battery_charge_limit_ac(50)), 6000),
    ("battery_discharge_rate_w", 3000, writes(lib.set_battery_discharge_limit_ac(25)), 3000),
    ("battery_pause_mode", "Pause Discharge", {r: int(v) for r, v in writes(lib.set_battery_pause_mode(
        BatteryPauseMode(2))).items()}, "Pause Discharge"),
    ("setPauseSlot", {"start": "01:00", "finish": "05:30"}, writes(lib.set_pause_slot(slot("01:00", "05:30"))), None),
    ("charge_slot_5_start", "02:00", writes(lib.set_charge_slot_start(5, time(2, 0), EXTENDED_SLOTS)), "02:00"),
    ("charge_slot_4_target_pct", 80, {single_phase_register("charge_target_soc_4"): 80}, 80),
    ("setChargeRateAC", {"chargeRate": "40"}, writes(lib.set_battery_charge_limit_ac(40)), None),
]


@pytest.mark.parametrize(("command", "value", "expected", "shown"), GATEWAY_CASES,
                         ids=[f"{c[0]}={c[1]}" for c in GATEWAY_CASES])
def test_gateway_control_round_trip(tmp_path: Path, command: str, value: Any, expected: dict[int, int],
                                    shown: Any) -> None:
    round_trip("gateway", tmp_path, command, value, expected, shown)


def test_gateway_timed_pause_uses_its_pause_mode_then_reverts(tmp_path: Path) -> None:
    async def go() -> None:
        async with running("gateway", tmp_path) as (sim, src, readings):
            inv = sim.inverter
            names = {c.name for c in readings[-1].info.controls}
            assert {"battery_charge_rate_w", "battery_pause_mode", "charge_slot_10_target_pct", "pause_battery_min",
                    "force_charge_min"} <= names and "eps_enabled" not in names
            charging = inv.battery_power(6000.0, 300.0, 1200)
            await control(src, "pause_battery_min", 20)
            assert [(w.register, w.value) for w in inv.write_log] == [(318, 3)]
            assert charging < 0 and inv.battery_power(6000.0, 300.0, 1200) == 0  # the simulated gateway obeys
            assert readings[-1].metrics["battery_pause_mode"] == "Pause Both"
            await control(src, "pause_battery_min", 0)
            assert inv.holding[318] == 0 and readings[-1].metrics["battery_pause_mode"] == "Disabled"
            for command, value, message in (("eps_enabled", True, "not supported by this gateway"),
                                            ("setChargeRateAC", "0", "chargeRate: must be 1..100 (got 0)")):
                with pytest.raises(ControlError, match=message.replace("(", r"\(").replace(")", r"\)")) as ei:
                    await control(src, command, value)
                assert ei.value.status == 400
            assert len(inv.write_log) == 2
    run(go())
