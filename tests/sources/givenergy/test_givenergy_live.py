"""Client, source and controls end to end against the simulator on real loopback sockets."""

from __future__ import annotations

import asyncio
import socket
import time
from pathlib import Path

import pytest

from servers import async_wait_for
from solarbridge.model import ControlError, ControlRequest, Reading
from solarbridge.plugin import Context
from solarbridge.sources.givenergy.client import GivEnergyClient, GivEnergyError
from solarbridge.sources.givenergy.controls import plan
from solarbridge.sources.givenergy.framing import (
    Framer,
    Heartbeat,
    ReadResponse,
    encode_heartbeat,
    encode_read_request,
)
from solarbridge.sources.givenergy.givtcp import run_all
from solarbridge.sources.givenergy.simulator import Realism, SimInverter
from solarbridge.sources.givenergy.source import GivEnergyConfig, GivEnergySource
from support.givenergy import run, simulator
from support.paths import DATA as DATA_ROOT

DATA = DATA_ROOT / "givenergy"


def test_detect_and_refresh() -> None:
    async def go() -> None:
        async with simulator(batteries=3) as sim, GivEnergyClient("127.0.0.1", sim.port, gap=0) as c:
            plant = await c.refresh(full=True)
            assert c.battery_count == 3
            assert plant.serial == sim.inverter.serial
            assert plant.model.label == "Gen1 Hybrid"
            out = run_all(plant)
            assert set(out) == {"Energy/Total", "Energy/Today", "Power", "Power/Flows", "Control", "Timeslots",
                                "Invertor Details", "Battery Details"}
            assert len(out["Battery Details"]) == 3  # one entry per LV pack, by serial
            # 32-bit totals: the simulator's PV total is 21146.3 kWh = 211463 deci, above 65535
            assert out["Energy/Total"]["PV Energy Total kWh"] == pytest.approx(
                sim.inverter.energy_wh["pv_total"] / 1000, abs=0.1)
            assert out["Power"]["SOC"] == round(sim.inverter.soc)
            assert out["Invertor Details"]["Invertor Serial Number"] == sim.inverter.serial
            assert len(plant.battery_values()) == 3
    run(go())


@pytest.mark.parametrize("model", ["hybrid", "ac", "aio", "3ph"])
def test_models(model: str) -> None:
    async def go() -> None:
        async with simulator(model=model) as sim, GivEnergyClient("127.0.0.1", sim.port, gap=0) as c:
            plant = await c.refresh(full=True)
            assert plant.model.key == model
    run(go())


COMMANDS = [
    ("enableChargeTarget", None, {20: 1}, ("Control", "Enable Charge Target"), "enable"),
    ("disableChargeTarget", None, {20: 0}, ("Control", "Enable Charge Target"), "disable"),
    ("pauseChargeSchedule", None, {96: 0}, ("Control", "Charge Schedule State"), "Paused"),
    ("resumeChargeSchedule", None, {96: 1}, ("Control", "Charge Schedule State"), "Active"),
    ("pauseDischargeSchedule", None, {59: 0}, ("Control", "Discharge Schedule State"), "Paused"),
    ("resumeDischargeSchedule", None, {59: 1}, ("Control", "Discharge Schedule State"), "Active"),
    ("setChargeTarget", {"chargeToPercent": "50"}, {96: 1, 20: 1, 116: 50}, ("Control", "Target SOC"), 50),
    ("setBatteryReserve", {"dischargeToPercent": "5"}, {110: 5}, ("Control", "Battery Power Reserve"), 5),
    ("setChargeSlot1", {"start": "0100", "finish": "0400", "chargeToPercent": "55"},
     {94: 100, 95: 400, 116: 55}, ("Timeslots", "Charge end time slot 1"), 400),
    ("setChargeSlot2", {"start": "02:00", "finish": "03:30"}, {31: 200, 32: 330},
     ("Timeslots", "Charge start time slot 2"), 200),
    ("setDischargeSlot1", {"start": "1600", "finish": "1900", "dischargeToPercent": "20"},
     {56: 1600, 57: 1900, 114: 20}, ("Timeslots", "Discharge start time slot 1"), 1600),
    ("setDischargeSlot2", {"start": "20:00", "finish": "21:00"}, {44: 2000, 45: 2100},
     ("Timeslots", "Discharge end time slot 2"), 2100),
    ("setBatteryMode", {"mode": "4"}, {110: 4, 59: 1, 27: 0}, ("Control", "Mode"), 4),
    ("setBatteryMode", {"mode": "3"}, {110: 100, 59: 1, 27: 1}, ("Control", "Mode"), 3),
    ("setBatteryMode", {"mode": "Eco (Paused)"}, {27: 1, 59: 0, 110: 100}, ("Control", "Battery Mode"),
     "Eco (Paused)"),
    ("setBatteryMode", {"mode": "Timed Export"}, {27: 0, 59: 1}, ("Control", "Battery Mode"), "Timed Export"),
]


