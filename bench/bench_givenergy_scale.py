"""How many simulated GivEnergy inverters one process polls at 1 Hz on one core.

    python bench/bench_givenergy_scale.py [--counts 100,200,400] [--seconds 10]

The simulators (one process, one TCP port per inverter, 1 battery each) are pinned to one CPU and
the poller to another (when the machine has two). The poller runs N GivEnergySource instances
exactly as the daemon does (poll_interval 1 s, fast poll = IR 0-59, IR 180-239, HR 0-59 and the
battery block, a full refresh every 120 s, a canonical Reading with the GivTCP tree per poll) and
reports readings/s, the poller's CPU use and the implied capacity at 100 % of one core.
Target: >= 200 inverters at 1 Hz.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

from solarbridge.plugin import Context
from solarbridge.sources.givenergy.source import GivEnergyConfig, GivEnergySource


def free_base(n: int) -> int:
    """A base port below the ephemeral range with n free ports after it."""
    for base in range(20000, 32000 - n, 500):
        ok = True
        for p in range(base, base + n):
            t = socket.socket()
            try:
                t.bind(("127.0.0.1", p))
            except OSError:
                ok = False
            finally:
                t.close()
            if not ok:
                break
        if ok:
            return base
    raise RuntimeError("no free port range")


async def poll(base: int, n: int, seconds: float, tmp: Path) -> tuple[int, float, float]:
    count = 0

    def emit(_r: object) -> None:
        nonlocal count
        count += 1

    sources = []
    for i in range(n):
        cfg = GivEnergyConfig(type="givenergy", name=f"ge{i}", host="127.0.0.1", port=base + i, poll_interval=1.0,
                              batteries=1)
        sources.append(GivEnergySource(cfg, Context.standalone(f"ge{i}", "source", "givenergy", tmp)))
    tasks = [asyncio.create_task(s.run(emit)) for s in sources]
    await asyncio.sleep(4)  # connect, detect, first full refresh
    c0, cpu0, t0 = count, time.process_time(), time.perf_counter()
    await asyncio.sleep(seconds)
    c1, cpu1, t1 = count, time.process_time(), time.perf_counter()
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    return c1 - c0, cpu1 - cpu0, t1 - t0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--counts", default="100,200,400")
    ap.add_argument("--seconds", type=float, default=10.0)
    a = ap.parse_args()
    cpus = sorted(os.sched_getaffinity(0))
    tmp = Path("/tmp") / f"bench-givenergy-{os.getpid()}"
    tmp.mkdir(exist_ok=True)
    for n in (int(x) for x in a.counts.split(",")):
        base = free_base(n)
        sim = subprocess.Popen([sys.executable, "-m", "solarbridge.sources.givenergy.simulator", "--port", str(base),
                                "--count", str(n), "--batteries", "1"], stdout=subprocess.PIPE, text=True)
        try:
            if len(cpus) > 1:
                os.sched_setaffinity(sim.pid, {cpus[1]})
                os.sched_setaffinity(0, {cpus[0]})
            assert sim.stdout is not None
            for _ in range(n):
                sim.stdout.readline()
            readings, cpu, wall = asyncio.run(poll(base, n, a.seconds, tmp))
            rate = readings / wall
            util = cpu / wall
            print(f"{n:4d} inverters: {rate:7.1f} readings/s ({rate / n:4.2f} per inverter per s, period 1 s)"
                  f", poller CPU {util * 100:5.1f} % of one core -> ~{rate / max(util, 1e-9):5.0f}"
                  " polls/s per core", flush=True)
        finally:
            sim.terminate()
            sim.wait(10)
            os.sched_setaffinity(0, set(cpus))


if __name__ == "__main__":
    main()
