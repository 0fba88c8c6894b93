"""File sinks and the history store."""

from __future__ import annotations

import asyncio
import csv
import json
import threading
from datetime import UTC, datetime, timedelta

from solarbridge.model import Reading
from solarbridge.sinks.files.sink import CsvSink, JsonlSink, StateSink
from solarbridge.sinks.history.sink import HistorySink, HistoryStore
from support.runtime import ctx, reading


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 60))


def test_jsonl_appends_one_object_per_line_and_round_trips(tmp_path):
    async def go():
        s = JsonlSink(JsonlSink.Config(type="jsonl", path=str(tmp_path / "r.jsonl")), ctx("j", "sink", tmp_path))
        await s.start()
        await s.write([reading(i) for i in range(10)])
        await s.stop()
        s2 = JsonlSink(JsonlSink.Config(type="jsonl", path=str(tmp_path / "r.jsonl")), ctx("j", "sink", tmp_path))
        await s2.start()
        await s2.write([reading(10)])
        await s2.stop()
    run(go())
    lines = (tmp_path / "r.jsonl").read_text().splitlines()
    assert len(lines) == 11
    back = Reading.from_dict(json.loads(lines[3]))
    assert back.metrics == {"n": 3, "p_w": 4.5} and back.timestamp == reading(3).timestamp


def test_jsonl_rotates_by_size_keeping_n(tmp_path):
    async def go():
        cfg = JsonlSink.Config(type="jsonl", path=str(tmp_path / "r.jsonl"), rotate="size", max_bytes=2048, keep=3)
        s = JsonlSink(cfg, ctx("j", "sink", tmp_path))
        await s.start()
        for i in range(100):
            await s.write([reading(i)])
        await s.stop()
    run(go())
    names = sorted(p.name for p in tmp_path.glob("r.jsonl*"))
    assert names == ["r.jsonl", "r.jsonl.1", "r.jsonl.2", "r.jsonl.3"]
    total = sum(len(p.read_text().splitlines()) for p in tmp_path.glob("r.jsonl*"))
    assert 0 < total < 100  # oldest rotated away
    assert json.loads((tmp_path / "r.jsonl.1").read_text().splitlines()[-1])["metrics"]["n"] < 100


def test_jsonl_rotates_by_day(tmp_path):
    def at(day: int, i: int) -> Reading:
        return Reading("d", "t", datetime(2026, 1, day, 12, tzinfo=UTC), {"n": i})

    async def go():
        s = JsonlSink(JsonlSink.Config(type="jsonl", path=str(tmp_path / "r.jsonl"), rotate="daily"),
                      ctx("j", "sink", tmp_path))
        await s.start()
        await s.write([at(1, 0), at(1, 1), at(2, 2)])
        await s.write([at(3, 3)])
        await s.stop()
    run(go())
    assert len((tmp_path / "r-2026-01-01.jsonl").read_text().splitlines()) == 2
    assert len((tmp_path / "r-2026-01-02.jsonl").read_text().splitlines()) == 1
    assert json.loads((tmp_path / "r.jsonl").read_text())["metrics"]["n"] == 3


def test_csv_one_file_per_source_and_type_stable_columns_new_metric_new_file(tmp_path):
    def r(dtype: str, metrics: dict) -> Reading:
        return Reading("d1", dtype, datetime(2026, 1, 1, tzinfo=UTC), metrics, source="home")

    async def go():
        s = CsvSink(CsvSink.Config(type="csv", directory=str(tmp_path)), ctx("c", "sink", tmp_path))
        await s.start()
        await s.write([r("inverter", {"a_w": 1, "b_v": 2}), r("battery", {"soc_pct": 50}),
                       r("inverter", {"b_v": 3}), r("inverter", {"a_w": 4, "c_a": 5})])
        await s.stop()
    run(go())
    inv = list(csv.reader((tmp_path / "home-inverter.csv").open()))
    assert inv[0] == ["timestamp", "device_id", "a_w", "b_v"]
    assert [row[2:] for row in inv[1:]] == [["1", "2"], ["", "3"]]
    inv1 = list(csv.reader((tmp_path / "home-inverter.1.csv").open()))
    assert inv1[0] == ["timestamp", "device_id", "a_w", "b_v", "c_a"] and inv1[1][2:] == ["4", "", "5"]
    assert list(csv.reader((tmp_path / "home-battery.csv").open()))[1][2:] == ["50"]


