"""A daemon with three simulated GivEnergy inverters of different families: each is its own device on MQTT
(Home Assistant discovery, real mosquitto), in the REST API, the GivTCP routes and the history store. Controls
sent over MQTT are read back, and every state message after them is one Home Assistant accepts."""

from __future__ import annotations

import asyncio
import json
import re
from typing import Any

import httpx
import pytest

from servers import async_wait_for
from solarbridge.api.app import create_app
from solarbridge.config import ApiConfig, build
from solarbridge.runtime import Supervisor
from solarbridge.sources.givenergy.simulator import DongleSimulator, SimInverter
from support.mqtt_influx import Collector, Msg

pytestmark = pytest.mark.servers

PLANT = {"SA0000G001": "hybrid", "SA0000G002": "ac", "SA0000G003": "3ph"}
_TEMPLATE = re.compile(r"^\{\{ (?:'ON' if )?value_json\['([^']+)'\](?: else 'OFF')? \}\}$")


def ha_accepts(config: dict[str, Any], component: str, state: dict[str, Any]) -> str | None:
    """What Home Assistant's MQTT platform does with one state message for one entity: None if it accepts the
    value, else the complaint it would log. Mirrors HA's rules: a number entity parses int() or float() and
    checks min/max; a sensor with a unit, device or state class must be numeric; a select's value must be
    one of its options; a text/time entity must match its pattern; switches and binary sensors get ON/OFF."""
    m = _TEMPLATE.match(config["value_template"])
    assert m, config["value_template"]
    key = m.group(1)
    if key not in state:
        return None  # not in this message (HA would keep the last state)
    value = state[key]
    if "'ON' if" in config["value_template"]:
        return None if isinstance(value, bool | int) else f"{key}: {value!r} is not a truth value"
    text = str(value)  # what the template renders
    if component == "number":
        try:
            num = int(text) if text.isnumeric() else float(text)
        except ValueError:
            return f"Payload '{text}' is not a Number"
        if not config["min"] <= num <= config["max"]:
            return f"Invalid value for {key}: {num} (range {config['min']} - {config['max']})"
        return None
    if component == "sensor" and {"unit_of_measurement", "state_class", "device_class"} & set(config):
        try:
            float(text)
        except ValueError:
            return f"ValueError: sensor {key} has a unit or class but the value '{text}' is not numeric"
        return None
    if component == "select":
        return None if text in config["options"] else f"Invalid option for {key}: '{text}'"
    if component == "text" and "pattern" in config:
        return None if re.fullmatch(config["pattern"], text) else f"{key}: '{text}' does not match the pattern"
    return None


