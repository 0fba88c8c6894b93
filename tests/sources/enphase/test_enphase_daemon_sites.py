"""The daemon's enphase source on recorded sites (the simulator serving a pyenphase set) feeding a nut sink,
and its nightly-outage grace. Expected figures are the recorded JSON's (see test_enphase_fixture_sets.py)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from servers import async_wait_for
from solarbridge.config import Config, DaemonConfig
from solarbridge.model import Reading
from solarbridge.plugin import Context
from solarbridge.runtime import Supervisor
from solarbridge.sinks.nut.sink import NutSink, NutSinkConfig
from solarbridge.sources.enphase.simulator import GatewaySimulator, Scenario
from solarbridge.sources.enphase.source import EnphaseConfig, EnphaseSource

DATA = Path(__file__).resolve().parents[2] / "data" / "enphase"


def port_values(path: Path) -> dict[str, str]:
    out = {}
    for line in path.read_text().splitlines():
        k, _, v = line.partition(": ")
        out[k] = v
    return out


async def run_daemon(tmp_path: Path, fixture: str | None, body: Callable[..., Awaitable[Any]],
                     **cfg: Any) -> tuple[list[Reading], Any]:
    """Simulator (a recorded set or live physics) -> enphase source -> nut sink, under the Supervisor."""
    sim = await GatewaySimulator(Scenario(), fixture=DATA / fixture if fixture else None).start()
    port = tmp_path / "ups.dev"
    try:
        source_cfg = EnphaseConfig(type="enphase", name="gw", host=f"127.0.0.1:{sim.port}",
                                   serial=sim.scenario.serial, token=sim.issue_token(), api_timeout=2,
                                   **{"relay_interval": 1, **cfg})
        sup = Supervisor(Config(daemon=DaemonConfig(state_dir=tmp_path, history=False)))
        sup.add_source(EnphaseSource(source_cfg, Context.standalone("gw", "source", "enphase", tmp_path)))
        sink = NutSink(NutSinkConfig(type="nut", name="nut", port_file=str(port), device_id=sim.scenario.serial,
                                     stale_after=0), Context.standalone("nut", "sink", "nut", tmp_path))
        sup.add_sink(sink)
        got: list[Reading] = []
        sup.bus.listeners.append(got.append)
        await sup.start()
        try:
            result = await body(sim, got, port)
        finally:
            await sup.stop()
    finally:
        await sim.stop()
    return got, result


def _gateway(got: list[Reading]) -> Reading | None:
    for r in reversed(got):
        if r.device_type == "enphase_gateway" and r.online and "battery_count" in r.metrics:
            return r
    return None


def test_split_phase_site_with_five_iq_batteries(tmp_path: Path) -> None:
    async def body(sim: GatewaySimulator, got: list[Reading], port: Path) -> None:
        await async_wait_for(lambda: _gateway(got) and port.exists() and "input.L2.realpower" in port.read_text(),
                             15, "a full reading and the port file")

    got, _ = asyncio.run(run_daemon(tmp_path, "8.2.4286_with_3cts_and_battery_split", body))
    m = _gateway(got).metrics  # type: ignore[union-attr]
    assert m["pv_power_w"] == 7131.017 and m["pv_energy_total_wh"] == 13431336.968
    assert (m["pv_power_w_l1"], m["pv_power_w_l2"]) == (3562.174, 3568.843)
    assert m["grid_power_w"] == 1749.504 and (m["grid_power_w_l1"], m["grid_power_w_l2"]) == (809.907, 939.597)
    assert m["grid_import_energy_total_wh"] == 5855939.23 and m["grid_export_energy_total_wh"] == 4173334.272
    assert m["load_power_w"] == pytest.approx(7131.017 + 1749.504)
    assert m["battery_power_w"] == -7083.656  # the storage CT: charging
    assert (m["grid_voltage_v"], m["grid_voltage_v_l1"], m["grid_frequency_hz"]) == (247.172, 123.482, 60.0)
    assert m["grid_mode"] == "multimode-ongrid" and m["generator_running"] is False and m["relay_state"] == "closed"
    assert m["consumption_ct"] == "net" and m["inverter_count"] == 35 and m["battery_count"] == 5
    assert 364 * 86400 < m["token_lifetime_s"] <= 365 * 86400
    batteries = {r.device_id: r.metrics for r in got if r.device_type == "enphase_battery"}
    assert {k: (v["battery_soc_pct"], v["battery_temperature_c"], v["battery_capacity_wh"])
            for k, v in batteries.items()} == {
        "492320000140": (39, 18, 5000), "492320000148": (48, 19, 5000), "492320000149": (48, 19, 5000),
        "492320000158": (49, 19, 5000), "492335008361": (48, 23, 5000)}
    assert batteries["492320000140"]["battery_power_w"] == -1324
    assert len({r.device_id for r in got if r.device_type == "enphase_inverter"}) == 35
    v = port_values(tmp_path / "ups.dev")
    # split phase: L1/L2 from the net meter's channels, as recorded (%.1f of 809.907 and 123.482)
    assert (v["input.L1.realpower"], v["input.L2.realpower"], v["input.L1-N.voltage"]) == ("809.9", "939.6", "123.5")
    assert v["input.realpower"] == "1749.5" and v["input.voltage"] == "247.2" and v["input.powerfactor"] == "0.62"
    assert "input.phases" not in v and "input.L3.realpower" not in v
    assert v["battery.current"] == "-28.63"  # storage CT: -7083.7 W / 247.4 V, truncated


def test_iq_battery_and_ac_batteries_together(tmp_path: Path) -> None:
    async def body(sim: GatewaySimulator, got: list[Reading], port: Path) -> None:
        await async_wait_for(lambda: _gateway(got) and port.exists() and "battery.current" in port.read_text(),
                             15, "a full reading and the port file")

    got, _ = asyncio.run(run_daemon(tmp_path, "8.2.4382_ACB", body))
    m = _gateway(got).metrics  # type: ignore[union-attr]
    assert m["battery_power_w"] == 105 + 260  # IQ Battery 105000 mW + the AC Batteries' wNow 260
    # NUT: one UPS battery for both kinds; its current is their power over the grid voltage (228.575 V)
    v = port_values(tmp_path / "ups.dev")
    assert v["battery.current"] == "1.59"  # 365.0 W / 228.6 V, truncated
    batteries = {r.device_id: r.metrics for r in got if r.device_type == "enphase_battery"}
    assert batteries == {"122311091641": {"battery_soc_pct": 10, "battery_power_w": 105, "battery_temperature_c": 11,
                                          "battery_capacity_wh": 3500}}


def test_off_grid_on_the_generator(tmp_path: Path) -> None:
    """8.2.127_with_generator_running: the Enpower's relay is open, the generator runs (oper_state close)."""
    async def body(sim: GatewaySimulator, got: list[Reading], port: Path) -> None:
        await async_wait_for(lambda: _gateway(got) and port.exists(), 15, "a full reading")

    got, _ = asyncio.run(run_daemon(tmp_path, "8.2.127_with_generator_running", body))
    m = _gateway(got).metrics  # type: ignore[union-attr]
    assert m["grid_available"] is False and m["relay_state"] == "open"
    assert m["generator_present"] is True and m["generator_running"] is True
    assert m["battery_power_w"] == -1250 and m["inverter_count"] == 26
    assert port_values(tmp_path / "ups.dev")["ups.status"].startswith("OB")


