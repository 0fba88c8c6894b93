"""The solaredge daemon source with the simulator: network (plain and encrypted), file, RS485 master."""

from __future__ import annotations

import asyncio
import os
import random
import threading
from pathlib import Path

import pytest
from pydantic import ValidationError

from servers import async_wait_for, free_port
from solarbridge.model import Reading
from solarbridge.plugin import Context
from solarbridge.sources.solaredge.simulator import Faults, make_site, run_network, run_serial
from solarbridge.sources.solaredge.source import SolarEdgeConfig, SolarEdgeSource
from support.solaredge import DATA, pty_pair


async def collect(src: SolarEdgeSource, want, timeout: float = 20.0) -> list[Reading]:
    got: list[Reading] = []
    task = asyncio.create_task(src.run(got.append))
    try:

        def wanted_or_ended() -> bool:
            if want(got):
                return True
            if task.done():
                task.result()  # raises the source's error; a source that just ended leaves the checks to the caller
                return True
            return False

        await async_wait_for(wanted_or_ended, timeout, lambda: f"the readings wanted (only {len(got)} readings)",
                             interval=0.05)
    finally:
        task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            pass
    return got


@pytest.mark.parametrize("encrypted", [False, True])
def test_network_source_readings(tmp_path: Path, encrypted: bool) -> None:
    port = free_port()
    key = (DATA / "7f104920.key").read_text()
    cfg = SolarEdgeConfig(type="solaredge", listen="127.0.0.1", ports=[port],
                          key_file=str(DATA / "7f104920.key") if encrypted else None)
    src = SolarEdgeSource(cfg, Context.standalone("se", "source", "solaredge", tmp_path))
    site = make_site(1, 3, 1, seed=3, key=bytes.fromhex(key))
    site[0].sun = 0.8
    stop = threading.Event()
    t = threading.Thread(target=run_network, args=("127.0.0.1", port, site), daemon=True, kwargs=dict(
        key=bytes.fromhex(key) if encrypted else None, faults=Faults(garbage=0.5), interval=0.05, count=3,
        duration=30, rng=random.Random(1), stop=stop.is_set, quiet=True))
    t.start()
    got = asyncio.run(collect(src, lambda g: len([r for r in g if r.device_type == "inverter"]) >= 2))
    stop.set()
    t.join(10)
    by_type: dict[str, list[Reading]] = {}
    for r in got:
        by_type.setdefault(r.device_type, []).append(r)
    inv = by_type["inverter"][0]
    assert inv.device_id == "7F104920" and inv.metrics["pv_power_w"] > 3000
    assert inv.metrics["pv_energy_total_wh"] > 1e7 and "inverter_temperature_c" in inv.metrics
    assert inv.extra["record"]["Pac"] == pytest.approx(inv.metrics["pv_power_w"])
    assert inv.timestamp.tzinfo is not None
    opts = {r.device_id for r in by_type["optimizer"]}
    assert len(opts) == 3
    assert all(r.metrics["module_power_w"] > 0 for r in by_type["optimizer"])
    bat = by_type["battery"][0]
    assert bat.device_id == "7F104920-BAT000000SIM" and 0 <= bat.metrics["battery_soc_pct"] <= 100
    assert bat.metrics["battery_power_w"] < 0  # charging in sunshine: negative by convention
    grid = [r for r in by_type["meter"] if "grid_power_w" in r.metrics]
    assert grid and "grid_import_energy_total_wh" in grid[0].metrics
    assert src.ctx.health.counters["messages"] >= 2
    assert {d.device_id for d in src.devices()} >= {"7F104920"}


def test_file_source(tmp_path: Path) -> None:
    cfg = SolarEdgeConfig(type="solaredge", mode="file", path=str(DATA / "sample.rec"), follow=False)
    src = SolarEdgeSource(cfg, Context.standalone("se", "source", "solaredge", tmp_path))
    got = asyncio.run(collect(src, lambda g: False))
    types = {r.device_type for r in got}
    assert {"inverter", "optimizer", "battery", "meter", "event"} <= types
    assert src.ctx.health.counters["dropped_crc"] == 1


def test_serial_master_source(tmp_path: Path) -> None:
    s1, n1, s2, n2 = pty_pair()
    site = make_site(2, 1, 0, seed=5)
    stop = threading.Event()
    t = threading.Thread(target=run_serial, args=(n2, site), daemon=True, kwargs=dict(
        rs485=True, faults=Faults(), interval=1, count=0, duration=30, rng=random.Random(2), stop=stop.is_set,
        quiet=True))
    t.start()
    cfg = SolarEdgeConfig(type="solaredge", mode="serial", serial_port=n1, master=True,
                          slaves=["7f104920", "7f104a31"], master_pause_s=0.1)
    src = SolarEdgeSource(cfg, Context.standalone("se", "source", "solaredge", tmp_path))
    got = asyncio.run(collect(src, lambda g: {r.device_id for r in g if r.device_type == "inverter"}
                              >= {"7F104920", "7F104A31"}))
    stop.set()
    t.join(10)
    assert {r.device_id for r in got if r.device_type == "inverter"} == {"7F104920", "7F104A31"}
    os.close(s1)


@pytest.mark.parametrize(("kw", "msg"), [
    ({"mode": "serial"}, "needs serial_port"),
    ({"mode": "file"}, "needs path"),
    ({"master": True}, "master = true needs"),
    ({"ports": [0]}, "must be a TCP port 1..65535 (got 0)"),
    ({"slaves": ["nothex"]}, "not a hex inverter id"),
    ({"bogus": 1}, "bogus"),
])
def test_config_errors(kw: dict, msg: str) -> None:
    with pytest.raises(ValidationError) as e:
        SolarEdgeConfig(type="solaredge", **kw)
    assert msg in str(e.value)


def test_demo_part(tmp_path: Path) -> None:
    from solarbridge.sources.solaredge import demo

    async def main() -> list[Reading]:
        part = await demo.start(tmp_path)
        try:
            assert (tmp_path / "solaredge.key").stat().st_mode & 0o077 == 0
            table = dict(part.sources[0])
            cfg = SolarEdgeConfig(**table)
            src = SolarEdgeSource(cfg, Context.standalone("se", "source", "solaredge", tmp_path))
            return await collect(src, lambda g: any(r.device_type == "battery" for r in g))
        finally:
            await asyncio.to_thread(part.stop)

    got = asyncio.run(main())
    assert {"inverter", "optimizer", "battery"} <= {r.device_type for r in got}
    assert any(r.metrics.get("pv_power_w", 0) > 0 for r in got if r.device_type == "inverter")
