"""Model detection and the model-aware poll plan, against the simulator on real loopback sockets.

For every simulated model and for captured sessions replayed through the simulator: the client
identifies the family, picks the read address, probes the optional blocks once (dropping what the
unit lacks), finds LV or HV batteries, and then polls exactly the plan.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from solarbridge.plugin import Context
from solarbridge.sources.givenergy.client import GivEnergyClient
from solarbridge.sources.givenergy.framing import (
    FC_READ_HOLDING,
    FC_READ_INPUT,
    Framer,
    ReadRequest,
    ReadResponse,
    WriteRequest,
    parse_capture_line,
)
from solarbridge.sources.givenergy.readings import build_reading
from solarbridge.sources.givenergy.registers import MODEL_BLOCKS, family_blocks
from solarbridge.sources.givenergy.simulator import DongleSimulator, SimInverter, build_parser
from solarbridge.sources.givenergy.source import GivEnergyConfig, GivEnergySource
from support.givenergy import run, simulator
from support.paths import DATA as DATA_ROOT

DATA = DATA_ROOT / "givenergy"
IR, HR = FC_READ_INPUT, FC_READ_HOLDING
BASE_HR_FULL = [0, 60, 120]


def bases(blocks: tuple[tuple[int, int], ...]) -> list[int]:
    return [b for b, _ in blocks]


# ---------------------------------------------------------------------------- the data table


def test_family_table_read_address_and_battery_kind() -> None:
    gen1, gen2, gen3 = family_blocks(0x2001, 449), family_blocks(0x2001, 890), family_blocks(0x2001, 302)
    assert gen1.read_address == 0x31 and gen2.read_address == 0x11 and gen3.read_address == 0x11
    assert family_blocks(0x3001, 533).read_address == 0x31  # AC
    assert family_blocks(0x8001, 612).batteries == "hv" and family_blocks(0x8001, 612).read_address == 0x11
    assert family_blocks(0x8101, 300).batteries == "hv"  # Hybrid HV Gen3
    assert family_blocks(0x7001, 14).batteries == "none"  # gateway: batteries live in its IR 1600+ rollup
    ems = family_blocks(0x5001, 1)
    assert ems.extra_input == ((2040, 55),) and ems.extra_holding == ((2040, 36),)  # IR 2040-2094, HR 2040-2075
    assert bases(family_blocks(0x7001, 14).extra_input) == [1600, 1660, 1720, 1780, 1840]
    three = family_blocks(0x4001, 1036)
    assert bases(three.extra_input) == [240, 1000, 1060, 1120, 1180, 1240, 1300, 1360]
    assert three.extra_input[-1] == (1360, 54)  # IR 1360-1413
    assert bases(three.extra_holding) == [180, 240, 1000, 1060, 1120]
    assert family_blocks(0x9999, 0) == MODEL_BLOCKS["unknown"]
    for fam in MODEL_BLOCKS.values():
        for base, count in fam.extra_input + fam.extra_holding:
            assert 1 <= count <= 60 and base >= 0


# ---------------------------------------------------------------------------- each simulated model

EXPECTED = {
    # model: (family, read address, input bases, full holding bases, lv batteries, hv addresses)
    "hybrid": ("hybrid", 0x31, [0, 180, 240], BASE_HR_FULL, 2, ()),  # Gen1: no extended HR 180-359
    "ac": ("ac", 0x31, [0, 180], BASE_HR_FULL + [180, 240, 300], 2, ()),
    "aio": ("aio", 0x11, [0, 180, 240], BASE_HR_FULL + [180, 240, 300], 0, (0x70, 0x50, 0x51)),
    "3ph": ("3ph", 0x11, [0, 180, 240, 1000, 1060, 1120, 1180, 1240, 1300, 1360],
            BASE_HR_FULL + [180, 240, 1000, 1060, 1120], 0, (0x70, 0x50, 0x51)),
}


class Recorder:
    def __init__(self, sim: DongleSimulator) -> None:
        self.requests: list[ReadRequest] = []
        sim.on_request = self.on

    def on(self, req: ReadRequest | WriteRequest) -> None:
        if isinstance(req, ReadRequest):
            self.requests.append(req)

    def take(self) -> list[tuple[int, int, int, int]]:
        out = [(r.device, r.function, r.base, r.count) for r in self.requests]
        self.requests.clear()
        return out


@pytest.mark.parametrize("model", sorted(EXPECTED))
def test_each_model_detected_with_its_plan(model: str) -> None:
    family, address, ir, hr_full, lv, hv = EXPECTED[model]

    async def go() -> None:
        async with simulator(model=model, batteries=2) as sim, \
                GivEnergyClient("127.0.0.1", sim.port, gap=0, timeout=0.5) as c:
            rec = Recorder(sim)
            await c.detect()
            plan = c.plan
            assert plan is not None
            assert plan.family == family == c.plant.model.key
            assert plan.read_address == address == c.read_address
            assert bases(plan.input_blocks) == ir
            assert bases(plan.holding_fast) == [0]
            assert bases(plan.holding_full) == hr_full
            assert c.battery_count == lv and c.hv_addresses == hv
            rec.take()

            # a fast poll reads exactly the plan's input blocks + HR 0-59 at its address, then the batteries
            await c.refresh(full=False)
            got = rec.take()
            inverter = [(d, f, b, n) for d, f, b, n in got if d == address]
            assert inverter == [(address, IR, b, n) for b, n in plan.input_blocks] + [(address, HR, 0, 60)]
            units = [(d, b) for d, f, b, _ in got if d != address]
            assert units == [(0x32 + i, 60) for i in range(lv)] + list(c.hv_blocks) + [
                (m, 60) for m in c.meter_addresses]  # then the external meters found
            # a full refresh adds the extended holding blocks
            await c.refresh(full=True)
            got = rec.take()
            assert [b for d, f, b, _ in got if d == address and f == HR] == hr_full
            # the extra blocks' raw registers are kept in the plant (zeros where the model gives no meaning)
            for base, count in plan.input_blocks:
                assert all(r in c.plant.input for r in range(base, base + count))
            for base, count in plan.holding_full:
                assert all(r in c.plant.holding for r in range(base, base + count))
            if hv:
                modules = c.plant.hv_modules()
                assert modules == {"bcu": [0x70], "bmu": [0x50, 0x51]}
                assert c.plant.batteries == {}
    run(go())


def test_unsupported_block_that_times_out_is_probed_once_and_dropped(caplog: pytest.LogCaptureFixture) -> None:
    """A Gen1 hybrid that ignores HR 180-359: one probe each (+ one retry on timeout), then never again."""
    async def go() -> None:
        inv = SimInverter("hybrid", 1, unsupported="timeout")
        sim = DongleSimulator(inv, "127.0.0.1", 0)
        await sim.start()
        try:
            rec = Recorder(sim)
            c = GivEnergyClient("127.0.0.1", sim.port, gap=0, timeout=0.2)
            await c.connect()
            await c.detect()
            probes = [r for r in rec.take() if r[1] == HR and r[2] >= 180]
            # each block: the probe and its one retry
            assert probes == [(0x31, HR, b, 60) for b in (180, 180, 240, 240, 300, 300)]
            assert c.stats["unsupported_blocks"] == 3 and c.stats["timeouts"] == 6
            assert c.plan is not None and c.plan.unsupported == ((HR, 180), (HR, 240), (HR, 300))
            assert bases(c.plan.input_blocks) == [0, 180, 240]
            for full in (False, True, False):
                await c.refresh(full=full)
            assert not [r for r in rec.take() if r[1] == HR and r[2] >= 180]
            # reconnect + detect again: the probed plan is kept, no second probe, no second log line
            await c.close()
            await c.connect()
            await c.detect()
            await c.refresh(full=True)
            assert not [r for r in rec.take() if r[1] == HR and r[2] >= 180]
            assert c.stats["unsupported_blocks"] == 3
            await c.close()
        finally:
            await sim.stop()
    with caplog.at_level(logging.INFO, logger="solarbridge.givenergy"):
        run(go())
    lines = [r.getMessage() for r in caplog.records if "not supported" in r.getMessage()]
    assert len(lines) == 3 and "HR block 180-239" in lines[0] and "Gen1 Hybrid" in lines[0]


def test_refused_block_dropped_after_one_request_others_kept() -> None:
    """An exception reply drops a block at once (no retry); a 3-phase unit without HR 1120-1179."""
    async def go() -> None:
        async with simulator(model="3ph", batteries=1) as sim, \
                GivEnergyClient("127.0.0.1", sim.port, gap=0, timeout=0.5) as c:
            inv = sim.inverter
            inv.supported_holding = inv.supported_holding - frozenset(range(1120, 1180))
            rec = Recorder(sim)
            await c.detect()
            assert [r for r in rec.take() if r[1:3] == (HR, 1120)] == [(0x11, HR, 1120, 5)]
            assert c.stats["error_replies"] == 1 and c.stats["unsupported_blocks"] == 1
            assert c.plan is not None
            assert bases(c.plan.holding_full) == BASE_HR_FULL + [180, 240, 1000, 1060]
            assert c.hv_addresses == (0x70, 0x50)
            await c.refresh(full=True)
            assert not [r for r in rec.take() if r[1:3] == (HR, 1120)]
    run(go())


def test_pinned_read_address_wins() -> None:
    async def go() -> None:
        async with simulator(model="hybrid") as sim, \
                GivEnergyClient("127.0.0.1", sim.port, gap=0, read_address=0x11) as c:
            rec = Recorder(sim)
            await c.refresh(full=True)
            assert c.read_address == 0x11 and c.plan is not None and c.plan.read_address == 0x11
            assert {d for d, f, b, n in rec.take() if d not in range(0x32, 0x38)} == {0x11}
    run(go())


def test_simulator_cli_unsupported_switch() -> None:
    p = build_parser()
    assert p.parse_args([]).unsupported == "refuse"
    assert p.parse_args(["--unsupported", "timeout", "--model", "aio"]).unsupported == "timeout"
    with pytest.raises(SystemExit):
        p.parse_args(["--unsupported", "maybe"])
    with pytest.raises(ValueError, match="unsupported"):
        SimInverter("hybrid", unsupported="maybe")


def test_hv_raw_registers_in_print_raw_and_source(tmp_path: Path) -> None:
    async def go() -> None:
        async with simulator(model="aio", batteries=3) as sim:
            cfg = GivEnergyConfig(type="givenergy", host="127.0.0.1", port=sim.port, timeout=0.5, request_gap=0, print_raw=True)
            src = GivEnergySource(cfg, Context.standalone("ge", "source", "givenergy", tmp_path))
            await src.client.connect()
            try:
                await src.client.detect()
                reading = await src.poll_once(full=True)
            finally:
                await src.client.close()
            assert src.client.read_address == 0x11
            assert reading.metrics["battery_modules"] == 3
            raw = reading.extra["raw"]
            assert set(raw["hv"]) == {"0x70", "0x50", "0x51", "0x52"}
            assert raw["hv"]["0x51"]["110"] == sim.inverter.hv_banks[0x51][110]
            assert "240" in raw["input"] and "300" in raw["holding"]
    run(go())


# ---------------------------------------------------------------------------- captured sessions replayed


def captured_blocks(path: Path) -> dict[tuple[int, int, int], tuple[int, ...]]:
    """(device, function, base) -> values of the last reply of that shape in a capture."""
    out: dict[tuple[int, int, int], tuple[int, ...]] = {}
    framer = Framer()
    for line in path.read_text().splitlines():
        parsed = parse_capture_line(line)
        if parsed is None or parsed[0] != "rx":
            continue
        for fr in framer.feed(parsed[1]):
            if isinstance(fr, ReadResponse):
                out[(fr.device, fr.function, fr.base)] = fr.values
    return out


REPLAYS = {
    # capture: (family, label, read address, input bases, full holding bases, lv batteries, hv addresses)
    "aio_a/aio_arm620_redetect_7min.log": (
        "aio", "All in One", 0x11, [0, 180], BASE_HR_FULL + [240, 300], 0, (0x70, 0x50, 0x51, 0x52, 0x53)),
    "gateway_2aio_a/gateway_gaaa0014_10min_night.log": (
        "gateway", "Gateway", 0x11, [0, 180, 1600, 1660, 1720, 1780, 1840], BASE_HR_FULL + [180, 240, 300], 0, ()),
    "hybrid_2_bat_a/hybrid_gen1_arm449_0x11_poll_10min.log": (
        "hybrid", "Gen1 Hybrid", 0x31, [0, 180, 240], BASE_HR_FULL, 2, ()),
}


@pytest.mark.parametrize("name", sorted(REPLAYS))
def test_captured_session_replayed_is_identified(name: str) -> None:
    family, label, address, ir, hr_full, lv, hv = REPLAYS[name]
    path = DATA / name
    captured = captured_blocks(path)

    async def go() -> None:
        inv = SimInverter("hybrid", 0)  # the capture decides the model
        assert inv.seed_from_capture(path) > 0
        sim = DongleSimulator(inv, "127.0.0.1", 0)
        await sim.start()
        try:
            async with GivEnergyClient("127.0.0.1", sim.port, gap=0, timeout=0.3) as c:
                await c.refresh(full=True)
                assert c.plant.model.key == family and c.plant.model.label == label
                assert c.plan is not None and c.plan.family == family
                assert c.read_address == address
                assert bases(c.plan.input_blocks) == ir
                assert bases(c.plan.holding_full) == hr_full
                assert c.battery_count == lv and c.hv_addresses == hv
                # the extra blocks hold the captured raw registers
                for base in ir[2:]:
                    values = captured[(address, IR, base)]
                    assert tuple(c.plant.input[base + i] for i in range(len(values))) == values
                for addr in hv:
                    values = captured[(addr, IR, 60)]
                    assert tuple(c.plant.hv[addr][60 + i] for i in range(60)) == values
                reading = build_reading(c.plant, raw=True)
                assert reading.device_id == c.plant.serial
                if hv:
                    assert set(reading.extra["raw"]["hv"]) == {f"0x{a:02x}" for a in hv}
                    assert reading.metrics["battery_modules"] == len(hv) - 1
        finally:
            await sim.stop()
    run(go())


def test_gateway_rollup_firmware_string_in_raw_registers() -> None:
    """The gateway's IR 1600-1603 carry its firmware "GAAA0014" (capture README): kept raw, unmangled."""
    async def go() -> None:
        inv = SimInverter("hybrid", 0)
        inv.seed_from_capture(DATA / "gateway_2aio_a" / "gateway_gaaa0014_10min_night.log")
        sim = DongleSimulator(inv, "127.0.0.1", 0)
        await sim.start()
        try:
            async with GivEnergyClient("127.0.0.1", sim.port, gap=0, timeout=0.3) as c:
                await c.refresh()
                regs = [c.plant.input[r] for r in range(1600, 1604)]
                assert regs == [0x4741, 0x4141, 0x0000, 0x0104]
        finally:
            await sim.stop()
    run(go())
