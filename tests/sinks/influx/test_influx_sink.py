"""The InfluxDB sink against a real VictoriaMetrics (/api/v2/write and /write): values, outage, restart, errors."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import urllib.error
import urllib.parse
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

import servers
from servers import async_wait_for
from solarbridge.model import Reading
from solarbridge.plugin import Context, PluginConfig, Source
from solarbridge.sinks.influx.sink import InfluxConfig, InfluxSink
from support.mqtt_influx import context, supervisor

pytestmark = pytest.mark.servers

T0 = datetime(2026, 3, 1, 12, 0, 0, 123000, tzinfo=UTC)


def cfg(url: str, **kw: Any) -> InfluxConfig:
    base = {"type": "influxdb2", "name": "influx", "host": url, "org": "home", "bucket": "solar", "token": "t0ken",
            "flush_interval": 0.05, "backoff_initial": 0.1, "backoff_cap": 0.3}
    base.update(kw)
    return InfluxConfig(**base)


async def drain(sink: InfluxSink, timeout: float = 10.0) -> None:
    await async_wait_for(lambda: sink.pending() == 0, timeout, what="spool drained")


def series_by_name(series: list[dict]) -> dict[str, dict]:
    return {s["metric"]["__name__"]: s for s in series}


def test_points_exact_values_and_timestamps(victoria, tmp_path):
    async def main() -> None:
        sink = InfluxSink(cfg(victoria.url), Context.standalone("influx", "sink", "influxdb2", tmp_path))
        await sink.start()
        try:
            readings = [Reading("inv 1", "inverter", T0 + timedelta(seconds=i),
                                {"pv_power_w": 1234.5 + i, "battery_soc_pct": 50 + i, "grid_available": i % 2 == 0,
                                 "nan_w": float("nan")}) for i in range(5)]
            readings.append(Reading("inv 1", "inverter", T0, {}, online=False))  # no metrics: nothing written
            await sink.write(readings)
            await drain(sink)
        finally:
            await sink.stop()
        series = victoria.wait_series('{device_id="inv 1"}', lambda s: len(s) == 3)
        by = series_by_name(series)
        assert set(by) == {"inverter_pv_power_w", "inverter_battery_soc_pct", "inverter_grid_available"}
        ts = [int((T0 + timedelta(seconds=i)).timestamp() * 1000) for i in range(5)]
        assert by["inverter_pv_power_w"]["values"] == [1234.5 + i for i in range(5)]
        assert by["inverter_pv_power_w"]["timestamps"] == ts
        assert by["inverter_battery_soc_pct"]["values"] == [50, 51, 52, 53, 54]
        assert by["inverter_grid_available"]["values"] == [1, 0, 1, 0, 1]
        assert by["inverter_pv_power_w"]["metric"] == {"__name__": "inverter_pv_power_w", "device_id": "inv 1"}
        assert sink.ctx.health.counters["sent_points"] == 5
        assert sink.encoder.skipped_values == 5  # the NaNs

    asyncio.run(main())


def test_measurement_precision_seconds_and_static_tags(victoria, tmp_path):
    async def main() -> None:
        sink = InfluxSink(cfg(victoria.url, measurement="solar", precision="s", tags={"site": "home"}, gzip=False),
                          Context.standalone("influx", "sink", "influxdb2", tmp_path))
        await sink.start()
        try:
            await sink.write([Reading("d", "battery", T0, {"battery_power_w": -250.0})])
            await drain(sink)
        finally:
            await sink.stop()
        (s,) = victoria.wait_series('{__name__="solar_battery_power_w"}')
        assert s["metric"] == {"__name__": "solar_battery_power_w", "device_id": "d", "site": "home"}
        assert s["values"] == [-250] and s["timestamps"] == [int(T0.timestamp()) * 1000]

    asyncio.run(main())


def test_sunsniff_schema(victoria, tmp_path):
    extra = {"serial": "1235687108", "fields": [
        {"id": "battery_soc", "name": "SOC", "group": "Battery", "unit": "%", "value": 97.0},
        {"id": "grid_connected", "name": "Connected", "group": "Grid", "unit": "", "value": 1},
        {"id": "pv_power_1", "name": "PV1 Power", "group": "PV", "unit": "W", "value": 212.2}]}

    async def main() -> None:
        sink = InfluxSink(cfg(victoria.url, schema="sunsniff"), Context.standalone("i", "sink", "influxdb2", tmp_path))
        await sink.start()
        try:
            await sink.write([Reading("1235687108", "inverter", T0, {"battery_soc_pct": 97.0},
                                      extra={"sunsniff": extra})])
            await drain(sink)
        finally:
            await sink.stop()
        series = victoria.wait_series('{__name__="inverter_value"}', lambda s: len(s) == 3)
        labels = sorted((s["metric"]["group"], s["metric"]["name"], s["metric"].get("unit"), s["values"][0])
                        for s in series)
        assert labels == [("Battery", "SOC", "%", 97), ("Grid", "Connected", None, 1), ("PV", "PV1 Power", "W", 212.2)]
        assert all(s["metric"]["serial"] == "1235687108" for s in series)
        assert all(s["timestamps"] == [int(T0.timestamp() * 1000)] for s in series)

    asyncio.run(main())


# --------------------------------------------------------------------------- outage and restart


class Counter(Source):
    """Emits value n at timestamp T0 + n seconds, so order and completeness can be checked."""

    def __init__(self, config: Any, ctx: Context, start: int, stop: int) -> None:
        super().__init__(config, ctx)
        self.n = start
        self.stop = stop

    async def run(self, emit: Any) -> None:
        while self.n < self.stop:
            emit(Reading("counter", "meter", T0 + timedelta(seconds=self.n), {"count_wh": self.n}))
            self.n += 1
            if self.n % 50 == 0:
                await asyncio.sleep(0.01)


async def run_daemon(tmp_path: Path, url: str, start: int, stop: int, *, wait_spooled: bool = True) -> InfluxSink:
    sup = supervisor(tmp_path)
    src = Counter(PluginConfig(type="counter", name="counter"), context(sup, "counter", "source", "c"), start, stop)
    sup.add_source(src)
    sink = InfluxSink(cfg(url, batch_points=70), context(sup, "influx", "sink", "influxdb2"))
    sup.add_sink(sink)
    await sup.start()
    await async_wait_for(lambda: src.n >= stop, what="source finished")
    await sup.drain(10)
    if wait_spooled:
        await async_wait_for(lambda: sink.spool is not None and sink.spool.points + sink.spool.sent_points
                         >= stop - start, what="everything spooled or sent")
    await sup.stop()
    return sink


def test_outage_and_restart_every_point_exactly_once_in_order(victoria, tmp_path, caplog):
    caplog.set_level(logging.WARNING)
    url = victoria.url

    async def main() -> None:
        # 1. server up: first 300 points delivered
        s1 = await run_daemon(tmp_path, url, 0, 300)
        assert s1.ctx.health.counters["sent_points"] == 300
        # 2. server down: the daemon spools the next 700, stops, restarts (still down) and spools 500 more
        victoria.stop()
        s2 = await run_daemon(tmp_path, url, 300, 1000)
        assert s2.ctx.health.gauges["spool_depth_points"] == 700
        assert "cannot reach" in s2.ctx.health.last_error
        s3 = await run_daemon(tmp_path, url, 1000, 1500)
        assert s3.ctx.health.gauges["spool_depth_points"] == 1200
        # 3. server back, daemon restarted: the backlog goes first, then new points
        await asyncio.to_thread(victoria.start)
        s4 = await run_daemon(tmp_path, url, 1500, 1600)
        assert s4.ctx.health.gauges["spool_depth_points"] == 0

    asyncio.run(main())
    (s,) = victoria.wait_series('{__name__="meter_count_wh"}', lambda s: len(s[0]["values"]) >= 1600)
    assert s["values"] == list(range(1600))  # exactly once, nothing missing, nothing twice
    assert s["timestamps"] == [int((T0 + timedelta(seconds=i)).timestamp() * 1000) for i in range(1600)]
    errors = [r.getMessage() for r in caplog.records if "cannot reach" in r.getMessage()]
    assert 1 <= len(errors) <= 4, errors  # once per state change (and per daemon start), not once per retry


# --------------------------------------------------------------------------- authentication errors


class AuthVictoria(servers.Victoria):
    """VictoriaMetrics with HTTP basic auth: a token it does not know gets 401."""

    user = "writer"
    password = "s3cret"

    def _auth(self) -> dict[str, str]:
        return {"Authorization": "Basic " + base64.b64encode(f"{self.user}:{self.password}".encode()).decode()}

    def _spawn(self, key, argv, env=None):  # type: ignore[no-untyped-def]
        return super()._spawn(key, argv + [f"-httpAuth.username={self.user}",
                                           f"-httpAuth.password={self.password}"], env)

    def _healthy(self) -> bool:
        try:
            with urllib.request.urlopen(urllib.request.Request(f"{self.url}/health", headers=self._auth()),
                                        timeout=1) as r:
                return r.status == 200
        except (urllib.error.URLError, OSError):
            return False

    def export(self, match: str = '{__name__=~".+"}') -> list[dict]:
        urllib.request.urlopen(urllib.request.Request(f"{self.url}/internal/force_flush", headers=self._auth()),
                               timeout=5).close()
        data = urllib.parse.urlencode({"match[]": match}).encode()
        req = urllib.request.Request(f"{self.url}/api/v1/export", data=data, headers=self._auth())
        with urllib.request.urlopen(req, timeout=10) as r:
            return [json.loads(line) for line in r.read().decode().splitlines() if line.strip()]


@pytest.fixture
def auth_victoria(tmp_path_factory):
    srv = servers._make(AuthVictoria, tmp_path_factory, "victoria")
    try:
        yield srv.start()
    finally:
        srv.stop()


def test_401_is_reported_clearly_and_data_is_kept(auth_victoria, tmp_path, caplog):
    caplog.set_level(logging.WARNING)
    vm = auth_victoria

    async def main() -> None:
        ctx = Context.standalone("influx", "sink", "influxdb2", tmp_path)
        sink = InfluxSink(cfg(vm.url, token="wrong-token"), ctx)
        await sink.start()
        try:
            await sink.write([Reading("d", "inverter", T0 + timedelta(seconds=i), {"pv_power_w": float(i)})
                              for i in range(10)])
            await async_wait_for(lambda: ctx.health.counters.get("http_errors", 0) >= 3, what="several retries")
        finally:
            await sink.stop()
        assert "HTTP 401" in ctx.health.last_error and "check token" in ctx.health.last_error
        assert ctx.health.gauges["spool_depth_points"] == 10  # nothing lost
        logged = [r for r in caplog.records if "HTTP 401" in r.getMessage()]
        assert len(logged) == 1 and logged[0].levelno == logging.ERROR  # loud, once per state change

        # the same spool, now with the right credentials over the v1 API: the 10 points arrive
        sink = InfluxSink(cfg(vm.url, version=1, database="solar", username=vm.user, password=vm.password),
                          Context.standalone("influx", "sink", "influxdb2", tmp_path))
        await sink.start()
        try:
            await drain(sink)
        finally:
            await sink.stop()

    asyncio.run(main())
    (s,) = vm.wait_series('{__name__="inverter_pv_power_w"}', lambda s: len(s[0]["values"]) == 10)
    assert s["values"] == [float(i) for i in range(10)]


def test_bad_lines_are_dropped_not_retried_forever(victoria, tmp_path):
    async def main() -> None:
        ctx = Context.standalone("influx", "sink", "influxdb2", tmp_path)
        sink = InfluxSink(cfg(victoria.url, batch_points=1), ctx)
        await sink.start()
        try:
            sink._open_spool().put(b"this is not line protocol at all\n", 1)
            await sink.write([Reading("d", "inverter", T0, {"pv_power_w": 7.0})])
            await drain(sink)
        finally:
            await sink.stop()
        return ctx

    ctx = asyncio.run(main())
    (s,) = victoria.wait_series('{__name__="inverter_pv_power_w"}')
    assert s["values"] == [7]
    # VictoriaMetrics skips unparseable lines with 204 (InfluxDB would answer 400 and the chunk is dropped);
    # either way the good point behind it is delivered
    assert ctx.health.gauges["spool_depth_points"] == 0
