"""Benchmark the MQTT sink: messages/s to a real mosquitto at QoS 0 and QoS 1, counted by a subscriber.

Run: .venv/bin/python bench/bench_mqtt.py [--readings 20000]
Each reading (50 devices, 8 changing metrics each) becomes 1 JSON state message + 8 per-metric messages.
mosquitto is started on a loopback port in a temp dir and stopped at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from solarbridge.model import Reading  # noqa: E402
from solarbridge.plugin import Context  # noqa: E402
from solarbridge.sinks.mqtt.sink import MqttConfig, MqttSink  # noqa: E402

T0 = datetime(2026, 1, 1, tzinfo=UTC)
METRICS = ("pv_power_w", "grid_power_w", "battery_power_w", "battery_soc_pct", "load_power_w",
           "pv_energy_today_wh", "grid_voltage_v", "inverter_temperature_c")


class ExternalCounter:
    """``mosquitto_sub -C N`` in its own process: exits after N messages, so the count costs us no CPU."""

    def __init__(self, port: int, qos: int, n: int) -> None:
        import subprocess

        self.proc = subprocess.Popen(["mosquitto_sub", "-p", str(port), "-h", "127.0.0.1", "-q", str(qos),
                                      "-t", "bench/#", "-C", str(n)], stdout=subprocess.DEVNULL)
        time.sleep(0.3)  # let it subscribe

    def done(self) -> bool:
        return self.proc.poll() is not None

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()


async def run(port: int, qos: int, n_readings: int, devices: int = 50) -> None:
    sink = MqttSink(MqttConfig(type="mqtt", name=f"bench{qos}", url=f"mqtt://127.0.0.1:{port}", base_topic="bench",
                               qos=qos, discovery=False, heartbeat=0, retain_state=False),
                    Context.standalone(f"bench{qos}", "sink", "mqtt", "."))
    expected = n_readings * (1 + len(METRICS))
    sub = ExternalCounter(port, qos, expected)
    await sink.start()
    while not sink.connected:
        await asyncio.sleep(0.01)
    base_pub = sink.published
    readings = [Reading(f"dev{i % devices}", "inverter", T0 + timedelta(seconds=i),
                        {m: float(i * 8 + j) for j, m in enumerate(METRICS)}) for i in range(n_readings)]
    t = time.perf_counter()
    cpu = time.process_time()
    for i in range(0, n_readings, devices):
        await sink.write(readings[i:i + devices])  # one reading per device per batch: nothing coalesced
        await asyncio.sleep(0)
    t_pub = time.perf_counter() - t
    cpu_pub = time.process_time() - cpu
    sent = sink.published - base_pub
    deadline = time.monotonic() + 120
    while not sub.done() and time.monotonic() < deadline:
        await asyncio.sleep(0.005)
    dt = time.perf_counter() - t
    ok = sub.done()
    sub.close()
    await sink.stop()
    print(f"QoS {qos}: published {sent:,} messages in {t_pub:.2f} s = {sent / t_pub:,.0f} msg/s"
          f" ({sent / cpu_pub:,.0f} msg per CPU-second of the daemon);"
          f" separate subscriber {'received all' if ok else 'did NOT receive all'} {expected:,} after {dt:.2f} s"
          f" = {expected / dt:,.0f} msg/s end to end")


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--readings", type=int, default=20_000)
    args = ap.parse_args()
    import servers

    tmp = Path(tempfile.mkdtemp(prefix="bench-mqtt-"))
    try:
        broker = servers.Mosquitto(name="mosquitto", dir=tmp)
        broker.start()
        # the fixture's broker logs every message ("log_type all"); that is the broker's cost, not ours
        conf = tmp / "mosquitto.conf"
        # and lets a slow QoS 1 subscriber fall 1000 messages behind before dropping (max_queued_messages):
        # the bench counts every message, so queue without limit
        conf.write_text(conf.read_text().replace("log_type all", "log_type error")
                        + "max_queued_messages 0\nmax_inflight_messages 0\n")
        broker.stop()
        broker._spawn("mosquitto", ["mosquitto", "-c", str(conf)])
        servers.wait_for(lambda: servers.port_open(broker.port), 10)
        try:
            for qos in (0, 1):
                asyncio.run(run(broker.port, qos, args.readings))
        finally:
            broker.stop()
        print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