def test_csv_two_families_of_one_type_get_a_file_each(tmp_path):
    """Issue 17 item 11: a GivEnergy and a Sunsynk inverter, interleaved, in either order: one file per
    source, each with its own fixed header and every row of that source, named the same both times."""
    from solarbridge.sources.sunsynk import codec
    from solarbridge.sources.sunsynk.source import report_to_reading

    sunsynk_report = codec.encode({"pv_power_1": 930, "grid_voltage": 233.3, "battery_soc": 54},
                                  serial="2107224260", clock=(2026, 1, 1, 0, 0, 0))
    sunsynk, _ = report_to_reading(codec.decode(sunsynk_report), 1.77e9, None, source="sunsynk")
    give = Reading("SA2114G000", "inverter", datetime(2026, 1, 1, tzinfo=UTC),
                   {"pv_power_w": 1200, "battery_soc_pct": 61}, source="givenergy")
    sunsynk = Reading(sunsynk.device_id, "inverter", sunsynk.timestamp, sunsynk.metrics, source="sunsynk")
    for order, d in (([give, sunsynk, give, sunsynk], tmp_path / "a"), ([sunsynk, give, sunsynk, give],
                                                                         tmp_path / "b")):
        async def go(batch=order, d=d):
            s = CsvSink(CsvSink.Config(type="csv", directory=str(d)), ctx("c", "sink", d))
            await s.start()
            await s.write(batch)
            await s.stop()
        run(go())
        assert sorted(p.name for p in d.iterdir()) == ["givenergy-inverter.csv", "sunsynk-inverter.csv"]
        g = list(csv.reader((d / "givenergy-inverter.csv").open()))
        assert g[0] == ["timestamp", "device_id", "pv_power_w", "battery_soc_pct"] and len(g) == 3
        k = list(csv.reader((d / "sunsynk-inverter.csv").open()))
        assert k[0][:2] == ["timestamp", "device_id"] and set(k[0][2:]) == set(sunsynk.metrics) and len(k) == 3
        assert {row[1] for row in k[1:]} == {"2107224260"}


def test_state_file_is_replaced_atomically_never_partial(tmp_path):
    path = tmp_path / "state.json"
    stop = threading.Event()
    seen = {"reads": 0, "bad": 0}

    def reader():
        while not stop.is_set():
            try:
                text = path.read_text()
            except FileNotFoundError:
                continue
            seen["reads"] += 1
            try:
                json.loads(text)
            except ValueError:
                seen["bad"] += 1

    async def go():
        s = StateSink(StateSink.Config(type="state", path=str(path), min_interval=0), ctx("s", "sink", tmp_path))
        await s.start()
        for i in range(300):
            big = Reading(f"dev{i % 7}", "t", datetime.now(UTC), {f"m{k}": i * k for k in range(200)})
            await s.write([big])
        await s.stop()

    t = threading.Thread(target=reader)
    t.start()
    try:
        run(go())
    finally:
        stop.set()
        t.join()
    assert seen["reads"] > 10
    assert seen["bad"] == 0
    doc = json.loads(path.read_text())
    assert doc["devices"]["dev5"]["metrics"]["m3"] == 299 * 3


def test_state_sink_writes_latest_even_when_rate_limited(tmp_path):
    path = tmp_path / "state.json"

    async def go():
        s = StateSink(StateSink.Config(type="state", path=str(path), min_interval=0.2), ctx("s", "sink", tmp_path))
        await s.start()
        await s.write([reading(1)])
        await s.write([reading(2)])  # within min_interval: deferred, not lost
        await asyncio.sleep(0.5)
        return json.loads(path.read_text())["devices"]["dev1"]["metrics"]["n"]
    assert run(go()) == 2


def test_history_round_trip_downsample_and_retention(tmp_path):
    store = HistoryStore(tmp_path / "h.sqlite")
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    rows = [Reading("inv", "t", t0 + timedelta(seconds=10 * i), {"p_w": float(i), "on": i % 2 == 0, "s": "x"})
            for i in range(360)]
    assert store.insert(rows) == 720  # strings are not stored, bools as 0/1
    pts = store.query("inv", "p_w", t0, t0 + timedelta(hours=1))
    assert len(pts) == 360 and pts[5] == (t0 + timedelta(seconds=50), 5.0)
    buckets = store.downsample("inv", "p_w", t0, t0 + timedelta(hours=1), 600)
    assert len(buckets) == 6
    b = buckets[1]  # samples 60..119
    assert (b.min, b.max, b.count) == (60.0, 119.0, 60) and abs(b.mean - 89.5) < 1e-9
    assert store.query("inv", "on", t0, t0 + timedelta(seconds=10)) == [(t0, 1.0), (t0 + timedelta(seconds=10), 0.0)]
    deleted = store.prune(t0 + timedelta(minutes=30))
    assert deleted == 360  # 180 samples x 2 metrics
    assert store.query("inv", "p_w", t0, t0 + timedelta(hours=1))[0][0] == t0 + timedelta(minutes=30)
    store.close()
    ro = HistoryStore(tmp_path / "h.sqlite", readonly=True)
    assert {s["metric"] for s in ro.series()} == {"p_w", "on"}


def test_history_sink_prunes_by_retention(tmp_path):
    async def go():
        sink = HistorySink(HistorySink.Config(type="history", retention="1h"), ctx("h", "sink", tmp_path))
        await sink.start()
        now = datetime.now(UTC)
        await sink.write([Reading("d", "t", now - timedelta(hours=2), {"x": 1}),
                          Reading("d", "t", now, {"x": 2})])
        pts = sink.store.query("d", "x", now - timedelta(hours=3), now)
        await sink.stop()
        return pts
    pts = run(go())
    assert [v for _, v in pts] == [2.0]
