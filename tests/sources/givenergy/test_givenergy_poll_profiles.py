"""Poll profiles: which blocks each poll reads (full, lite, per-block intervals), on a simulated clock against
the simulator; bad block_intervals are one clear config error."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from solarbridge.plugin import Context
from solarbridge.sources.givenergy.simulator import DongleSimulator, SimInverter
from solarbridge.sources.givenergy.source import GivEnergyConfig, GivEnergySource


async def _polls(tmp_path: Path, n: int, model: str = "hybrid", **cfg: Any) -> list[set[str]]:
    """Blocks read by each of ``n`` polls, 15 s of simulated time apart (the first poll is at t=0)."""
    sim = DongleSimulator(SimInverter(model, 1), "127.0.0.1", 0)
    await sim.start()
    try:
        config = GivEnergyConfig(type="givenergy", name="p", host="127.0.0.1", port=sim.port, request_gap=0,
                                 poll_interval=15, **cfg)
        src = GivEnergySource(config, Context.standalone("p", "source", "givenergy", tmp_path))
        clock = [1000.0]
        src.monotonic = lambda: clock[0]
        await src.client.connect()
        await src.client.detect(None)
        seen: list[set[str]] = []
        read = src.client.read

        async def counting(function: int, base: int, count: int = 60, device: int | None = None, **kw: Any) -> Any:
            if device is not None and device >= 0x32 and base == 60:
                seen[-1].add("battery")
            else:
                seen[-1].add(f"{'IR' if function == 4 else 'HR'}{base}")
            return await read(function, base, count, device=device, **kw)

        src.client.read = counting  # type: ignore[method-assign]
        for _ in range(n):
            seen.append(set())
            await src.poll_once()
            clock[0] += 15
        await src.client.close()
        return seen
    finally:
        await sim.stop()


def test_full_profile_reads_holding_config_on_full_refreshes_only(tmp_path: Path) -> None:
    polls = asyncio.run(_polls(tmp_path, 10))
    live = {"IR0", "IR180", "IR240", "HR0", "battery"}
    assert polls[0] == live | {"HR60", "HR120"}  # a full refresh first
    assert all(p == live for p in polls[1:8])
    assert polls[8] == live | {"HR60", "HR120"}  # 120 s later


def test_lite_profile_reads_live_blocks_every_poll_and_config_every_n_minutes(tmp_path: Path) -> None:
    polls = asyncio.run(_polls(tmp_path, 22, poll_profile="lite", config_interval=300, battery_interval=60))
    live = {"IR0", "IR180", "IR240"}
    assert polls[0] == live | {"HR0", "HR60", "HR120", "battery"}
    for i, p in enumerate(polls[1:20], 1):
        assert p == live | ({"battery"} if i % 4 == 0 else set()), i
    assert polls[20] == live | {"HR0", "HR60", "HR120", "battery"}  # 300 s later
    assert polls[21] == live


def test_block_intervals_override_the_profile(tmp_path: Path) -> None:
    polls = asyncio.run(_polls(tmp_path, 9, poll_profile="lite",
                               block_intervals={"IR240": 60, "HR0": 30, "battery": 3600}))
    assert [("IR240" in p) for p in polls] == [True, False, False, False, True, False, False, False, True]
    assert [("HR0" in p) for p in polls] == [True, False, True, False, True, False, True, False, True]
    assert [("battery" in p) for p in polls] == [True] + [False] * 8
    assert all({"IR0", "IR180"} <= p for p in polls)


@pytest.mark.parametrize(("intervals", "message"), [
    ({"XX12": 5}, "'XX12' is not a block"),
    ({"IR0": 0}, "block_intervals.IR0: must be more than 0"),
    ({"battery": 100000}, "at most 86400"),
])
def test_bad_block_intervals_are_a_config_error(intervals: dict[str, float], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        GivEnergyConfig(type="givenergy", host="127.0.0.1", block_intervals=intervals)
