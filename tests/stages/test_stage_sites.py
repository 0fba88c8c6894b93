"""Sites: config validation, resolved roles, power balance, site energy from counters and from power."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from solarbridge.config import ConfigError, build
from solarbridge.model import Reading
from solarbridge.stages.energy import Integrator, positive_area
from solarbridge.stages.sites import SiteConfig, SiteStage, describe

T0 = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)


def cfg_error(raw) -> str:
    with pytest.raises(ConfigError) as e:
        build(raw)
    return str(e.value)


# --------------------------------------------------------------------------- config


def test_config_errors_name_the_field():
    assert cfg_error({"sites": [{"name": "home", "pv": ["inv", "inv"]}]}) == (
        "sites[0]: pv[1]: inv pv_power_w is already counted as pv[0]; each flow may be counted once")
    assert cfg_error({"sites": [{"name": "home", "pv": "inv", "exclude": ["inv"]}]}).startswith(
        "sites[0]: pv[0].device: 'inv' is also in exclude")
    assert cfg_error({"sites": [{"name": "home", "devices": ["a"], "timezone": "Mars/Olympus"}]}) == (
        "sites[0].timezone: unknown time zone 'Mars/Olympus' (use an IANA name such as Europe/London)")
    assert cfg_error({"sites": [{"name": "a", "devices": ["x"]}, {"name": "a", "devices": ["y"]}]}) == (
        "sites[1].name: 'a' is used twice; give each site its own name")
    assert cfg_error({"sites": [{"name": "home"}]}) == (
        "sites[0]: give the site's devices or sources, or its roles (grid, pv, battery, load)")
    assert cfg_error({"sites": [{"name": "home", "pv": [{"device": "x", "metrc": "pv"}]}]}).startswith(
        "sites[0].pv[0].metrc: unknown key (allowed: device, energy, metric)")
    assert cfg_error({"sites": [{"name": "bad name!", "devices": ["x"]}]}).startswith("sites[0].name: must be")
    assert cfg_error({"sources": [{"type": "synthetic", "counters": {"max_power_w": -1}}]}).startswith(
        "sources[0].counters.max_power_w: Input should be greater than 0")
    assert cfg_error({"sources": [{"type": "synthetic", "counters": "off"}]}).startswith(
        "sources[0].counters: must be true, false or a table")


def test_source_counters_override_the_defaults():
    cfg = build({"counters": {"slack_wh": 200}, "sources": [
        {"type": "synthetic", "name": "a"}, {"type": "synthetic", "name": "b", "counters": False},
        {"type": "synthetic", "name": "c", "counters": {"max_power_w": 6000}}]})
    sc = cfg.source_counters
    assert "a" not in sc and cfg.counters.slack_wh == 200  # a uses the [counters] defaults
    assert not sc["b"].enabled
    assert sc["c"].max_power_w == 6000 and sc["c"].slack_wh == 200


SOLAREDGE_SITE = {"name": "home", "timezone": "Europe/London", "grid": "meter-grid", "pv": ["inv"],
                  "battery": ["bat"], "exclude": ["meter-pv"]}


def test_describe_prints_the_resolved_roles():
    lines = describe([SiteConfig.model_validate(SOLAREDGE_SITE),
                      SiteConfig.model_validate({"name": "shed", "devices": ["gw"]})])
    text = "\n".join(lines)
    assert "# site site:home (Europe/London)" in text
    assert "#   grid:    meter-grid grid_power_w (import grid_import_energy_total_wh, export " in text
    assert "#   pv:      inv pv_power_w" in text and "#   battery: bat battery_power_w" in text
    assert "#   load:    derived = pv + grid + battery" in text and "#   excluded: meter-pv" in text
    assert "#   roles inferred from the metrics of: gw" in text


# --------------------------------------------------------------------------- balance


def feed(stage, readings):
    out = []
    for r in readings:
        stage.process(r, out.append)
    return [r for r in out if r.device_type == "site"]


def r(dev, t, metrics, source="se", online=True):
    return Reading(dev, "x", T0 + timedelta(seconds=t), metrics, source=source, online=online)


def test_excluded_pv_meter_is_not_counted_and_load_is_derived():
    stage = SiteStage([SiteConfig.model_validate(SOLAREDGE_SITE)])
    sites = feed(stage, [
        r("inv", 0, {"pv_power_w": 3259.1}),
        r("meter-pv", 0, {"pv_power_w": 3259.1}),
        r("bat", 0, {"battery_power_w": -1500.0, "battery_soc_pct": 56.0}),
        r("meter-grid", 0, {"grid_power_w": -929.5}),
    ])
    assert len(sites) == 1, "published once every member has reported"
    m = sites[-1].metrics
    assert sites[-1].device_id == "site:home"
    assert m["pv_power_w"] == 3259.1 and m["grid_power_w"] == -929.5 and m["battery_power_w"] == -1500.0
    assert m["load_power_w"] == pytest.approx(3259.1 - 929.5 - 1500.0)
    assert m["balance_residual_w"] == 0.0
    assert m["self_consumption_w"] == pytest.approx(3259.1 - 929.5)
    assert m["self_consumption_pct"] == pytest.approx(100 * (3259.1 - 929.5) / 3259.1, abs=0.05)
    assert m["self_sufficiency_pct"] == 100.0
    assert m["battery_soc_pct"] == 56.0
    assert sites[-1].extra["members"] == ["bat", "inv", "meter-grid"]


def test_measured_load_shows_the_residual():
    stage = SiteStage([SiteConfig.model_validate({"name": "h", "grid": "gw", "pv": "gw", "battery": "gw",
                                                  "load": "gw"})])
    (s,) = feed(stage, [r("gw", 0, {"pv_power_w": 2000, "grid_power_w": 500, "battery_power_w": -300,
                                    "load_power_w": 2100})])
    assert s.metrics["balance_residual_w"] == 100.0
    assert s.metrics["load_power_w"] == 2100
    assert s.metrics["self_sufficiency_pct"] == pytest.approx(100 * 1600 / 2100, abs=0.05)


def test_stale_member_is_left_out_and_all_offline_makes_the_site_offline():
    stage = SiteStage([SiteConfig.model_validate({"name": "h", "pv": ["a", "b"], "grid": "g"})], stale_after=60)
    feed(stage, [r("a", 0, {"pv_power_w": 100}), r("b", 0, {"pv_power_w": 200}), r("g", 0, {"grid_power_w": 5})])
    (s,) = feed(stage, [r("a", 120, {"pv_power_w": 110}), ])
    assert s.extra["stale"] == ["b", "g"] and s.metrics["pv_power_w"] == 110
    (s,) = feed(stage, [r("a", 130, {}, online=False)])
    assert not s.online and s.metrics == {}


def test_capacity_weighted_soc():
    stage = SiteStage([SiteConfig.model_validate({"name": "h", "battery": ["b1", "b2"]})])
    out = feed(stage, [r("b1", 0, {"battery_power_w": 0, "battery_soc_pct": 80, "battery_capacity_wh": 10000}),
                       r("b2", 1, {"battery_power_w": 0, "battery_soc_pct": 20, "battery_capacity_wh": 5000})])
    assert out[-1].metrics["battery_soc_pct"] == pytest.approx((80 * 10000 + 20 * 5000) / 15000, abs=0.05)


# --------------------------------------------------------------------------- energy


def test_site_energy_grows_by_member_counter_increases_only():
    stage = SiteStage([SiteConfig.model_validate({"name": "h", "pv": ["a", "b"], "grid": "g"})])
    out = feed(stage, [
        r("a", 0, {"pv_power_w": 1000, "pv_energy_total_wh": 5_000_000}),
        r("g", 0, {"grid_power_w": 0, "grid_import_energy_total_wh": 100, "grid_export_energy_total_wh": 50}),
        r("b", 10, {"pv_power_w": 1000, "pv_energy_total_wh": 9_000_000}),  # appears late with a big lifetime
        r("a", 20, {"pv_power_w": 1000, "pv_energy_total_wh": 5_000_010}),
        r("b", 20, {"pv_power_w": 1000, "pv_energy_total_wh": 9_000_005}),
        r("g", 20, {"grid_power_w": 0, "grid_import_energy_total_wh": 103, "grid_export_energy_total_wh": 50}),
    ])
    m = out[-1].metrics
    assert m["pv_energy_total_wh"] == 15.0, "only the increases count, not a member's lifetime"
    assert m["grid_import_energy_total_wh"] == 3.0
    assert m["load_energy_total_wh"] == 18.0  # pv + import - export (+ battery) with no load meter
    assert m["self_consumption_energy_total_wh"] == 15.0
    assert "pv_energy_total_wh" not in out[-1].extra["derived"]
    assert "load_energy_total_wh" in out[-1].extra["derived"]


def test_integrates_power_without_a_counter_and_does_not_bridge_gaps():
    stage = SiteStage([SiteConfig.model_validate({"name": "h", "grid": "g"})])
    seq = [r("g", t, {"grid_power_w": 1200.0}) for t in range(0, 3601, 10)]  # 1.2 kW import for 1 h
    seq += [r("g", 3610, {"grid_power_w": -600.0})]  # crosses zero: 1/3 of the step imports, 2/3 exports
    seq += [r("g", 3610 + 3600, {"grid_power_w": -600.0})]  # an hour without readings: not bridged
    seq += [r("g", 7220, {"grid_power_w": -600.0})]
    out = feed(stage, seq)
    m = out[-1].metrics
    crossing = 10 / 3600
    assert m["grid_import_energy_total_wh"] == pytest.approx(1200.0 + 1200 * 1200 / 1800 / 2 * crossing, abs=0.1)
    assert m["grid_export_energy_total_wh"] == pytest.approx(600 * 600 / 1800 / 2 * crossing + 600 * crossing,
                                                             abs=0.1)
    assert {"grid_import_energy_total_wh", "grid_export_energy_total_wh"} <= set(out[-1].extra["derived"])


def test_positive_area_and_integrator_oracles():
    assert positive_area(1000, 1000, 0.5) == 500
    assert positive_area(-100, -5, 1) == 0
    assert positive_area(100, -100, 1) == pytest.approx(25)  # triangle: half the time at mean 50 W
    i = Integrator()
    assert i.add(0, 100) == (0, 0)
    assert i.add(36, 100) == pytest.approx((1.0, 0))
    assert i.add(36 + 36 * 5, 100) == (0, 0)  # 5 intervals: a gap, not bridged
    assert i.skipped_s == 180


def test_totals_survive_a_restart(tmp_path):
    path = tmp_path / "sites.json"
    cfg = [SiteConfig.model_validate({"name": "h", "pv": "a"})]
    stage = SiteStage(cfg, path)
    feed(stage, [r("a", 0, {"pv_power_w": 1, "pv_energy_total_wh": 1000}),
                 r("a", 10, {"pv_power_w": 1, "pv_energy_total_wh": 1400})])
    stage.save()
    again = SiteStage(cfg, path)
    # the daemon was down while the device counted another 600 Wh: it is not lost
    (s,) = feed(again, [r("a", 3600, {"pv_power_w": 1, "pv_energy_total_wh": 2000})])
    assert s.metrics["pv_energy_total_wh"] == 1000.0


# --------------------------------------------------------------------------- automatic sites


def test_auto_sites_and_all_only_without_double_counting():
    stage = SiteStage([])
    out = feed(stage, [
        r("home1", 0, {"pv_power_w": 1000, "grid_power_w": 100, "load_power_w": 1100}, source="s1"),
        r("home2", 0, {"pv_power_w": 500, "grid_power_w": -200, "battery_power_w": 0}, source="s2"),
        r("meter", 0, {"grid_power_w": 7}, source="s3"),  # one flow: not a site of its own
        r("home1", 10, {"pv_power_w": 1000, "grid_power_w": 100, "load_power_w": 1100}, source="s1"),
    ])
    ids = {s.device_id for s in out}
    assert ids == {"site:home1", "site:home2", "site:all"}
    last_all = [s for s in out if s.device_id == "site:all"][-1].metrics
    assert last_all["pv_power_w"] == 1500 and last_all["grid_power_w"] == -100
    # a second device of source s1 reporting PV (an inverter and its PV meter?): all would count it twice
    out = feed(stage, [r("pvmeter", 20, {"pv_power_w": 1000, "load_power_w": 3}, source="s1"),
                       r("home2", 30, {"pv_power_w": 500, "grid_power_w": -200, "battery_power_w": 0}, source="s2")])
    assert "site:all" not in {s.device_id for s in out}
    assert any(d["name"] == "all" and d["disabled"] for d in stage.describe())
