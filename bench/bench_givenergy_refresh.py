"""Full-refresh latency of the GivEnergy client against the simulator on loopback.

    python bench/bench_givenergy_refresh.py [--runs 50] [--delay 0] [--model 3ph --model ems ...]

For each model family (default: every simulator model) the simulator runs as its own process (like a
real dongle). A full refresh reads the model's poll plan (Gen1 hybrid: IR 0-59, 180-239, 240-299,
HR 0-179 and one IR 60-119 block per battery; three-phase: also IR 1000-1413, HR 1000-1124 and the HV
BCU/BMU blocks; EMS IR/HR 2040+; gateway IR 1600-1899); the number of round trips is counted and
printed, with the time to decode the refreshed plant into a reading (canonical metrics + GivTCP tree).
Figures for request gap 0 (pure latency) and for the daemon default gap of 0.02 s.
Target: <= 150 ms without the dongle delay.
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import statistics
import subprocess
import sys
import time

from solarbridge.sources.givenergy.client import GivEnergyClient
from solarbridge.sources.givenergy.readings import build_reading
from solarbridge.sources.givenergy.registers import SIM_MODELS


def free_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


async def measure(port: int, runs: int, gap: float) -> tuple[list[float], int, float, int]:
    """Full-refresh times (ms), requests per refresh, decode time per reading (ms), metrics per reading."""
    async with GivEnergyClient("127.0.0.1", port, gap=gap, timeout=3) as c:
        await c.detect()
        await c.refresh(full=True)  # the first full refresh also probes the optional blocks
        out = []
        before = c.stats["requests"]
        for _ in range(runs):
            t0 = time.perf_counter()
            await c.refresh(full=True)
            out.append((time.perf_counter() - t0) * 1000)
        per = (c.stats["requests"] - before) // runs
        t0 = time.perf_counter()
        for _ in range(runs):
            reading = build_reading(c.plant)
        decode_ms = (time.perf_counter() - t0) * 1000 / runs
        return out, per, decode_ms, len(reading.metrics)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=50)
    ap.add_argument("--delay", type=float, default=0.0, help="simulated dongle reply delay (s)")
    ap.add_argument("--model", action="append", choices=sorted(SIM_MODELS),
                    help="simulator model (repeat; default: every family)")
    a = ap.parse_args()
    for model in a.model or list(SIM_MODELS):
        port = free_port()
        packs = "4"  # LV packs, or HV modules behind the BCU on aio / hvgen3 / 3ph
        sim = subprocess.Popen([sys.executable, "-m", "solarbridge.sources.givenergy.simulator", "--port", str(port),
                                "--delay", str(a.delay), "--model", model, "--batteries", packs],
                               stdout=subprocess.PIPE, text=True)
        try:
            assert sim.stdout is not None
            sim.stdout.readline()
            for gap in (0.0, 0.02):
                ms, per, decode_ms, metrics = asyncio.run(measure(port, a.runs if gap == 0 else max(a.runs // 5, 5),
                                                                   gap))
                ms.sort()
                print(f"{model:8s} full refresh ({per:2d} requests), gap {gap:.2f} s, dongle delay {a.delay:.2f} s: "
                      f"median {statistics.median(ms):7.2f} ms  p95 {ms[int(len(ms) * 0.95) - 1]:7.2f} ms"
                      f"  max {ms[-1]:7.2f} ms  (n={len(ms)}); decode {decode_ms:5.2f} ms, {metrics} metrics",
                      flush=True)
        finally:
            sim.terminate()
            sim.wait(10)


if __name__ == "__main__":
    main()
