"""Issue 17 item 4: after kill -9 and a restart while the device is unreachable, the broker says offline.

The real `solarbridge run` daemon reads the GivEnergy simulator (the real protocol on TCP) and publishes to
a real mosquitto. The daemon is killed with SIGKILL, the simulator is stopped (the inverter is now
unreachable), and the daemon is started again: the device's retained availability must turn offline at
once, from the devices remembered in the state dir, although the source never reaches the inverter.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.servers

SB = [sys.executable, "-m", "solarbridge.cli.main"]


def _simulator() -> tuple[subprocess.Popen[str], int]:
    p = subprocess.Popen([sys.executable, "-m", "solarbridge.sources.givenergy.simulator", "--host", "127.0.0.1",
                          "--port", "0"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                         start_new_session=True)
    assert p.stdout is not None
    line = p.stdout.readline()
    assert "listening on 127.0.0.1:" in line, line
    return p, int(line.rsplit(":", 1)[1])


def _stop(p: subprocess.Popen, sig: int = signal.SIGTERM) -> None:
    if p.poll() is None:
        os.kill(p.pid, sig)
        try:
            p.wait(15)
        except subprocess.TimeoutExpired:
            os.kill(p.pid, signal.SIGKILL)
            p.wait(5)


def test_restart_with_device_unreachable_marks_it_offline(mosquitto, tmp_path: Path, collector_factory) -> None:
    sim, port = _simulator()
    cfg = tmp_path / "sb.toml"
    cfg.write_text(f"""
[daemon]
state_dir = "{tmp_path}/state"
history = false
[api]
enabled = false
[[sources]]
type = "givenergy"
host = "127.0.0.1"
port = {port}
poll_interval = 1
timeout = 0.5
retries = 0
[[sinks]]
type = "mqtt"
url = "{mosquitto.url}"
heartbeat = 0
""")
    cfg.chmod(0o600)
    log = tmp_path / "daemon.log"
    daemon = subprocess.Popen([*SB, "run", "-c", str(cfg)], stdout=log.open("ab"), stderr=subprocess.STDOUT,
                              start_new_session=True)
    col = collector_factory(mosquitto.port)
    try:
        avail = col.wait(lambda ms: next((m for m in ms if m.topic.endswith("/availability")
                                          and m.payload == b"online"), None), 40, "device online").topic
        device = avail.split("/")[1]
        col.wait_topic(f"solarbridge/{device}/state", 20)
        # a discovered entity depends on the daemon's status (its last will) as well as on the device
        disc = col.wait(lambda ms: next((m for m in ms if m.topic.startswith("homeassistant/sensor/")
                                         and m.topic.endswith("/config")), None), 20, "discovery")
        payload = json.loads(disc.payload)
        assert payload["availability_mode"] == "all"
        assert {a["topic"] for a in payload["availability"]} == {"solarbridge/status", avail}

        _stop(daemon, signal.SIGKILL)
        col.wait_topic("solarbridge/status", 15, lambda m: m.payload == b"offline")  # the last will
        _stop(sim)  # the inverter is unreachable from now on
        col.clear()
        daemon = subprocess.Popen([*SB, "run", "-c", str(cfg)], stdout=log.open("ab"), stderr=subprocess.STDOUT,
                                  start_new_session=True)
        col.wait_topic("solarbridge/status", 30, lambda m: m.payload == b"online")
        t_up = time.monotonic()
        off = col.wait_topic(avail, 10, lambda m: m.payload == b"offline")
        assert off.at - t_up < 3, "offline came late"
        assert not [m for m in col.on(avail) if m.payload == b"online"]
    finally:
        _stop(daemon)
        _stop(sim)
        col.close()
    # a late subscriber (Home Assistant restarting) sees the retained offline too
    late = collector_factory(mosquitto.port, topics=(avail,))
    try:
        assert late.wait_topic(avail, 10).payload == b"offline"
    finally:
        late.close()
