"""sunsynk-capture: config compatible with the original, one-line errors with exit 2, file mode end to end."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from servers import wait_for
from solarbridge.cli.sunsynk_capture import main
from support.sunsynk import DERIVED_PCAP


def _cfg(tmp_path: Path, text: str) -> str:
    p = tmp_path / "sunsynk.toml"
    p.write_text(text)
    p.chmod(0o600)
    return str(p)


def _err(capsys) -> list[str]:
    return [line for line in capsys.readouterr().err.splitlines() if line.strip()]


@pytest.mark.parametrize(("text", "needle"), [
    ('[pcap]\ndevice = "lo"\nbogus = 1\n', "pcap.bogus: unknown key"),
    ('[pcap]\ndevice = "lo"\n[[mqtt]]\nurl = "mqtt://127.0.0.1:1"\nqos = 1\n', "mqtt[0].qos: unknown key"),
    ('[pcap]\ndevice = "lo"\n[[influxdb2]]\norg = "o"\nbucket = "b"\ntoken = "t"\nurl = "x"\n',
     "influxdb2[0].url: unknown key"),
    ('[pcap]\ndevice = "lo"\nextra_section = 3\n', "extra_section: unknown key"),
    ('[pcap]\nfile = true\n', "pcap.device: required key is missing"),
    ('[pcap]\ndevice = "lo"\n[[influxdb2]]\norg = "o"\nbucket = "b"\n', "influxdb2[0].token: required key"),
    ('[pcap]\ndevice = "lo"\ntimezone = "Mars/Olympus"\n', "pcap.timezone: unknown time zone"),
    ('[pcap]\ndevice = "lo"\nlayout = 300\n', "pcap.layout"),
    ('[pcap\n', "not valid TOML"),
    ('[pcap]\ndevice = "lo"\nfile = "yes"\n', "pcap.file: Input should be a valid boolean (got 'yes')"),
    ('[pcap]\ndevice = "lo"\nfile = 1\n', "pcap.file: Input should be a valid boolean (got 1)"),
])
def test_config_errors_one_line_exit_2(tmp_path, capsys, text, needle):
    assert main([_cfg(tmp_path, text)]) == 2
    lines = _err(capsys)
    assert len(lines) == 1, lines
    assert needle in lines[0] and lines[0].startswith("sunsynk-capture: error: ")


def test_unknown_key_lists_allowed_keys(tmp_path, capsys):
    main([_cfg(tmp_path, '[pcap]\ndevice = "lo"\ninterface = "x"\n')])
    (line,) = _err(capsys)
    assert "pcap.interface: unknown key (allowed: device, file, filter, layout, timezone)" in line


@pytest.mark.root
def test_capture_errors_one_line_exit_2(tmp_path, capsys):
    cases = [
        ('[pcap]\ndevice = "nosuchdev0"\n', "no such network device 'nosuchdev0'"),
        ('[pcap]\ndevice = "any"\n', "device 'any' is not supported"),
        ('[pcap]\ndevice = "lo"\nfilter = "port nonsense"\n', "bad filter 'port nonsense': unknown port 'nonsense'"),
        ('[pcap]\ndevice = "lo"\nfilter = "src host"\n', "bad filter 'src host': "),
        (f'[pcap]\ndevice = "{tmp_path}/missing.pcap"\nfile = true\n', "missing.pcap: no such file"),
        (f'[pcap]\ndevice = "{tmp_path}/sunsynk.toml"\nfile = true\n', "not a pcap or pcapng capture file"),
    ]
    for text, needle in cases:
        assert main([_cfg(tmp_path, text)]) == 2, text
        lines = _err(capsys)
        assert len(lines) == 1 and needle in lines[0], (text, lines)


@pytest.mark.root
def test_no_capture_permission_one_line_exit_2(tmp_path):
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.fail("setpriv (util-linux) is needed to drop CAP_NET_RAW: apt-get install util-linux")
    cfg = _cfg(tmp_path, '[pcap]\ndevice = "lo"\n')
    # root, but without CAP_NET_RAW
    proc = subprocess.run([setpriv, "--bounding-set=-net_raw", "--inh-caps=-net_raw", sys.executable, "-m",
                           "solarbridge.cli.sunsynk_capture", cfg], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "needs root or the CAP_NET_RAW capability" in lines[0], proc.stderr


def test_solarbridge_capture_dispatch(tmp_path, capsys):
    from solarbridge.cli.main import main as sb_main

    assert sb_main(["capture", _cfg(tmp_path, '[pcap]\ndevice = "lo"\nbogus = 1\n')]) == 2
    assert "pcap.bogus: unknown key" in capsys.readouterr().err


@pytest.mark.servers
def test_file_mode_to_victoriametrics_and_mosquitto(tmp_path, victoria, mosquitto):
    """The real report, from a pcap, reaches VictoriaMetrics with the original schema and MQTT with discovery."""
    import json

    import paho.mqtt.client as mqtt

    got: dict[str, bytes] = {}
    cli = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
    cli.on_message = lambda c, u, m: got.__setitem__(m.topic, m.payload)
    cli.connect("127.0.0.1", mosquitto.port)
    cli.subscribe("homeassistant/#")
    cli.loop_start()
    try:
        cfg = _cfg(tmp_path, f"""