@pytest.mark.servers
@pytest.mark.parametrize("fixture,expect", [
    ("7.6.175_with_cts_3phase", {"input.phases": "3", "input.L1.realpower": "-36.2", "input.L3.realpower": "-0.5",
                                 "input.L2-N.voltage": "3.0", "input.L1.powerfactor": "-0.06",
                                 "input.frequency": "50.0", "output.L1.realpower": "452.8"}),
    # split phase with ivp/meters/reports recorded: rows from the reports (as enphase-monitor reads them)
    ("8.3.5169_with_generator", {"input.L1.realpower": "-290.3", "input.L2.realpower": "463.7",
                                 "input.L2-N.voltage": "124.6", "input.realpower": "173.4",
                                 "output.realpower": "3069.4", "output.L2.powerfactor": "0.67"}),
])
def test_recorded_sites_through_real_upsd(tmp_path: Path, nut_factory, fixture: str, expect: dict) -> None:
    port = tmp_path / "ups.dev"
    port.write_text("ups.status: OL\n")
    nut = nut_factory(ups="site", port_file=port, initial=None)

    async def body(sim: GatewaySimulator, got: list[Reading], port: Path) -> dict[str, str]:
        await async_wait_for(lambda: _gateway(got) and "input.L1.realpower" in port.read_text(), 15,
                             "the port file")
        seen: dict[str, str] = {}
        for var, value in expect.items():
            await asyncio.to_thread(nut.wait_value, var, value, 10)
            seen[var] = value
        return seen

    _, seen = asyncio.run(run_daemon(tmp_path, fixture, body))
    assert seen == expect
    assert nut.upsc("ups.status") == "OL"


