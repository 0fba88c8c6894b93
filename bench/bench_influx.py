"""Benchmark the InfluxDB sink: encoding, spool write+delete, and bus -> sink -> VictoriaMetrics sustained.

Run: .venv/bin/python bench/bench_influx.py [--points 400000]
Needs victoria-metrics (Debian package); started on a loopback port in a temp dir and stopped at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from solarbridge.config import Config, DaemonConfig  # noqa: E402
from solarbridge.model import Reading  # noqa: E402
from solarbridge.runtime import Supervisor  # noqa: E402
from solarbridge.sinks.influx.sink import InfluxConfig, InfluxSink, LineEncoder  # noqa: E402
from solarbridge.sinks.spool import Spool  # noqa: E402

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def make_readings(n: int, devices: int = 50) -> list[Reading]:
    out = []
    for i in range(n):
        out.append(Reading(f"dev{i % devices}", "inverter", T0 + timedelta(milliseconds=i),
                           {"pv_power_w": float(i % 5000), "battery_soc_pct": i % 100, "grid_power_w": -12.5,
                            "grid_available": True}))
    return out


def bench_encode(readings: list[Reading]) -> None:
    enc = LineEncoder()
    t = time.perf_counter()
    lines: list[str] = []
    for i in range(0, len(readings), 5000):
        enc.encode(readings[i:i + 5000], lines)
    dt = time.perf_counter() - t
    print(f"encode (wide schema, 4 fields per line): {len(lines) / dt:,.0f} lines/s = {4 * len(lines) / dt:,.0f}"
          " points/s")


def bench_spool(tmp: Path, entries: int = 20_000, points_per_entry: int = 100) -> None:
    s = Spool(tmp / "bench.sqlite")
    body = b"inverter,device_id=dev1 pv_power_w=1234.5,battery_soc_pct=55i 1767225600000000000\n" * points_per_entry
    t = time.perf_counter()
    for _ in range(entries):
        s.put(body, points_per_entry)
    dt_w = time.perf_counter() - t
    t = time.perf_counter()
    while s.entries:
        s.ack(s.peek(5000))
    dt_d = time.perf_counter() - t
    s.close()
    mb = entries * len(body) / 1e6
    print(f"spool write: {entries / dt_w:,.0f} entries/s ({mb / dt_w:,.0f} MB/s); "
          f"peek+delete: {entries / dt_d:,.0f} entries/s ({entries * points_per_entry / dt_d:,.0f} points/s)")
    # one entry per sink batch of single readings (the small-write worst case)
    s = Spool(tmp / "bench_small.sqlite")
    small = body[: len(body) // points_per_entry]
    t = time.perf_counter()
    for _ in range(entries):
        s.put(small, 1)
    dt_w = time.perf_counter() - t
    t = time.perf_counter()
    while s.entries:
        s.ack(s.peek(1))
    dt_d = time.perf_counter() - t
    s.close()
    print(f"spool single-point entries: write {entries / dt_w:,.0f}/s, peek+delete one at a time {entries / dt_d:,.0f}/s")


async def bench_e2e(tmp: Path, url: str, readings: list[Reading]) -> float:
    sup = Supervisor(Config(daemon=DaemonConfig(state_dir=tmp / "state", history=False)))
    sup.state_dir.mkdir(parents=True, exist_ok=True)
    cfg = InfluxConfig(type="influxdb2", name="influx", host=url, bucket="b", batch_points=20_000, batch_size=10_000,
                       queue_size=len(readings) + 1, flush_interval=0.2)
    sink = InfluxSink(cfg, sup._context("influx", "sink", "influxdb2"))
    sup.add_sink(sink)
    await sup.start()
    n = len(readings)
    t = time.perf_counter()
    cpu = time.process_time()
    chunk = 10_000
    for i in range(0, n, chunk):
        sup.bus.publish_many(readings[i:i + chunk])
        await asyncio.sleep(0)
    t_pub = time.perf_counter() - t
    while sink.spool is None or sink.spool.sent_points < n:
        await asyncio.sleep(0.01)
    dt = time.perf_counter() - t
    cpu = time.process_time() - cpu
    await sup.stop()
    print(f"bus publish: {n / t_pub:,.0f} readings/s")
    print(f"bus -> influx sink -> spool -> VictoriaMetrics (gzip, 20k lines/request): {n:,} lines in {dt:.2f} s"
          f" = {n / dt:,.0f} lines/s = {4 * n / dt:,.0f} points/s (InfluxDB points = field values = VM samples)")
    print(f"  CPU time of this process (bus + sink, all threads): {cpu:.2f} s -> {n / cpu:,.0f} lines per CPU-second;"
          f" load average now {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    return dt


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--points", type=int, default=400_000)
    args = ap.parse_args()
    import servers

    readings = make_readings(args.points)
    bench_encode(readings)
    tmp = Path(tempfile.mkdtemp(prefix="bench-influx-"))
    try:
        bench_spool(tmp)
        vm = servers.Victoria(name="victoria", dir=tmp / "vm")
        (tmp / "vm").mkdir()
        vm.start()
        try:
            asyncio.run(bench_e2e(tmp, vm.url, readings))
            # check that VictoriaMetrics really holds every point
            series = vm.export('{__name__="inverter_pv_power_w"}')
            got = sum(len(s["values"]) for s in series)
            print(f"VictoriaMetrics holds {got:,} samples of inverter_pv_power_w (expected {args.points:,})")
        finally:
            vm.stop()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
