"""Gateways before firmware 7: no token, HTTP Digest auth (user envoy, the serial's last 6 digits).

The daemon's enphase source against the simulator serving recorded sets: two old-firmware sets over
plain HTTP with Digest auth, and a 7.x set with the cloud token. Expected figures are read by hand from
each set's JSON (tests/data/enphase/<set>/), never from our output. The simulator's Digest server side
is checked against two independent clients: httpx's DigestAuth and curl --digest.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from servers import async_wait_for
from solarbridge.config import Config, DaemonConfig
from solarbridge.model import Reading
from solarbridge.plugin import Context
from solarbridge.runtime import Supervisor
from solarbridge.sources.enphase.digest import DigestRealm
from solarbridge.sources.enphase.simulator import GatewaySimulator, Scenario
from solarbridge.sources.enphase.source import EnphaseConfig, EnphaseSource
from support.paths import DATA

SETS = DATA / "enphase"
LOGGER = "solarbridge.source.gw"

# read from the sets' JSON:
#  3.9.36  (info <software>R3.9.36, <sn>121426016034): api_v1_production wattsNow 1271, wattHoursLifetime
#          6012540; api_v1_production_inverters: 12 inverters, 121547058993 lastReportWatts 138 maxReportWatts 231
#  4.10.35 (R4.10.35, <sn>121938119871): ivp_meters production eid 704643328 + net-consumption eid 704643584
#          (enabled); ivp_meters_readings: production activePower 166.489, actEnergyDlvd 26785327.449;
#          net activePower 566.864, actEnergyDlvd 16908208.78, actEnergyRcvd 17357690.272 (production.json's
#          public eim wNow is 165.53: 166.489 can only come from the Digest-protected meters);
#          19 inverters, 122002026181 lastReportWatts 13
#  7.6.175_with_cts (D7.6.175): readings production 488.925 W, actEnergyDlvd 3183793.885; net -36.162 W;
#          7 inverters, 121823030072 lastReportWatts 58
EXPECT: dict[str, dict[str, Any]] = {
    "3.9.36": {"metrics": {"pv_power_w": 1271, "pv_energy_total_wh": 6012540, "inverter_count": 12},
               "inverter": ("121547058993", 138, 231), "legacy": True},
    "4.10.35": {"metrics": {"pv_power_w": 166.489, "pv_energy_total_wh": 26785327.449, "grid_power_w": 566.864,
                            "grid_import_energy_total_wh": 16908208.78,
                            "grid_export_energy_total_wh": 17357690.272, "inverter_count": 19},
                "inverter": ("122002026181", 13, None), "legacy": True},
    "7.6.175_with_cts": {"metrics": {"pv_power_w": 488.925, "pv_energy_total_wh": 3183793.885,
                                     "grid_power_w": -36.162, "inverter_count": 7},
                         "inverter": ("121823030072", 58, 253), "legacy": False},
}


async def _polls(tmp_path: Path, sim: GatewaySimulator, n: int = 2, **cfg: Any) -> list[Reading]:
    """``n`` full polls of the daemon's source against ``sim``; the readings it emitted."""
    config = EnphaseConfig(type="enphase", name="gw", host=f"127.0.0.1:{sim.port}", serial=sim.scenario.serial,
                           api_timeout=2, **cfg)
    src = EnphaseSource(config, Context.standalone("gw", "source", "enphase", tmp_path))
    got: list[Reading] = []
    mon = src.make_monitor(got.append)
    try:
        for _ in range(n):
            await mon.poll()
    finally:
        await mon.aclose()
    return got


def _cloud(sim: GatewaySimulator) -> dict[str, Any]:
    """An Enlighten account on the simulator's fake cloud (for the token a 7.x gateway needs)."""
    return {"username": "owner@example.com", "password": "cloud-pw", "login_url": sim.login_url,
            "tokens_url": sim.tokens_url, "cloud_ca": str(sim.cert_path)}