def test_three_inverters_each_its_own_device_and_ha_accepts_every_state(mosquitto, tmp_path) -> None:
    async def main() -> None:
        sims = [DongleSimulator(SimInverter(model, 1, serial=serial), "127.0.0.1", 0)
                for serial, model in PLANT.items()]
        for s in sims:
            await s.start()
        cfg = build({
            "daemon": {"state_dir": str(tmp_path), "history": True},
            "sources": [{"type": "givenergy", "name": f"ge_{model}", "host": "127.0.0.1", "port": s.port,
                         "poll_interval": 0.3, "full_refresh_interval": 2, "request_gap": 0}
                        for s, model in zip(sims, PLANT.values(), strict=True)],
            "sinks": [{"type": "mqtt", "name": "mqtt", "url": mosquitto.url, "layout": "givtcp",
                       "reconnect_max": 1}],
        })
        col = Collector(mosquitto.port)
        sup = Supervisor(cfg)
        sup.build()
        await sup.start()
        try:
            # --- MQTT: per serial state, GivTCP tree and Home Assistant devices
            for serial in PLANT:
                await asyncio.to_thread(col.wait_topic, f"solarbridge/{serial}/state", 30,
                                        lambda m: "battery_mode" in m.json())
                await asyncio.to_thread(col.wait, lambda ms, s=serial: any(
                    m.topic.startswith(f"GivEnergy/{s}/") for m in ms), 15, f"GivTCP tree of {serial}")
            await asyncio.sleep(0.5)  # let discovery settle
            configs = {m.topic: m.json() for m in col.snapshot()
                       if m.topic.startswith("homeassistant/") and m.topic.endswith("/config") and m.payload}
            devices: dict[str, set[str]] = {}
            for c in configs.values():
                if c["state_topic"].split("/")[1].startswith("site:"):
                    continue  # the derived site devices (site:<serial>, docs/sites-energy.md)
                ids = tuple(c["device"]["identifiers"])
                devices.setdefault(ids[0], set()).add(c["device"].get("model", ""))
                assert c["state_topic"].split("/")[1] in PLANT
            assert len(devices) == 3, devices
            models = {next(iter(v)) for v in devices.values()}
            assert len(models) == 3, models  # three families, three model names

            # --- REST: three devices, and GivTCP's routes by number and by serial
            app = create_app(sup, ApiConfig(enabled=True))
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
                listed = {d["device_id"] for d in (await c.get("/api/devices")).json()}
                assert set(PLANT) <= listed
                inv = (await c.get("/getInverters")).json()
                assert [i["serial"] for i in inv] == list(PLANT)
                for n, serial in enumerate(PLANT, 1):
                    for prefix in (str(n), serial):
                        r = await c.get(f"/{prefix}/getModesandTimes")
                        assert r.status_code == 200, (prefix, r.text)
                        assert serial in json.dumps(r.json())
                r = await c.post("/2/setBatteryReserve", json={"dischargeToPercent": "15"})
                assert r.status_code == 200 and sims[1].inverter.holding[110] == 15
                assert sims[0].inverter.write_log == [] and sims[2].inverter.write_log == []
                assert (await c.get("/9/runAll")).status_code == 404

                # --- history: every inverter's own series
                done: set[str] = set()
                last: dict[str, str] = {}

                async def every_history() -> bool:
                    for serial in set(PLANT) - done:
                        r = await c.get("/api/history", params={"device": serial, "metric": "battery_reserve_pct",
                                                                 "since": "10m"})
                        last[serial] = r.text
                        if r.status_code == 200 and sum(r.json().get("count") or [0]) > 0:
                            done.add(serial)
                    return done == set(PLANT)

                await async_wait_for(every_history, 20, lambda: "a history point of every inverter (missing: "
                                     f"{[(s, last.get(s)) for s in PLANT if s not in done]})", interval=0.3)

            # --- controls over MQTT; every state message afterwards must be one HA accepts
            hybrid, ac = "SA0000G001", "SA0000G002"
            col.clear()
            col.publish(f"solarbridge/{hybrid}/charge_target_pct/set", "55")
            col.publish(f"solarbridge/{ac}/force_charge_min/set", "30")
            col.publish(f"solarbridge/{hybrid}/battery_mode/set", "Timed Demand")
            col.publish(f"solarbridge/{ac}/charge_slot_7_start/set", "02:30")
            col.publish(f"GivEnergy/control/{hybrid}/setChargeSlot1", '{"start": "01:00", "finish": "04:00"}')
            await asyncio.to_thread(col.wait_topic, f"solarbridge/{hybrid}/state", 20,
                                    lambda m: m.json().get("charge_target_pct") == 55
                                    and m.json().get("battery_mode") == "Timed Demand")
            await asyncio.to_thread(col.wait_topic, f"solarbridge/{ac}/state", 20,
                                    lambda m: m.json().get("force_charge_remaining_min") == 30
                                    and m.json().get("charge_slot_7_start") == "02:30")
            assert sims[0].inverter.holding[116] == 55 and sims[1].inverter.holding[258] == 230
            await asyncio.sleep(1.0)  # and a few polls more
            msgs: list[Msg] = col.snapshot()
            states = [(m.topic.split("/")[1], m.json()) for m in msgs
                      if m.topic.startswith("solarbridge/") and m.topic.endswith("/state")]
            assert len(states) >= 6
            complaints = []
            checked = 0
            for cfg_topic, c in configs.items():
                component = cfg_topic.split("/")[1]
                if "value_template" not in c:
                    continue
                device = c["state_topic"].split("/")[1]
                for dev, state in states:
                    if dev == device:
                        checked += 1
                        problem = ha_accepts(c, component, state)
                        if problem:
                            complaints.append(f"{cfg_topic}: {problem}")
            assert complaints == [] and checked > 500, complaints[:5]
            # the per-metric topics carry the value itself, never register writes
            for m in msgs:
                parts = m.topic.split("/")
                if len(parts) == 3 and parts[0] == "solarbridge" and parts[2] in (
                        "charge_target_pct", "force_charge_remaining_min", "battery_reserve_pct"):
                    assert re.fullmatch(r"-?\d+(\.\d+)?", m.payload.decode()), (m.topic, m.payload)
            # the reply's details (the writes) never reach a state topic
            assert not any(b"charge_target_soc" in m.payload or b'"116"' in m.payload for m in msgs
                           if m.topic.startswith("solarbridge/") and not m.topic.endswith("/error"))
        finally:
            await sup.stop()
            col.close()
            for s in sims:
                await s.stop()

    asyncio.run(asyncio.wait_for(main(), 120))