def _source(port: int, tmp: Path, **kw: object) -> GivEnergySource:
    cfg = GivEnergyConfig(type="givenergy", name="ge", host="127.0.0.1", port=port, poll_interval=0.05,
                          request_gap=0, **kw)
    return GivEnergySource(cfg, Context.standalone("ge", "source", "givenergy", tmp))


@pytest.mark.parametrize(("command", "payload", "regs", "path", "shown"), COMMANDS,
                         ids=[f"{c[0]}-{i}" for i, c in enumerate(COMMANDS)])
def test_control_end_to_end(tmp_path: Path, command: str, payload: object, regs: dict[int, int],
                            path: tuple[str, str], shown: object) -> None:
    async def go() -> None:
        async with simulator() as sim:
            src = _source(sim.port, tmp_path)
            readings: list[Reading] = []
            task = asyncio.create_task(src.run(readings.append))
            await async_wait_for(lambda: len(readings) >= 1, what="first reading")
            res = await src.control(ControlRequest(src.client.plant.serial, command, payload))
            assert res.ok and "success" in res.message
            for reg, val in regs.items():
                assert sim.inverter.holding[reg] == val, reg
            log = sim.inverter.write_log
            assert all(w.accepted for w in log)
            assert {w.register for w in log} == set(regs) | ({20} if command == "setChargeSlot1" else set())
            # the reading emitted after the control already shows the new state
            assert readings[-1].extra["givtcp"][path[0]][path[1]] == shown
            n = len(readings)
            await async_wait_for(lambda: len(readings) > n, what="next poll")
            assert readings[-1].extra["givtcp"][path[0]][path[1]] == shown
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
    run(go())


def test_control_names_and_state_metrics(tmp_path: Path) -> None:
    async def go() -> None:
        async with simulator() as sim:
            src = _source(sim.port, tmp_path)
            readings: list[Reading] = []
            task = asyncio.create_task(src.run(readings.append))
            await async_wait_for(lambda: readings, what="first reading")
            info = readings[-1].info
            assert info is not None and {c.name for c in info.controls} >= {"charge_target_pct", "battery_mode"}
            for name, value in [("charge_target_pct", 70), ("battery_reserve_pct", 12),
                                ("battery_mode", "Timed Demand"), ("charge_target_enabled", False),
                                ("charge_schedule_enabled", False), ("discharge_schedule_enabled", True),
                                ("charge_slot_1_start", "01:30"), ("charge_slot_2_end", "06:15"),
                                ("discharge_slot_1_end", "19:45"), ("discharge_slot_2_start", "17:05")]:
                await src.control(ControlRequest(src.client.plant.serial, name, value))
                spec = next(c for c in info.controls if c.name == name)
                assert readings[-1].metrics[spec.state_metric] == value, name
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
    run(go())


@pytest.mark.parametrize(("command", "payload"), [
    ("setChargeTarget", {"chargeToPercent": "101"}),
    ("setChargeSlot1", {"start": "0100", "finish": "2500"}),
    ("setChargeSlot1", {"start": "0100", "finish": "0400", "chargeToPercent": "2"}),
    ("setBatteryMode", {"mode": "7"}),
    ("setBatteryReserve", "{}"),
])
def test_invalid_control_writes_nothing(tmp_path: Path, command: str, payload: object) -> None:
    async def go() -> None:
        async with simulator() as sim:
            src = _source(sim.port, tmp_path)
            readings: list[Reading] = []
            task = asyncio.create_task(src.run(readings.append))
            await async_wait_for(lambda: readings, what="first reading")
            with pytest.raises(ControlError) as ei:
                await src.control(ControlRequest(src.client.plant.serial, command, payload))
            assert ei.value.status == 400 and ei.value.field_name
            assert sim.inverter.write_log == []
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
    run(go())


def test_refused_write_is_an_error() -> None:
    """A write the inverter refuses (error reply) raises; it is never silently accepted."""
    async def go() -> None:
        async with simulator() as sim, GivEnergyClient("127.0.0.1", sim.port, gap=0) as c:
            sim.inverter.holding[116] = 100
            # the simulator refuses writes at a device address that is not the inverter
            with pytest.raises(GivEnergyError, match="refused"):
                await c.write_register(116, 50, device=0x40)
            assert sim.inverter.holding[116] == 100
            assert sim.inverter.write_log[-1].accepted is False
    run(go())