state_dir = "{tmp_path}/state"
[pcap]
device = "{DERIVED_PCAP}"
file = true
timezone = "Africa/Johannesburg"
[[influxdb2]]
host = "{victoria.url}"
org = "home"
bucket = "solar"
token = "secret"
[[mqtt]]
url = "{mosquitto.url}"
""")
        assert main([cfg, "--no-progress"]) == 0
        series = victoria.wait_series('{__name__=~"inverter.*"}',
                                      lambda s: any(x["metric"].get("name") == "SOC" for x in s))
        soc = [x for x in series if x["metric"].get("name") == "SOC"][0]
        assert soc["metric"]["__name__"] == "inverter_value"
        assert soc["metric"]["serial"] == "1235687108" and soc["metric"]["group"] == "Battery"
        assert soc["metric"]["unit"] == "%"
        assert soc["values"] == [54] and soc["timestamps"] == [1667629966000]
        volts = [x for x in series if x["metric"].get("group") == "Grid" and x["metric"].get("name") == "Voltage"]
        assert volts[0]["values"] == [233.3]

        uid = "sunsniff_1235687108_battery_soc"
        wait_for(lambda: f"homeassistant/sensor/{uid}/config" in got, 10,
                 lambda: f"the discovery config of {uid}; topics seen: {sorted(got)[:20]}", interval=0.05)
        disc = json.loads(got[f"homeassistant/sensor/{uid}/config"])
        assert disc["unique_id"] == uid and disc["expire_after"] == 600 and disc["name"] == "Battery SOC"
        assert disc["state_topic"] == f"homeassistant/sensor/{uid}/state"
        assert disc["device"]["identifiers"] == ["1235687108"]
    finally:
        cli.loop_stop()
        cli.disconnect()


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604])
def test_group_or_world_readable_secret_is_refused(tmp_path, capsys, mode):
    """README: a config holding a literal secret readable by group or others is refused, not warned about."""
    p = tmp_path / "open.toml"
    p.write_text('[pcap]\ndevice = "lo"\n[[mqtt]]\nurl = "mqtt://127.0.0.1:1"\npassword = "pw"\n')
    p.chmod(mode)
    assert main([str(p)]) == 2
    (err,) = _err(capsys)  # one line, before any capture is opened
    assert "mqtt[0].password" in err and f"mode {mode:04o}" in err and f"chmod 600 {p}" in err


def test_private_secret_and_secret_from_env_are_accepted(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("SB_TEST_MQTT_PW", "pw")
    for text, mode in (('password = "pw"\n', 0o600), ('password = { env = "SB_TEST_MQTT_PW" }\n', 0o644)):
        p = tmp_path / "cfg.toml"
        p.write_text('[pcap]\ndevice = "nosuchdev0"\n[[mqtt]]\nurl = "mqtt://127.0.0.1:1"\n' + text)
        p.chmod(mode)
        assert main([str(p)]) == 2  # it gets as far as opening the (missing) interface
        (err,) = _err(capsys)
        assert "no such network device" in err


def test_corrupt_file_midway_exits_1(tmp_path):
    data = DERIVED_PCAP.read_bytes()
    bad = data + (2**31).to_bytes(4, "little") * 4  # a record header claiming a 2 GiB frame
    p = tmp_path / "bad.pcap"
    p.write_bytes(bad)
    assert main([_cfg(tmp_path, f'state_dir = "{tmp_path}/s"\n[pcap]\ndevice = "{p}"\nfile = true\n'),
                 "--no-progress"]) == 1


def test_file_mode_without_outputs_exits_0(tmp_path):
    assert main([_cfg(tmp_path, f'state_dir = "{tmp_path}/s"\n[pcap]\ndevice = "{DERIVED_PCAP}"\nfile = true\n'
                                'filter = "tcp port 51100"\n'), "--no-progress"]) == 0
