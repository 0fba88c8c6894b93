"""The daemon side: the `enphase` source's canonical readings and the `nut` sink (any battery is a UPS)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from servers import async_wait_for
from solarbridge.config import ConfigError, build
from solarbridge.model import DeviceInfo, Reading, utcnow
from solarbridge.plugin import Context
from solarbridge.sinks.nut.sink import NutSink, NutSinkConfig
from solarbridge.sources.enphase.simulator import GatewaySimulator, Scenario
from solarbridge.sources.enphase.source import EnphaseConfig, EnphaseSource
from support.enphase import port_values


def _sink(tmp_path: Path, **kw: object) -> NutSink:
    cfg = NutSinkConfig(type="nut", name="nut", port_file=str(tmp_path / "ups.dev"), **kw)
    return NutSink(cfg, Context.standalone("nut", "sink", "nut", tmp_path))


def _reading(metrics: dict, device: str = "gE1", online: bool = True) -> Reading:
    info = DeviceInfo(device, "givenergy_inverter", manufacturer="GivEnergy", model="Gen3", serial=device,
                      sw_version="D0.449")
    return Reading(device, "givenergy_inverter", utcnow(), metrics, source="g", info=info, online=online)


GIV = {"battery_soc_pct": 64, "battery_capacity_wh": 9500, "battery_power_w": 1000.0, "battery_voltage_v": 51.2,
       "load_power_w": 760.0, "grid_power_w": -20.0, "grid_voltage_v": 241.3, "grid_frequency_hz": 50.01,
       "pv_power_w": 0.0}


def test_sink_maps_any_battery(tmp_path: Path) -> None:
    async def go() -> None:
        sink = _sink(tmp_path, stale_after=0)
        await sink.start()
        await sink.write([_reading(GIV), _reading({"pv_power_w": 1.0}, device="other")])
        await sink.stop()

    asyncio.run(go())
    v = port_values((tmp_path / "ups.dev").read_text())
    assert v["ups.status"] == "OL"  # no grid_available: 241.3 V >= 100 V
    assert v["battery.charge"] == "64" and v["battery.capacity"] == "9500"
    assert v["battery.voltage"] == "51.2"  # measured, not the LiFePO4 estimate
    assert v["battery.current"] == "19.53"  # 1000 W / 51.2 V truncated
    assert v["output.realpower"] == "760.0" and v["input.realpower"] == "-20.0" and v["input.voltage"] == "241.3"
    assert v["battery.runtime"] == str((6400 - 1000) * 9500 * 36 // 76000)
    assert v["ups.load"] == "10.4"  # 100 * 760 / (768 * 9.5) = 10.41
    assert v["ups.mfr"] == "GivEnergy" and v["device.serial"] == "gE1" and v["ups.firmware"] == "D0.449"


def test_sink_outage_low_battery_and_overrides(tmp_path: Path) -> None:
    (tmp_path / "ups.dev").write_text("battery.charge.low: 50\nmy.note: kept\n")

    async def go() -> None:
        sink = _sink(tmp_path, stale_after=0)
        await sink.start()
        await sink.write([_reading({**GIV, "grid_available": False, "battery_soc_pct": 45})])
        await sink.stop()

    asyncio.run(go())
    text = (tmp_path / "ups.dev").read_text()
    v = port_values(text)
    assert v["ups.status"] == "OB LB" and v["battery.charge.low"] == "50" and text.startswith("my.note: kept\n")


def test_sink_nocomms_and_back(tmp_path: Path) -> None:
    async def go() -> None:
        sink = _sink(tmp_path, device_id="gE1", stale_after=0.3)
        await sink.start()
        await sink.write([_reading(GIV)])
        assert (tmp_path / "ups.dev").exists()
        await sink.write([_reading({}, online=False)])
        assert not (tmp_path / "ups.dev").exists() and (tmp_path / "ups.dev-nocomms").exists()
        await sink.write([_reading(GIV)])
        assert (tmp_path / "ups.dev").exists() and not (tmp_path / "ups.dev-nocomms").exists()
        # no data for stale_after: hidden by the watchdog
        await async_wait_for(lambda: not (tmp_path / "ups.dev").exists(), 5, "the watchdog to hide ups.dev",
                             interval=0.05)
        assert (tmp_path / "ups.dev-nocomms").exists()
        await sink.stop()

    asyncio.run(go())


def test_sink_three_phase(tmp_path: Path) -> None:
    m = dict(GIV, grid_available=True)
    for n in (1, 2, 3):
        m[f"load_power_w_l{n}"] = 250.0 + n
        m[f"grid_voltage_v_l{n}"] = 230.0 + n
        m[f"grid_power_w_l{n}"] = -5.0

    async def go() -> None:
        sink = _sink(tmp_path, stale_after=0)
        await sink.start()
        await sink.write([_reading(m)])

    asyncio.run(go())
    v = port_values((tmp_path / "ups.dev").read_text())
    assert v["output.phases"] == "3" and v["output.L2.realpower"] == "252.0" and v["input.L3-N.voltage"] == "233.0"


def test_sink_config_errors() -> None:
    with pytest.raises(ConfigError, match=r"sinks\[0\]\.port_file: required key is missing"):
        build({"sinks": [{"type": "nut"}]})
    with pytest.raises(ConfigError, match=r"sinks\[0\]\.loadkwh"):
        build({"sinks": [{"type": "nut", "port_file": "/x", "loadkwh": -1}]})
    with pytest.raises(ConfigError, match=r"sources\[0\]\.relay_interval"):
        build({"sources": [{"type": "enphase", "serial": "1", "token": "x", "relay_interval": -1}]})


@pytest.mark.servers
def test_sink_with_real_nut(tmp_path: Path, nut_factory) -> None:
    port = tmp_path / "ups.dev"
    port.write_text("ups.status: OL\nbattery.charge: 100\n")
    nut = nut_factory(ups="batt", port_file=port, initial=None)

    async def go() -> None:
        sink = _sink(tmp_path, stale_after=0)
        await sink.start()
        await sink.write([_reading({**GIV, "grid_available": False, "battery_soc_pct": 12})])

    asyncio.run(go())
    nut.wait_value("ups.status", "OB LB", 8)
    assert nut.upsc("battery.charge") == "12"


def test_source_readings_from_simulator(tmp_path: Path) -> None:
    async def go() -> list[Reading]:
        sim = await GatewaySimulator(Scenario(username="u@x", password="p", soc=70, battery_w=-500)).start()
        cfg = EnphaseConfig(type="enphase", name="env", host=f"127.0.0.1:{sim.port}", serial=sim.scenario.serial,
                            username="u@x", password="p", login_url=sim.login_url, tokens_url=sim.tokens_url,
                            cloud_ca=str(sim.cert_path), relay_interval=1, api_timeout=2,
                            outage_grace=0)
        src = EnphaseSource(cfg, Context.standalone("env", "source", "enphase", tmp_path))
        got: list[Reading] = []
        task = asyncio.create_task(src.run(got.append))
        try:
            await async_wait_for(lambda: got, 5, "a first reading")
            sim.scenario.update({"grid": "off"})
            await async_wait_for(lambda: got[-1].metrics.get("grid_available") is False, 8,
                                 "a reading with grid_available False")
            sim.scenario.update({"fail_relay": "close"})
            await src.monitor.poll()  # type: ignore[union-attr]
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            await sim.stop()
        return got

    got = asyncio.run(go())
    first = got[0].metrics
    assert first["grid_available"] is True and first["battery_soc_pct"] == 70.0
    assert first["pv_power_w"] == pytest.approx(2895.97) and first["load_power_w"] == pytest.approx(3069.39)
    assert first["battery_power_w"] == pytest.approx(-500)  # charging
    assert first["grid_power_w"] == pytest.approx(3069.39 - 2895.97 + 500)  # importing
    assert first["grid_voltage_v"] == 240.0 and first["battery_capacity_wh"] == 5000
    assert first["battery_runtime_s"] > 0 and got[0].info is not None and got[0].info.sw_version == "D8.3.5169"
    assert any(r.metrics.get("grid_available") is False for r in got)
    assert got[-1].online is False and got[-1].metrics == {}
