"""Cluster endpoints against the real single-node servers: per-worker MQTT identity and status, commands
answered by the owning worker only, and the InfluxDB sink writing through a URL path prefix."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from pydantic import ValidationError

from servers import async_wait_for
from solarbridge.config import build
from solarbridge.model import Reading
from solarbridge.plugin import Context
from solarbridge.runtime import Supervisor
from solarbridge.sinks.influx.sink import InfluxConfig, InfluxSink
from support.fleet import Retained, read_retained

pytestmark = pytest.mark.servers

T0 = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)


# ----------------------------------------------------------------------------- InfluxDB URL path prefix


def influx_cfg(url: str, **kw: object) -> InfluxConfig:
    base = {"type": "influxdb2", "name": "influx", "host": url, "bucket": "solar", "flush_interval": 0.05,
            "backoff_initial": 0.1, "backoff_cap": 0.3}
    base.update(kw)
    return InfluxConfig(**base)


async def _write(sink: InfluxSink, device: str, n: int = 3) -> None:
    await sink.start()
    await sink.write([Reading(device, "inverter", T0 + timedelta(seconds=i), {"pv_power_w": 100 + i})
                      for i in range(n)])


@pytest.mark.parametrize("version", [2, 1])
def test_influx_sink_writes_through_a_path_prefix(victoria, tmp_path, version):
    # single-node VictoriaMetrics serves InfluxDB writes under /influx as well as at the root
    # (checked against the server: /influx/api/v2/write and /influx/write answer 204)
    extra = {"database": "solar"} if version == 1 else {}
    sink = InfluxSink(influx_cfg(f"{victoria.url}/influx/", version=version, **extra),
                      Context.standalone("influx", "sink", "influxdb2", tmp_path))
    assert sink.url == f"{victoria.url}/influx/" + ("api/v2/write" if version == 2 else "write")

    async def main() -> None:
        try:
            await _write(sink, f"prefixed-v{version}")
            await async_wait_for(lambda: sink.pending() == 0, 10,
                                 lambda: f"the sink to deliver everything (last error: {sink.ctx.health.last_error})")
        finally:
            await sink.stop()

    asyncio.run(main())
    series = victoria.wait_series(f'inverter_pv_power_w{{device_id="prefixed-v{version}"}}',
                                  lambda s: sum(len(x["values"]) for x in s) == 3)
    assert sorted(series[0]["values"]) == [100, 101, 102]
    assert series[0]["timestamps"][0] == int(T0.timestamp() * 1000)


def test_a_prefix_the_server_does_not_serve_keeps_the_data(victoria, tmp_path):
    # VictoriaMetrics cluster's vminsert path; single-node answers 400 "unsupported path": that is a
    # misconfigured endpoint, not bad data, so the points must stay spooled (not be dropped as invalid)
    sink = InfluxSink(influx_cfg(f"{victoria.url}/insert/0/influx"),
                      Context.standalone("influx", "sink", "influxdb2", tmp_path))

    async def main() -> None:
        try:
            await _write(sink, "wrong-prefix")
            await async_wait_for(lambda: "unsupported path" in sink.ctx.health.last_error, 10,
                                 lambda: f"an 'unsupported path' error (last: {sink.ctx.health.last_error!r})")
            assert "data is kept in the spool" in sink.ctx.health.last_error
            assert sink.pending() == 3 and sink.ctx.health.counters.get("rejected_points", 0) == 0
        finally:
            await sink.stop()

    asyncio.run(main())
    # the same spool, pointed at the prefix the server does serve, delivers what was kept
    good = InfluxSink(influx_cfg(f"{victoria.url}/influx"), Context.standalone("influx", "sink", "influxdb2",
                                                                                tmp_path))

    async def resend() -> None:
        await good.start()
        try:
            await async_wait_for(lambda: good.pending() == 0, 10,
                                 lambda: f"the spool to drain (last error: {good.ctx.health.last_error})")
        finally:
            await good.stop()

    asyncio.run(resend())
    victoria.wait_series('inverter_pv_power_w{device_id="wrong-prefix"}',
                         lambda s: sum(len(x["values"]) for x in s) == 3)


@pytest.mark.parametrize(("host", "needle"), [
    ("http://vm:8428/api/v2/write", "leave out /api/v2/write or /write"),
    ("http://vm:8480/insert/0/influx/write", "leave out /api/v2/write or /write"),
    ("http://vm:8428/influx?db=x", "no query"),
])
def test_host_must_be_a_base_url(host, needle):
    with pytest.raises(ValidationError) as e:
        influx_cfg(host)
    assert needle in str(e.value)


# ----------------------------------------------------------------------------- MQTT: one identity per worker


def _worker_config(tmp_path: Path, k: int, n: int, broker: str, inventory: Path, client_id: str = ""):
    raw = {"daemon": {"state_dir": str(tmp_path / f"w{k}"), "history": False, "shard": f"{k}/{n}",
                      "shutdown_timeout": 3},
           "inventory": {"file": str(inventory)},
           "sinks": [{"type": "mqtt", "name": "mqtt", "url": broker, "heartbeat": 0, "reconnect_min": 0.2,
                      **({"client_id": client_id} if client_id else {})}]}
    return build(raw)


def test_workers_have_their_own_client_id_status_topic_and_devices(mosquitto, tmp_path, monkeypatch):
    monkeypatch.delenv("SOLARBRIDGE_SHARD", raising=False)
    inv = tmp_path / "fleet.csv"
    inv.write_text("family,serial,options\n" + "".join(f"synthetic,home-{i},interval=0.2\n" for i in range(12)))
    cfgs = [_worker_config(tmp_path, k, 2, mosquitto.url, inv, client_id="site-gw") for k in range(2)]
    owner = {s.device_id: k for k, c in enumerate(cfgs) for s in c.sources}
    assert set(owner) == {f"home-{i}" for i in range(12)} and set(owner.values()) == {0, 1}
    watcher = Retained(mosquitto.port)

    async def main() -> None:
        sups = [Supervisor(c) for c in cfgs]
        for s in sups:
            s.build()
            await s.start()
        try:
            def all_reported() -> bool:
                seen = watcher.seen()
                return all(f"solarbridge/{d}/state" in seen for d in owner) and "solarbridge/status/1" in seen

            await async_wait_for(all_reported, 15, lambda: f"every device's state and worker 1's status (seen: "
                                 f"{sorted(watcher.seen())})", interval=0.05)
            # a command for a device of worker 1 is answered by worker 1 alone (synthetic devices have no
            # controls: the answer is an error message), worker 0 leaves it alone
            dev1 = next(d for d, k in owner.items() if k == 1)
            watcher.publish(f"solarbridge/{dev1}/charge_target_pct/set", "50")
            await async_wait_for(lambda: watcher.live_on(f"{dev1}/error"), 10, f"an error reply on {dev1}/error",
                                 interval=0.05)
            await asyncio.sleep(0.3)  # time for a second (wrong) answer to show up
            assert len(watcher.live_on(f"{dev1}/error")) == 1
            assert sups[0].health["mqtt"].counters.get("commands_for_other_workers") == 1
            assert sups[1].health["mqtt"].counters.get("commands_rejected") == 1
            await sups[0].stop()  # a clean stop: only worker 0's status goes offline
        finally:
            for s in sups:
                await s.stop()

    try:
        asyncio.run(main())
        state = read_retained(mosquitto.port)
    finally:
        watcher.close()
    assert state["solarbridge/status/0"] == b"offline" and state["solarbridge/status/1"] == b"offline"
    assert "solarbridge/status" not in state  # no fleet-wide status a single worker could flip
    for dev, k in owner.items():
        cfg_topics = [t for t in state if t.startswith("homeassistant/") and f"/solarbridge_{dev}/" in t]
        assert cfg_topics, dev
        for t in cfg_topics:
            avail = json.loads(state[t])["availability"]
            assert avail[0] == {"topic": f"solarbridge/status/{k}"}, (t, avail)
            assert avail[1] == {"topic": f"solarbridge/{dev}/availability"}
    log = (mosquitto.dir / "mosquitto.log").read_text()
    for k in (0, 1):
        assert f" as site-gw-s{k} (" in log, k  # the configured id plus the worker's index: no takeover loop


def test_status_while_one_worker_runs_and_the_other_is_gone(mosquitto, tmp_path, monkeypatch):
    monkeypatch.delenv("SOLARBRIDGE_SHARD", raising=False)
    inv = tmp_path / "fleet.csv"
    inv.write_text("family,serial,options\n" + "".join(f"synthetic,home-{i},interval=0.2\n" for i in range(6)))
    cfgs = [_worker_config(tmp_path, k, 2, mosquitto.url, inv) for k in range(2)]

    async def main() -> dict[str, bytes]:
        sups = [Supervisor(c) for c in cfgs]
        for s in sups:
            s.build()
            await s.start()
        try:
            await async_wait_for(lambda: all(s.sinks["mqtt"].connected for s in sups), 10,
                                 "both workers to connect to the broker")
            await sups[1].stop()
            await asyncio.sleep(0.5)
            return await asyncio.to_thread(read_retained, mosquitto.port, ("solarbridge/status/#",))
        finally:
            for s in sups:
                await s.stop()

    state = asyncio.run(main())
    assert state == {"solarbridge/status/0": b"online", "solarbridge/status/1": b"offline"}


def test_after_resharding_moved_devices_stay_available(mosquitto, tmp_path, monkeypatch):
    # a worker restarts with the devices of its last run remembered (marked offline until they report);
    # those that moved to another worker must not be held "offline" over their new owner's "online"
    monkeypatch.delenv("SOLARBRIDGE_SHARD", raising=False)
    inv = tmp_path / "fleet.csv"
    inv.write_text("family,serial,options\n" + "".join(f"synthetic,home-{i},interval=0.2\n" for i in range(12)))

    def configs(n: int) -> list:
        out = []
        for k in range(n):
            c = _worker_config(tmp_path, k, n, mosquitto.url, inv)
            c.sinks[0].heartbeat = 0.3
            out.append(c)
        return out

    async def run(cfgs: list, seconds: float) -> None:
        sups = [Supervisor(c) for c in cfgs]
        for s in sups:
            s.build()
            await s.start()
        try:
            await asyncio.sleep(seconds)
        finally:
            for s in sups:
                await s.stop()

    before = {s.device_id: k for k, c in enumerate(configs(2)) for s in c.sources}
    after = {s.device_id: k for k, c in enumerate(configs(3)) for s in c.sources}
    moved = [d for d in before if before[d] != after[d]]
    assert moved and all(after[d] == 2 for d in moved)
    asyncio.run(run(configs(2), 1.5))
    watcher = Retained(mosquitto.port, ("solarbridge/+/availability",), qos=0)
    try:
        asyncio.run(run(configs(3), 3.0))  # ten heartbeats of every worker
        avail = [(t.split("/")[1], p) for t, p in watcher.every]
    finally:
        watcher.close()
    state = read_retained(mosquitto.port, ("solarbridge/+/availability",))
    # the sinks' clean stop leaves availability as it was; every device ended "online"
    assert {t.split("/")[1]: v for t, v in state.items()} == {d: b"online" for d in before}
    # and no moved device was re-asserted "offline" by its old worker's heartbeat
    for d in moved:
        offline = [i for i, (dev, p) in enumerate(avail) if dev == d and p == b"offline"]
        online = [i for i, (dev, p) in enumerate(avail) if dev == d and p == b"online"]
        assert len(offline) <= 1 and online, (d, avail)
