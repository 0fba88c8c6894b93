"""The monitor engine in-process: TEST mode cycle, fast relay check, meters persistence, three-phase."""

from __future__ import annotations

import asyncio
import random
import re
import shutil
import time
from pathlib import Path

import pytest

from servers import async_wait_for
from solarbridge.sources.enphase import jwt
from solarbridge.sources.enphase import monitor as m
from solarbridge.sources.enphase.settings import load
from solarbridge.sources.enphase.simulator import GatewaySimulator, Scenario
from support.enphase import EXAMPLE, Harness, port_values


class AlwaysExpire(random.Random):
    def randrange(self, *a: object, **k: object) -> int:  # type: ignore[override]
        return 0


class NeverExpire(random.Random):
    def randrange(self, *a: object, **k: object) -> int:  # type: ignore[override]
        return 1


def test_conf_copy(tmp_path: Path) -> Path:
    """The example TEST config with a fresh token (the example's own expires in December 2026)."""
    tmp_path.chmod(0o755)
    text = (EXAMPLE / "test.conf").read_text()
    fresh = jwt.make({"exp": int(time.time()) + 10 * 86400})
    text = re.sub(r"^TEST_TOKEN=.*$", f"TEST_TOKEN='{fresh}'", text, flags=re.M)
    conf = tmp_path / "test.conf"
    conf.write_text(text.replace("STATE_DIR=.", f"STATE_DIR={tmp_path}"))
    conf.chmod(0o600)
    shutil.copy(EXAMPLE / "test-ref.dev", tmp_path / "test.dev")
    return conf


test_conf_copy.__test__ = False  # type: ignore[attr-defined]


def _test_monitor(tmp_path: Path, rng: random.Random) -> tuple[m.Monitor, m.CannedBackend]:
    s = load(test_conf_copy(tmp_path), env={})
    rep = m.Reporter(s.ups)
    backend = m.CannedBackend(s.test or {}, s.ups, rep, rng=rng)
    return Harness(s, backend, backend, rep).monitor, backend


def test_test_mode_cycle(tmp_path: Path) -> None:
    mon, backend = _test_monitor(tmp_path, NeverExpire())
    dev, hidden = tmp_path / "test.dev", tmp_path / "test.dev-nocomms"
    seen = []

    async def go() -> None:
        for _ in range(6):
            await mon.poll()
            text = dev.read_text() if dev.exists() else None
            seen.append((backend.cycle, port_values(text) if text else None, hidden.exists()))

    asyncio.run(go())
    cycles = [c for c, _, _ in seen]
    assert cycles == ["online", "nocomms", "online2", "onbatt", "lowbatt", "online"]
    ol, noc, ol2, ob, lb, ol3 = (v for _, v, _ in seen)
    assert ol["ups.status"] == "OL" and ol["battery.voltage"] == "86.4" and ol["battery.runtime"] == "5277"
    assert ol["ups.load"] == "79.9" and ol["battery.current"] == "-6.24" and ol["battery.charge.low"] == "25"
    assert noc is None and seen[1][2] is True  # renamed away
    assert ol2["ups.status"] == "OL" and seen[2][2] is False
    assert (ob["ups.status"], ob["battery.charge"], ob["battery.voltage"], ob["battery.runtime"]) == \
        ("OB", "90", "84.0", "4691")
    assert (lb["ups.status"], lb["battery.charge"], lb["battery.voltage"], lb["battery.runtime"]) == \
        ("OB LB", "24", "75.3", "821")
    assert ol3["ups.status"] == "OL"
    assert mon.tokens.logins == 1  # the token file was reused on every later poll


def test_test_mode_random_token_expiry(tmp_path: Path) -> None:
    mon, _ = _test_monitor(tmp_path, AlwaysExpire())

    async def go() -> None:
        for _ in range(3):
            await mon.poll()

    asyncio.run(go())
    assert mon.tokens.logins == 3  # the cached token was "expired" every time, a fresh one fetched
    assert (tmp_path / "enphase-test.token").exists()


def test_test_mode_empty_value_fails_that_call(tmp_path: Path) -> None:
    conf = test_conf_copy(tmp_path)
    conf.write_text(re.sub(r"^TEST_INFO='[^']*'", "TEST_INFO=", conf.read_text(), flags=re.M))
    s = load(conf, env={})
    backend = m.CannedBackend(s.test or {}, s.ups)
    mon = Harness(s, backend, backend).monitor
    asyncio.run(mon.poll())
    v = port_values((tmp_path / "test.dev").read_text())
    assert v["ups.status"] == "OL" and "ups.firmware" not in v


# --------------------------------------------------------------------------- against the simulator


