"""Outputs: GivTCP MQTT topics + control round trip through real mosquitto; Home Assistant REST output."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from servers import async_wait_for
from solarbridge.config import Config, DaemonConfig
from solarbridge.plugin import Context
from solarbridge.runtime import Supervisor
from solarbridge.sinks.homeassistant_rest.sink import HaRestConfig, HaRestSink
from solarbridge.sources.givenergy.source import GivEnergyConfig, GivEnergySource
from support.givenergy import run, simulator


class Collector:
    """A paho subscriber remembering the last payload per topic."""

    def __init__(self, port: int, topic: str) -> None:
        import paho.mqtt.client as mqtt

        self.msgs: dict[str, bytes] = {}
        self.lock = threading.Lock()
        self.c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"ge-test-{time.monotonic_ns()}")
        self.subscribed = threading.Event()
        self.c.on_message = self._on
        self.c.on_connect = lambda c, *_a: c.subscribe(topic)
        self.c.on_subscribe = lambda *_a: self.subscribed.set()
        self.c.connect("127.0.0.1", port)
        self.c.loop_start()
        # messages published before the broker has the subscription would be missed (they are not retained)
        if not self.subscribed.wait(10):
            raise TimeoutError(f"no SUBACK for {topic} within 10 s")

    def _on(self, _c: Any, _u: Any, msg: Any) -> None:
        with self.lock:
            self.msgs[msg.topic] = msg.payload

    def get(self, topic: str) -> bytes | None:
        with self.lock:
            return self.msgs.get(topic)

    def publish(self, topic: str, payload: str) -> None:
        self.c.publish(topic, payload, qos=1).wait_for_publish(5)

    def close(self) -> None:
        self.c.loop_stop()
        self.c.disconnect()


@pytest.mark.servers
def test_mqtt_givtcp_topics_and_control_round_trip(mosquitto: Any, tmp_path: Path) -> None:
    mqtt_mod = pytest.importorskip("solarbridge.sinks.mqtt.sink")

    async def go() -> None:
        async with simulator() as sim:
            serial = sim.inverter.serial
            sup = Supervisor(Config(daemon=DaemonConfig(state_dir=tmp_path, history=False, backoff_initial=0.2,
                                                        backoff_cap=1.0, shutdown_timeout=5)))
            src = GivEnergySource(GivEnergyConfig(type="givenergy", name="ge", host="127.0.0.1", port=sim.port,
                                                  poll_interval=0.3, request_gap=0),
                                  sup._context("ge", "source", "givenergy"))
            sup.add_source(src)
            sink_cfg = mqtt_mod.MqttConfig(type="mqtt", name="mqtt", url=f"mqtt://127.0.0.1:{mosquitto.port}",
                                           layout="givtcp", reconnect_max=1)
            sup.add_sink(mqtt_mod.MqttSink(sink_cfg, sup._context("mqtt", "sink", "mqtt")))
            col = await asyncio.to_thread(Collector, mosquitto.port, "GivEnergy/#")
            await sup.start()
            try:
                soc_topic = f"GivEnergy/{serial}/Control/Target SOC"
                await async_wait_for(lambda: col.get(soc_topic) == b"100", timeout=10, what=soc_topic)
                assert col.get(f"GivEnergy/{serial}/Invertor Details/Invertor Serial Number") == serial.encode()
                assert col.get(f"GivEnergy/{serial}/Power/SOC") is not None
                # control: GivEnergy/control/<serial>/<command> with a plain payload
                await asyncio.to_thread(col.publish, f"GivEnergy/control/{serial}/setChargeTarget", "45")
                await async_wait_for(lambda: sim.inverter.holding[116] == 45, timeout=10, what="HR116 written")
                await async_wait_for(lambda: col.get(soc_topic) == b"45", timeout=10, what="new target on MQTT")
                payload = json.dumps({"start": "0130", "finish": "0445"})
                await asyncio.to_thread(col.publish, f"GivEnergy/control/{serial}/setChargeSlot1", payload)
                await async_wait_for(lambda: col.get(f"GivEnergy/{serial}/Timeslots/Charge end time slot 1") == b"445",
                            timeout=10, what="slot on MQTT")
                await asyncio.to_thread(col.publish, f"GivEnergy/control/{serial}/setBatteryMode", "Timed Export")
                await async_wait_for(lambda: col.get(f"GivEnergy/{serial}/Control/Battery Mode") == b"Timed Export",
                            timeout=10, what="mode on MQTT")
                # a bad payload writes nothing
                n = len(sim.inverter.write_log)
                await asyncio.to_thread(col.publish, f"GivEnergy/control/{serial}/setChargeTarget", "250")
                await asyncio.sleep(0.5)
                assert len(sim.inverter.write_log) == n
            finally:
                await sup.stop()
                col.close()
    run(go(), timeout=60)


class _FakeHA(BaseHTTPRequestHandler):
    token = "ha-long-lived"
    posts: list[tuple[str, dict[str, Any]]] = []

    def do_POST(self) -> None:  # noqa: N802 (http.server API)
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        if self.headers.get("Authorization") != f"Bearer {self.token}":
            self.send_response(401)
            self.end_headers()
            return
        if not self.path.startswith("/api/states/sensor."):
            self.send_response(404)
            self.end_headers()
            return
        type(self).posts.append((self.path, json.loads(body)))
        self.send_response(201)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, *_a: Any) -> None:
        pass


def test_ha_rest_output(tmp_path: Path) -> None:
    srv = ThreadingHTTPServer(("127.0.0.1", 0), _FakeHA)
    th = threading.Thread(target=srv.serve_forever, daemon=True)
    th.start()
    url = f"http://127.0.0.1:{srv.server_address[1]}"
    _FakeHA.posts = []

    async def go() -> None:
        async with simulator() as sim:
            src = GivEnergySource(GivEnergyConfig(type="givenergy", name="ge", host="127.0.0.1", port=sim.port,
                                                  request_gap=0), Context.standalone("ge", "source", "givenergy",
                                                                                     tmp_path))
            await src.client.connect()
            await src.client.detect()
            reading = await src.poll_once(full=True)
            await src.client.close()
            sink = HaRestSink(HaRestConfig(type="ha_rest", url=url, token="ha-long-lived"),
                              Context.standalone("ha", "sink", "ha_rest", tmp_path))
            await sink.start()
            await sink.write([reading])
            await sink.stop()
            posts = dict(_FakeHA.posts)
            soc = posts[f"/api/states/sensor.givtcp_{sim.inverter.serial.lower()}_battery_soc_pct"]
            assert soc["state"] == reading.metrics["battery_soc_pct"]
            assert soc["attributes"]["unit_of_measurement"] == "%"
            pv = posts[f"/api/states/sensor.givtcp_{sim.inverter.serial.lower()}_pv_energy_total_wh"]
            assert pv["attributes"]["state_class"] == "total_increasing"
            assert len(posts) == len(reading.metrics)
            bad = HaRestSink(HaRestConfig(type="ha_rest", url=url, token="wrong"),
                             Context.standalone("ha", "sink", "ha_rest", tmp_path))
            with pytest.raises(RuntimeError, match="401"):
                await bad.write([reading])
            await bad.stop()
    try:
        run(go())
    finally:
        srv.shutdown()
        srv.server_close()


@pytest.mark.servers
def test_givtcp_read_mqtt_output(mosquitto: Any, tmp_path: Path) -> None:
    """MQTT_OUTPUT=True: givtcp-read publishes the GivTCP tree through the generic MQTT sink."""
    import os
    import subprocess
    import sys

    pytest.importorskip("solarbridge.sinks.mqtt.sink")

    async def go() -> None:
        async with simulator() as sim:
            col = await asyncio.to_thread(Collector, mosquitto.port, "Solar/#")
            env = {k: v for k, v in os.environ.items() if not k.startswith(("MQTT_", "INVERTOR", "GIVTCP"))}
            env.update(INVERTOR_IP="127.0.0.1", INVERTOR_PORT=str(sim.port), MQTT_OUTPUT="True",
                       MQTT_ADDRESS="127.0.0.1", MQTT_PORT=str(mosquitto.port), MQTT_TOPIC="Solar",
                       CACHELOCATION=str(tmp_path))
            proc = await asyncio.create_subprocess_exec(
                str(Path(sys.executable).parent / "givtcp-read"), env=env, stdout=subprocess.PIPE,
                stderr=subprocess.PIPE)
            out, err = await proc.communicate()
            assert proc.returncode == 0, err.decode()
            assert json.loads(out)["Control"]["Target SOC"] == 100
            topic = f"Solar/{sim.inverter.serial}/Control/Target SOC"
            await async_wait_for(lambda: col.get(topic) == b"100", timeout=10, what=topic)
            col.close()
    run(go(), timeout=60)


@pytest.mark.servers
def test_givtcp_read_influx_output(victoria: Any, tmp_path: Path) -> None:
    """INFLUX_OUTPUT=True: givtcp-read writes the reading through the generic InfluxDB sink."""
    import os
    import subprocess
    import sys

    pytest.importorskip("solarbridge.sinks.influx.sink")

    async def go() -> None:
        async with simulator() as sim:
            env = {k: v for k, v in os.environ.items() if not k.startswith(("INFLUX_", "INVERTOR", "GIVTCP"))}
            env.update(INVERTOR_IP="127.0.0.1", INVERTOR_PORT=str(sim.port), INFLUX_OUTPUT="True",
                       INFLUX_URL=victoria.url, INFLUX_TOKEN="t", INFLUX_BUCKET="solar", INFLUX_ORG="home",
                       CACHELOCATION=str(tmp_path))
            proc = await asyncio.create_subprocess_exec(
                str(Path(sys.executable).parent / "givtcp-read"), "getTimeslots", env=env,
                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            _out, err = await proc.communicate()
            assert proc.returncode == 0, err.decode()
            return sim.inverter.serial

    serial = run(go(), timeout=60)
    series = victoria.wait_series('{__name__=~"inverter_battery_soc_pct"}', timeout=10)
    assert series[0]["metric"]["device_id"] == serial
