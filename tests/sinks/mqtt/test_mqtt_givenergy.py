"""End to end: MQTT command -> MQTT sink -> runtime -> GivEnergy source -> dongle simulator (real TCP), read back."""

from __future__ import annotations

import asyncio

import pytest

from servers import async_wait_for
from solarbridge.sinks.mqtt.sink import MqttConfig, MqttSink
from solarbridge.sources.givenergy.simulator import DongleSimulator, SimInverter
from solarbridge.sources.givenergy.source import GivEnergyConfig, GivEnergySource
from support.mqtt_influx import context, supervisor, wait_msg

pytestmark = pytest.mark.servers

SERIAL = "SA2114G000"  # the simulator's default inverter serial




def test_controls_against_the_givenergy_simulator(mosquitto, tmp_path, collector_factory):
    async def main() -> None:
        sim = DongleSimulator(SimInverter("hybrid", 1), "127.0.0.1", 0)
        await sim.start()
        sup = supervisor(tmp_path)
        src = GivEnergySource(GivEnergyConfig(type="givenergy", name="giv", host="127.0.0.1", port=sim.port,
                                              poll_interval=0.5, full_refresh_interval=1.0, batteries=1,
                                              layout="v3"),
                              context(sup, "giv", "source", "givenergy"))
        sup.add_source(src)
        sink = MqttSink(MqttConfig(type="mqtt", name="mqtt", url=mosquitto.url, layout="givtcp", reconnect_max=1),
                        context(sup, "mqtt", "sink", "mqtt"))
        sup.add_sink(sink)
        col = collector_factory(mosquitto.port)
        await sup.start()
        try:
            state_topic = f"solarbridge/{SERIAL}/state"
            await wait_msg(col, state_topic, pred=lambda m: "charge_target_pct" in m.json())
            dev = sink.devices[SERIAL]
            assert "charge_target_pct" in dev.controls and "battery_mode" in dev.controls
            await wait_msg(col, f"homeassistant/number/solarbridge_{SERIAL}/solarbridge_{SERIAL}_charge_target_pct"
                                f"_control/config")
            # the GivTCP tree is there for existing automations
            await asyncio.to_thread(col.wait, lambda ms: any(m.topic.startswith(f"GivEnergy/{SERIAL}/") for m in ms),
                                    10, "GivTCP topics")

            target = 45 if dev.latest["charge_target_pct"] != 45 else 46
            writes = len(sim.inverter.write_log)
            col.publish(f"solarbridge/{SERIAL}/charge_target_pct/set", str(target))
            # executed on the (simulated) inverter, read back, and the new state published
            await wait_msg(col, state_topic, pred=lambda m: m.json().get("charge_target_pct") == target)
            assert len(sim.inverter.write_log) > writes

            # the GivTCP command topic works too
            col.publish(f"GivEnergy/control/{SERIAL}/setChargeTarget", "60")
            await wait_msg(col, state_topic, pred=lambda m: m.json().get("charge_target_pct") == 60)

            # invalid commands: rejected with a message, nothing written to the inverter
            writes = len(sim.inverter.write_log)
            col.clear()
            col.publish(f"solarbridge/{SERIAL}/charge_target_pct/set", "150")
            err = (await wait_msg(col, f"solarbridge/{SERIAL}/error")).json()
            assert "out of range 4..100" in err["error"]
            col.clear()
            col.publish(f"GivEnergy/control/{SERIAL}/setBatteryMode", "Turbo")
            err = (await wait_msg(col, f"solarbridge/{SERIAL}/error")).json()
            assert err["command"] == "setBatteryMode" and err["error"]
            await asyncio.sleep(0.3)
            assert len(sim.inverter.write_log) == writes
            assert src is not None
            await async_wait_for(lambda: sink.ctx.health.counters.get("commands_ok", 0) >= 2, what="ok count")
        finally:
            await sup.stop()
            await sim.stop()

    asyncio.run(main())
