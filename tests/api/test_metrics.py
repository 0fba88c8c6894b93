"""/metrics: Prometheus text checked with prometheus_client's own parser."""

from __future__ import annotations

import math

from hypothesis import given
from hypothesis import strategies as st
from prometheus_client.parser import text_string_to_metric_families

from solarbridge.api.app import create_app
from solarbridge.api.metrics import metric_name, render
from solarbridge.plugin import Context, Sink, SinkConfig
from support.api import T0, ControlSource, client_for, make_supervisor, reading, run
from support.prom import samples


class SpoolSink(Sink):
    def __init__(self, tmp):
        super().__init__(SinkConfig(type="influxdb2", name="influx", queue_size=5),
                         Context.standalone("influx", "sink", "influxdb2", tmp))

    async def write(self, batch):
        raise ConnectionError("down")

    def pending(self) -> int:
        return 42



def test_metrics_exposition_parses_and_holds_values(tmp_path):
    sup = make_supervisor(tmp_path)
    src = ControlSource(tmp_path)
    sup.add_source(src)
    sink = SpoolSink(tmp_path)
    sup.add_sink(sink)
    src.ctx.health.state = "running"
    src.ctx.health.count("crc_errors", 4)
    src.ctx.health.count("reconnects", 2)
    src.ctx.health.gauges["rssi_dbm"] = -61.5
    for i in range(8):  # queue of 5: three dropped
        sup.bus.publish(reading("inv1", T0 + i, {"pv_power_w": 1000.0 + i, "grid_available": False,
                                                 "battery_soc_pct": 50, "status": "ok", "odd-name.x": 3,
                                                 "nan_w": float("nan")}, info=src.info))
    sup.bus.publish(reading("m-2", T0, {"grid_power_w": -250.5}, dtype="meter", source="other"))
    sup.bus.publish(reading("m-2", T0 + 1, {}, online=False, dtype="meter", source="other"))

    async def go():
        async with client_for(create_app(sup)) as c:
            return await c.get("/metrics")

    r = run(go())
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain; version=0.0.4")
    s = samples(r.text)
    inv = (("device_id", "inv1"), ("device_type", "inverter"))
    assert s[("solarbridge_pv_power_w", inv)] == 1007.0
    assert s[("solarbridge_grid_available", inv)] == 0.0
    assert s[("solarbridge_battery_soc_pct", inv)] == 50.0
    assert s[("solarbridge_odd_name_x", inv)] == 3.0
    assert not any(k[0] in ("solarbridge_status", "solarbridge_nan_w") for k in s)  # strings and NaN skipped
    assert s[("solarbridge_grid_power_w", (("device_id", "m-2"), ("device_type", "meter")))] == -250.5
    assert s[("solarbridge_device_online", (("device_id", "m-2"), ("device_type", "meter"), ("source", "other")))] == 0
    assert s[("solarbridge_device_online", inv + (("source", "ctl"),))] == 1
    assert s[("solarbridge_daemon_readings_total", ())] == 10
    comp = (("component", "ctl"), ("kind", "source"), ("type", "test"))
    assert s[("solarbridge_daemon_crc_errors_total", comp)] == 4
    assert s[("solarbridge_daemon_reconnects_total", comp)] == 2
    assert s[("solarbridge_daemon_decode_errors_total", comp)] == 0  # always present for sources
    assert s[("solarbridge_daemon_rssi_dbm", comp)] == -61.5
    assert s[("solarbridge_daemon_component_up", comp)] == 1
    sk = (("component", "influx"), ("kind", "sink"), ("type", "influxdb2"))
    assert s[("solarbridge_daemon_queue_depth", sk)] == 5
    assert s[("solarbridge_daemon_dropped_total", sk)] == 5  # 10 readings into a queue of 5
    assert s[("solarbridge_daemon_spool_depth", sk)] == 42
    assert s[("solarbridge_daemon_component_up", sk)] == 0
    types = {f.name: f.type for f in text_string_to_metric_families(r.text)}
    assert types["solarbridge_daemon_readings"] == "counter" and types["solarbridge_pv_power_w"] == "gauge"


def test_metric_names_are_valid():
    assert metric_name("pv_power_w") == "solarbridge_pv_power_w"
    assert metric_name("3 phase/L1 (V)") == "solarbridge_3_phase_L1__V_"


_names = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), min_size=1, max_size=30)
_values = st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(-2**70, 2**70), st.booleans(),
                    st.text(max_size=10))


@given(st.dictionaries(_names, _values, max_size=8), _names, _names, st.dictionaries(_names, st.integers(0, 2**63),
                                                                                       max_size=4))
def test_any_metrics_give_parseable_exposition(tmp_path_factory, metrics, device_id, device_type, counters):
    tmp = tmp_path_factory.mktemp("m")
    sup = make_supervisor(tmp)
    src = ControlSource(tmp)
    sup.add_source(src)
    src.ctx.health.counters.update(counters)
    sup.bus.publish(reading(device_id, T0, metrics, dtype=device_type))
    text = render(sup).decode()
    s = samples(text)  # raises on malformed text
    for name, v in metrics.items():
        if isinstance(v, bool | int | float) and not isinstance(v, str):
            f = float(v)
            key = (metric_name(name), (("device_id", device_id), ("device_type", device_type)))
            if math.isnan(f) or key not in s:
                continue  # NaN skipped; a colliding sanitized name keeps one of the values
            got = s[key]
            assert got == f or math.isclose(got, f, rel_tol=1e-15) or any(
                metric_name(n) == metric_name(name) for n in metrics if n != name)
