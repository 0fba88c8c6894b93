"""Web service benchmarks: /api/history latency over 7 days of 10 s data, SSE fan-out to 100 clients.

Run: .venv/bin/python bench/bench_api.py [history|sse|all]
Targets (issue 9): /api/history p95 < 100 ms for 7 days of 10 s data of one metric;
SSE: 100 concurrent clients receive each reading with < 200 ms added delay.

history: a history database with 7 days of 10 s readings (60 480 per metric) of one device, either with only
the queried metric or with 20 metrics per reading (1.2 M rows, a realistic database), queried through the full
app over a real loopback HTTP connection (uvicorn in this process) for the 1 h, 24 h and 7 d ranges with the
dashboard's steps (10 s, 2 min, 15 min: a "nice" step giving at most 720 buckets).
sse: the daemon (synthetic source, 1 reading per 0.5 s, web service) runs in a child process; 1 then 100
clients connected over loopback measure, for every reading, receive time minus the reading's timestamp.
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx

HERE = Path(__file__).resolve().parent


def pct(values: list[float], p: float) -> float:
    v = sorted(values)
    return v[min(len(v) - 1, int(round(p / 100 * (len(v) - 1))))]


# ---------------------------------------------------------------------------------------------- history


def build_db(path: Path, metrics: int, now: float) -> None:
    from solarbridge.model import Reading
    from solarbridge.sinks.history.sink import HistoryStore

    store = HistoryStore(path)
    n = 7 * 86400 // 10
    start = now - n * 10
    names = ["pv_power_w"] + [f"extra_{i}_w" for i in range(metrics - 1)]
    batch = []
    for i in range(n):
        ts = start + i * 10
        batch.append(Reading("inv1", "inverter", datetime.fromtimestamp(ts, UTC),
                             {m: float((i * 7 + k) % 5000) for k, m in enumerate(names)}))
        if len(batch) == 5000:
            store.insert(batch)
            batch = []
    if batch:
        store.insert(batch)
    store.close()


async def history_latency(db: Path, now: float, rounds: int) -> dict[str, tuple[float, float, int]]:
    from solarbridge.api.server import ApiServer
    from solarbridge.config import ApiConfig, build
    from solarbridge.runtime import Supervisor

    sup = Supervisor(build({"daemon": {"state_dir": str(db.parent), "history": False}}))
    server = ApiServer(sup, ApiConfig(enabled=True, listen="127.0.0.1:0"))
    await server.start()
    out = {}
    try:
        async with httpx.AsyncClient(base_url=server.urls[0].rstrip("/"), timeout=30) as c:
            # the steps the dashboard asks for (a "nice" step giving at most 720 buckets)
            cases = {"1h": ("3600s", "10s"), "24h": ("86400s", "120s"), "7d": ("604800s", "900s")}
            for name, (since, step) in cases.items():
                params = {"device": "inv1", "metric": "pv_power_w", "since": str(now - float(since[:-1])),
                          "until": str(now), "step": step}
                await c.get("/api/history", params=params)  # warm the page cache
                times = []
                for _ in range(rounds):
                    t = time.perf_counter()
                    r = await c.get("/api/history", params=params)
                    times.append((time.perf_counter() - t) * 1000)
                    assert r.status_code == 200, r.text
                out[name] = (pct(times, 50), pct(times, 95), len(r.json()["t"]))
    finally:
        await server.stop()
    return out


def sql_variants(db: Path, now: float) -> None:
    """The 7 d query at the SQLite level: today's schema vs a covering index vs a 5-minute rollup table.

    Works on a copy of the database; the figures back the schema proposal for sinks/history/sink.py.
    """
    import shutil
    import sqlite3

    copy = db.with_name("variants.sqlite")
    shutil.copy(db, copy)
    con = sqlite3.connect(copy)
    sid = con.execute("SELECT id FROM series WHERE metric = 'pv_power_w'").fetchone()[0]
    lo, hi, step = int((now - 604800) * 1000), int(now * 1000), 900_000

    def median_ms(sql: str, args: tuple) -> float:
        times = []
        for _ in range(15):
            t = time.perf_counter()
            con.execute(sql, args).fetchall()
            times.append((time.perf_counter() - t) * 1000)
        return statistics.median(times)

    q = ("SELECT (ts_ms / ?) * ? AS b, MIN(value), AVG(value), MAX(value), COUNT(*) FROM samples"
         " WHERE series = ? AND ts_ms >= ? AND ts_ms <= ? GROUP BY b ORDER BY b")
    now_ms = median_ms(q, (step, step, sid, lo, hi))
    con.execute("CREATE INDEX samples_cover ON samples (series, ts_ms, value)")
    cover_ms = median_ms(q, (step, step, sid, lo, hi))
    con.execute("CREATE TABLE bench_rollup_5m (series INTEGER NOT NULL, bucket_ms INTEGER NOT NULL, min REAL, max REAL,"
                " sum REAL, count INTEGER, PRIMARY KEY (series, bucket_ms)) WITHOUT ROWID")
    con.execute("INSERT INTO bench_rollup_5m SELECT series, ts_ms / 300000 * 300000, MIN(value), MAX(value), SUM(value),"
                " COUNT(*) FROM samples GROUP BY 1, 2")
    roll_ms = median_ms("SELECT bucket_ms / ? * ? AS b, MIN(min), SUM(sum) / SUM(count), MAX(max), SUM(count)"
                        " FROM bench_rollup_5m WHERE series = ? AND bucket_ms >= ? AND bucket_ms <= ? GROUP BY b ORDER BY b",
                        (step, step, sid, lo, hi))
    con.close()
    copy.unlink()
    print(f"  SQL only, 7 d at 15 min: today {now_ms:5.1f} ms | + covering index (series, ts_ms, value)"
          f" {cover_ms:5.1f} ms | 5-min rollup table {roll_ms:5.1f} ms")


def bench_history(rounds: int = 60) -> bool:
    ok = True
    now = float(int(time.time()))
    with tempfile.TemporaryDirectory() as d:
        for metrics in (1, 20):
            db = Path(d) / f"m{metrics}" / "history.sqlite"
            db.parent.mkdir()
            t = time.perf_counter()
            build_db(db, metrics, now)
            rows = 60480 * metrics
            print(f"history db: 7 d of 10 s data, {metrics} metric(s) per reading = {rows:,} rows,"
                  f" {db.stat().st_size / 1e6:.0f} MB, built in {time.perf_counter() - t:.1f} s")
            res = asyncio.run(history_latency(db, now, rounds))
            for name, (p50, p95, n) in res.items():
                flag = "" if p95 < 100 else "  (over the 100 ms target)"
                ok &= p95 < 100
                print(f"  /api/history {name:4s} {n:5d} buckets: p50 {p50:6.1f} ms  p95 {p95:6.1f} ms{flag}")
            sql_variants(db, now)
    return ok


# ---------------------------------------------------------------------------------------------- SSE


def serve_child(state_dir: str) -> None:
    """Child process: a daemon with the synthetic source and the web service; prints its URL."""
    from solarbridge.api.server import serve
    from solarbridge.config import build
    from solarbridge.runtime import Supervisor

    cfg = build({"daemon": {"state_dir": state_dir, "history": False},
                 "api": {"enabled": True, "listen": "127.0.0.1:0"},
                 "sources": [{"type": "synthetic", "interval": 0.5}]})

    async def main() -> None:
        sup = Supervisor(cfg)
        sup.build()
        await sup.start()
        await serve(sup, cfg.api, on_ready=lambda urls: print(urls[0], flush=True))

    asyncio.run(main())


async def sse_delays(url: str, clients: int, readings: int) -> tuple[list[float], int]:
    delays: list[float] = []
    got = [0] * clients
    ready = asyncio.Event()
    connected = 0

    async def one(i: int, c: httpx.AsyncClient) -> None:
        nonlocal connected
        async with c.stream("GET", "/api/events") as resp:
            connected += 1
            if connected == clients:
                ready.set()
            async for line in resp.aiter_lines():
                if line.startswith("data: ") and '"timestamp"' in line and ready.is_set():
                    now = time.time()
                    d = json.loads(line[6:])
                    if "metrics" in d and "age_s" not in d:  # a reading, not the initial device snapshot
                        delays.append((now - datetime.fromisoformat(d["timestamp"]).timestamp()) * 1000)
                        got[i] += 1
                        if got[i] >= readings:
                            return

    limits = httpx.Limits(max_connections=clients + 5)
    async with httpx.AsyncClient(base_url=url, timeout=60, limits=limits) as c:
        await asyncio.wait_for(asyncio.gather(*(one(i, c) for i in range(clients))), 120)
    return delays, sum(got)


def bench_sse(readings: int = 20) -> bool:
    with tempfile.TemporaryDirectory() as d:
        proc = subprocess.Popen([sys.executable, __file__, "--serve-child", d], stdout=subprocess.PIPE, text=True,
                                env={**os.environ, "PYTHONUNBUFFERED": "1"})
        try:
            url = proc.stdout.readline().strip().rstrip("/")
            if not url:
                print("sse: child did not start")
                return False
            res = {}
            for n in (1, 100):
                delays, count = asyncio.run(sse_delays(url, n, readings))
                res[n] = (pct(delays, 50), pct(delays, 95), max(delays))
                print(f"sse: {n:3d} client(s) x {readings} readings ({count} deliveries): delay p50"
                      f" {res[n][0]:6.1f} ms  p95 {res[n][1]:6.1f} ms  max {res[n][2]:6.1f} ms")
            added = res[100][1] - res[1][1]
            print(f"sse: added p95 delay with 100 clients: {added:.1f} ms (target < 200 ms);"
                  f" clients and server share this machine's {os.cpu_count()} cores")
            return added < 200
        finally:
            proc.terminate()
            proc.wait(10)


def main(argv: list[str]) -> int:
    if argv[:1] == ["--serve-child"]:
        serve_child(argv[1])
        return 0
    what = argv[0] if argv else "all"
    ok = True
    if what in ("history", "all"):
        ok &= bench_history()
    if what in ("sse", "all"):
        ok &= bench_sse()
    print("targets met" if ok else "a target was missed (figures above)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
