"""Grid-off to `upsc ups.status OB` latency with real NUT, and gateway requests per minute.

Run: .venv/bin/python bench/bench_enphase_outage.py [--events 5] [--window 20]

Chain: gateway simulator (HTTPS) -> enphase-monitor (its own process, default settings:
POLLFREQ 60, POLLFREQALERT 20, RELAYFREQ 2) -> port file -> /lib/nut/dummy-ups -> /lib/nut/upsd
-> upsc, polled every 50 ms. Each event pulls the grid at a random phase of the relay check.

Requests per minute are counted by the simulator over ``--window`` seconds on grid and on battery,
for our defaults and with RELAYFREQ=0, which is the original script's request pattern (relay,
livedata, meters/reports per poll; info.xml and secctrl once).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from servers import Nut  # noqa: E402
from solarbridge.sources.enphase.simulator import GatewaySimulator, Scenario  # noqa: E402


class Sim:
    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        threading.Thread(target=self.loop.run_forever, daemon=True).start()
        self.sim = asyncio.run_coroutine_threadsafe(GatewaySimulator(Scenario(soc=90)).start(), self.loop).result()

    def set(self, **patch: object) -> None:
        self.loop.call_soon_threadsafe(self.sim.scenario.update, patch)

    def stats(self) -> dict[str, int]:
        return dict(self.sim.stats)

    def reset(self) -> None:
        self.loop.call_soon_threadsafe(self.sim.stats.clear)

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self.sim.stop(), self.loop).result()


def monitor(d: Path, sim: Sim, **extra: str) -> subprocess.Popen[bytes]:
    conf = d / "enphase-bench.conf"
    keys = {"USERNAME": "u@x", "PASSWORD": "p", "SERIAL": sim.sim.scenario.serial, "PORT_FILE": str(d / "ups.dev"),
            "STATE_DIR": str(d), "ENVOY_HOST": f"127.0.0.1:{sim.sim.port}", **extra}
    conf.write_text("".join(f"{k}={v}\n" for k, v in keys.items()))
    conf.chmod(0o600)
    env = dict(os.environ, SOLARBRIDGE_ENPHASE_LOGIN_URL=sim.sim.login_url,
               SOLARBRIDGE_ENPHASE_TOKENS_URL=sim.sim.tokens_url, SOLARBRIDGE_ENPHASE_CLOUD_CA=str(sim.sim.cert_path))
    return subprocess.Popen([sys.executable, "-m", "solarbridge.cli.enphase_monitor", "-c", str(conf), "bench"],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def wait_status(nut: Nut, want: str, timeout: float = 30.0) -> float:
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if nut.upsc("ups.status") == want:
            return time.monotonic() - t0
        time.sleep(0.05)
    raise SystemExit(f"timed out waiting for ups.status {want}")


def rate(sim: Sim, window: float) -> tuple[float, dict[str, int]]:
    sim.reset()
    time.sleep(window)
    st = sim.stats()
    return sum(st.values()) * 60 / window, st


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=5)
    ap.add_argument("--window", type=float, default=20.0)
    ap.add_argument("--pollinterval", type=int, default=0, help="set dummy-ups pollinterval (default: NUT's 2 s)")
    a = ap.parse_args()
    d = Path(tempfile.mkdtemp(prefix="bench-enphase-"))
    d.chmod(0o755)
    (d / "ups.dev").write_text("ups.status: OL\nbattery.charge: 90\n")
    nut = Nut(name="nut", dir=d / "nut", port_file=d / "ups.dev", initial=None)
    nut.dir.mkdir()
    nut.start()
    if a.pollinterval:
        conf = nut.dir / "ups.conf"
        conf.write_text(conf.read_text() + f"  pollinterval = {a.pollinterval}\n")
        nut.start_driver()
        nut.wait_ready()
    sim = Sim()
    procs = []
    try:
        mon = monitor(d, sim)
        procs.append(mon)
        wait_status(nut, "OL")
        off, on = [], []
        for _ in range(a.events):
            time.sleep(random.uniform(0.5, 2.5))
            sim.set(grid="off")
            off.append(wait_status(nut, "OB"))
            time.sleep(random.uniform(0.5, 2.5))
            sim.set(grid="on")
            on.append(wait_status(nut, "OL"))
        print(f"grid off -> upsc OB: median {statistics.median(off):.2f} s, max {max(off):.2f} s "
              f"({len(off)} events; RELAYFREQ 2, dummy-ups pollinterval {a.pollinterval or 2})")
        print(f"grid on  -> upsc OL: median {statistics.median(on):.2f} s, max {max(on):.2f} s")
        r_ol, st = rate(sim, a.window)
        print(f"requests/min on grid (defaults):     {r_ol:5.1f}  {st}")
        sim.set(grid="off")
        time.sleep(3)
        r_ob, st = rate(sim, a.window)
        print(f"requests/min on battery (defaults):  {r_ob:5.1f}  {st}")
        mon.terminate()
        mon.wait(10)
        for grid in ("on", "off"):
            sim.set(grid=grid)
            orig = monitor(d, sim, RELAYFREQ="0")  # (re)started so that its first poll sees the new state
            procs.append(orig)
            time.sleep(2)
            r, st = rate(sim, 60.0)
            where = "on grid   " if grid == "on" else "on battery"
            print(f"requests/min {where} (RELAYFREQ=0, the original's pattern): {r:5.1f}  {st}")
            orig.terminate()
            orig.wait(10)
        print("original outage detection: at the next poll, up to POLLFREQ (60 s) + dummy-ups pollinterval")
    finally:
        for p in procs:
            if p.poll() is None:
                p.terminate()
                p.wait(10)
        sim.stop()
        nut.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