@pytest.mark.parametrize("fixture", list(EXPECT))
def test_figures_come_through_with_the_firmwares_login(tmp_path: Path, fixture: str) -> None:
    """auth = auto (the default) with an Enlighten account configured: the old sets are read with Digest
    auth and never a cloud login; the 7.x set logs in to the cloud once and sends the token."""
    want = EXPECT[fixture]

    async def go() -> tuple[list[Reading], dict[str, int], bool]:
        sim = await GatewaySimulator(Scenario(username="owner@example.com", password="cloud-pw"),
                                     fixture=SETS / fixture).start()
        try:
            got = await _polls(tmp_path, sim, **_cloud(sim))
            return got, dict(sim.stats), sim.legacy
        finally:
            await sim.stop()

    got, stats, legacy = asyncio.run(go())
    assert legacy is want["legacy"]
    gw = [r for r in got if r.device_type == "enphase_gateway"]
    assert gw and all(r.online for r in gw)
    for key, value in want["metrics"].items():
        assert gw[-1].metrics.get(key) == pytest.approx(value), key
    sn, watts, max_watts = want["inverter"]
    inv = [r for r in got if r.device_type == "enphase_inverter" and r.device_id == sn][-1]
    assert inv.metrics["inverter_power_w"] == watts
    if max_watts is not None:
        assert inv.metrics["inverter_max_power_w"] == max_watts
    if legacy:
        assert "login" not in stats and "tokens" not in stats  # no cloud call at all
        assert stats.get("digest_challenged", 0) >= 1 and "digest_refused" not in stats
        assert "token_lifetime_s" not in gw[-1].metrics
        # no IQ System Controller before firmware 7: no relay (404, asked once), so no claim about the grid
        assert stats.get("relay") == 2  # the challenge and the 404, on the first poll only
        assert "grid_available" not in gw[-1].metrics
    else:
        assert stats.get("login") == 1 and stats.get("tokens") == 1
        assert "digest_challenged" not in stats
        assert gw[-1].metrics["token_lifetime_s"] > 300 * 86400
        assert gw[-1].metrics["grid_available"] is True


@pytest.mark.parametrize("how", ["config_password", "serial_default", "no_auth"])
def test_refused_login_is_one_plain_error_and_offline(tmp_path: Path, caplog: pytest.LogCaptureFixture,
                                                      how: str) -> None:
    """A 401 from a legacy gateway: offline readings, exactly one error naming the user and where the password
    came from (never the password), no cloud call, no exception out of the poll."""
    caplog.set_level(logging.DEBUG, logger=LOGGER)

    async def go() -> tuple[list[Reading], dict[str, int]]:
        sim = await GatewaySimulator(Scenario(), fixture=SETS / "4.10.35").start()
        try:
            cfg: dict[str, Any] = {"username": "owner@example.com", "password": "cloud-pw-7f3a"}
            if how == "config_password":
                cfg = {"username": "envoy", "password": "wrong-pw-7f3a"}
            elif how == "no_auth":
                cfg["auth"] = "none"
            else:
                sim.scenario.serial = "121938999999"  # the gateway's password no longer matches its info.xml <sn>
            got = await _polls(tmp_path, sim, n=3, **cfg)
            return got, dict(sim.stats)
        finally:
            await sim.stop()

    got, stats = asyncio.run(go())
    assert len(got) == 3 and all(r.device_type == "enphase_gateway" and not r.online for r in got)
    assert "login" not in stats and "tokens" not in stats
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1, errors
    origin = {"config_password": "user 'envoy' (HTTP 401); the password was the config's password",
              "serial_default": "user 'envoy' (HTTP 401); the password was the last 6 digits of the gateway "
                                "serial, from the gateway's info.xml",
              "no_auth": 'wants a login (HTTP 401) but auth = "none"'}[how]
    assert errors[0].startswith("source gw: the gateway (firmware R4.10.35) ") and origin in errors[0]
    text = caplog.text
    for secret in ("wrong-pw-7f3a", "cloud-pw-7f3a", "119871"):  # 119871: the default password (its serial's tail)
        assert secret not in text


def test_wrong_password_under_the_supervisor_keeps_running(tmp_path: Path) -> None:
    """The daemon itself: the source stays up (no restart), the gateway is published offline, the health
    record says why."""

    async def go() -> tuple[list[Reading], Any]:
        sim = await GatewaySimulator(Scenario(), fixture=SETS / "3.9.36").start()
        try:
            cfg = EnphaseConfig(type="enphase", name="gw", host=f"127.0.0.1:{sim.port}", serial=sim.scenario.serial,
                                username="envoy", password="000000", api_timeout=2, relay_interval=1)
            sup = Supervisor(Config(daemon=DaemonConfig(state_dir=tmp_path, history=False)))
            sup.add_source(EnphaseSource(cfg, Context.standalone("gw", "source", "enphase", tmp_path)))
            got: list[Reading] = []
            sup.bus.listeners.append(got.append)
            await sup.start()
            try:
                await async_wait_for(lambda: any(not r.online for r in got), 15, "an offline reading")
                # the fast relay checks between polls are refused too (and change nothing)
                await async_wait_for(lambda: sim.stats.get("digest_refused", 0) >= 3, 15, "refused relay checks")
                h = sup.health["gw"]
                return got, (h.state, h.restarts, h.last_error, h.counters.get("login_refused"))
            finally:
                await sup.stop()
        finally:
            await sim.stop()

    got, (state, restarts, last_error, refused) = asyncio.run(go())
    assert state == "running" and restarts == 0 and refused and refused >= 1
    assert "refused the digest login for user 'envoy'" in last_error and "000000" not in last_error
    assert all(not r.online for r in got if r.device_type == "enphase_gateway")


