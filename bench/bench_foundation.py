"""Foundation benchmarks: bus fan-out, history insert rate, `solarbridge --help` start-up time.

Run: .venv/bin/python bench/bench_foundation.py   (targets: bus >= 200k readings/s through 3 null sinks,
history >= 200k metric rows/s batched, --help < 300 ms)
"""

from __future__ import annotations

import asyncio
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from solarbridge.config import build
from solarbridge.model import Reading
from solarbridge.plugin import Context
from solarbridge.runtime import Supervisor
from solarbridge.sinks.history.sink import HistoryStore
from solarbridge.sinks.null.sink import NullSink


def bench_bus(n: int = 1_000_000, sinks: int = 3) -> float:
    async def go() -> float:
        with tempfile.TemporaryDirectory() as d:
            sup = Supervisor(build({"daemon": {"state_dir": d, "history": False}}))
            nulls = []
            for i in range(sinks):
                s = NullSink(NullSink.Config(type="null", name=f"null{i}", queue_size=200_000, batch_size=5000),
                             Context.standalone(f"null{i}", "sink", "null", d))
                sup.add_sink(s)
                nulls.append(s)
            await sup.start()
            ts = datetime.now(UTC)
            r = Reading("dev", "bench", ts, {"pv_power_w": 1.0, "grid_power_w": 2.0}, source="bench")
            publish = sup.bus.publish
            t0 = time.perf_counter()
            chunk = 10_000
            for _ in range(n // chunk):
                for _ in range(chunk):
                    publish(r)
                await asyncio.sleep(0)  # let the sinks drain, as a real source yields
            while any(s.ctx.health.counters.get("readings", 0) < n for s in nulls):
                await asyncio.sleep(0.001)
            dt = time.perf_counter() - t0
            await sup.stop()
            return n / dt
    return asyncio.run(go())


def bench_history(readings: int = 50_000, metrics: int = 10) -> float:
    with tempfile.TemporaryDirectory() as d:
        store = HistoryStore(Path(d) / "h.sqlite")
        t0 = datetime(2026, 1, 1, tzinfo=UTC)
        batch_size = 1000
        batches = [[Reading("dev", "bench", t0 + timedelta(seconds=10 * (b * batch_size + i)),
                            {f"m{k}_w": float(i + k) for k in range(metrics)}) for i in range(batch_size)]
                   for b in range(readings // batch_size)]
        start = time.perf_counter()
        rows = sum(store.insert(b) for b in batches)
        dt = time.perf_counter() - start
        store.close()
        return rows / dt


def bench_help(runs: int = 15) -> tuple[float, float]:
    exe = Path(sys.executable).with_name("solarbridge")
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        subprocess.run([str(exe), "--help"], stdout=subprocess.DEVNULL, check=True)
        times.append(time.perf_counter() - t0)
    return statistics.median(times), max(times)


def main() -> None:
    bus = bench_bus()
    print(f"bus fan-out, 3 null sinks: {bus:,.0f} readings/s (target >= 200,000)")
    hist = bench_history()
    print(f"history insert, batches of 1000 readings x 10 metrics: {hist:,.0f} metric rows/s (target >= 200,000)")
    med, worst = bench_help()
    print(f"solarbridge --help: median {med * 1000:.0f} ms, worst {worst * 1000:.0f} ms (target < 300 ms)")


if __name__ == "__main__":
    main()
