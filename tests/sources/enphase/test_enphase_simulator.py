"""The gateway simulator (control API, script, CLI), the shipped TEST example and the demo part."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import ssl
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from servers import async_wait_for, wait_for
from solarbridge.config import build
from solarbridge.plugin import Context
from solarbridge.registry import load
from solarbridge.sources.enphase import jwt
from solarbridge.sources.enphase.responses import parse_livedata, parse_relay, parse_reports
from solarbridge.sources.enphase.simulator import GatewaySimulator, Scenario, ScenarioError
from support.enphase import EXAMPLE, port_values
from support.paths import REPO

SHIPPED = REPO / "src" / "solarbridge" / "data" / "enphase"


def test_control_api_and_auth() -> None:
    async def go() -> None:
        sim = await GatewaySimulator(Scenario(username="a@b", password="pw")).start()
        try:
            async with httpx.AsyncClient(verify=False, base_url=sim.url) as c:
                assert (await c.get("/ivp/ensemble/relay")).status_code == 401
                bad = await c.post("/login/login.json", content="user%5Bemail%5D=a%40b&user%5Bpassword%5d=no",
                                   headers={"Content-Type": "application/x-www-form-urlencoded"})
                assert bad.status_code == 401
                ok = await c.post("/login/login.json", content="user%5Bemail%5D=a%40b&user%5Bpassword%5d=pw")
                sid = ok.json()["session_id"]
                tok = await c.post("/tokens", json={"session_id": sid, "serial_num": "202439990001",
                                                    "username": "a@b"})
                token = tok.text
                assert jwt.expiry(token) > time.time() + 300 * 86400
                auth = {"Authorization": f"Bearer {token}"}
                assert parse_relay((await c.get("/ivp/ensemble/relay", headers=auth)).text).state == "online"
                r = await c.post("/_sim/state", json={"grid": "off", "soc": 42})
                assert r.status_code == 200 and r.json()["grid"] is False
                assert parse_relay((await c.get("/ivp/ensemble/relay", headers=auth)).text).state == "onbatt"
                live = parse_livedata((await c.get("/ivp/livedata/status", headers=auth)).text)
                assert live is not None and live.soc == 42 and live.powers["storage"] > 0
                rep = parse_reports((await c.get("/ivp/meters/reports", headers=auth)).text)
                assert rep is not None and rep.net is not None and rep.net[0].real_w == 0.0  # off grid
                for patch, field in (({"soc": 150}, "soc"), ({"grid": "maybe"}, "grid"),
                                     ({"fail_relay": "boom"}, "fail_relay"), ({"nope": 1}, "nope")):
                    r = await c.post("/_sim/state", json=patch)
                    assert r.status_code == 400 and r.json()["error"].startswith(f"{field}:")
                await c.post("/_sim/state", json={"revoke_tokens": True})
                assert (await c.get("/ivp/ensemble/relay", headers=auth)).status_code == 401
                stats = (await c.get("/_sim/stats")).json()
                assert stats["relay"] == 4 and stats["login"] == 2
        finally:
            await sim.stop()

    asyncio.run(go())


def test_scenario_script() -> None:
    async def go() -> None:
        sim = await GatewaySimulator(Scenario()).start()
        try:
            await sim.apply_script("# comment\n0 grid=off soc=30\n0.05 fail_livedata=timeout latency_s=0.1\n")
            assert sim.scenario.grid is False and sim.scenario.soc == 30
            assert sim.scenario.fail == {"livedata": "timeout"} and sim.scenario.latency_s == 0.1
            with pytest.raises(ScenarioError, match="script line 1: soc: must be from 0 to 100"):
                await sim.apply_script("0 soc=101\n")
        finally:
            await sim.stop()

    asyncio.run(go())


def test_simulator_command(tmp_path: Path) -> None:
    info = tmp_path / "info.json"
    script = tmp_path / "s.txt"
    script.write_text("0.2 grid=off\n")
    p = subprocess.Popen([sys.executable, "-m", "solarbridge.sources.enphase.simulator", "--site", "three",
                          "--info-file", str(info), "--cert", str(tmp_path / "c.pem"), "--script", str(script)],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_for(info.exists, 10, "the simulator's info file", interval=0.05,
                 stop_if=lambda: p.poll() is not None and f"the simulator exited {p.returncode}: {p.stderr.read()}")
        doc = json.loads(info.read_text())
        time.sleep(0.4)
        tok = httpx.post(doc["url"] + "/_sim/token", verify=ssl.create_default_context(cafile=str(tmp_path / "c.pem"))).text
        r = httpx.get(doc["url"] + "/ivp/ensemble/relay", headers={"Authorization": f"Bearer {tok}"}, verify=False)
        assert r.json()["mains_oper_state"] == "open"
        live = httpx.get(doc["url"] + "/ivp/livedata/status", headers={"Authorization": f"Bearer {tok}"},
                         verify=False).json()
        assert live["meters"]["phase_count"] == 3
    finally:
        p.terminate()
        p.wait(10)
    assert p.returncode == 0
    bad = subprocess.run([sys.executable, "-m", "solarbridge.sources.enphase.simulator", "--soc", "300"],
                         capture_output=True, text=True, timeout=30)
    assert bad.returncode == 2 and "soc: must be from 0 to 100" in bad.stderr


def test_shipped_test_conf_runs(tmp_path: Path) -> None:
    """The example promised by the help text: copy test-ref.dev to test.dev, run with -c test.conf."""
    tmp_path.chmod(0o755)
    shutil.copy(SHIPPED / "test.conf", tmp_path / "test.conf")
    shutil.copy(SHIPPED / "test-ref.dev", tmp_path / "test.dev")
    (tmp_path / "test.conf").chmod(0o600)
    env = {k: v for k, v in os.environ.items() if k not in ("UPS", "CONFIG_FILE")}
    p = subprocess.run([sys.executable, "-m", "solarbridge.cli.enphase_monitor", "-s", "-c", "test.conf"],
                       cwd=tmp_path, capture_output=True, text=True, timeout=30, env=env)
    assert p.returncode == 0, p.stderr
    got = port_values((tmp_path / "test.dev").read_text())
    expected = port_values((EXAMPLE / "test.dev").read_text())
    assert {k: got[k] for k in expected} == expected  # the original's output, plus the lines we keep
    assert set(got) - set(expected) == {"battery.mfr.date", "input.transfer.low"}


def test_demo_part(tmp_path: Path) -> None:
    async def go() -> None:
        demo = load("solarbridge.sources.enphase.demo")
        part = await demo.start(tmp_path)
        try:
            cfg = build({"daemon": {"state_dir": str(tmp_path)}, "sources": part.sources, "sinks": part.sinks})
            src_cfg, sink_cfg = cfg.sources[0], cfg.sinks[0]
            src = load("solarbridge.sources.enphase.source:EnphaseSource")(
                src_cfg, Context.standalone(src_cfg.name, "source", "enphase", tmp_path))
            sink = load("solarbridge.sinks.nut.sink:NutSink")(sink_cfg, Context.standalone(sink_cfg.name, "sink", "nut",
                                                                                       tmp_path))
            await sink.start()
            task = asyncio.create_task(src.run(lambda r: asyncio.ensure_future(sink.write([r]))))
            port = Path(sink_cfg.port_file)
            await async_wait_for(lambda: port.exists() and "ups.status: OL" in port.read_text(), 8,
                                 "ups.status: OL in the port file", interval=0.05)
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            await sink.stop()
            v = port_values(port.read_text())
            assert v["ups.status"] == "OL" and v["battery.charge"] == "80"
        finally:
            assert part.stop is not None
            await part.stop()

    asyncio.run(go())


def test_fixture_mode_serves_a_recorded_set() -> None:
    d = REPO / "tests" / "data" / "enphase" / "8.3.5433_tot_is_net_cons"

    async def go() -> None:
        sim = await GatewaySimulator(Scenario(), fixture=d).start()
        try:
            assert sim.scenario.serial == "123456789012"  # the recorded <sn>
            tok = sim.issue_token()
            async with httpx.AsyncClient(verify=False, headers={"Authorization": f"Bearer {tok}"}) as c:
                for path, name in (("/ivp/meters/readings", "ivp_meters_readings"), ("/production.json",
                                   "production.json"), ("/info.xml", "info"), ("/api/v1/production/inverters",
                                   "api_v1_production_inverters")):
                    r = await c.get(sim.url + path)
                    assert r.status_code == 200 and r.content == (d / name).read_bytes(), path
                relay = (await c.get(sim.url + "/ivp/ensemble/relay")).json()
                assert relay == json.loads((d / "ivp_ensemble_relay").read_text())
                assert (await c.get(sim.url + "/ivp/livedata/status")).json()["meters"]["soc"] == 0  # no battery
                assert (await c.get(sim.url + "/ivp/meters/reports")).status_code == 404  # not recorded
                assert (await c.get(sim.url + "/not/a/path")).status_code == 404
                sim.scenario.update({"grid": "off"})
                assert (await c.get(sim.url + "/ivp/ensemble/relay")).json()["mains_oper_state"] == "open"
                sim.scenario.update({"fail_all": "http503"})
                assert (await c.get(sim.url + "/ivp/meters/readings")).status_code == 503
                assert (await c.get(sim.url + "/ivp/ensemble/relay")).status_code == 503
                assert (await c.get(sim.url + "/ivp/meters")).status_code == 503
        finally:
            await sim.stop()

    asyncio.run(go())


def test_fixture_option_errors(tmp_path: Path) -> None:
    r = subprocess.run([sys.executable, "-m", "solarbridge.sources.enphase.simulator", "--fixture", str(tmp_path)],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 2 and r.stderr == (f"simulate enphase: --fixture {tmp_path}: not a recorded gateway set "
                                              "(no 'info' file in it)\n")