@pytest.mark.parametrize("grace", [180, 0])
def test_legacy_gateway_naps_like_the_others(tmp_path: Path, grace: int) -> None:
    """No relay to ask: a burst of 503s from a legacy gateway is ridden through within outage_grace (no
    offline reading), and with grace 0 it is lost comms at once; the login stays the same throughout."""

    async def go() -> tuple[list[Reading], dict[str, int]]:
        sim = await GatewaySimulator(Scenario(), fixture=SETS / "3.17.3").start()
        try:
            config = EnphaseConfig(type="enphase", name="gw", host=f"127.0.0.1:{sim.port}",
                                   serial=sim.scenario.serial, api_timeout=2, outage_grace=grace)
            src = EnphaseSource(config, Context.standalone("gw", "source", "enphase", tmp_path))
            got: list[Reading] = []
            mon = src.make_monitor(got.append)
            try:
                await mon.poll()
                sim.scenario.update({"fail_all": "http503"})
                await mon.poll()
                sim.scenario.update({"fail_all": "none"})
                await mon.poll()
            finally:
                await mon.aclose()
            return [r for r in got if r.device_type == "enphase_gateway"], dict(sim.stats)
        finally:
            await sim.stop()

    gw, stats = asyncio.run(go())
    assert [r.online for r in gw] == ([True, True] if grace else [True, False, True])
    assert gw[0].metrics["pv_power_w"] == gw[-1].metrics["pv_power_w"] == 5463  # 3.17.3 api_v1_production wattsNow
    assert "login" not in stats and "digest_refused" not in stats


@pytest.mark.servers
def test_legacy_gateway_through_the_nut_sink_and_real_upsd(tmp_path: Path, nut_factory: Any) -> None:
    """4.10.35 (Digest, no relay) -> source -> nut sink -> dummy-ups -> upsd: online from the meters' voltage
    (ivp/meters/readings, Digest-protected: net-consumption voltage 247.736, channels 123.867 / 123.869)."""
    from solarbridge.sinks.nut.sink import NutSink, NutSinkConfig

    port = tmp_path / "ups.dev"
    port.write_text("ups.status: OB\n")
    nut = nut_factory(ups="legacy", port_file=port, initial=None)

    async def go() -> None:
        sim = await GatewaySimulator(Scenario(), fixture=SETS / "4.10.35").start()
        try:
            cfg = EnphaseConfig(type="enphase", name="gw", host=f"127.0.0.1:{sim.port}", serial=sim.scenario.serial,
                                api_timeout=2)
            sup = Supervisor(Config(daemon=DaemonConfig(state_dir=tmp_path, history=False)))
            sup.add_source(EnphaseSource(cfg, Context.standalone("gw", "source", "enphase", tmp_path)))
            sup.add_sink(NutSink(NutSinkConfig(type="nut", name="nut", port_file=str(port),
                                               device_id=sim.scenario.serial, stale_after=0),
                                 Context.standalone("nut", "sink", "nut", tmp_path)))
            await sup.start()
            try:
                await asyncio.to_thread(nut.wait_value, "ups.status", "OL", 20)
                await asyncio.to_thread(nut.wait_value, "input.L1-N.voltage", "123.9", 10)
                await asyncio.to_thread(nut.wait_value, "input.realpower", "566.9", 10)
            finally:
                await sup.stop()
        finally:
            await sim.stop()

    asyncio.run(go())


