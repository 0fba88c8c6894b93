"""The synthetic home: physics stays plausible and limits hold."""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime, timedelta

import pytest

from solarbridge.sources.synthetic.model import HomeParams, HomeState, SyntheticHome


def simulate(hours: float, soc: float = 50.0, seed: int = 1, dt: float = 60.0):
    home = SyntheticHome(HomeParams(), random.Random(seed), HomeState(soc_pct=soc))
    t = datetime(2026, 6, 21, 0, 0, tzinfo=UTC)
    out = []
    for _ in range(int(hours * 3600 / dt)):
        t += timedelta(seconds=dt)
        out.append((t, home.step(t, dt)))
    return home, out


def test_energy_balance_and_sign_conventions():
    _, out = simulate(48)
    for _, m in out:
        # load = pv + battery discharge + grid import (all sign conventions at once)
        assert abs(m["load_power_w"] - (m["pv_power_w"] + m["battery_power_w"] + m["grid_power_w"])) < 0.5
        assert m["pv_power_w"] >= 0 and m["load_power_w"] >= 0


def test_pv_follows_the_sun():
    _, out = simulate(24)
    night = [m["pv_power_w"] for t, m in out if t.hour < 5 or t.hour >= 21]
    noon = [m["pv_power_w"] for t, m in out if 12 <= t.hour < 14]
    assert max(night) == 0
    assert min(noon) > 1000


def test_soc_limits_respected_and_battery_used():
    home, out = simulate(72, soc=95)
    socs = [m["battery_soc_pct"] for _, m in out]
    assert min(socs) >= home.p.battery_reserve_pct - 0.01 and max(socs) <= 100
    assert any(m["battery_power_w"] > 0 for _, m in out) and any(m["battery_power_w"] < 0 for _, m in out)


def test_counters_monotonic():
    _, out = simulate(30)
    for key in ("pv_energy_total_wh", "grid_import_energy_total_wh", "load_energy_total_wh"):
        vals = [m[key] for _, m in out]
        assert vals == sorted(vals) and vals[-1] > 0


def test_same_seed_same_readings():
    assert simulate(3, seed=7)[1] == simulate(3, seed=7)[1]
    assert simulate(3, seed=7)[1] != simulate(3, seed=8)[1]


# ----------------------------------------------------------------------------- restarts keep the counters

TOTALS = ("pv_energy_total_wh", "load_energy_total_wh", "grid_import_energy_total_wh",
          "grid_export_energy_total_wh", "battery_charge_energy_total_wh", "battery_discharge_energy_total_wh")


def _run_source(state_dir, **cfg):
    """Run a synthetic source to the end of its ``count`` and return what it emitted."""
    import asyncio

    from solarbridge.plugin import Context
    from solarbridge.sources.synthetic.source import SyntheticConfig, SyntheticSource

    src = SyntheticSource(SyntheticConfig(**cfg), Context.standalone("synthetic", "source", "synthetic", state_dir))
    got = []
    asyncio.run(src.run(got.append))
    return src, got


def test_a_restart_resumes_the_counters_and_fills_only_the_gap(tmp_path):
    """A real inverter keeps its lifetime totals across a restart; so does the simulated one (in state_dir),
    and a back-fill covers only the time since the last run's final reading."""
    _, first = _run_source(tmp_path, interval=0.01, count=300, backfill="3s")
    assert len(first) == 300
    src, second = _run_source(tmp_path, interval=0.01, count=5, backfill="3s")
    assert second[0].timestamp > first[-1].timestamp  # nothing emitted twice: the gap since the last run only
    for name in TOTALS:
        assert second[0].metrics[name] >= first[-1].metrics[name], name
    assert second[0].metrics["pv_energy_total_wh"] > 0 or first[-1].metrics["pv_energy_total_wh"] == 0
    saved = json.loads(src.state_path.read_text())
    assert saved["pv_total_wh"] == pytest.approx(second[-1].metrics["pv_energy_total_wh"], abs=0.05)


def test_persist_off_starts_afresh_and_a_bad_state_file_is_named(tmp_path, caplog):
    _, first = _run_source(tmp_path, interval=0.01, count=200, backfill="2h", seed=3)
    assert first[-1].metrics["load_energy_total_wh"] > 0
    _, fresh = _run_source(tmp_path, interval=0.01, count=1, persist=False, seed=3)
    assert fresh[0].metrics["load_energy_total_wh"] < first[-1].metrics["load_energy_total_wh"]
    (tmp_path / "synthetic-synthetic-home.json").write_text("{not json")
    _, after = _run_source(tmp_path, interval=0.01, count=1)
    assert after[0].metrics["load_energy_total_wh"] < first[-1].metrics["load_energy_total_wh"]
    assert any("synthetic-synthetic-home.json: unreadable" in r.getMessage() for r in caplog.records)
