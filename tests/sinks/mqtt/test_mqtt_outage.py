"""Issue 17 item 2: after a long broker outage everything is back within 5 s, and clients do not reconnect
in lockstep. A real mosquitto is stopped for 60 s and started again on the same port (without persistence,
so whatever the broker holds afterwards was published again by the sinks)."""

from __future__ import annotations

import asyncio
import json
import random
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from servers import async_wait_for
from solarbridge.model import DeviceInfo, Reading
from solarbridge.plugin import Context
from solarbridge.sinks.mqtt.sink import MqttConfig, MqttSink
from solarbridge.util.backoff import Backoff

OUTAGE_S = 60
FLEET = 4


def test_backoff_stays_under_the_cap_and_spreads_clients() -> None:
    """Jitter only shortens the delay: never above the cap, and clients at the cap do not all wait the same."""
    cfg = MqttConfig(type="mqtt")
    fleet = [Backoff(initial=cfg.reconnect_min, cap=cfg.reconnect_max, jitter=0.5, _rng=random.Random(i))
             for i in range(50)]
    for _ in range(40):  # far past the point where the exponential reaches the cap
        delays = [b.next_delay() for b in fleet]
    assert max(delays) <= cfg.reconnect_max <= 4.0
    assert min(delays) >= cfg.reconnect_max * 0.5
    assert max(delays) - min(delays) > cfg.reconnect_max * 0.25


@pytest.mark.servers
def test_everything_back_within_5s_after_a_60s_outage(mosquitto, tmp_path: Path, collector_factory) -> None:
    async def main() -> tuple[float, dict[int, float], list]:
        sinks = []
        for k in range(FLEET):
            cfg = MqttConfig(type="mqtt", name=f"w{k}", url=mosquitto.url, base_topic=f"fleet{k}", heartbeat=0)
            sink = MqttSink(cfg, Context.standalone(f"w{k}", "sink", "mqtt", tmp_path))
            await sink.start()
            info = DeviceInfo(f"inv{k}", "inverter", manufacturer="Test", model="T1", serial=f"SN{k}")
            await sink.write([Reading(f"inv{k}", "inverter", datetime.now(UTC), {"pv_power_w": 1000.0 + k},
                                      source="test", info=info)])
            sinks.append(sink)
        try:
            for s in sinks:
                await asyncio.wait_for(s.flush(), 20)
            first = [s.connections for s in sinks]
            await asyncio.to_thread(mosquitto.stop)
            await asyncio.sleep(OUTAGE_S)
            await asyncio.to_thread(mosquitto.start)  # same port; returns once it accepts connections
            t_back = time.monotonic()
            reconnected: dict[int, float] = {}

            def all_reconnected() -> bool:  # notes the moment each sink is back
                for k, s in enumerate(sinks):
                    if k not in reconnected and s.connections > first[k]:
                        reconnected[k] = time.monotonic()
                return len(reconnected) == FLEET

            await async_wait_for(all_reconnected, 30, lambda: f"all {FLEET} sinks to reconnect (back: "
                                 f"{sorted(reconnected)})", interval=0.005)
            col = await asyncio.to_thread(collector_factory, mosquitto.port)
            want = {f"fleet{k}/{t}" for k in range(FLEET) for t in ("status", f"inv{k}/availability",
                                                                       f"inv{k}/state")}

            def everything_back() -> bool:
                seen = {m.topic for m in col.snapshot()}
                disc = [t for t in seen if t.startswith("homeassistant/sensor/") and t.endswith("/config")]
                return want <= seen and len(disc) >= FLEET

            await async_wait_for(everything_back, 15, col.seen(f"status, availability, state and {FLEET} "
                                                              "discovery configs"))
            return t_back, reconnected, col.snapshot()
        finally:
            for s in sinks:
                await s.stop()

    t_back, reconnected, msgs = asyncio.run(main())
    assert len(reconnected) == FLEET, f"only {len(reconnected)} of {FLEET} reconnected"
    latest = {}
    for m in msgs:
        latest.setdefault(m.topic, m)
    for k in range(FLEET):
        for leaf, payload in (("status", b"online"), (f"inv{k}/availability", b"online")):
            assert latest[f"fleet{k}/{leaf}"].payload == payload
        assert json.loads(latest[f"fleet{k}/inv{k}/state"].payload)["pv_power_w"] == 1000.0 + k
    disc = [m for m in msgs if m.topic.startswith("homeassistant/sensor/") and m.topic.endswith("/config")]
    assert len({m.topic for m in disc}) >= FLEET
    # everything (availability, discovery, state) on the broker within 5 s of its return
    last = max(max(m.at for m in msgs), max(reconnected.values()))
    print(f"everything back {last - t_back:.2f} s after the broker returned; reconnects spread over "
          f"{max(reconnected.values()) - min(reconnected.values()):.2f} s")
    assert last - t_back < 5.0, f"back after {last - t_back:.2f} s"
    # no lockstep: the clients came back at different moments
    times = sorted(reconnected.values())
    assert times[-1] - times[0] > 0.05, f"reconnects within {times[-1] - times[0]:.3f} s of each other"
