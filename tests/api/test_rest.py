"""REST API against the app with httpx: devices, history (validation and downsampling math), health, control."""

from __future__ import annotations

import math
import random
from datetime import UTC, datetime

import pytest

from solarbridge.api.app import create_app
from solarbridge.api.routes.history import MAX_BUCKETS, auto_step, history_params
from solarbridge.model import DeviceInfo
from support.api import T0, ControlSource, client_for, make_supervisor, reading, run

# ---------------------------------------------------------------------------- devices


def test_devices_and_latest(tmp_path):
    sup = make_supervisor(tmp_path)
    src = ControlSource(tmp_path)
    sup.add_source(src)
    sup.bus.publish(reading("inv1", T0, {"pv_power_w": 1500.0, "battery_soc_pct": 55, "grid_available": True,
                                         "mode": "eco", "weird_w": float("nan"), "big_w": float("inf")},
                            info=src.info))
    sup.bus.publish(reading("meter9", T0 + 1, {"grid_power_w": -200.0}, dtype="meter", source="other"))

    async def go():
        async with client_for(create_app(sup)) as c:
            devs = (await c.get("/api/devices")).json()
            latest = (await c.get("/api/devices/inv1/latest")).json()
            missing = await c.get("/api/devices/nope/latest")
        return devs, latest, missing

    devs, latest, missing = run(go())
    assert [d["device_id"] for d in devs] == ["inv1", "meter9"]
    inv = devs[0]
    assert (inv["device_type"], inv["model"], inv["serial"], inv["source"]) == ("inverter", "X1", "SN1", "ctl")
    assert inv["online"] is True and inv["comms"] == "starting" and inv["age_s"] >= 0
    assert inv["controls"][0]["name"] == "charge_target_pct" and inv["controls"][0]["maximum"] == 100
    assert devs[1]["comms"] == "unknown"  # a source the supervisor does not run
    assert latest["metrics"]["pv_power_w"] == 1500.0 and latest["metrics"]["mode"] == "eco"
    assert latest["metrics"]["weird_w"] is None and latest["metrics"]["big_w"] is None  # JSON has no NaN/inf
    assert latest["units"]["pv_power_w"] == "W" and latest["units"]["battery_soc_pct"] == "%"
    assert latest["timestamp"] == datetime.fromtimestamp(T0, UTC).isoformat()
    assert missing.status_code == 404 and "nope" in missing.json()["detail"]


def test_offline_device_keeps_last_values(tmp_path):
    sup = make_supervisor(tmp_path)
    sup.bus.publish(reading("inv1", T0, {"pv_power_w": 900.0}))
    sup.bus.publish(reading("inv1", T0 + 10, {}, online=False))

    async def go():
        async with client_for(create_app(sup)) as c:
            return (await c.get("/api/devices/inv1/latest")).json()

    d = run(go())
    assert d["online"] is False and d["metrics"] == {"pv_power_w": 900.0}
    assert d["timestamp"] == datetime.fromtimestamp(T0, UTC).isoformat()  # time of the last real data


# ---------------------------------------------------------------------------- history


def _fill(store, values, start=T0, every=10.0, device="inv1", metric="pv_power_w"):
    store.insert([reading(device, start + i * every, {metric: v}) for i, v in enumerate(values)])


