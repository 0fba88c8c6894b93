"""Issue 17 item 1: at the end of a file run every sink has *delivered* (checked on the real servers).

One real Sunsynk report (tests/data/sunsynk, 292-byte payload) read from a pcap; the outputs are the
real mosquitto, VictoriaMetrics and carbon-cache started by tests/servers.py. What the servers hold is
read back with their own clients (paho, /api/v1/export, the whisper library); expected values come from
the report's oracle (battery SOC 54 %, grid 233.3 V), not from our output.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest

from servers import free_port, wait_for
from solarbridge.cli.sunsynk_capture import main as capture_main
from support.sunsynk import DERIVED_PCAP

pytestmark = pytest.mark.servers

SERIAL = "1235687108"
REPORT_TS = 1667629966


class Retained:
    """Everything a fresh subscriber receives on ``topics`` (retained messages and anything live)."""

    def __init__(self, port: int, *topics: str) -> None:
        self.got: dict[str, bytes] = {}
        self.retained: dict[str, bytes] = {}
        self._lock = threading.Lock()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
        self.client.on_message = self._message
        subscribed = threading.Event()
        self.client.on_subscribe = lambda *a: subscribed.set()
        self.client.connect("127.0.0.1", port)
        self.client.subscribe([(t, 1) for t in topics])
        self.client.loop_start()
        assert subscribed.wait(10), "no SUBACK from mosquitto"

    def _message(self, client: Any, userdata: Any, msg: Any) -> None:
        with self._lock:
            self.got[msg.topic] = bytes(msg.payload)
            if msg.retain:
                self.retained[msg.topic] = bytes(msg.payload)

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def _capture_config(tmp_path: Path, mqtt_url: str, extra: str = "") -> str:
    cfg = tmp_path / "sunsynk.toml"
    cfg.write_text(f"""
