"""Benchmarks for the SolarEdge converters and the Graphite output.

    .venv/bin/python bench/bench_converters.py [--lines N] [--no-carbon]

Prints:
* se2graphite / pickle2graphite: metrics per second delivered into a real carbon-cache (Debian graphite-carbon,
  started on loopback in a temp dir) with --delay 0, and the rate the original's pacing allows
  (0.1 s per metric; 0.2 s per JSON line), measured on a short run with the default delay;
* se2csv rows per second and se2state lines per second (files in a temp dir);
* the graphite sink's encoding rate (readings -> plaintext / pickle bytes).
"Delivered" means the command has finished and confirmed that Carbon read everything (half-close handshake);
whisper writes happen after that inside Carbon and are not part of the figure.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SIM = ROOT / "tests" / "data" / "converters" / "simulated.json"


def make_input(path: Path, lines: int, *, small: bool) -> int:
    """``lines`` semonitor lines, one per second ending a few minutes ago; returns the metric count."""
    from solarbridge.sources.solaredge.converters import graphite_points

    template = json.loads(SIM.read_text().splitlines()[0])
    if small:  # one inverter and three optimizers: few whisper files for carbon to create
        template = {"events": {}, "inverters": {"7F104920": template["inverters"]["7F104920"]},
                    "optimizers": {k: v for k, v in template["optimizers"].items() if k.startswith("2010000")}}
    start = datetime.now(UTC) - timedelta(seconds=lines + 300)
    total = 0
    with path.open("w") as f:
        for i in range(lines):
            t = start + timedelta(seconds=i)
            d, tm = t.strftime("%Y-%m-%d"), t.strftime("%H:%M:%S")
            for group in template.values():
                if not isinstance(group, dict):
                    continue
                for rec in _leaves(group):
                    rec["Date"], rec["Time"] = d, tm
            f.write(json.dumps(template, sort_keys=True) + "\n")
            total += len(graphite_points(template, tz=UTC))
    return total


def _leaves(node: dict):
    for v in node.values():
        if isinstance(v, dict):
            if "Date" in v:
                yield v
            else:
                yield from _leaves(v)


def timed(fn) -> float:
    t0 = time.perf_counter()
    rc = fn()
    dt = time.perf_counter() - t0
    if rc not in (0, None):
        raise SystemExit(f"benchmark command failed with exit code {rc}")
    return dt


def bench_carbon(tmp: Path, lines: int) -> None:
    sys.path.insert(0, str(ROOT / "tests"))
    from servers import Carbon  # the test suite's real-server helper
    from solarbridge.cli import pickle2graphite, se2graphite

    carbon = Carbon(name="carbon", dir=tmp / "carbon")
    carbon.dir.mkdir()
    carbon.start()
    try:
        src = tmp / "carbon-in.json"
        metrics = make_input(src, lines, small=True)
        per_line = metrics / lines
        for name, main, port, delay in (("se2graphite", se2graphite.main, carbon.line_port, 0.1),
                                        ("pickle2graphite", pickle2graphite.main, carbon.pickle_port, 0.2)):
            common = ["-b", f"bench_{name}", "-h", "127.0.0.1", "-p", str(port), "--tz", "UTC", "--no-progress"]
            dt = timed(lambda m=main, c=common: m([*c, "--delay", "0", str(src)]))
            # the original pacing, measured on a short slice
            short = tmp / f"{name}-short.json"
            short.write_text("".join(src.read_text().splitlines(True)[:2]))
            short_metrics = 2 * per_line
            dt_orig = timed(lambda m=main, c=common, s=short, d=delay: m([*c, "--delay", str(d), str(s)]))
            print(f"{name:16s} delay 0: {metrics / dt:>10,.0f} metrics/s ({metrics} metrics, {lines} lines, "
                  f"{dt:.2f} s)   original pacing ({delay} s): {short_metrics / dt_orig:>7,.1f} metrics/s")
    finally:
        carbon.stop()


def bench_files(tmp: Path, lines: int) -> None:
    from solarbridge.cli import se2csv, se2state
    from solarbridge.sources.solaredge.converters import records

    src = tmp / "files-in.json"
    make_input(src, lines, small=False)
    rows = sum(len(list(records(json.loads(line)))) for line in src.read_text().splitlines())
    dt = timed(lambda: se2csv.main(["-h", "--no-progress", "-p", str(tmp / "csv"), str(src)]))
    print(f"{'se2csv':16s} {rows / dt:>10,.0f} rows/s ({rows} rows from {lines} lines, {dt:.2f} s)")
    dt = timed(lambda: se2state.main(["--once", "--no-progress", "-o", str(tmp / "state.json"), str(src)]))
    print(f"{'se2state':16s} {lines / dt:>10,.0f} lines/s (atomic replace per line, {dt:.2f} s)")


def bench_sink_encoding() -> None:
    from solarbridge.model import Reading
    from solarbridge.sinks.graphite.sink import reading_points
    from solarbridge.sinks.graphite.wire import encode_text, pickle_frames

    now = datetime.now(UTC)
    batch = [Reading(f"dev{i % 20}", "inverter", now, {f"m{j}_w": float(i + j) for j in range(10)}, "bench")
             for i in range(10_000)]
    cache: dict = {}
    reading_points(batch[:100], "{prefix}.{device_type}.{device_id}.{metric}", "sb", cache)
    t0 = time.perf_counter()
    pts = reading_points(batch, "{prefix}.{device_type}.{device_id}.{metric}", "sb", cache)
    t1 = time.perf_counter()
    encode_text(pts)
    t2 = time.perf_counter()
    pickle_frames(pts)
    t3 = time.perf_counter()
    n = len(pts)
    print(f"{'graphite sink':16s} readings->points {n / (t1 - t0):>10,.0f} points/s, text {n / (t2 - t1):,.0f} "
          f"points/s, pickle {n / (t3 - t2):,.0f} points/s")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--lines", type=int, default=3000, help="JSON lines per run (default 3000)")
    ap.add_argument("--no-carbon", action="store_true", help="skip the carbon-cache runs")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        if not args.no_carbon:
            bench_carbon(tmp, args.lines)
        bench_files(tmp, args.lines)
    bench_sink_encoding()


if __name__ == "__main__":
    main()