def test_read_back_mismatch_is_an_error() -> None:
    async def go() -> None:
        async with simulator() as sim, GivEnergyClient("127.0.0.1", sim.port, gap=0) as c:
            orig = sim.inverter.write

            def sticky(device: int, register: int, value: int) -> bool:
                ok = orig(device, register, value)
                sim.inverter.holding[register] = 77  # the inverter ignores the value but echoes it
                return ok
            sim.inverter.write = sticky  # type: ignore[method-assign]
            with pytest.raises(ControlError, match="read-back mismatch"):
                await c.execute(plan("setChargeTarget", "50"))
    run(go())


def test_heartbeat_answered_within_5s() -> None:
    async def go() -> None:
        async with simulator(heartbeat_interval=0.2) as sim, GivEnergyClient("127.0.0.1", sim.port) as c:
            t0 = time.monotonic()
            await async_wait_for(lambda: sim.stats["heartbeats_answered"] >= 2, timeout=5, what="heartbeat answers")
            assert time.monotonic() - t0 < 5
            assert c.stats["heartbeats"] >= 2
            assert c.connected
    run(go())


def test_client_that_ignores_heartbeats_is_dropped() -> None:
    async def go() -> None:
        async with simulator(heartbeat_interval=0.05) as sim:
            r, w = await asyncio.open_connection("127.0.0.1", sim.port)
            framer = Framer()
            hbs = 0

            async def dropped() -> bool:  # reads what comes until the simulator closes the connection
                nonlocal hbs
                data = await asyncio.wait_for(r.read(4096), 5)
                hbs += sum(isinstance(f, Heartbeat) for f in framer.feed(data))
                return not data

            await async_wait_for(dropped, 5, lambda: f"the simulator to drop a client that ignores heartbeats "
                                 f"({hbs} heartbeats so far)", interval=0)
            assert hbs == 3 and sim.stats["clients_dropped"] == 1
            w.close()
    run(go())


def test_reconnect_after_dongle_drops_socket(tmp_path: Path) -> None:
    async def go() -> None:
        async with simulator() as sim:
            src = _source(sim.port, tmp_path, reconnect_initial=0.05)
            readings: list[Reading] = []
            task = asyncio.create_task(src.run(readings.append))
            await async_wait_for(lambda: readings, what="first reading")
            sim.drop_all()
            await async_wait_for(lambda: sim.stats["connections"] >= 2, what="reconnect")
            n = len([r for r in readings if r.online])
            await async_wait_for(lambda: len([r for r in readings if r.online]) > n + 1, what="readings after reconnect")
            assert src.ctx.health.counters["connects"] >= 2
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
    run(go())


def test_unreachable_inverter_control_is_503(tmp_path: Path) -> None:
    async def go() -> None:
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        s.close()
        src = _source(port, tmp_path)
        with pytest.raises(ControlError) as ei:
            await src.control(ControlRequest("", "setChargeTarget", "50"))
        assert ei.value.status == 503
    run(go())


def test_realism_switches_do_not_break_the_client() -> None:
    """Fan-out, unsolicited, null, split, garbage and corrupt frames: the client still gets its data."""
    realism = Realism(fanout=True, unsolicited=0.02, null_rate=0.3, corrupt_rate=0.1, split=True,
                      garbage_rate=0.2, delay=0.001)

    async def go() -> None:
        async with simulator(realism=realism) as sim:
            other = GivEnergyClient("127.0.0.1", sim.port, gap=0, timeout=0.3, retries=5)
            await other.connect()
            async with GivEnergyClient("127.0.0.1", sim.port, gap=0, timeout=0.3, retries=5) as c:
                for _ in range(5):
                    await c.refresh(full=True)
                    await other.read(4, 0)
                assert c.plant.serial == sim.inverter.serial
                drops = c.framer.drops
                assert drops["bad_crc"] + drops["truncated"] >= 1
                assert drops["garbage"] >= 1
                assert c.stats["ignored_frames"] >= 1  # null frames
                assert c.stats["unsolicited"] >= 1  # fan-out + cloud traffic
            await other.close()
    run(go(), timeout=60)