def _settings(tmp_path: Path, sim: GatewaySimulator, **kw: object) -> m.Settings:
    from solarbridge.sources.enphase.settings import Settings

    tmp_path.chmod(0o755)
    port = tmp_path / "ups.dev"
    if not port.exists():
        port.write_text("")
    s = Settings(ups="t", username="u@x", password="p", serial=sim.scenario.serial, port_file=port,
                 token_file=tmp_path / "t.token", state_dir=tmp_path, envoy_host=f"127.0.0.1:{sim.port}",
                 api_timeout=2, login_url=sim.login_url, tokens_url=sim.tokens_url,
                 cloud_verify=str(sim.cert_path))
    for k, v in kw.items():
        setattr(s, k, v)
    return s


def _monitor(s: m.Settings) -> m.Monitor:
    rep = m.Reporter(s.ups)
    gw = m.HttpGateway(s.envoy_host, s.api_timeout, rep)
    cloud = m.HttpCloud(s.login_url, s.tokens_url, s.login_timeout, s.cloud_verify, rep)
    return Harness(s, gw, cloud, rep).monitor


def test_fast_relay_check(tmp_path: Path) -> None:
    async def go() -> None:
        sim = await GatewaySimulator(Scenario(soc=80)).start()
        s = _settings(tmp_path, sim, relayfreq=1, pollfreq=60, pollfreqalert=60)
        mon = _monitor(s)
        task = asyncio.create_task(mon.run())
        try:
            await async_wait_for(lambda: "ups.status: OL" in s.port_file.read_text(), 5, "ups.status: OL")
            s.token_file.unlink()  # the fast check never touches the token file or the cloud
            sim.stats.clear()
            sim.scenario.update({"grid": "off"})
            t0 = time.monotonic()
            await async_wait_for(lambda: "ups.status: OB" in s.port_file.read_text(), 3, "ups.status: OB")
            assert time.monotonic() - t0 < 2.0
            await async_wait_for(lambda: sim.stats.get("livedata", 0) >= 1, 2,  # full poll right after the change
                                 "a full poll (livedata) after the change")
            assert "login" not in sim.stats and "tokens" not in sim.stats
            # a failing fast check alone does not hide the port file
            sim.scenario.update({"fail_relay": "http500"})
            await asyncio.sleep(2.5)
            assert s.port_file.exists() and mon.relay_check_failures >= 1
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            await mon.aclose()
            await sim.stop()

    asyncio.run(go())


def test_meters_persist_and_storage_absent(tmp_path: Path) -> None:
    async def go() -> None:
        sim = await GatewaySimulator(Scenario(battery_w=-1000)).start()
        s = _settings(tmp_path, sim)
        mon = _monitor(s)
        try:
            await mon.poll()
            first = port_values(s.port_file.read_text())
            assert first["battery.current"] == "-4.16"  # -1000 W / 240 V, truncated
            sim.scenario.update({"fail_reports": "html", "load_w": 100.0})
            await mon.poll()
            second = port_values(s.port_file.read_text())
            assert second["output.realpower"] == first["output.realpower"]  # kept from the last good report
            sim.scenario.update({"fail_reports": "none", "capacity_wh": 0})  # no storage report any more
            await mon.poll()
            third = port_values(s.port_file.read_text())
            assert third["battery.current"] == "0.00" and third["output.realpower"] == "100.0"
        finally:
            await mon.aclose()
            await sim.stop()

    asyncio.run(go())


@pytest.mark.parametrize("site,phases", [("three", True), ("split", False), ("single", False)])
def test_sites(tmp_path: Path, site: str, phases: bool) -> None:
    async def go() -> dict[str, str]:
        sim = await GatewaySimulator(Scenario(site=site)).start()
        mon = _monitor(_settings(tmp_path, sim))
        try:
            await mon.poll()
        finally:
            await mon.aclose()
            await sim.stop()
        return port_values((tmp_path / "ups.dev").read_text())

    v = asyncio.run(go())
    assert ("input.L1-N.voltage" in v) == phases and ("output.L3.current" in v) == phases
    assert (v.get("input.phases") == "3") == phases
    if phases:
        assert v["input.L2-N.voltage"] == "230.0"


def test_disable_meters(tmp_path: Path) -> None:
    async def go() -> tuple[dict[str, str], dict[str, int]]:
        sim = await GatewaySimulator(Scenario()).start()
        mon = _monitor(_settings(tmp_path, sim, disable_meters=True))
        try:
            await mon.poll()
        finally:
            await mon.aclose()
            await sim.stop()
        return port_values((tmp_path / "ups.dev").read_text()), dict(sim.stats)

    v, stats = asyncio.run(go())
    assert "reports" not in stats
    assert v["output.realpower"] == "0.0" and v["input.current"] == "0.00" and v["battery.runtime"] == "172800"

