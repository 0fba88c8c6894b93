"""Requests per minute a GivEnergy source sends under each poll profile, per model, against the simulator.

    python bench/bench_givenergy_poll_profiles.py [--minutes 60] [--models hybrid,gen2,ac,aio,3ph,ems,gateway]

The source's poll schedule runs on a simulated clock (one poll every ``poll_interval`` of simulated time,
back to back in real time), and every request it sends goes over a real socket to the in-process
simulator, which counts what it received. Printed: requests per minute of simulated time for the default
settings (poll 15 s, full refresh 120 s; lite: holding blocks every 300 s, battery units every 60 s) and a
lite profile with per-block overrides.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
from pathlib import Path
from typing import Any

from solarbridge.plugin import Context
from solarbridge.sources.givenergy.simulator import DongleSimulator, SimInverter
from solarbridge.sources.givenergy.source import GivEnergyConfig, GivEnergySource

PROFILES: dict[str, dict[str, Any]] = {
    "full (default)": {},
    "lite": {"poll_profile": "lite"},
    "lite, IR 240+ every 60 s, HR 180+ hourly": {
        "poll_profile": "lite", "block_intervals": {"IR240": 60, "HR180": 3600, "HR240": 3600, "HR300": 3600}},
}


async def measure(model: str, extra: dict[str, Any], minutes: float, state: Path) -> tuple[float, float]:
    sim = DongleSimulator(SimInverter(model, 2), "127.0.0.1", 0)
    await sim.start()
    try:
        cfg = GivEnergyConfig(type="givenergy", name="bench", host="127.0.0.1", port=sim.port, request_gap=0,
                              **extra)
        src = GivEnergySource(cfg, Context.standalone("bench", "source", "givenergy", state))
        clock = [0.0]
        src.monotonic = lambda: clock[0]
        await src.client.connect()
        await src.client.detect(cfg.batteries)
        await src.poll_once()  # the first poll reads everything in every profile
        before = src.client.stats["requests"]
        polls = int(minutes * 60 / cfg.poll_interval)
        for _ in range(polls):
            clock[0] += cfg.poll_interval
            await src.poll_once()
        sent = src.client.stats["requests"] - before
        await src.client.close()
        return sent / minutes, sent / polls
    finally:
        await sim.stop()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--minutes", type=float, default=60.0, help="simulated minutes per measurement")
    ap.add_argument("--models", default="hybrid,gen2,ac,aio,3ph,ems,gateway")
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        print(f"requests per minute (simulated {a.minutes:g} min, poll every 15 s; model with 2 batteries/BMUs)")
        for model in a.models.split(","):
            for name, extra in PROFILES.items():
                per_min, per_poll = asyncio.run(measure(model, extra, a.minutes, Path(tmp)))
                print(f"  {model:7s} {name:45s} {per_min:6.1f} req/min  ({per_poll:.2f} per poll)")


if __name__ == "__main__":
    main()