def test_replay_seeds_registers_from_capture() -> None:
    inv = SimInverter()
    n = inv.seed_from_capture(DATA / "hybrid_2_bat_a" / "hybrid_gen1_arm449_0x11_poll_10min.log")
    assert n > 100
    assert inv.serial == "SA2114G000" and inv.batteries == 2

    async def go() -> None:
        from solarbridge.sources.givenergy.simulator import DongleSimulator
        sim = DongleSimulator(inv, port=0)
        await sim.start()
        try:
            r, w = await asyncio.open_connection("127.0.0.1", sim.port)
            w.write(encode_read_request(0x11, 3, 0, 60))
            framer = Framer()

            async def frames() -> list[object]:
                return framer.feed(await asyncio.wait_for(r.read(4096), 5))

            got = await async_wait_for(frames, 10, "a response from the simulator", interval=0)
            assert isinstance(got[0], ReadResponse) and got[0].values[21] == 449
            w.write(encode_heartbeat("AB0000G000", 1))
            w.close()
        finally:
            await sim.stop()
    run(go())


def test_demo_part_runs_a_readable_simulator(tmp_path: Path) -> None:
    from solarbridge.config import build
    from solarbridge.sources.givenergy.demo import start

    async def go() -> None:
        part = await start(tmp_path)
        try:
            cfg = build({"sources": part.sources})  # the tables validate as daemon config
            src = GivEnergySource(cfg.sources[0], Context.standalone("givenergy", "source", "givenergy", tmp_path))
            await src.client.connect()
            await src.client.detect()
            reading = await src.poll_once(full=True)
            assert reading.device_id == "SA2114G000" and "battery_soc_pct" in reading.metrics
            await src.client.close()
        finally:
            assert part.stop is not None
            await part.stop()
    run(go())


def test_timeouts_retries_and_other_clients_replies() -> None:
    """No reply -> retries then an error; a reply to another client's request never satisfies ours."""
    async def go() -> None:
        async with simulator(realism=Realism(fanout=True)) as sim:
            async with GivEnergyClient("127.0.0.1", sim.port, gap=0, timeout=0.1, retries=2) as c:
                with pytest.raises(GivEnergyError, match="no reply"):
                    await c.read(4, 0, 60, device=0x40)  # nobody answers at 0x40
                assert c.stats["timeouts"] == 3 and c.stats["requests"] == 3
                other = GivEnergyClient("127.0.0.1", sim.port, gap=0)
                await other.connect()
                await other.read(3, 60, 60)  # fanned out to c as well
                await async_wait_for(lambda: c.stats["unsolicited"] >= 1, what="fan-out reply")
                assert 60 in c.plant.holding  # used to refresh the cache
                resp = await c.read(3, 0, 60)
                assert resp.base == 0 and resp.count == 60
                await other.close()
    run(go())


def test_replay_stream_reaches_clients_as_unsolicited_traffic() -> None:
    from solarbridge.sources.givenergy.framing import parse_capture_line
    from solarbridge.sources.givenergy.simulator import DongleSimulator

    path = DATA / "hybrid_2_bat_a" / "hybrid_gen1_arm449_0x11_poll_10min.log"
    frames = [b for d, b in filter(None, map(parse_capture_line, path.read_text().splitlines())) if d == "rx"][:40]

    async def go() -> None:
        sim = DongleSimulator(SimInverter(serial="XX0000X000"), port=0, replay_frames=frames, replay_interval=0.001)
        await sim.start()
        try:
            async with GivEnergyClient("127.0.0.1", sim.port) as c:
                await async_wait_for(lambda: c.plant.serial == "SA2114G000", what="captured identity from the replay")
                assert c.stats["unsolicited"] >= 1
        finally:
            await sim.stop()
    run(go())


def test_rate_and_clock_controls(tmp_path: Path) -> None:
    from datetime import datetime, timedelta

    async def go() -> None:
        async with simulator(batteries=1) as sim:
            src = _source(sim.port, tmp_path)
            readings: list[Reading] = []
            task = asyncio.create_task(src.run(readings.append))
            await async_wait_for(lambda: readings, what="first reading")
            # 1 battery: 160 Ah x 51.2 V = 8192 Wh; Gen1 hybrid battery limit 2600 W
            await src.control(ControlRequest(src.client.plant.serial, "setChargeRate", {"chargeRate": "1000"}))
            assert sim.inverter.holding[111] == round(1000 / 8192 * 100)
            await src.control(ControlRequest(src.client.plant.serial, "setDateTime",
                                             {"dateTime": "24/12/2030 18:30:00"}))
            assert abs(sim.inverter.now() - datetime(2030, 12, 24, 18, 30)) < timedelta(seconds=5)
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
    run(go())