def test_explicit_token_mode_makes_no_probe(tmp_path: Path) -> None:
    """auth = "token" is the behaviour before auth existed: no /info.xml probe before the token, Bearer only."""

    async def go() -> tuple[list[Reading], dict[str, int]]:
        sim = await GatewaySimulator(Scenario(), fixture=SETS / "7.6.175_with_cts").start()
        try:
            got = await _polls(tmp_path, sim, n=1, auth="token", token=sim.issue_token())
            return got, dict(sim.stats)
        finally:
            await sim.stop()

    got, stats = asyncio.run(go())
    assert got[0].online and got[0].metrics["pv_power_w"] == pytest.approx(488.925)
    assert stats.get("/info.xml") == 1  # the monitor's own once-only read, no probe


def test_a_legacy_gateway_with_a_token_only_config_is_refused(tmp_path: Path) -> None:
    """auth = "token" against an old gateway: it does not take tokens (offline), and no Digest is tried."""

    async def go() -> tuple[list[Reading], dict[str, int]]:
        sim = await GatewaySimulator(Scenario(), fixture=SETS / "3.9.36").start()
        try:
            return await _polls(tmp_path, sim, n=1, auth="token", token=sim.issue_token()), dict(sim.stats)
        finally:
            await sim.stop()

    got, stats = asyncio.run(go())
    assert [r.online for r in got] == [False]
    assert stats == {}  # its HTTPS is refused: no request (with or without a token) reaches it


# --------------------------------------------------------------------------- the simulator's server side


@pytest.mark.parametrize("algorithm", ["MD5", "MD5-sess", "SHA-256", "SHA-256-sess"])
def test_simulator_digest_against_httpx_and_curl(algorithm: str) -> None:
    fixture = SETS / "3.17.3"
    body = (fixture / "api_v1_production_inverters").read_bytes()
    curl = shutil.which("curl")

    async def go() -> None:
        sim = await GatewaySimulator(Scenario(digest_algorithm=algorithm), fixture=fixture).start()
        try:
            assert sim.url.startswith("http://")
            pw = (fixture / "info").read_text().split("<sn>")[1][:12][-6:]  # 030548, by hand from <sn>121430030548
            assert pw == "030548"
            url = sim.url + "/api/v1/production/inverters"
            async with httpx.AsyncClient() as c:
                r = await c.get(url)
                assert r.status_code == 401
                challenge = r.headers["www-authenticate"]
                assert challenge.startswith("Digest ") and 'realm="enphaseenergy.com"' in challenge
                assert f"algorithm={algorithm}" in challenge and 'qop="auth"' in challenge
                for public in ("/api/v1/production", "/info.xml"):  # open to anyone on this firmware
                    assert (await c.get(sim.url + public)).status_code == 200
                r = await c.get(url, auth=httpx.DigestAuth("envoy", pw))
                assert r.status_code == 200 and r.content == body
                # the same Authorization header again: a replay, refused
                replay = await c.get(url, headers={"Authorization": r.request.headers["authorization"]})
                assert replay.status_code == 401
                # a later request reuses the challenge with the next nonce count: accepted
                r2 = await c.get(sim.url + "/ivp/ensemble/inventory?x=1", auth=httpx.DigestAuth("envoy", pw))
                assert r2.status_code == 200
                assert (await c.get(url, auth=httpx.DigestAuth("envoy", "030549"))).status_code == 401
                assert (await c.get(url, auth=httpx.DigestAuth("installer", pw))).status_code == 401
                tok = {"Authorization": f"Bearer {sim.issue_token()}"}
                assert (await c.get(url, headers=tok)).status_code == 401  # no token on this firmware
            if curl:
                for password, code in ((pw, "200"), ("000000", "401")):
                    proc = await asyncio.create_subprocess_exec(
                        curl, "-s", "--digest", "-u", f"envoy:{password}", "-o", "/dev/null", "-w", "%{http_code}",
                        url, stdout=asyncio.subprocess.PIPE)
                    out, _ = await asyncio.wait_for(proc.communicate(), 20)
                    assert out.decode() == code, (algorithm, password)
        finally:
            await sim.stop()

    asyncio.run(go())


def test_new_firmware_sets_keep_the_token() -> None:
    async def go() -> None:
        sim = await GatewaySimulator(Scenario(), fixture=SETS / "7.6.175_with_cts").start()
        try:
            assert sim.url.startswith("https://") and not sim.legacy
            url = sim.url + "/api/v1/production/inverters"
            async with httpx.AsyncClient(verify=False) as c:
                r = await c.get(url, auth=httpx.DigestAuth("envoy", sim.scenario.serial[-6:]))
                assert r.status_code == 401 and "www-authenticate" not in r.headers
                r = await c.get(url, headers={"Authorization": f"Bearer {sim.issue_token()}"})
                assert r.status_code == 200
        finally:
            await sim.stop()

    asyncio.run(go())


