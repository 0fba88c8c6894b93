"""The inventory's ``site`` column: each label is a site of its rows' devices, kept whole on one worker."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from servers import async_wait_for
from solarbridge.config import load
from solarbridge.model import Reading
from solarbridge.runtime import Supervisor
from solarbridge.stages.sites import SiteConfig, SiteStage
from support.runtime import CollectSink

HEADER = "family,host,port,serial,name,site,options\n"


def config(tmp_path: Path, rows: str, extra: str = "") -> Path:
    (tmp_path / "fleet.csv").write_text(HEADER + rows)
    p = tmp_path / "sb.toml"
    p.write_text(f'[daemon]\nstate_dir = "{tmp_path}/state"\nhistory = false\n{extra}\n'
                 '[inventory]\nfile = "fleet.csv"\n')
    p.chmod(0o600)
    return p


def test_each_label_becomes_a_site_of_its_rows(tmp_path):
    rows = ("synthetic,,,home-a1,,farm-a,\nsynthetic,,,home-a2,,farm-a,\n"
            "synthetic,,,home-b1,,farm-b,\nsynthetic,,,loner,,,\n")
    cfg = load(config(tmp_path, rows, '[[sites]]\nname = "farm-b"\ndevices = ["meter-9"]\n'))
    sites = {s.name: s for s in cfg.sites}
    assert set(sites) == {"farm-a", "farm-b"}
    assert sites["farm-a"].sources == ["synthetic-home-a1", "synthetic-home-a2"]
    # a [[sites]] table of the same name keeps what it had and gains the rows
    assert sites["farm-b"].devices == ["meter-9"] and sites["farm-b"].sources == ["synthetic-home-b1"]


def test_a_bad_site_label_is_named_by_line(tmp_path):
    from solarbridge.config import ConfigError

    with pytest.raises(ConfigError) as e:
        load(config(tmp_path, "synthetic,,,x1,,farm a,\nsynthetic,,,x2,,-farm,\n"))
    lines = str(e.value).splitlines()
    assert any("fleet.csv:2: site:" in ln and "'farm a'" in ln for ln in lines), lines
    assert any("fleet.csv:3: site:" in ln and "'-farm'" in ln for ln in lines), lines


def test_sharding_keeps_every_site_whole_on_one_worker(tmp_path, monkeypatch):
    rows = "".join(f"synthetic,,,d{i:03d},,site-{i % 17},\n" for i in range(170))
    rows += "".join(f"synthetic,,,solo{i:02d},,,\n" for i in range(30))
    p = config(tmp_path, rows)
    owner: dict[str, int] = {}
    devices: dict[str, int] = {}
    for k in range(5):
        monkeypatch.setenv("SOLARBRIDGE_SHARD", f"{k}/5")
        cfg = load(p)
        for s in cfg.sources:
            devices[s.name] = devices.get(s.name, 0) + 1
        for site in cfg.sites:
            assert site.name not in owner, f"{site.name} on workers {owner[site.name]} and {k}"
            owner[site.name] = k
            assert len(site.sources) == 10  # all of the site's rows, not a share of them
    assert len(owner) == 17 and len(devices) == 200 and set(devices.values()) == {1}
    assert len(set(owner.values())) > 1  # the sites are spread over the workers




def test_a_labelled_site_sums_its_devices_in_the_daemon(tmp_path):
    """Two simulated homes in one inventory site: the site's power flows are the sums of the two homes'
    latest readings, and the balance (pv + grid + battery = load) holds."""
    rows = ("synthetic,,,home-1,,street,interval=0.05;count=40;backfill=\"2s\";seed=1\n"
            "synthetic,,,home-2,,street,interval=0.05;count=40;backfill=\"2s\";seed=2\n")
    cfg = load(config(tmp_path, rows))

    async def go() -> list[Reading]:
        sup = Supervisor(cfg)
        sup.build()
        sink = CollectSink("collect", tmp_path)
        sup.add_sink(sink)
        await sup.start()
        try:
            await async_wait_for(lambda: sum(1 for r in sink.got if r.device_id.startswith("home-")) >= 80, 10,
                                 "80 readings of the home-* devices", interval=0.05)
        finally:
            await sup.stop()
        return sink.got

    readings = asyncio.run(go())
    latest: dict[str, dict[str, Any]] = {}
    checked = 0
    for r in readings:
        if r.device_id in ("home-1", "home-2"):
            latest[r.device_id] = r.metrics
        elif r.device_id == "site:street" and r.metrics and len(latest) == 2:
            for flow, metric in (("pv", "pv_power_w"), ("load", "load_power_w")):
                want = sum(m[metric] for m in latest.values())
                assert r.metrics[f"{flow}_power_w"] == pytest.approx(want, abs=0.2), (flow, r.metrics)
            checked += 1
    assert checked >= 10, f"only {checked} site readings after both homes reported"
    assert not any(r.device_id.startswith("site:home-") for r in readings)  # no automatic per-device sites


def test_a_flow_is_counted_once_per_source():
    """An inverter and its battery both report battery_power_w (one flow, two devices of one source):
    a site that takes every device of the source counts it from the first device only."""
    stage = SiteStage([SiteConfig(name="s", sources=["inv"])])
    out: list[Reading] = []
    from datetime import UTC, datetime

    t = datetime(2026, 6, 1, 12, tzinfo=UTC)
    inverter = {"pv_power_w": 3000.0, "grid_power_w": -500.0, "battery_power_w": -1000.0, "load_power_w": 1500.0}
    stage.process(Reading("inv-1", "inverter", t, inverter, source="inv"), out.append)
    stage.process(Reading("bat-1", "battery", t, {"battery_power_w": -1000.0, "battery_soc_pct": 60.0},
                          source="inv"), out.append)
    site = [r for r in out if r.device_id == "site:s" and r.metrics]
    assert site and site[-1].metrics["battery_power_w"] == -1000.0  # not -2000
    assert stage.sites["s"].describe()["battery"] == ["inv-1 battery_power_w"]