state_dir = "{tmp_path}/state"
[pcap]
device = "{DERIVED_PCAP}"
file = true
timezone = "Africa/Johannesburg"
[[mqtt]]
url = "{mqtt_url}"
{extra}""")
    cfg.chmod(0o600)
    return str(cfg)


def test_capture_file_mode_mqtt_only_is_on_the_broker_after_exit(tmp_path: Path, mosquitto: Any) -> None:
    """The reported case: [[mqtt]] alone, exits at once; the broker must hold everything afterwards."""
    uid = f"sunsniff_{SERIAL}_battery_soc"
    live = Retained(mosquitto.port, "homeassistant/#")
    try:
        assert capture_main([_capture_config(tmp_path, mosquitto.url), "--no-progress"]) == 0
        # the QoS 0 state (not retained, as the original published it) reached a subscriber
        wait_for(lambda: f"homeassistant/sensor/{uid}/state" in live.got, 10, what="battery SOC state")
        assert live.got[f"homeassistant/sensor/{uid}/state"] == b"54"
    finally:
        live.close()
    # a subscriber arriving after the exit gets the retained discovery and availability
    after = Retained(mosquitto.port, "homeassistant/#", "solarbridge/#")
    try:
        topic = f"homeassistant/sensor/{uid}/config"
        wait_for(lambda: topic in after.retained, 10, what="retained discovery after exit")
        disc = json.loads(after.retained[topic])
        assert disc["device"]["identifiers"] == [SERIAL]
        avail = [a["topic"] for a in disc["availability"]]
        for t in avail:
            wait_for(lambda t=t: t in after.retained, 10, what=f"retained {t}")
        per_device = [t for t in avail if t != "solarbridge/status"]
        assert per_device and all(after.retained[t] == b"online" for t in per_device)
        # the daemon's own status: it has stopped, so offline (its last will would say the same)
        assert after.retained["solarbridge/status"] == b"offline"
    finally:
        after.close()


def test_capture_file_mode_broker_late_connects_first(tmp_path: Path, mosquitto_factory: Any) -> None:
    """No broker when the run starts: the run waits for it (connecting first), then delivers and exits 0."""
    port = free_port()
    cfg = _capture_config(tmp_path, f"mqtt://127.0.0.1:{port}")
    result: list[int] = []
    t = threading.Thread(target=lambda: result.append(capture_main([cfg, "--no-progress", "--drain-timeout", "60"])))
    t.start()
    try:
        time.sleep(1.5)
        assert t.is_alive(), "exited before anything was delivered"
        broker = mosquitto_factory(port=port)
        t.join(60)
        assert result == [0]
        after = Retained(broker.port, "homeassistant/#")
        try:
            wait_for(lambda: f"homeassistant/sensor/sunsniff_{SERIAL}_battery_soc/config" in after.retained, 10,
                     what="retained discovery")
        finally:
            after.close()
    finally:
        t.join(60)


def test_capture_file_mode_unreachable_broker_exits_1_naming_it(tmp_path: Path, capsys: Any) -> None:
    port = free_port()  # nothing listens here
    cfg = _capture_config(tmp_path, f"mqtt://127.0.0.1:{port}")
    t0 = time.monotonic()
    assert capture_main([cfg, "--no-progress", "--drain-timeout", "2"]) == 1
    assert time.monotonic() - t0 < 20
    err = capsys.readouterr().err
    line = next(x for x in err.splitlines() if "not delivered" in x)
    assert line.startswith("sunsynk-capture: not delivered: mqtt[0]: ")
    assert f"127.0.0.1:{port}" in line and "not confirmed" in line
    assert "Traceback" not in err


def test_daemon_finite_run_every_sink_delivers(tmp_path: Path, mosquitto: Any, victoria: Any, carbon: Any) -> None:
    """The daemon's own runtime, one report, MQTT + InfluxDB + Graphite: stop(deliver=True) leaves nothing out."""
    from solarbridge.config import build
    from solarbridge.runtime import Supervisor

    cfg = build({
        "daemon": {"state_dir": str(tmp_path / "state"), "history": False},
        "sources": [{"type": "sunsynk_capture", "name": "sunsynk", "device": str(DERIVED_PCAP), "file": True,
                     "timezone": "Africa/Johannesburg"}],
        "sinks": [
            {"type": "mqtt", "name": "mqtt", "url": mosquitto.url, "heartbeat": 0},
            {"type": "influxdb2", "name": "influx", "host": victoria.url, "org": "o", "bucket": "b", "token": "t"},
            {"type": "graphite", "name": "graphite", "host": "127.0.0.1", "port": carbon.line_port},
        ],
    })

    async def run() -> dict[str, str]:
        sup = Supervisor(cfg)
        sup.build()
        await sup.start()
        await sup.wait_sources()
        return await sup.stop(deliver=True, timeout=60)

    assert asyncio.run(run()) == {}

    after = Retained(mosquitto.port, "solarbridge/#")
    try:
        topic = f"solarbridge/{SERIAL}/state"
        wait_for(lambda: topic in after.retained, 10, what="retained state")
        state = json.loads(after.retained[topic])
        assert state["battery_soc_pct"] == 54 and state["grid_voltage_v"] == 233.3
        assert after.retained[f"solarbridge/{SERIAL}/availability"] == b"online"
    finally:
        after.close()
    series = victoria.wait_series('{__name__=~"sunsynk.*battery_soc_pct.*"}')
    assert series[0]["values"] == [54] and series[0]["timestamps"] == [REPORT_TS * 1000]
    pts = carbon.wait_points(f"solarbridge.sunsynk.{SERIAL}.battery_soc_pct", REPORT_TS - 7200, 1)
    assert [v for _, v in pts] == [54.0]


def test_daemon_finite_run_reports_each_undelivered_sink(tmp_path: Path) -> None:
    """Nothing listening: the run ends at its timeout and names every sink with what it still holds."""
    from solarbridge.config import build
    from solarbridge.runtime import Supervisor

    dead = free_port()
    cfg = build({
        "daemon": {"state_dir": str(tmp_path / "state"), "history": False},
        "sources": [{"type": "sunsynk_capture", "name": "sunsynk", "device": str(DERIVED_PCAP), "file": True}],
        "sinks": [
            {"type": "mqtt", "name": "mqtt", "url": f"mqtt://127.0.0.1:{dead}", "heartbeat": 0},
            {"type": "influxdb2", "name": "influx", "host": f"http://127.0.0.1:{dead}", "org": "o", "bucket": "b",
             "token": "t"},
            {"type": "graphite", "name": "graphite", "host": "127.0.0.1", "port": dead},
        ],
    })

    async def run() -> tuple[dict[str, str], float]:
        sup = Supervisor(cfg)
        sup.build()
        await sup.start()
        await sup.wait_sources()
        t0 = time.monotonic()
        out = await sup.stop(deliver=True, timeout=3)
        return out, time.monotonic() - t0

    undelivered, took = asyncio.run(run())
    assert set(undelivered) == {"mqtt", "influx", "graphite"}
    assert "not confirmed by the broker" in undelivered["mqtt"]
    assert "stay in the spool" in undelivered["influx"] and "point(s)" in undelivered["influx"]
    assert "stay in the spool" in undelivered["graphite"]
    assert took < 15
