"""What each gateway login costs per full poll: Digest (firmware before 7) against the cloud token (7+).

Run: .venv/bin/python bench/bench_enphase_auth.py [--polls 20]

The daemon's enphase source polls the simulator serving recorded sets in-process (loopback): 4.10.35 over
plain HTTP with Digest auth as envoy, and 7.6.175_with_cts over HTTPS with a Bearer token. Prints, per full
poll, the requests the gateway saw, the 401 challenges among them, and the wall time. httpx's DigestAuth
keeps the last challenge and answers it with the next nonce count, so Digest should cost one extra round
trip per run, not per request.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path

from solarbridge.plugin import Context
from solarbridge.sources.enphase.simulator import GatewaySimulator, Scenario
from solarbridge.sources.enphase.source import EnphaseConfig, EnphaseSource

DATA = Path(__file__).resolve().parents[1] / "tests" / "data" / "enphase"


async def run(fixture: str, polls: int) -> tuple[float, float, int, str]:
    sim = await GatewaySimulator(Scenario(), fixture=DATA / fixture).start()
    try:
        extra = {} if sim.legacy else {"token": sim.issue_token()}
        cfg = EnphaseConfig(type="enphase", name="gw", host=f"127.0.0.1:{sim.port}", serial=sim.scenario.serial,
                            **extra)
        with tempfile.TemporaryDirectory() as d:
            src = EnphaseSource(cfg, Context.standalone("gw", "source", "enphase", Path(d)))
            mon = src.make_monitor(lambda r: None)
            await mon.poll()  # the first poll: probe, login choice, once-only reads
            sim.stats.clear()
            t0 = time.perf_counter()
            for _ in range(polls):
                await mon.poll()
            took = time.perf_counter() - t0
            await mon.aclose()
        requests = sum(v for k, v in sim.stats.items() if not k.startswith("digest_"))
        challenged = sim.stats.get("digest_challenged", 0) + sim.stats.get("digest_refused", 0)
        return requests / polls, took / polls * 1e3, challenged, "Digest/HTTP" if sim.legacy else "token/HTTPS"
    finally:
        await sim.stop()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--polls", type=int, default=20)
    args = ap.parse_args()
    print(f"enphase source, {args.polls} full polls after the first, simulator on loopback")
    for fixture in ("4.10.35", "7.6.175_with_cts"):
        per_poll, ms, challenged, how = asyncio.run(run(fixture, args.polls))
        print(f"  {fixture:18s} {how:12s} {per_poll:5.1f} requests/poll  {challenged} challenges (401) in"
              f" {args.polls} polls  {ms:6.1f} ms/poll")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
