"""External meters at device addresses 1..8 in the poll plan: probed once after detection, only the wired ones
polled, their metrics published; the lite profile reads them on the battery interval; pinned addresses are read
unprobed. Which addresses hold a meter per model is what the real captures show (tests/data/givenergy); that
our probe finds the same meters as givenergy-modbus's own detect is checked against its mock plant in
test_givenergy_oracle.py."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from solarbridge.model import metric_spec
from solarbridge.plugin import Context
from solarbridge.sources.givenergy.client import GivEnergyClient
from solarbridge.sources.givenergy.framing import FC_READ_INPUT
from solarbridge.sources.givenergy.readings import build_reading
from solarbridge.sources.givenergy.simulator import DongleSimulator, SimInverter
from solarbridge.sources.givenergy.source import GivEnergyConfig, GivEnergySource

#: meters with a phase-1 voltage in each model's capture (grid meter at 1; a second meter at 2 on the
#: three-phase hybrid and the gateway, a generation meter at 3 on the EMS); none on the others
CAPTURED_METERS = {"hybrid": (), "gen2": (1,), "ac": (), "aio": (), "hvgen3": (1,), "3ph": (1, 2), "ems": (1, 3),
                   "gateway": (1, 2)}


class Recorder:
    """Wraps a client's ``read`` to list (device, function, base, count) of every request."""

    def __init__(self, client: GivEnergyClient) -> None:
        self.calls: list[tuple[int | None, int, int, int]] = []
        self._read = client.read
        client.read = self.read  # type: ignore[method-assign]

    async def read(self, function: int, base: int, count: int = 60, device: int | None = None, **kw: Any) -> Any:
        self.calls.append((device, function, base, count))
        return await self._read(function, base, count, device=device, **kw)

    def meter_reads(self) -> list[int]:
        return [d for d, f, b, _n in self.calls if d is not None and 1 <= d <= 8 and f == FC_READ_INPUT and b == 60]


@pytest.mark.parametrize("model", sorted(CAPTURED_METERS))
def test_the_probe_keeps_the_wired_meters_and_each_poll_reads_only_them(model: str) -> None:
    async def go() -> None:
        sim = DongleSimulator(SimInverter(model, 2), "127.0.0.1", 0)
        await sim.start()
        try:
            async with GivEnergyClient("127.0.0.1", sim.port, gap=0, timeout=1.0) as c:
                rec = Recorder(c)
                await c.detect()
                probed = rec.meter_reads()
                # every address is probed once (meters need not be contiguous), except on the Gen1 hybrid,
                # whose capture answers none of them
                assert probed == ([] if model == "hybrid" else list(range(1, 9)))
                assert c.meter_addresses == CAPTURED_METERS[model]
                assert c.stats["timeouts"] == 0
                rec.calls.clear()
                plant = await c.refresh()
                assert rec.meter_reads() == list(CAPTURED_METERS[model])
                assert all(n == 30 for d, _f, _b, n in rec.calls if d in c.meter_addresses)
                reading = build_reading(plant, source="t")
                m = reading.metrics
                for addr in range(1, 9):
                    assert (f"meter_{addr}_voltage_v_l1" in m) is (addr in CAPTURED_METERS[model])
                for addr in CAPTURED_METERS[model]:
                    bank = sim.inverter.meter_banks[addr]
                    assert m[f"meter_{addr}_voltage_v_l1"] == bank[60] / 10
                    phases = [b - 0x10000 if b & 0x8000 else b for b in (bank.get(r, 0) for r in (68, 69, 70))]
                    total = bank.get(71, 0)
                    total = total - 0x10000 if total & 0x8000 else total
                    # a single-phase meter leaves its total at 0: its power is the phases' sum
                    assert m[f"meter_{addr}_power_w"] == (total or sum(phases))
                    assert m[f"meter_{addr}_import_energy_total_wh"] == bank[85] * 100
        finally:
            await sim.stop()
    asyncio.run(asyncio.wait_for(go(), 60))


def test_a_reconnect_does_not_probe_again_and_pinned_meters_are_read_unprobed() -> None:
    async def go() -> None:
        sim = DongleSimulator(SimInverter("ems", 2), "127.0.0.1", 0)
        await sim.start()
        try:
            c = GivEnergyClient("127.0.0.1", sim.port, gap=0)
            rec = Recorder(c)
            await c.connect()
            await c.detect()
            await c.connect()  # a reconnect: the probed meters are kept
            rec.calls.clear()
            await c.detect()
            assert rec.meter_reads() == [] and c.meter_addresses == (1, 3)
            await c.close()
            pinned = GivEnergyClient("127.0.0.1", sim.port, gap=0, meters=(3,))
            rec = Recorder(pinned)
            async with pinned:
                await pinned.detect()
                await pinned.refresh()
            assert rec.meter_reads() == [3] and set(pinned.plant.meter_values()) == {3}
        finally:
            await sim.stop()
    asyncio.run(asyncio.wait_for(go(), 60))


async def _meter_polls(tmp_path: Path, n: int, **cfg: Any) -> list[bool]:
    """For each of ``n`` polls 15 simulated seconds apart: were the meters read?"""
    sim = DongleSimulator(SimInverter("3ph", 2), "127.0.0.1", 0)
    await sim.start()
    try:
        config = GivEnergyConfig(type="givenergy", name="m", host="127.0.0.1", port=sim.port, request_gap=0,
                                 poll_interval=15, **cfg)
        src = GivEnergySource(config, Context.standalone("m", "source", "givenergy", tmp_path))
        clock = [1000.0]
        src.monotonic = lambda: clock[0]
        await src.client.connect()
        await src.client.detect(None)
        assert "meters" in src.client.block_keys()
        rec = Recorder(src.client)
        out = []
        for _ in range(n):
            rec.calls.clear()
            reading = await src.poll_once()
            out.append(rec.meter_reads() == [1, 2])
            assert "meter_2_power_w" in reading.metrics
            clock[0] += 15
        await src.client.close()
        return out
    finally:
        await sim.stop()


def test_full_profile_reads_meters_each_poll_lite_on_the_battery_interval(tmp_path: Path) -> None:
    assert asyncio.run(_meter_polls(tmp_path, 3)) == [True, True, True]
    lite = asyncio.run(_meter_polls(tmp_path, 9, poll_profile="lite", battery_interval=60))
    assert lite == [True, False, False, False, True, False, False, False, True]
    own = asyncio.run(_meter_polls(tmp_path, 5, poll_profile="lite", block_intervals={"meters": 30}))
    assert own == [True, False, True, False, True]


def test_meter_metrics_have_home_assistant_units() -> None:
    assert (metric_spec("meter_3_power_w").unit, metric_spec("meter_3_power_w").device_class) == ("W", "power")
    assert metric_spec("meter_1_voltage_v_l2").unit == "V"
    assert metric_spec("meter_1_import_energy_total_wh").state_class == "total_increasing"


@pytest.mark.parametrize(("meters", "message"), [([9], "meters: each address must be 1..8 (got 9)"),
                                                 ([0, 1], "meters: each address must be 1..8 (got 0)")])
def test_bad_meter_addresses_are_one_clear_config_error(meters: list[int], message: str) -> None:
    with pytest.raises(ValidationError, match=message.replace("(", r"\(").replace(")", r"\)")):
        GivEnergyConfig(type="givenergy", name="m", host="127.0.0.1", meters=meters)
