"""Home Assistant gets site energy it can use directly: site:<name> energy sensors are discovered with
device_class energy and state_class total_increasing, and what reaches the real broker never decreases,
even when the device's own counters step down, read 0 and spike on the way."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta

import pytest

from servers import async_wait_for
from solarbridge.config import build
from solarbridge.model import DeviceInfo, Reading
from solarbridge.plugin import Context, PluginConfig, Source
from solarbridge.runtime import Supervisor
from solarbridge.stages.sites import ENERGY_METRICS

pytestmark = pytest.mark.servers

T0 = datetime(2026, 6, 1, 11, 0, tzinfo=UTC)


class Replay(Source):
    """An inverter whose lifetime PV counter misbehaves the reported ways, 10 s apart in simulated time."""

    def __init__(self, tmp) -> None:
        super().__init__(PluginConfig(type="replay", name="replay"), Context.standalone("replay", "source", "replay", tmp))
        self.info = DeviceInfo("inv1", "inverter", "Acme", "X1", "SN1", source="replay")
        self.sent = 0

    async def run(self, emit) -> None:
        pv_total, imp, exp = 8_000_000.0, 100_000.0, 50_000.0
        for i in range(24):
            pv, load = 3000.0, 1000.0
            pv_total += pv * 10 / 3600
            exp += (pv - load) * 10 / 3600
            reported = pv_total
            if i in (6, 7):
                reported = pv_total - 1_200_000  # a lifetime step down
            elif i in (10, 11):
                reported = 0  # a restarting dongle
            elif i == 15:
                reported = pv_total + 1_000_000  # +1 MWh within 10 s
            emit(Reading("inv1", "inverter", T0 + timedelta(seconds=10 * i),
                         {"pv_power_w": pv, "grid_power_w": load - pv, "load_power_w": load,
                          "pv_energy_total_wh": round(reported, 1), "grid_import_energy_total_wh": round(imp, 1),
                          "grid_export_energy_total_wh": round(exp, 1)}, source="replay", info=self.info))
            self.sent += 1
            await asyncio.sleep(0.05)
        await asyncio.Event().wait()


def test_site_energy_sensors_for_home_assistant(mosquitto, tmp_path, collector_factory):
    cfg = build({"daemon": {"state_dir": str(tmp_path), "history": False, "shutdown_timeout": 3},
                 "sites": [{"name": "home", "grid": "inv1", "pv": "inv1", "load": "inv1"}],
                 "sinks": [{"type": "mqtt", "name": "mqtt", "url": f"mqtt://127.0.0.1:{mosquitto.port}"}]})
    col = collector_factory(mosquitto.port)

    async def go():
        sup = Supervisor(cfg)
        sup.build()
        src = Replay(tmp_path)
        sup.add_source(src)
        await sup.start()
        try:
            def site_states() -> int:
                return sum(1 for m in col.snapshot() if m.topic.startswith("solarbridge/site:home/")
                           and m.topic.endswith("/state"))

            await async_wait_for(lambda: src.sent == 24 and site_states() >= 20, 20,
                                 col.seen(lambda: f"24 readings replayed (sent: {src.sent}) and 20 site:home states "
                                                  f"(got {site_states()})"), interval=0.05)
            await asyncio.sleep(0.5)  # let the last states land before stopping
        finally:
            await sup.stop()

    asyncio.run(go())
    msgs = col.snapshot()
    configs = {m.topic: m.json() for m in msgs if m.topic.startswith("homeassistant/") and m.topic.endswith("/config")
               and m.payload}
    site_cfgs = {c["unique_id"]: c for c in configs.values() if c["state_topic"].startswith("solarbridge/site:home/")}
    for metric in ENERGY_METRICS.values():
        (c,) = [c for uid, c in site_cfgs.items() if uid.endswith("_" + metric)]
        assert c["device_class"] == "energy" and c["state_class"] == "total_increasing", c
        assert c["unit_of_measurement"] == "Wh"
        assert c["device"]["model"] == "Site"
    states = [m.json() for m in msgs if m.topic.startswith("solarbridge/site:home/") and m.topic.endswith("/state")]
    assert len(states) >= 20
    for metric in ENERGY_METRICS.values():
        values = [s[metric] for s in states if metric in s]
        assert len(values) >= 20, metric
        steps = [b - a for a, b in zip(values, values[1:], strict=False)]
        assert min(steps) >= 0, (metric, values)
        # 3 kW for 10 s is 8.3 Wh: no step may carry a spike (the held readings are made up at most 3 at once)
        assert max(steps) <= 4 * 3000 * 10 / 3600, (metric, values)
    pv = [s["pv_energy_total_wh"] for s in states]
    assert pv[-1] == pytest.approx(23 * 3000 * 10 / 3600, abs=1)  # every interval's energy arrived
    # the device's own counter is cleaned on its way too: held at its last good value, never 0 or -1.2 MWh
    own = [json.loads(m.payload)["pv_energy_total_wh"] for m in msgs if m.topic == "solarbridge/inv1/state"]
    assert len(own) >= 20 and min(b - a for a, b in zip(own, own[1:], strict=False)) >= 0
