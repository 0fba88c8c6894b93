"""/api/energy latency over a year of 10 s site data, and the stages' cost per reading.

Run: .venv/bin/python bench/bench_energy.py [energy|stages|all] [--db FILE] [--rounds N]
Target (issue 14): /api/energy p95 < 50 ms for a year of 10 s data.

energy: a history database holding one site (``site:bench``) with a year of readings every 10 s
(3.15 M per series): its 7 energy totals and 4 power flows, 35 M rows (built once, about two minutes;
``--db`` keeps it for the next run). Queried through the full app over a real loopback HTTP connection
(uvicorn in this process): days of the last 7 and 31 days, days of the whole year, months of the year,
years. Figures are printed; nothing is asserted.
stages: readings of the synthetic home through counter hygiene and the site stage (auto and configured
sites), microseconds per reading.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx

YEAR = 365 * 86400
STEP = 10


def pct(values: list[float], p: float) -> float:
    v = sorted(values)
    return v[min(len(v) - 1, int(round(p / 100 * (len(v) - 1))))]


def build_db(path: Path, now: float) -> None:
    from solarbridge.model import Reading
    from solarbridge.sinks.history.sink import HistoryStore
    from solarbridge.stages.sites import ENERGY_METRICS

    store = HistoryStore(path)
    rng = random.Random(1)
    totals = dict.fromkeys(ENERGY_METRICS.values(), 0.0)
    start = now - YEAR
    batch = []
    t0 = time.perf_counter()
    for i in range(YEAR // STEP):
        ts = start + i * STEP
        hour = (ts % 86400) / 3600
        pv = max(0.0, 4000 * (1 - abs(hour - 13) / 7)) * rng.uniform(0.7, 1.0)
        load = 400 + rng.uniform(0, 800)
        bat = max(-2500.0, min(2500.0, load - pv))
        grid = load - pv - bat
        h = STEP / 3600
        totals["pv_energy_total_wh"] += pv * h
        totals["load_energy_total_wh"] += load * h
        totals["grid_import_energy_total_wh"] += max(grid, 0) * h
        totals["grid_export_energy_total_wh"] += max(-grid, 0) * h
        totals["battery_discharge_energy_total_wh"] += max(bat, 0) * h
        totals["battery_charge_energy_total_wh"] += max(-bat, 0) * h
        totals["self_consumption_energy_total_wh"] += max(pv + min(grid, 0), 0) * h
        metrics = {k: round(v, 1) for k, v in totals.items()}
        metrics.update(pv_power_w=round(pv, 1), load_power_w=round(load, 1), battery_power_w=round(bat, 1),
                       grid_power_w=round(grid, 1))
        batch.append(Reading("site:bench", "site", datetime.fromtimestamp(ts, UTC), metrics))
        if len(batch) == 20000:
            store.insert(batch)
            batch = []
    if batch:
        store.insert(batch)
    store.close()
    print(f"built {path} ({path.stat().st_size / 1e6:.0f} MB, {YEAR // STEP * 11 / 1e6:.1f} M rows) "
          f"in {time.perf_counter() - t0:.0f} s")


async def energy_latency(db: Path, now: float, rounds: int) -> None:
    from solarbridge.api.server import ApiServer
    from solarbridge.config import ApiConfig, build
    from solarbridge.runtime import Supervisor

    cfg = build({"daemon": {"state_dir": str(db.parent), "history": True},
                 "sinks": [{"type": "history", "path": str(db)}]})
    sup = Supervisor(cfg)
    sup.build()
    for sink in sup.sinks.values():
        await sink.start()
    server = ApiServer(sup, ApiConfig(enabled=True, listen="127.0.0.1:0"))
    await server.start()
    until = datetime.fromtimestamp(now, UTC).isoformat()
    cases = {
        "by=day, last 7 days (dashboard)": {"by": "day"},
        "by=day, last 31 days": {"by": "day", "since": "31d"},
        "by=day, whole year (366 days)": {"by": "day", "since": "365d"},
        "by=month, last 12 months (dashboard)": {"by": "month"},
        "by=year, last 5 years (dashboard)": {"by": "year"},
    }
    try:
        async with httpx.AsyncClient(base_url=server.urls[0].rstrip("/"), timeout=30) as c:
            print(f"/api/energy, one site, a year of {STEP} s data (p50 / p95 / max over {rounds} requests):")
            for name, params in cases.items():
                q = {"site": "bench", "tz": "Europe/London", "until": until, **params}
                r = await c.get("/api/energy", params=q)
                assert r.status_code == 200, r.text
                periods = len(r.json()["periods"])
                times = []
                for _ in range(rounds):
                    t0 = time.perf_counter()
                    r = await c.get("/api/energy", params=q)
                    times.append((time.perf_counter() - t0) * 1000)
                print(f"  {name:40s} {periods:4d} periods  p50 {statistics.median(times):6.1f} ms"
                      f"  p95 {pct(times, 95):6.1f} ms  max {max(times):6.1f} ms  (target p95 < 50 ms)")
    finally:
        await server.stop()
        for sink in sup.sinks.values():
            await sink.stop()


def stages_cost(n: int = 20000) -> None:
    from solarbridge.model import Reading
    from solarbridge.sources.synthetic.model import SyntheticHome
    from solarbridge.stages import chain
    from solarbridge.stages.counters import CounterStage
    from solarbridge.stages.sites import SiteConfig, SiteStage

    home = SyntheticHome(rng=random.Random(1))
    t = datetime.now(UTC) - timedelta(days=2)
    readings = []
    for _ in range(n):
        readings.append(Reading("synthetic-home", "synthetic", t, home.step(t, 2.0), source="synthetic"))
        t += timedelta(seconds=2)
    configured = [SiteConfig.model_validate({"name": "home", "devices": ["synthetic-home"]})]
    print(f"stages, {n} synthetic-home readings (17 metrics, 7 counters):")
    for name, stages in (("counter hygiene", lambda: [CounterStage({}, None)]),
                         ("sites (configured)", lambda: [SiteStage(configured)]),
                         ("sites (automatic)", lambda: [SiteStage([])]),
                         ("both (the daemon's pipeline)", lambda: [CounterStage({}, None), SiteStage(configured)])):
        best = float("inf")
        for _ in range(3):
            out: list[Reading] = []
            pipeline = chain(stages(), out.append)
            for r in readings:
                r.metrics = dict(r.metrics)
            t0 = time.perf_counter()
            for r in readings:
                pipeline(r)
            best = min(best, time.perf_counter() - t0)
        print(f"  {name:30s} {best / n * 1e6:6.1f} us/reading  ({n / best:8.0f} readings/s)")


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("what", nargs="?", default="all", choices=("energy", "stages", "all"))
    ap.add_argument("--db", help="history database to build once and reuse")
    ap.add_argument("--rounds", type=int, default=200)
    args = ap.parse_args(argv)
    if args.what in ("stages", "all"):
        stages_cost()
    if args.what in ("energy", "all"):
        with tempfile.TemporaryDirectory() as tmp:
            db = Path(args.db) if args.db else Path(tmp) / "history.sqlite"
            if db.exists():
                from solarbridge.sinks.history.sink import HistoryStore

                store = HistoryStore(db, readonly=True)
                row = store.db.execute("SELECT MAX(ts_ms) FROM samples").fetchone()
                store.close()
                now = row[0] / 1000
            else:
                now = time.time()
                build_db(db, now)
            asyncio.run(energy_latency(db, now, args.rounds))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