def test_https_to_a_legacy_simulator_fails_at_once() -> None:
    """Like a gateway with no HTTPS port: a TLS hello is refused right away (the client then tries HTTP)."""

    async def go() -> None:
        sim = await GatewaySimulator(Scenario(), fixture=SETS / "5.0.62").start()
        try:
            async with httpx.AsyncClient(verify=False, timeout=5) as c:
                with pytest.raises(httpx.TransportError):
                    await c.get(f"https://127.0.0.1:{sim.port}/info.xml")
                assert (await c.get(f"http://127.0.0.1:{sim.port}/info.xml")).status_code == 200
        finally:
            await sim.stop()

    asyncio.run(go())


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=300), st.sampled_from(["GET", "POST"]), st.text(max_size=40))
def test_digest_check_never_raises_on_garbage(header: str, method: str, uri: str) -> None:
    realm = DigestRealm("enphaseenergy.com", lambda: {"envoy": "123456"})
    realm.challenge()
    assert realm.check(method, uri, header) == "denied"
    assert realm.check(method, uri, "Digest " + header) == "denied"


def test_the_gateway_password_is_a_secret_like_the_others(tmp_path: Path) -> None:
    """A literal password for the gateway's envoy user: the config must be private, and it stays masked."""
    from solarbridge.config import ConfigError, load

    p = tmp_path / "solarbridge.toml"
    p.write_text('[[sources]]\ntype = "enphase"\nname = "gw"\nserial = "121938119871"\nauth = "digest"\n'
                 'username = "envoy"\npassword = "s3cret-119871"\n')
    p.chmod(0o644)
    with pytest.raises(ConfigError) as e:
        load(p)
    assert "holds secrets (sources[0].password)" in str(e.value) and "s3cret" not in str(e.value)
    p.chmod(0o600)
    cfg = load(p).sources[0]
    assert isinstance(cfg, EnphaseConfig) and cfg.auth == "digest" and cfg.password is not None
    assert cfg.password.get_secret_value() == "s3cret-119871" and "s3cret" not in repr(cfg)
    p.write_text(p.read_text().replace('username = "envoy"\npassword = "s3cret-119871"\n', 'username = "installer"\n'))
    with pytest.raises(ConfigError) as e:
        load(p)
    assert str(e.value) == (f"{p}: sources[0]: password: the gateway user 'installer' needs one (only 'envoy' has a"
                            " default, the last 6 digits of the serial; an Enlighten account is an e-mail address)")
    p.write_text(p.read_text().replace('auth = "digest"', 'auth = "basic"'))
    with pytest.raises(ConfigError) as e:
        load(p)
    assert "auth" in str(e.value) and "'auto', 'token', 'digest' or 'none'" in str(e.value)


def test_simulate_cli_serves_a_legacy_set_with_digest(tmp_path: Path) -> None:
    """``solarbridge simulate enphase --fixture <4.x set>``: plain HTTP, Digest as envoy, and the start line
    says so (4.2.33's info.xml <sn>123456789012: password 789012)."""
    import json
    import subprocess
    import sys

    from servers import finish, wait_for

    info = tmp_path / "info.json"
    proc = subprocess.Popen([sys.executable, "-m", "solarbridge.sources.enphase.simulator", "--fixture",
                             str(SETS / "4.2.33"), "--info-file", str(info)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_for(info.exists, 20, "the simulator's info file", stop_if=lambda: proc.poll() is not None)
        url = json.loads(info.read_text())["url"]
        assert url.startswith("http://127.0.0.1:")
        first, second = proc.stdout.readline(), proc.stdout.readline()  # type: ignore[union-attr]
        assert first.startswith(f"enphase simulator on {url} ")
        assert "(before 7): plain HTTP, Digest auth as user envoy, password 789012" in second
        assert httpx.get(url + "/production.json").status_code == 200  # public on this firmware
        assert httpx.get(url + "/ivp/meters").status_code == 401
        r = httpx.get(url + "/ivp/meters", auth=httpx.DigestAuth("envoy", "789012"))
        assert r.status_code == 200 and r.content == (SETS / "4.2.33" / "ivp_meters").read_bytes()
    finally:
        proc.terminate()
        finish(proc)
    assert proc.returncode == 0
