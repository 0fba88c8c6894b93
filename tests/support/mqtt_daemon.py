"""A real daemon process for the last-will test: Supervisor + a tiny source + the MQTT sink.

Usage: python mqtt_daemon.py PORT STATE_DIR   (runs until killed)
"""

from __future__ import annotations

import asyncio
import sys
from datetime import UTC, datetime
from pathlib import Path

from solarbridge.config import Config, DaemonConfig
from solarbridge.model import Reading
from solarbridge.plugin import Context, Health, PluginConfig, Source
from solarbridge.runtime import Supervisor
from solarbridge.sinks.mqtt.sink import MqttConfig, MqttSink


class Ticker(Source):
    async def run(self, emit):  # type: ignore[no-untyped-def]
        n = 0
        while True:
            emit(Reading("daemon-dev", "inverter", datetime.now(UTC), {"pv_power_w": float(n)}, source="tick"))
            n += 1
            await asyncio.sleep(0.1)


async def main(port: int, state_dir: Path) -> None:
    import logging

    sup = Supervisor(Config(daemon=DaemonConfig(state_dir=state_dir, history=False)))
    sup.state_dir.mkdir(parents=True, exist_ok=True)

    def ctx(name: str, kind: str, type_: str) -> Context:
        return Context(name, state_dir, Health(name, kind, type_), logging.getLogger(name))

    sup.add_source(Ticker(PluginConfig(type="tick", name="tick"), ctx("tick", "source", "tick")))
    sup.add_sink(MqttSink(MqttConfig(type="mqtt", name="mqtt", url=f"mqtt://127.0.0.1:{port}", keepalive=5),
                          ctx("mqtt", "sink", "mqtt")))
    await sup.run_until_stopped(asyncio.Event())


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]), Path(sys.argv[2])))
