"""The MQTT sink against a real mosquitto: discovery, state, retained flags, availability, reconnect, controls."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from servers import async_wait_for
from solarbridge.sinks.mqtt.sink import MqttConfig, MqttSink
from support.mqtt_influx import FakeInverter, FakeInverterConfig, context, supervisor, wait_msg
from support.paths import REPO

pytestmark = pytest.mark.servers

SERIAL = "SA2047G098"
NODE = f"solarbridge_{SERIAL}"


def build(tmp_path: Path, port: int, **sink_kw: Any) -> tuple[Any, FakeInverter, MqttSink]:
    sup = supervisor(tmp_path)
    src = FakeInverter(FakeInverterConfig(name="inv", interval=0.2), context(sup, "inv", "source", "fake"))
    sup.add_source(src)
    cfg = MqttConfig(type="mqtt", name="mqtt", url=f"mqtt://127.0.0.1:{port}", reconnect_max=1, **sink_kw)
    sink = MqttSink(cfg, context(sup, "mqtt", "sink", "mqtt"))
    sup.add_sink(sink)
    return sup, src, sink




def test_discovery_state_availability_and_retained_flags(mosquitto, tmp_path, collector_factory):
    async def main() -> None:
        sup, src, sink = build(tmp_path, mosquitto.port)
        await sup.start()
        try:
            await async_wait_for(lambda: sink.connected and sink.devices.get(SERIAL), what="sink connected")
            first = collector_factory(mosquitto.port)
            await wait_msg(first, f"solarbridge/{SERIAL}/charge_slot_1_start")
            # everything is on the broker now; a client subscribing now gets the retained copies, retain flag set
            col = collector_factory(mosquitto.port)

            async def retained(topic: str) -> Any:
                await wait_msg(col, topic)
                return col.on(topic)[0]  # the first delivery is the retained copy

            status = await retained("solarbridge/status")
            assert status.payload == b"online" and status.retain
            avail = await retained(f"solarbridge/{SERIAL}/availability")
            assert avail.payload == b"online" and avail.retain
            state = await retained(f"solarbridge/{SERIAL}/state")
            assert state.retain
            st = state.json()
            assert st["battery_soc_pct"] == 55 and st["charge_target_pct"] == 80 and st["grid_available"] is True
            assert st["pv_power_w"] > 1000 and "timestamp" in st
            per = await retained(f"solarbridge/{SERIAL}/battery_soc_pct")
            assert per.payload == b"55" and per.retain
            assert (await wait_msg(col, f"solarbridge/{SERIAL}/battery_mode")).payload == b"Eco"

            disc = await retained(f"homeassistant/sensor/{NODE}/{NODE}_pv_power_w/config")
            assert disc.retain
            d = disc.json()
            assert d == {
                "unique_id": f"{NODE}_pv_power_w", "object_id": f"{NODE}_pv_power_w", "name": "PV power",
                "state_topic": f"solarbridge/{SERIAL}/state", "value_template": "{{ value_json['pv_power_w'] }}",
                "availability": [{"topic": "solarbridge/status"}, {"topic": f"solarbridge/{SERIAL}/availability"}],
                "availability_mode": "all", "device_class": "power", "state_class": "measurement",
                "unit_of_measurement": "W",
                "device": {"identifiers": [NODE], "name": "Fake inverter", "manufacturer": "GivEnergy",
                           "model": "Hybrid Gen3", "serial_number": SERIAL, "sw_version": "D0.449-A0.449"},
                "origin": {"name": "solarbridge", "sw_version": d["origin"]["sw_version"]},
            }
            soc = (await wait_msg(col, f"homeassistant/sensor/{NODE}/{NODE}_battery_soc_pct/config")).json()
            assert (soc["device_class"], soc["state_class"], soc["unit_of_measurement"]) == \
                ("battery", "measurement", "%")
            grid = (await wait_msg(col, f"homeassistant/binary_sensor/{NODE}/{NODE}_grid_available/config")).json()
            assert grid["value_template"] == "{{ 'ON' if value_json['grid_available'] else 'OFF' }}"
            num = (await wait_msg(col, f"homeassistant/number/{NODE}/{NODE}_charge_target_pct_control/config")
                   ).json()
            assert num["command_topic"] == f"solarbridge/{SERIAL}/charge_target_pct/set"
            assert (num["min"], num["max"], num["step"], num["unit_of_measurement"]) == (4, 100, 1, "%")
            sel = (await wait_msg(col, f"homeassistant/select/{NODE}/{NODE}_battery_mode_control/config")).json()
            assert sel["options"] == ["Eco", "Eco (Paused)", "Timed Demand", "Timed Export"]
            sw = (await wait_msg(col, f"homeassistant/switch/{NODE}/{NODE}_charge_target_enabled_control/config")
                  ).json()
            assert sw["payload_on"] == "ON" and sw["command_topic"].endswith("/charge_target_enabled/set")
            tm = (await wait_msg(col, f"homeassistant/text/{NODE}/{NODE}_charge_slot_1_start_control/config")
                  ).json()
            assert tm["pattern"].startswith("^")

            # the source loses comms: availability goes offline (retained), then back online
            col.clear()
            src.online = False
            await wait_msg(col, f"solarbridge/{SERIAL}/availability", pred=lambda m: m.payload == b"offline")
            # (a live subscriber gets retain=0; a new subscriber sees the retained copy)
            late = collector_factory(mosquitto.port)
            off = await wait_msg(late, f"solarbridge/{SERIAL}/availability")
            assert off.retain and off.payload == b"offline"
            src.online = True
            await wait_msg(col, f"solarbridge/{SERIAL}/availability", pred=lambda m: m.payload == b"online")
        finally:
            await sup.stop()
        # clean shutdown says offline too
        await wait_msg(col, "solarbridge/status", pred=lambda m: m.payload == b"offline")

    asyncio.run(main())


def test_state_published_on_change_not_on_every_reading(mosquitto, tmp_path, collector_factory):
    async def main() -> None:
        sup, src, sink = build(tmp_path, mosquitto.port, heartbeat=0)
        col = collector_factory(mosquitto.port)
        await sup.start()
        try:
            await wait_msg(col, f"solarbridge/{SERIAL}/state")
            n0 = src.n
            await async_wait_for(lambda: src.n >= n0 + 5, what="5 more readings")
            # pv_power_w changes every reading, battery_soc_pct never does
            assert len(col.on(f"solarbridge/{SERIAL}/battery_soc_pct")) == 1
            assert len(col.on(f"solarbridge/{SERIAL}/pv_power_w")) >= 5
        finally:
            await sup.stop()

    asyncio.run(main())


def test_broker_restart_republishes_discovery_and_state(mosquitto, tmp_path, collector_factory):
    async def main() -> None:
        sup, src, sink = build(tmp_path, mosquitto.port)
        await sup.start()
        try:
            await async_wait_for(lambda: sink.connected and sink.published > 10, what="first publishes")
            mosquitto.stop()
            await async_wait_for(lambda: not sink.connected, what="sink notices the broker is gone")
            await asyncio.sleep(0.5)  # readings keep coming while the broker is away
            await asyncio.to_thread(mosquitto.start)  # same port, no persistence: retained data is gone
            col = collector_factory(mosquitto.port)
            t0 = asyncio.get_running_loop().time()
            disc = f"homeassistant/sensor/{NODE}/{NODE}_pv_power_w/config"
            await wait_msg(col, disc, timeout=5)
            await wait_msg(col, f"solarbridge/{SERIAL}/state", timeout=5)
            await wait_msg(col, "solarbridge/status", timeout=5, pred=lambda m: m.payload == b"online")
            assert asyncio.get_running_loop().time() - t0 < 5
            assert sink.connections == 2
            # the newest value per topic, not a backlog: one discovery message per entity
            assert len(col.on(disc)) == 1
        finally:
            await sup.stop()

    asyncio.run(main())


def test_home_assistant_birth_message_republishes(mosquitto, tmp_path, collector_factory):
    async def main() -> None:
        sup, src, sink = build(tmp_path, mosquitto.port, heartbeat=0)
        col = collector_factory(mosquitto.port)
        await sup.start()
        try:
            disc = f"homeassistant/number/{NODE}/{NODE}_charge_target_pct_control/config"
            await wait_msg(col, disc)
            await asyncio.sleep(0.3)
            before = len(col.on(disc))
            col.publish("homeassistant/status", "online")
            await asyncio.to_thread(col.wait, lambda ms: len([m for m in ms if m.topic == disc]) > before, 5,
                                    "discovery re-published after HA birth")
            assert sink.ctx.health.counters["ha_births"] == 1
            # "offline" from HA is not a birth
            col.publish("homeassistant/status", "offline")
            await asyncio.sleep(0.3)
            assert sink.ctx.health.counters["ha_births"] == 1
        finally:
            await sup.stop()

    asyncio.run(main())


def test_control_end_to_end_and_invalid_commands_rejected(mosquitto, tmp_path, collector_factory):
    async def main() -> None:
        sup, src, sink = build(tmp_path, mosquitto.port)
        col = collector_factory(mosquitto.port)
        # a retained command is never acted on: it would replay at every reconnect
        col.publish(f"solarbridge/{SERIAL}/charge_target_pct/set", "50", retain=True)
        await sup.start()
        try:
            await wait_msg(col, f"solarbridge/{SERIAL}/state")
            await async_wait_for(lambda: sink.ctx.health.counters.get("retained_commands_ignored"),
                             what="retained command seen and ignored")
            col.publish(f"solarbridge/{SERIAL}/charge_target_pct/set", "", retain=True)
            col.publish(f"solarbridge/{SERIAL}/charge_target_pct/set", "45")
            await async_wait_for(lambda: src.executed, what="command executed")
            req = src.executed[-1]
            assert (req.device_id, req.command, req.value, req.origin) == (SERIAL, "charge_target_pct", 45, "mqtt")
            # read back and published
            await wait_msg(col, f"solarbridge/{SERIAL}/state", pred=lambda m: m.json()["charge_target_pct"] == 45)
            col.publish(f"solarbridge/{SERIAL}/battery_mode/set", "Timed Export")
            await async_wait_for(lambda: src.settings["battery_mode"] == "Timed Export", what="mode set")
            col.publish(f"solarbridge/{SERIAL}/charge_target_enabled/set", "ON")
            await async_wait_for(lambda: src.settings["charge_target_enabled"] is True, what="switch set")
            col.publish(f"solarbridge/{SERIAL}/charge_slot_1_start/set", "5:30")
            await async_wait_for(lambda: src.settings["charge_slot_1_start"] == "05:30", what="time set")
            n_ok = len(src.executed)

            # invalid: out of range, not an option, not a time, unknown control
            bad = [("charge_target_pct", "150", "out of range 4..100"),
                   ("charge_target_pct", "45.5", "step 1"),
                   ("battery_mode", "Turbo", "is not one of Eco"),
                   ("charge_slot_1_start", "25:00", "HH:MM"),
                   ("no_such_control", "1", "has no such control")]
            for control, payload, expect in bad:
                col.clear()
                col.publish(f"solarbridge/{SERIAL}/{control}/set", payload)
                err = (await wait_msg(col, f"solarbridge/{SERIAL}/error")).json()
                assert expect in err["error"], err
                assert err["command"] == control and err["payload"] == payload and not col.last(
                    f"solarbridge/{SERIAL}/error").retain
            assert len(src.executed) == n_ok
            # the retained command published before start was never acted on
            assert all(r.value != 50 for r in src.executed)
            assert sink.ctx.health.counters["commands_rejected"] == len(bad)
        finally:
            await sup.stop()

    asyncio.run(main())


def test_givtcp_layout_topics_and_commands(mosquitto, tmp_path, collector_factory):
    async def main() -> None:
        sup, src, sink = build(tmp_path, mosquitto.port, layout="givtcp")
        col = collector_factory(mosquitto.port)
        await sup.start()
        try:
            assert (await wait_msg(col, f"GivEnergy/{SERIAL}/Power/Power/SOC")).payload == b"55"
            assert (await wait_msg(col, f"GivEnergy/{SERIAL}/Control/Mode")).payload == b"Eco"
            assert (await wait_msg(col, f"GivEnergy/{SERIAL}/Control/Target_SOC")).payload == b"80"
            col.publish(f"GivEnergy/control/{SERIAL}/setChargeTarget", "45")
            await async_wait_for(lambda: src.executed, what="GivTCP command executed")
            assert (src.executed[-1].command, src.executed[-1].value) == ("setChargeTarget", 45)
            await wait_msg(col, f"GivEnergy/{SERIAL}/Control/Target_SOC", pred=lambda m: m.payload == b"45")
            col.publish(f"GivEnergy/control/{SERIAL}/setBatteryMode", "Eco (Paused)")
            await async_wait_for(lambda: src.settings["battery_mode"] == "Eco (Paused)", what="mode")
            # the source rejects: the error reaches the error topic, nothing is executed
            n = len(src.executed)
            col.publish(f"GivEnergy/control/{SERIAL}/setChargeTarget", "abc")
            err = (await wait_msg(col, f"solarbridge/{SERIAL}/error")).json()
            assert "whole number" in err["error"] and len(src.executed) == n
        finally:
            await sup.stop()

    asyncio.run(main())


SUNSNIFF_EXTRA = {"serial": "1235687108", "fields": [
    {"id": "battery_soc", "name": "SOC", "group": "Battery", "unit": "%", "value": 97.0,
     "device_class": "battery", "state_class": "measurement"},
    {"id": "grid_frequency", "name": "Frequency", "group": "Grid", "unit": "Hz", "value": 50.02,
     "device_class": None, "state_class": "measurement"},
]}


def test_sunsniff_layout(mosquitto, tmp_path, collector_factory):
    from datetime import UTC, datetime

    from solarbridge.model import Reading
    from solarbridge.plugin import Context

    async def main() -> None:
        cfg = MqttConfig(type="mqtt", name="m", url=mosquitto.url, layout="sunsniff")
        sink = MqttSink(cfg, Context.standalone("m", "sink", "mqtt", tmp_path))
        col = collector_factory(mosquitto.port)
        await sink.start()
        try:
            await async_wait_for(lambda: sink.connected, what="connected")
            r = Reading("1235687108", "inverter", datetime.now(UTC), {"battery_soc_pct": 97.0},
                        extra={"sunsniff": SUNSNIFF_EXTRA})
            await sink.write([r])
            uid = "sunsniff_1235687108_battery_soc"
            await wait_msg(col, f"homeassistant/sensor/{uid}/config")
            conf = await wait_msg(collector_factory(mosquitto.port), f"homeassistant/sensor/{uid}/config")
            assert conf.retain and conf.qos == 1
            assert conf.json() == {
                "device": {"identifiers": ["1235687108"]}, "device_class": "battery", "expire_after": 600,
                "name": "Battery SOC", "object_id": uid, "state_class": "measurement",
                "state_topic": f"homeassistant/sensor/{uid}/state", "unique_id": uid, "unit_of_measurement": "%",
                "availability": [{"topic": "solarbridge/status"}, {"topic": "solarbridge/1235687108/availability"}],
                "availability_mode": "all"}
            st = await wait_msg(col, f"homeassistant/sensor/{uid}/state")
            assert st.payload == b"97" and not st.retain
            freq = (await wait_msg(col, "homeassistant/sensor/sunsniff_1235687108_grid_frequency/config")).json()
            assert "device_class" not in freq and freq["unit_of_measurement"] == "Hz"
            assert (await wait_msg(col, "homeassistant/sensor/sunsniff_1235687108_grid_frequency/state")
                    ).payload == b"50.02"
            assert (await wait_msg(col, "solarbridge/1235687108/availability")).payload == b"online"
        finally:
            await sink.stop()

    asyncio.run(main())


def test_username_password_and_refused_login(mosquitto_factory, tmp_path, collector_factory):
    broker = mosquitto_factory(users={"u": "p"})

    async def main() -> None:
        from solarbridge.plugin import Context

        bad = MqttSink(MqttConfig(type="mqtt", name="bad", url=broker.url, username="u", password="wrong"),
                       Context.standalone("bad", "sink", "mqtt", tmp_path))
        good = MqttSink(MqttConfig(type="mqtt", name="good", url=broker.url, username="u", password="p",
                                   base_topic="sb2"),
                        Context.standalone("good", "sink", "mqtt", tmp_path))
        await bad.start()
        await good.start()
        try:
            await async_wait_for(lambda: good.connected, what="good login")
            await async_wait_for(lambda: bad.ctx.health.last_error, what="refused login reported")
            assert "refused" in bad.ctx.health.last_error and not bad.connected
            col = collector_factory(broker.port, username="u", password="p")
            assert (await wait_msg(col, "sb2/status")).payload == b"online"
        finally:
            await bad.stop()
            await good.stop()

    asyncio.run(main())


DAEMON = REPO / "tests" / "support" / "mqtt_daemon.py"


def test_last_will_on_kill_9(mosquitto, tmp_path, collector_factory):
    col = collector_factory(mosquitto.port)
    proc = subprocess.Popen([sys.executable, str(DAEMON), str(mosquitto.port), str(tmp_path)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        col.wait_topic("solarbridge/status", 15, lambda m: m.payload == b"online")
        col.wait_topic("solarbridge/daemon-dev/state", 10)
        col.clear()
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(5)
        will = col.wait_topic("solarbridge/status", 10, lambda m: m.payload == b"offline")
        assert will.payload == b"offline"
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(5)
    # the will is retained: a new subscriber sees the daemon as offline
    late = collector_factory(mosquitto.port)
    msg = late.wait_topic("solarbridge/status", 5)
    assert msg.retain and msg.payload == b"offline"
    assert json.loads(late.wait_topic("solarbridge/daemon-dev/state", 5).payload)["pv_power_w"] >= 0