@pytest.mark.servers
def test_thirty_seconds_of_503_leave_nut_online(tmp_path: Path, nut_factory) -> None:
    """The gateway's nightly nap: every gateway request answers 503 for 30 s; upsd keeps saying OL."""
    port = tmp_path / "ups.dev"
    port.write_text("ups.status: OL\n")
    nut = nut_factory(ups="nap", port_file=port, initial=None)

    async def body(sim: GatewaySimulator, got: list[Reading], port: Path) -> list[str]:
        # the grace covers a gateway seen working
        await async_wait_for(lambda: _gateway(got), 15, "the first full poll")
        await asyncio.to_thread(nut.wait_value, "ups.status", "OL", 15)
        before = sum(1 for r in got if not r.online)
        sim.scenario.update({"fail_all": "http503"})
        statuses = []
        t0 = time.monotonic()
        while time.monotonic() - t0 < 30:
            statuses.append(await asyncio.to_thread(nut.upsc, "ups.status"))
            assert port.exists(), "port file hidden during the grace"
            await asyncio.sleep(1)
        assert sim.stats.get("relay", 0) > 0
        sim.scenario.update({"fail_all": "none"})
        await asyncio.sleep(2)
        statuses.append(await asyncio.to_thread(nut.upsc, "ups.status"))
        assert sum(1 for r in got if not r.online) == before  # never reported offline
        return statuses

    _, statuses = asyncio.run(run_daemon(tmp_path, None, body, poll_interval=5, alert_interval=5, outage_grace=60))
    assert len(statuses) >= 25 and set(statuses) == {"OL"}


def test_grace_has_an_end(tmp_path: Path) -> None:
    """Longer than the grace, the gateway does count as offline (and the port file is hidden)."""
    async def body(sim: GatewaySimulator, got: list[Reading], port: Path) -> float:
        await async_wait_for(lambda: _gateway(got) and port.exists(), 15, "online")
        sim.scenario.update({"fail_all": "http503"})
        t0 = time.monotonic()
        await async_wait_for(lambda: any(not r.online for r in got), 20, "the offline reading")
        took = time.monotonic() - t0
        await async_wait_for(lambda: not port.exists(), 5, "the port file hidden")
        return took

    _, took = asyncio.run(run_daemon(tmp_path, None, body, poll_interval=5, alert_interval=5, outage_grace=6))
    assert took >= 6


def test_enphase_monitor_keeps_the_original_rule_by_default(capsys, sim, conf) -> None:
    """The same 503s make enphase-monitor hide the port file at once, as the original does (OUTAGE_GRACE opts in)."""
    from solarbridge.cli.enphase_monitor import main

    port = conf.parent / "ups.dev"
    assert main(["-s", "-c", str(conf)]) == 0 and port.exists()
    sim.set(fail_all="http503")
    assert main(["-v", "-s", "-c", str(conf)]) == 0
    assert "Communication lost, hiding portfile" in capsys.readouterr().out
    assert not port.exists() and (conf.parent / "ups.dev-nocomms").exists()
    sim.set(fail_all="none")
    assert main(["-s", "-c", str(conf)]) == 0 and port.exists()
    from solarbridge.sources.enphase.settings import load

    assert load(conf).outage_grace == 0  # the default: the original's rule
    conf.write_text(conf.read_text() + "OUTAGE_GRACE=60\n")
    assert load(conf).outage_grace == 60


def test_token_lifetime_metric_and_early_warning(tmp_path: Path, caplog) -> None:
    """A configured token with 10 days left: the metric says so and a warning names what to do."""
    import logging

    caplog.set_level(logging.WARNING, logger="solarbridge.source.gw")

    async def go() -> list[Reading]:
        sim = await GatewaySimulator(Scenario()).start()
        try:
            cfg = EnphaseConfig(type="enphase", name="gw", host=f"127.0.0.1:{sim.port}", serial=sim.scenario.serial,
                                token=sim.issue_token(10 * 86400), api_timeout=2, token_warn_days=30)
            src = EnphaseSource(cfg, Context.standalone("gw", "source", "enphase", tmp_path))
            got: list[Reading] = []
            mon = src.make_monitor(got.append)
            await mon.poll()
            await mon.poll()
            await mon.aclose()
            return got
        finally:
            await sim.stop()

    got = asyncio.run(go())
    left = _gateway(got).metrics["token_lifetime_s"]  # type: ignore[union-attr]
    assert 10 * 86400 - 60 < left <= 10 * 86400
    warnings = [r.getMessage() for r in caplog.records if "token expires" in r.getMessage()]
    assert len(warnings) == 1  # once a day, not every poll
    assert "expires in 10.0 days" in warnings[0] and "get a new one from Enlighten" in warnings[0]