def test_history_downsampling_math(tmp_path, store):
    rng = random.Random(7)
    values = [rng.uniform(-3000, 6000) for _ in range(360)]  # one hour of 10 s data from T0
    _fill(store, values)
    sup = make_supervisor(tmp_path)

    async def go(step):
        async with client_for(create_app(sup, history=store)) as c:
            r = await c.get("/api/history", params={"device": "inv1", "metric": "pv_power_w", "since": str(T0),
                                                    "until": str(T0 + 3599), "step": step})
            return r.json()

    for step_s in (60, 300, 7):
        d = run(go(f"{step_s}s"))
        assert "step" in d, d
        # independent computation: epoch-aligned buckets of step_s seconds
        buckets: dict[float, list[float]] = {}
        for i, v in enumerate(values):
            ts = T0 + i * 10
            buckets.setdefault(ts // step_s * step_s, []).append(v)
        keys = sorted(buckets)
        assert d["step"] == step_s and d["unit"] == "W"
        assert d["t"] == [float(k) for k in keys]
        assert d["count"] == [len(buckets[k]) for k in keys]
        assert sum(d["count"]) == 360
        for i, k in enumerate(keys):
            vs = buckets[k]
            assert d["min"][i] == pytest.approx(min(vs))
            assert d["max"][i] == pytest.approx(max(vs))
            assert d["mean"][i] == pytest.approx(sum(vs) / len(vs))


def test_history_window_edges_and_auto_step(tmp_path, store):
    _fill(store, [1.0, 2.0, 3.0, 4.0])  # at T0, T0+10, T0+20, T0+30
    sup = make_supervisor(tmp_path)

    async def go(**params):
        async with client_for(create_app(sup, history=store)) as c:
            return (await c.get("/api/history", params={"device": "inv1", "metric": "pv_power_w", **params})).json()

    d = run(go(since=str(T0 + 10), until=str(T0 + 20), step="10s"))
    assert d["t"] == [T0 + 10.0, T0 + 20.0] and d["mean"] == [2.0, 3.0]  # both ends inclusive
    iso = datetime.fromtimestamp(T0, UTC).isoformat().replace("+00:00", "Z")
    d = run(go(since=iso, until=str(T0 + 3600)))
    assert d["step"] == 10.0 and d["count"] == [1, 1, 1, 1]  # 1 h -> about 720 buckets -> 10 s
    assert auto_step(86400) == 120 and auto_step(7 * 86400) == 900 and auto_step(3600) == 10
    assert auto_step(365 * 86400) == 86400 and auto_step(10 * 365 * 86400) % 86400 == 0


@pytest.mark.parametrize("params, field", [
    ({"metric": "pv_power_w"}, "device"),
    ({"device": "inv1"}, "metric"),
    ({"device": "", "metric": "pv_power_w"}, "device"),
    ({"device": "inv1", "metric": "pv_power_w", "since": "yesterday"}, "since"),
    ({"device": "inv1", "metric": "pv_power_w", "until": "2026-13-45"}, "until"),
    ({"device": "inv1", "metric": "pv_power_w", "since": "99999999999999999999"}, "since"),
    ({"device": "inv1", "metric": "pv_power_w", "since": "9999999999999d"}, "since"),
    ({"device": "inv1", "metric": "pv_power_w", "since": "1h", "until": "2h"}, "since"),
    ({"device": "inv1", "metric": "pv_power_w", "step": "fast"}, "step"),
    ({"device": "inv1", "metric": "pv_power_w", "step": "0"}, "step"),
    ({"device": "inv1", "metric": "pv_power_w", "step": "500ms"}, "step"),
    ({"device": "inv1", "metric": "pv_power_w", "since": "30d", "step": "1s"}, "step"),
    ({"device": "x" * 300, "metric": "pv_power_w"}, "device"),
    ({"device": "inv1", "metric": "pv_power_w", "until": "0001-01-01T00:00:00Z"}, "until"),
    ({"device": "inv1", "metric": "pv_power_w", "step": "99999999999999w"}, "step"),
])
def test_history_bad_values_are_400_naming_the_field(tmp_path, store, params, field):
    sup = make_supervisor(tmp_path)

    async def go():
        async with client_for(create_app(sup, history=store)) as c:
            return await c.get("/api/history", params=params)

    r = run(go())
    assert r.status_code == 400, r.text
    detail = r.json()["detail"]
    assert detail.startswith(field), detail
    assert field in detail and "\n" not in detail


def test_history_step_limit_message_says_what_works():
    with pytest.raises(Exception) as e:
        history_params("7d", None, "10s")
    assert f"max {MAX_BUCKETS}" in e.value.detail and "use step >= 31s" in e.value.detail
    t0, t1, s = history_params("7d", None, "31s")
    assert s == 31 and (t1 - t0).total_seconds() == 7 * 86400


def test_history_unknown_series_404_and_no_store_503(tmp_path, store):
    _fill(store, [1.0])
    sup = make_supervisor(tmp_path / "empty")

    async def go():
        async with client_for(create_app(sup, history=store)) as c:
            a = await c.get("/api/history", params={"device": "inv1", "metric": "nope_w"})
            series = (await c.get("/api/history/series")).json()
            empty = await c.get("/api/history", params={"device": "inv1", "metric": "pv_power_w",
                                                         "since": str(T0 + 100), "until": str(T0 + 200)})
        async with client_for(create_app(sup)) as c:  # no history sink, no database file
            b = await c.get("/api/history", params={"device": "inv1", "metric": "pv_power_w"})
        return a, series, empty, b

    a, series, empty, b = run(go())
    assert a.status_code == 404 and "nope_w" in a.json()["detail"]
    assert series == [{"device_id": "inv1", "device_type": "inverter", "metric": "pv_power_w", "unit": "W"}]
    assert empty.status_code == 200 and empty.json()["t"] == []  # known series, nothing in the window
    assert b.status_code == 503 and "history" in b.json()["detail"]


def test_history_reads_database_file_when_no_sink_runs(tmp_path):
    from solarbridge.sinks.history.sink import HistoryStore

    s = HistoryStore(tmp_path / "history.sqlite")
    _fill(s, [5.0, 7.0])
    s.close()
    sup = make_supervisor(tmp_path)

    async def go():
        async with client_for(create_app(sup)) as c:
            return (await c.get("/api/history", params={"device": "inv1", "metric": "pv_power_w",
                                                         "since": str(T0), "until": str(T0 + 60),
                                                         "step": "60s"})).json()

    d = run(go())
    assert d["mean"] == [6.0] and d["min"] == [5.0] and d["max"] == [7.0]


# ---------------------------------------------------------------------------- health


def test_health_reports_components(tmp_path):
    sup = make_supervisor(tmp_path)
    src = ControlSource(tmp_path)
    sup.add_source(src)
    src.ctx.health.state = "failed"
    src.ctx.health.last_error = "ConnectionError: refused"
    src.ctx.health.count("crc_errors", 3)
    src.ctx.health.gauges["rssi"] = float("nan")
    sup.bus.publish(reading("inv1", T0, {"pv_power_w": 1.0}))

    async def go():
        async with client_for(create_app(sup)) as c:
            return (await c.get("/api/health")).json()

    h = run(go())
    assert h["status"] == "degraded" and h["readings"] == 1 and h["devices"] == 1 and h["devices_online"] == 1
    (c,) = [c for c in h["components"] if c["kind"] == "source"]
    assert {c["name"] for c in h["components"] if c["kind"] == "stage"} == {"counters", "sites"}
    assert c["name"] == "ctl" and c["state"] == "failed" and c["last_error"] == "ConnectionError: refused"
    assert c["counters"] == {"crc_errors": 3} and c["gauges"] == {"rssi": None}


# ---------------------------------------------------------------------------- control and auth


def _control(sup, body, headers=None, **api):
    from solarbridge.config import ApiConfig

    async def go():
        async with client_for(create_app(sup, ApiConfig(**api))) as c:
            return await c.post("/api/devices/inv1/control", json=body, headers=headers or {})

    return run(go())


def test_control_auth(tmp_path):
    sup = make_supervisor(tmp_path)
    src = ControlSource(tmp_path)
    sup.add_source(src)
    body = {"command": "charge_target_pct", "value": 80}
    r = _control(sup, body, token="s3cret")
    assert r.status_code == 401 and "bearer token" in r.json()["detail"]
    assert r.headers["www-authenticate"] == "Bearer"
    r = _control(sup, body, {"Authorization": "Basic czNjcmV0"}, token="s3cret")
    assert r.status_code == 401 and "Bearer <token>" in r.json()["detail"]
    r = _control(sup, body, {"Authorization": "Bearer wrong"}, token="s3cret")
    assert r.status_code == 403 and src.requests == []
    r = _control(sup, body, {"Authorization": "Bearer s3cret"}, token="s3cret")
    assert r.status_code == 200 and r.json() == {"ok": True, "message": "set", "value": 80, "details": {}}
    assert [(q.device_id, q.command, q.value, q.origin) for q in src.requests] == [
        ("inv1", "charge_target_pct", 80, "api")]
    r = _control(sup, body)  # no token configured: open (default listen is loopback only)
    assert r.status_code == 200 and len(src.requests) == 2


def test_control_errors(tmp_path):
    sup = make_supervisor(tmp_path)
    sup.add_source(ControlSource(tmp_path))
    r = _control(sup, {"command": "charge_target_pct", "value": 150})
    assert r.status_code == 400 and r.json() == {
        "detail": "charge_target_pct: must be a number from 4 to 100 (got 150)", "field": "charge_target_pct"}
    r = _control(sup, {"command": "reboot"})
    assert r.status_code == 400 and r.json()["field"] == "command"
    r = _control(sup, {"value": 3})
    assert r.status_code == 400 and "command" in r.json()["detail"]
    r = _control(sup, {"command": ""})
    assert r.status_code == 400 and "command" in r.json()["detail"]

    async def raw():
        async with client_for(create_app(sup)) as c:
            a = await c.post("/api/devices/inv1/control", content=b"{not json",
                             headers={"content-type": "application/json"})
            b = await c.post("/api/devices/ghost/control", json={"command": "x"})
            return a, b

    a, b = run(raw())
    assert a.status_code == 400 and "JSON" in a.json()["detail"]
    assert b.status_code == 404 and "ghost" in b.json()["detail"]


def test_control_device_failure_is_502(tmp_path):
    sup = make_supervisor(tmp_path)
    sup.add_source(ControlSource(tmp_path, fail=True))
    r = _control(sup, {"command": "charge_target_pct", "value": 50})
    assert r.status_code == 502 and "did not answer" in r.json()["detail"]


# ---------------------------------------------------------------------------- misc


def test_cors_off_by_default_and_on_when_configured(tmp_path):
    from solarbridge.config import ApiConfig

    sup = make_supervisor(tmp_path)

    async def go(cfg):
        async with client_for(create_app(sup, cfg)) as c:
            return await c.get("/api/devices", headers={"Origin": "http://example.test"})

    assert "access-control-allow-origin" not in run(go(ApiConfig())).headers
    r = run(go(ApiConfig(cors_origins=["http://example.test"])))
    assert r.headers["access-control-allow-origin"] == "http://example.test"


def test_dashboard_and_openapi_served(tmp_path):
    sup = make_supervisor(tmp_path)

    async def go():
        async with client_for(create_app(sup)) as c:
            return [await c.get(p) for p in ("/", "/static/app.js", "/static/style.css", "/api/openapi.json")]

    index, js, css, schema = run(go())
    assert index.status_code == 200 and 'src="/static/app.js"' in index.text
    assert "EventSource" in js.text and js.headers["content-type"].startswith(("text/javascript",
                                                                              "application/javascript"))
    assert css.status_code == 200
    # nothing is loaded from the internet: no absolute URLs in the page or its assets
    for text in (index.text, js.text, css.text):
        assert "http://" not in text and "https://" not in text and "//cdn" not in text
    paths = schema.json()["paths"]
    for p in ("/api/devices", "/api/devices/{device_id}/latest", "/api/history", "/api/health", "/api/events",
              "/metrics", "/api/devices/{device_id}/control"):
        assert p in paths
    assert "HTTPBearer" in schema.json()["components"]["securitySchemes"]


def test_device_info_update_changes_listing(tmp_path):
    sup = make_supervisor(tmp_path)
    sup.bus.publish(reading("inv1", T0, {"pv_power_w": 1.0}))
    sup.bus.publish(reading("inv1", T0 + 1, {"pv_power_w": 2.0},
                            info=DeviceInfo("inv1", "inverter", "Acme", "X2", "SN9", name="Garage")))

    async def go():
        async with client_for(create_app(sup)) as c:
            return (await c.get("/api/devices")).json()

    (d,) = run(go())
    assert d["name"] == "Garage" and d["model"] == "X2" and not math.isnan(d["last_seen"])


def test_givtcp_routes_mounted_only_with_a_givenergy_source(tmp_path):
    pytest.importorskip("solarbridge.api.givtcp")
    from types import SimpleNamespace

    sup = make_supervisor(tmp_path)

    async def go():
        async with client_for(create_app(sup)) as c:
            return await c.post("/setChargeTarget", content=b"{")

    assert run(go()).status_code == 404
    fake = ControlSource(tmp_path)
    fake.config = SimpleNamespace(type="givenergy", name="ge")
    sup.sources["ge"] = fake
    r = run(go())  # the GivTCP-compatible router answers (and rejects the payload before any inverter I/O)
    assert r.status_code == 400 and "JSON" in r.json()["result"]


def test_history_means_are_written_to_a_sensible_precision(tmp_path, store):
    """Issue 17 item 17: a bucket mean of one-decimal samples has at most three decimals and is the decimal
    mean rounded there (a plain float mean shows binary sums: 0.23333333333333336)."""
    from decimal import Decimal

    values = [0.1, 0.2, 0.4, 938.1, 938.2, 938.3, 937.9, 938.1, 938.2, 938.2, 938.3]
    _fill(store, values[:3], metric="x_kwh")
    _fill(store, values[3:], start=T0 + 600, metric="x_kwh")
    sup = make_supervisor(tmp_path)

    async def go():
        async with client_for(create_app(sup, history=store)) as c:
            r = await c.get("/api/history", params={"device": "inv1", "metric": "x_kwh", "since": str(T0),
                                                    "until": str(T0 + 1199), "step": "600s"})
            return r.json()

    d = run(go())
    assert d["count"] == [3, 8]
    for mean, vs in zip(d["mean"], (values[:3], values[3:]), strict=True):
        exact = sum(Decimal(repr(v)) for v in vs) / len(vs)
        got = Decimal(repr(mean))
        assert got == got.quantize(Decimal("0.001")) and abs(got - exact) <= Decimal("0.0005"), (mean, exact)
