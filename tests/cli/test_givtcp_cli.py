"""givtcp-read / givtcp-write / solarbridge giv as real processes against a simulator process."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from servers import free_port
from solarbridge.sources.givenergy.client import GivEnergyClient
from solarbridge.sources.givenergy.framing import FC_READ_HOLDING
from solarbridge.sources.givenergy.settings import load_settings

BIN = Path(sys.executable).parent
ENV = {k: v for k, v in os.environ.items() if not k.startswith(("INVERTOR", "MQTT_", "INFLUX_", "HA_", "GIVTCP"))}


@contextlib.contextmanager
def simulator(*args: str) -> Iterator[int]:
    """A GivEnergy simulator process on a free loopback port (its port), stopped at the end."""
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "solarbridge.sources.givenergy.simulator", "--port", str(port),
                             *args], stdout=subprocess.PIPE, text=True, env=ENV)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert f"127.0.0.1:{port}" in line, line
        yield port
    finally:
        proc.terminate()
        proc.wait(10)


@pytest.fixture
def sim_port() -> Iterator[int]:
    with simulator("--batteries", "1") as port:
        yield port


def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(args), capture_output=True, text=True, timeout=60, env={**ENV, **(env or {})})


def test_read_write_round_trip(sim_port: int) -> None:
    env = {"INVERTOR_IP": "127.0.0.1", "INVERTOR_PORT": str(sim_port)}
    r = cli(str(BIN / "givtcp-read"), "runAll", env=env)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["Invertor Details"]["Invertor Serial Number"] == "SA2114G000"
    assert out["Timeslots"]["Charge start time slot 1"] == 30
    payload = json.dumps({"start": "0100", "finish": "0400", "chargeToPercent": "55"})
    r = cli(str(BIN / "givtcp-write"), "setChargeSlot1", payload, env=env)
    assert r.returncode == 0, r.stdout + r.stderr
    assert json.loads(r.stdout) == {"result": "Setting Charge Slot 1 was a success"}
    r = cli(sys.executable, "-m", "solarbridge.cli.main", "giv", "read", "getModesandTimes", env=env)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["Timeslots"]["Charge start time slot 1"] == 100
    assert out["Timeslots"]["Charge end time slot 1"] == 400
    assert out["Control"]["Target SOC"] == 55


def test_bad_payload_exit_2_and_nothing_written(sim_port: int) -> None:
    r = cli(str(BIN / "givtcp-write"), "--host", "127.0.0.1", "--port", str(sim_port), "setChargeTarget",
            '{"chargeToPercent":"150"}')
    assert r.returncode == 2
    assert "chargeToPercent" in r.stdout and "4..100" in r.stdout
    r = cli(str(BIN / "givtcp-read"), "--host", "127.0.0.1", "--port", str(sim_port), "getModesandTimes")
    assert json.loads(r.stdout)["Control"]["Target SOC"] == 100


def test_unreachable_exit_1() -> None:
    r = cli(str(BIN / "givtcp-read"), "--host", "127.0.0.1", "--port", str(free_port()), "--timeout", "0.5")
    assert r.returncode == 1 and "cannot connect" in r.stdout


def test_missing_ip_and_bad_settings_exit_2(tmp_path: Path) -> None:
    r = cli(str(BIN / "givtcp-read"))
    assert r.returncode == 2 and "INVERTOR_IP" in r.stderr
    r = cli(str(BIN / "givtcp-read"), env={"INVERTOR_IP": "127.0.0.1", "PRINT_RAW": "sometimes"})
    assert r.returncode == 2 and "PRINT_RAW" in r.stderr
    f = tmp_path / "settings.toml"
    f.write_text('INVERTOR_IP = "127.0.0.1"\nBOGUS = 1\n')
    r = cli(str(BIN / "givtcp-read"), "--settings", str(f))
    assert r.returncode == 2 and "BOGUS" in r.stderr


def test_print_raw_and_v3_layout(sim_port: int) -> None:
    env = {"INVERTOR_IP": "127.0.0.1", "INVERTOR_PORT": str(sim_port), "PRINT_RAW": "True", "GIVTCP_LAYOUT": "v3"}
    r = cli(str(BIN / "givtcp-read"), env=env)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["Control"]["Mode"] == "Eco"
    assert out["SA2114G000"]["Invertor_Type"] == "Gen1 Hybrid"
    assert out["raw"]["invertor"]["charge_target_soc"] == 100
    r = cli(str(BIN / "givtcp-read"), "getCombinedStats", "--raw", env={"INVERTOR_IP": "127.0.0.1",
                                                                         "INVERTOR_PORT": str(sim_port)})
    assert "raw/input" in json.loads(r.stdout)


def test_settings_sources(tmp_path: Path) -> None:
    f = tmp_path / "givtcp.env"
    f.write_text("# comment\nINVERTOR_IP=10.0.0.5\nMQTT_OUTPUT=True\nMQTT_ADDRESS=127.0.0.1\nMQTT_TOPIC=Solar\n")
    s = load_settings(env={"MQTT_USERNAME": "bob", "MQTT_PASSWORD": "pw"}, file=f)
    assert s.invertor_ip == "10.0.0.5" and s.mqtt_output is True
    sinks = s.sink_tables()
    assert sinks == [{"type": "mqtt", "name": "givtcp-mqtt", "url": "mqtt://127.0.0.1:1883", "layout": "givtcp",
                      "givtcp_root": "Solar", "username": "bob", "password": "pw"}]
    j = tmp_path / "s.json"
    j.write_text(json.dumps({"INVERTOR_IP": "10.0.0.6", "INFLUX_OUTPUT": True, "INFLUX_BUCKET": "b"}))
    s = load_settings(env={"INVERTOR_IP": "10.0.0.7"}, file=j)
    assert s.invertor_ip == "10.0.0.7"  # environment wins over the file
    assert s.sink_tables()[0]["type"] == "influxdb2"


def test_discover_finds_simulators_on_loopback() -> None:
    """Two simulators on 127.0.0.2 and 127.0.0.3: a scan of 127.0.0.0/24 finds both with serial and model."""
    port = free_port()
    procs = []
    try:
        for ip, serial, model in (("127.0.0.2", "SA2114G002", "hybrid"), ("127.0.0.3", "CE2231G003", "ac")):
            p = subprocess.Popen([sys.executable, "-m", "solarbridge.sources.givenergy.simulator", "--host", ip,
                                  "--port", str(port), "--serial", serial, "--model", model],
                                 stdout=subprocess.PIPE, text=True, env=ENV)
            assert p.stdout is not None and "listening" in p.stdout.readline()
            procs.append(p)
        t0 = time.monotonic()
        r = cli(sys.executable, "-m", "solarbridge.cli.main", "giv", "discover", "--network", "127.0.0.0/24",
                "--port", str(port))
        elapsed = time.monotonic() - t0
        assert r.returncode == 0, r.stderr
        found = {d["host"]: d for d in json.loads(r.stdout)}
        assert set(found) == {"127.0.0.2", "127.0.0.3"}
        assert found["127.0.0.2"]["serial"] == "SA2114G002" and found["127.0.0.2"]["model"] == "Gen1 Hybrid"
        assert found["127.0.0.3"]["serial"] == "CE2231G003" and found["127.0.0.3"]["model_key"] == "ac"
        print(f"scan of 254 addresses took {elapsed:.2f} s")
    finally:
        for p in procs:
            p.terminate()
            p.wait(10)
    r = cli(sys.executable, "-m", "solarbridge.cli.main", "giv", "discover", "--network", "not-a-net")
    assert r.returncode == 2


@pytest.fixture
def ems_port() -> Iterator[int]:
    with simulator("--model", "ems") as port:
        yield port


def test_ems_controls_from_the_command_line(ems_port: int) -> None:
    env = {"INVERTOR_IP": "127.0.0.1", "INVERTOR_PORT": str(ems_port)}
    write = str(BIN / "givtcp-write")
    r = cli(write, "setExportSlot", json.dumps({"slot": 2, "start": "16:00", "finish": "19:00",
                                               "exportToPercent": "30"}), env=env)
    assert r.returncode == 0, r.stdout + r.stderr
    assert json.loads(r.stdout) == {"result": "Setting Export Slot 2 was a success"}
    # bad payloads and commands the EMS does not have: exit 2, one message naming the field, nothing sent
    for args, words in ((("setExportTarget1", '{"percent":"150"}'), ("percent", "0..100")),
                        (("setCarChargeBoost", '{"boost":"30000"}'), ("boost", "0..22000")),
                        (("setBatteryReserve", '{"reservePercent":"10"}'), ("not supported by this EMS",))):
        r = cli(write, *args, env=env)
        assert r.returncode == 2, (args, r.stdout, r.stderr)
        message = json.loads(r.stdout)["result"]
        assert all(w in message for w in words) and "\n" not in message, message

    async def read_back() -> tuple[int, ...]:
        async with GivEnergyClient("127.0.0.1", ems_port, gap=0) as c:
            reply = await c.read(FC_READ_HOLDING, 2040, 36, device=0x11)
        return reply.values[2065 - 2040:2068 - 2040]

    assert asyncio.run(read_back()) == (1600, 1900, 30)  # export slot 2 (givenergy-modbus HR 2065-2067)


def test_read_with_mqtt_output_and_no_broker_says_so_and_ends(sim_port: int, tmp_path: Path) -> None:
    """MQTT_OUTPUT with the broker down: the read is printed, then one line names what the broker did not
    confirm and the command exits 1 (it used to wait for the broker for ever)."""
    broker = free_port()  # nobody listens here
    env = {"INVERTOR_IP": "127.0.0.1", "INVERTOR_PORT": str(sim_port), "MQTT_OUTPUT": "True",
           "MQTT_ADDRESS": "127.0.0.1", "MQTT_PORT": str(broker), "CACHELOCATION": str(tmp_path)}
    t0 = time.monotonic()
    r = cli(str(BIN / "givtcp-read"), "runAll", env=env)
    assert r.returncode == 1, r.stderr
    assert json.loads(r.stdout)["Control"]["Target SOC"] == 100  # the read itself worked
    line = next(x for x in r.stderr.splitlines() if "not delivered" in x)
    assert line.startswith("output failed: givtcp-mqtt: not delivered: ")
    assert f"not confirmed by the broker mqtt://127.0.0.1:{broker}" in line
    assert time.monotonic() - t0 < 45
