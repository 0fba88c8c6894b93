"""Every GivEnergy control against the simulator over real sockets: validated, written (write log), read back,
reported; timed controls revert after their duration and after a restart in the middle.

Register numbers here are the fact sheet's (section 2.1, the givenergy-modbus inventory): the independent
oracle for what our named registers must be on the wire.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from servers import async_wait_for
from solarbridge.model import ControlError, ControlRequest, Reading
from solarbridge.plugin import Context
from solarbridge.sources.givenergy.simulator import DongleSimulator, SimInverter
from solarbridge.sources.givenergy.source import GivEnergyConfig, GivEnergySource


def run(coro: Any, timeout: float = 60.0) -> Any:
    async def wrapped() -> Any:
        return await asyncio.wait_for(coro, timeout)
    return asyncio.run(wrapped())


@contextlib.asynccontextmanager
async def sim(model: str = "ac", batteries: int = 1) -> AsyncIterator[DongleSimulator]:
    s = DongleSimulator(SimInverter(model, batteries), "127.0.0.1", 0)
    await s.start()
    try:
        yield s
    finally:
        await s.stop()


class Running:
    """A GivEnergySource running against the simulator, with the readings it emitted."""

    def __init__(self, port: int, state_dir: Path, **kw: Any) -> None:
        cfg = GivEnergyConfig(type="givenergy", name="ge", host="127.0.0.1", port=port, poll_interval=0.1,
                              request_gap=0, **kw)
        self.src = GivEnergySource(cfg, Context.standalone("ge", "source", "givenergy", state_dir))
        self.src.timer_tick = 0.02
        self.readings: list[Reading] = []
        self.task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Running:
        self.task = asyncio.create_task(self.src.run(self.readings.append))
        await async_wait_for(lambda: self.readings and self.readings[-1].metrics, 10, "first reading", interval=0.01)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.task is not None
        self.task.cancel()
        await asyncio.gather(self.task, return_exceptions=True)

    async def control(self, command: str, value: Any = None) -> Any:
        return await self.src.control(ControlRequest(self.src.client.plant.serial, command, value, origin="test"))


def _hhmm(t: datetime) -> int:
    return t.hour * 100 + t.minute


# (control, value, model, {register: value expected on the simulator}, expected read-back value)
PLAIN = [
    ("charge_target_pct", 55, "hybrid", {96: 1, 20: 1, 116: 55}, 55),
    ("battery_reserve_pct", 12, "hybrid", {110: 12}, 12),
    ("battery_cutoff_pct", 9, "hybrid", {114: 9}, 9),
    ("battery_mode", "Timed Export", "hybrid", {27: 0, 59: 1}, "Timed Export"),
    ("charge_slot_2_start", "01:30", "hybrid", {31: 130}, "01:30"),
    ("discharge_slot_1_end", "19:45", "hybrid", {57: 1945}, "19:45"),
    ("charge_slot_7_start", "03:10", "ac", {258: 310}, "03:10"),
    ("charge_slot_10_end", "05:00", "ac", {268: 500}, "05:00"),
    ("discharge_slot_3_start", "16:00", "ac", {276: 1600}, "16:00"),
    ("discharge_slot_10_end", "23:59", "ac", {298: 2359}, "23:59"),
    ("charge_slot_1_target_pct", 80, "ac", {242: 80}, 80),
    ("charge_slot_2_target_pct", 70, "ac", {245: 70}, 70),
    ("charge_slot_10_target_pct", 65, "ac", {269: 65}, 65),
    ("discharge_slot_1_target_pct", 20, "ac", {272: 20}, 20),
    ("discharge_slot_2_target_pct", 21, "ac", {275: 21}, 21),
    ("discharge_slot_9_target_pct", 30, "ac", {296: 30}, 30),
    ("eps_enabled", True, "ac", {317: 1}, True),
    ("eps_enabled", False, "ac", {317: 0}, False),
    ("battery_pause_mode", "Pause Discharge", "ac", {318: 2}, "Pause Discharge"),
    ("battery_calibration", "Start", "hybrid", {29: 1}, "Start"),
    ("battery_calibration", "Charge Only", "hybrid", {29: 3}, "Charge Only"),
    ("battery_calibration", "Off", "hybrid", {29: 0}, "Off"),
    # 8.2 kWh x 2 packs = 16.4 kWh at 51.2 V x 320 Ah; 1640 W is 10 % of it per hour
    # three-phase: the same controls land in its HR 1000+ bank (fact sheet "three-phase equivalents")
    ("charge_target_pct", 55, "3ph", {1112: 1, 1111: 55}, 55),
    ("battery_reserve_pct", 12, "3ph", {1109: 12}, 12),
    ("battery_cutoff_pct", 9, "3ph", {1078: 9}, 9),
    ("charge_schedule_enabled", False, "3ph", {1112: 0}, False),
    ("charge_slot_1_start", "01:30", "3ph", {1113: 130}, "01:30"),
    ("discharge_slot_2_end", "20:15", "3ph", {1121: 2015}, "20:15"),
    ("charge_slot_5_end", "06:00", "3ph", {253: 600}, "06:00"),
    ("battery_charge_rate_w", 1640, "hybrid", {111: 10}, 1638),
    ("battery_discharge_rate_w", 0, "hybrid", {112: 0}, 0),
]


@pytest.mark.parametrize(("control", "value", "model", "regs", "shown"), PLAIN,
                         ids=[f"{c[0]}={c[1]}" for c in PLAIN])
def test_control_round_trip(tmp_path: Path, control: str, value: Any, model: str, regs: dict[int, int],
                            shown: Any) -> None:
    async def go() -> None:
        async with sim(model, 2) as s, Running(s.port, tmp_path) as r:
            res = await r.control(control, value)
            log = s.inverter.write_log
            assert [w.register for w in log] == list(regs) and all(w.accepted for w in log)
            for reg, val in regs.items():
                assert s.inverter.holding[reg] == val, reg
            # the result is the state read back, in the metric's own type; the writes are named details
            assert res.ok and res.value == shown and type(res.value) is type(shown)
            assert r.readings[-1].metrics[control] == shown
            assert all(not k.isdigit() for k in res.details["writes"])
            assert res.details["writes"] == res.details["read_back"]
    run(go())


def test_the_controls_offered_follow_the_model(tmp_path: Path) -> None:
    async def go() -> None:
        for model, slots, extended in (("hybrid", 2, False), ("ac", 10, True)):
            async with sim(model) as s, Running(s.port, tmp_path) as r:
                names = {c.name for c in r.readings[-1].info.controls}
                assert f"charge_slot_{slots}_end" in names and f"charge_slot_{slots + 1}_end" not in names
                assert ("charge_slot_1_target_pct" in names) is (slots == 10)
                assert ("eps_enabled" in names) is extended and "reboot" not in names
                assert {"force_charge_min", "force_export_min", "pause_charge_min", "pause_discharge_min",
                        "pause_battery_min", "battery_calibration", "battery_charge_rate_w"} <= names
                with pytest.raises(ControlError) as ei:
                    await r.control("setChargeSlot3" if slots == 2 else "setExportLimit",
                                    {"start": "01:00", "finish": "02:00"} if slots == 2 else "500")
                assert ei.value.status == 400
                assert s.inverter.write_log == []
    run(go())


def test_three_phase_force_charge_and_unsupported_controls(tmp_path: Path) -> None:
    async def go() -> None:
        async with sim("3ph") as s, Running(s.port, tmp_path) as r:
            hr = s.inverter.holding
            names = {c.name for c in r.readings[-1].info.controls}
            assert {"charge_target_pct", "battery_reserve_pct", "force_charge_min", "charge_slot_10_start"} <= names
            assert not names & {"battery_mode", "charge_target_enabled", "battery_pause_mode"}
            with pytest.raises(ControlError, match="three-phase") as ei:
                await r.control("setBatteryMode", "Eco")
            assert ei.value.status == 400 and s.inverter.write_log == []
            before = {reg: hr[reg] for reg in (1111, 1113, 1114, 1112, 1110, 1123)}
            await r.control("forceCharge", 45)
            assert (hr[1111], hr[1112], hr[1110], hr[1123]) == (100, 1, 100, 1)
            assert hr[1113] != before[1113] and r.readings[-1].metrics["force_charge_remaining_min"] == 45
            # its own bank, and slot 1's own target SOC (HR242, which three-phase units keep in the ten-slot bank)
            assert all(w.register >= 1000 or w.register == 242 for w in s.inverter.write_log)
            res = await r.control("forceCharge", "Cancel")
            assert "cancelled" in res.message and {reg: hr[reg] for reg in before} == before
    run(go())


def test_reboot_only_with_allow_reboot(tmp_path: Path) -> None:
    async def go() -> None:
        async with sim("hybrid") as s:
            async with Running(s.port, tmp_path) as r:
                with pytest.raises(ControlError, match="allow_reboot") as ei:
                    await r.control("rebootInverter")
                assert ei.value.status == 403 and s.inverter.write_log == []
            async with Running(s.port, tmp_path, allow_reboot=True) as r:
                assert "reboot" in {c.name for c in r.readings[-1].info.controls}
                res = await r.control("reboot", "PRESS")
                assert res.ok and [(w.register, w.value) for w in s.inverter.write_log] == [(163, 100)]
    run(go())


def _state(tmp_path: Path) -> dict[str, Any]:
    return json.loads((tmp_path / "givenergy-ge.json").read_text())


def test_force_charge_writes_then_reverts_after_its_duration(tmp_path: Path) -> None:
    async def go() -> None:
        async with sim("ac") as s, Running(s.port, tmp_path) as r:
            hr = s.inverter.holding
            before = {reg: hr[reg] for reg in (116, 94, 95, 96, 111, 242, 318)}
            now = datetime.now()
            res = await r.control("forceCharge", "30")
            assert "Force Charge for 30 minutes" in res.message
            assert hr[116] == 100 and hr[96] == 1 and hr[111] == 50 and hr[242] == 100 and hr[318] == 0
            assert hr[94] in (_hhmm(now), _hhmm(now + timedelta(minutes=1)))
            end = datetime(2000, 1, 1, hr[94] // 100, hr[94] % 100) + timedelta(minutes=30)
            assert hr[95] == _hhmm(end)
            assert r.readings[-1].metrics["force_charge_remaining_min"] == 30 and res.value == 30
            assert r.readings[-1].extra["givtcp"]["Control"]["Force_Charge"] == "Running"
            # the revert plan is on disk, by register name
            plan = _state(tmp_path)["timed"]["forceCharge"]
            assert plan["minutes"] == 30 and plan["restore"]["charge_slot_1_start"] == before[94]
            # 29 minutes on: still running
            t0 = r.src.clock()
            r.src.clock = lambda: t0 + 29 * 60
            await asyncio.sleep(0.2)
            assert hr[116] == 100 and "forceCharge" in r.src.timed
            # 31 minutes on: everything as it was
            r.src.clock = lambda: t0 + 31 * 60
            await async_wait_for(lambda: "forceCharge" not in r.src.timed, 10, "revert", interval=0.01)
            assert {reg: hr[reg] for reg in before} == before
            assert _state(tmp_path)["timed"] == {}
            await async_wait_for(lambda: r.readings[-1].extra["givtcp"]["Control"]["Force_Charge"] == "Normal", 10,
                                 "state after revert", interval=0.01)
            assert r.readings[-1].metrics["force_charge_remaining_min"] == 0
            assert all(w.accepted for w in s.inverter.write_log)
    run(go())


# model, registers force export changes, {register: value while it runs}, the register showing it runs
EXPORT = {
    "hybrid": ((110, 112, 27, 59, 56, 57), {110: 4, 112: 50, 27: 0, 59: 1}, 27),
    "3ph": ((1109, 1108, 1118, 1119, 1123, 1122), {1109: 4, 1108: 100, 1123: 0, 1122: 1}, 1122),
}


@pytest.mark.parametrize("model", sorted(EXPORT))
@pytest.mark.parametrize("expired", [True, False], ids=["restart-after-the-end", "restart-in-the-middle"])
def test_force_export_reverts_after_a_restart(tmp_path: Path, expired: bool, model: str) -> None:
    regs, forced, flag = EXPORT[model]

    async def go() -> None:
        async with sim(model) as s:
            hr = s.inverter.holding
            before = {reg: hr[reg] for reg in regs}
            async with Running(s.port, tmp_path) as r:
                await r.control("forceExport", {"duration": 60})
                assert {reg: hr[reg] for reg in forced} == forced
                t0 = r.src.clock()
            # the daemon is gone; the inverter still exports
            assert hr[flag] == forced[flag] and "forceExport" in _state(tmp_path)["timed"]
            async with Running(s.port, tmp_path) as r2:
                if not expired:
                    r2.src.clock = lambda: t0 + 10 * 60
                    await async_wait_for(lambda: r2.readings and r2.readings[-1].metrics.get(
                        "force_export_remaining_min") == 50, 10, "a reading 10 minutes into the export")
                    assert hr[flag] == forced[flag]  # still exporting: 50 minutes to go
                r2.src.clock = lambda: t0 + 61 * 60
                await async_wait_for(lambda: "forceExport" not in r2.src.timed, 10, "revert after restart", interval=0.01)
                assert {reg: hr[reg] for reg in regs} == before
                assert _state(tmp_path)["timed"] == {}
    run(go())


def test_pauses_cancel_and_conflicts(tmp_path: Path) -> None:
    async def go() -> None:
        async with sim("hybrid") as s, Running(s.port, tmp_path) as r:
            hr = s.inverter.holding
            hr[111], hr[112] = 40, 45
            await r.src.poll_once(full=True)
            await r.control("pause_battery_min", 15)
            assert (hr[111], hr[112]) == (0, 0)
            # force charge changes the charge rate too: refused while the pause runs, nothing written
            n = len(s.inverter.write_log)
            with pytest.raises(ControlError) as ei:
                await r.control("forceCharge", 10)
            assert ei.value.status == 409 and "tempPauseBattery" in str(ei.value)
            assert len(s.inverter.write_log) == n
            res = await r.control("pause_battery_min", 0)  # 0 = cancel: reverts at once
            assert "cancelled" in res.message and (hr[111], hr[112]) == (40, 45) and res.value == 0
            await r.control("tempPauseCharge", 5)
            assert (hr[111], hr[112]) == (0, 45)
            await r.control("tempPauseDischarge", 5)
            assert (hr[111], hr[112]) == (0, 0)
            await r.control("tempPauseCharge", "Cancel")
            await r.control("tempPauseDischarge", "Normal")
            assert (hr[111], hr[112]) == (40, 45)
    run(go())


@pytest.mark.parametrize(("command", "value", "hint"), [
    ("forceCharge", "1441", "1..1440"),
    ("forceCharge", "-5", "1..1440"),
    ("forceExport", "soon", "whole minutes"),
    ("force_charge_min", 2.5, "whole minutes"),
])
def test_bad_durations_write_nothing(tmp_path: Path, command: str, value: Any, hint: str) -> None:
    async def go() -> None:
        async with sim("hybrid") as s, Running(s.port, tmp_path) as r:
            with pytest.raises(ControlError, match=hint) as ei:
                await r.control(command, value)
            assert ei.value.status == 400
            assert ei.value.field_name == ("duration" if command[0].islower() and "_" not in command else command)
            assert s.inverter.write_log == [] and r.src.timed == {}
    run(go())
