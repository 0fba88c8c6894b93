"""Full-refresh latency of the GivEnergy client against the simulator on loopback.

    python bench/bench_givenergy_refresh.py [--runs 50] [--delay 0]

The simulator runs as its own process (like a real dongle). A full refresh is IR 0-59, IR 180-239,
HR 0-59, HR 60-119, HR 120-179 and one IR 60-119 block per battery (2 here): 7 round trips.
Figures for request gap 0 (pure latency) and for the daemon default gap of 0.02 s and 0.05 s.
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


def free_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


async def measure(port: int, runs: int, gap: float) -> list[float]:
    async with GivEnergyClient("127.0.0.1", port, gap=gap, timeout=3) as c:
        await c.detect()
        out = []
        for _ in range(runs):
            t0 = time.perf_counter()
            await c.refresh(full=True)
            out.append((time.perf_counter() - t0) * 1000)
        return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=50)
    ap.add_argument("--delay", type=float, default=0.0, help="simulated dongle reply delay (s)")
    a = ap.parse_args()
    port = free_port()
    sim = subprocess.Popen([sys.executable, "-m", "solarbridge.sources.givenergy.simulator", "--port", str(port),
                            "--delay", str(a.delay)], stdout=subprocess.PIPE, text=True)
    try:
        assert sim.stdout is not None
        sim.stdout.readline()
        for gap in (0.0, 0.02, 0.05):
            ms = asyncio.run(measure(port, a.runs if gap == 0 else max(a.runs // 5, 5), gap))
            ms.sort()
            print(f"full refresh (7 requests), gap {gap:.2f} s, dongle delay {a.delay:.2f} s: "
                  f"median {statistics.median(ms):7.2f} ms  p95 {ms[int(len(ms) * 0.95) - 1]:7.2f} ms"
                  f"  max {ms[-1]:7.2f} ms  (n={len(ms)})")
    finally:
        sim.terminate()
        sim.wait(10)


if __name__ == "__main__":
    main()
