"""Every recorded gateway set (tests/data/enphase/<set>/, from pyenphase) through the site model.

The expected figures below were written by reading each set's JSON by hand (the files named in the
comments), following the source rules documented in ``sources/enphase/site.py``; they are not our
output. Derived values (load = production + net) are written as the sum of the two recorded numbers.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from solarbridge.sources.enphase.site import parse_site

DATA = Path(__file__).resolve().parents[2] / "data" / "enphase"
NOT_SETS = {"example", "livedata"}


def set_dirs() -> list[str]:
    return sorted(p.name for p in DATA.iterdir() if p.is_dir() and p.name not in NOT_SETS)


def load_set(name: str) -> dict[str, str]:
    d = DATA / name
    return {p.name: p.read_text(errors="replace") for p in d.iterdir()
            if p.is_file() and p.name not in ("LICENSE", "PROVENANCE.md")}


# set: (firmware, production W, production lifetime Wh, production W per phase,
#       consumption CT, grid W (+ import), load W, grid W per phase,
#       batteries [(serial, kind, SOC %, W + discharge, degC)], AC Battery total (SOC, W, Wh) or None,
#       relay, generator oper_state, inverter count)
E = {
    # api_v1_production only
    "3.17.3": ("D3.17.3", 5463, 93706280, [], None, None, None, [], [], None, None, None, 41),
    # 404s everywhere, no production at all
    "3.7.0": ("D3.7.0", None, None, [], None, None, None, [], [], None, None, None, 0),
    "3.8.10": ("D3.18.10", 4324, 138475913, [], None, None, None, [], [], None, None, None, 41),
    "3.9.36": ("R3.9.36", 1271, 6012540, [], None, None, None, [], [], None, None, None, 12),
    # inverters answered 401
    "3.9.36_bad_auth": ("R3.9.36", 0, 14578520, [], None, None, None, [], [], None, None, None, 0),
    # ivp_meters split, 2 phases: production + net-consumption meters enabled
    "4.10.35": ("R4.10.35", 166.489, 26785327.449, [82.913, 83.576], "net", 566.864, 166.489 + 566.864,
                [393.965, 172.899], [], None, None, None, 19),
    # production.json eim activeCount 0 -> api_v1_production
    "4.2.27": ("D4.2.27", 5894, 10279087, [], None, None, None, [], [], None, None, None, 0),
    # production meter enabled, net meter disabled
    "4.2.33": ("M4.2.33", -8.8, 8598256.633, [-4.35, -4.45], None, None, None, [], [], None, None, None, 51),
    "5.0.49": ("D5.0.62", 4859, 88742152, [], None, None, None, [], [], None, None, None, 40),
    "5.0.62": ("D5.0.62", 7907, 133798553, [], None, None, None, [], [], None, None, None, 40),
    # no ivp_meters: production.json eim production / consumption
    "7.3.130": ("D7.3.130", 178.495, 3659506.105, [], "net", 1214.696, 1393.191, [], [], None, None, None, 12),
    "7.3.130_no_consumption": ("D7.3.130", 3624.573, 4545929.53, [1810.773, 1813.8], None, None, None, [], [],
                               None, None, None, 15),
    # both meters disabled, production.json eim activeCount 0 -> api_v1_production
    "7.3.466_metered_disabled_cts": ("D7.3.466", 689, 0, [], None, None, None, [], [], None, None, "open", 7),
    "7.3.466_with_cts_3phase": ("D7.3.466", 488.925, 3183793.885, [488.925, 0.0, -1.044], "net", -36.162,
                                488.925 + -36.162, [-36.162, -0.0, -0.451], [], None, None, "open", 7),
    "7.3.517": ("D7.3.517", 4556.139, 19230313.461, [], "net", -765.064, 3791.075, [],
                [("122035013273", "encharge", 100, 0, 28), ("122035013278", "encharge", 100, 0, 28),
                 ("122035013286", "encharge", 100, 0, 28)], None, "closed", "open", 22),
    "7.3.517_legacy_savings_mode": ("D7.3.517", 4556.139, 19230313.461, [], "net", -765.064, 3791.075, [],
                                    [("122035013273", "encharge", 100, 0, 28),
                                     ("122035013278", "encharge", 100, 0, 28),
                                     ("122035013286", "encharge", 100, 0, 28)], None, "closed", "open", 22),
    "7.3.517_system_2": ("D7.3.517", 2659.845, 18442496.933, [1330.866, 1328.979], "net", 23.172, 2659.845 + 23.172,
                         [-17.438, 40.61],
                         [("122031000212", "encharge", 96, -676, 25), ("122031000215", "encharge", 97, -680, 25),
                          ("122031023943", "encharge", 96, -676, 25)], None, "closed", "open", 13),
    "7.6.114_without_cts": ("D7.6.114", 586, 1544282, [], None, None, None, [], [], None, None, None, 13),
    "7.6.175": ("D7.6.175", 3391, 8717473, [], None, None, None, [], [], None, None, None, 13),
    "7.6.175_standard": ("D7.6.175", 5740, 6139406, [], None, None, None, [], [], None, None, None, 24),
    "7.6.175_total": ("D7.6.175", 0, 0, [], None, None, None, [], [], None, None, "open", 14),
    # phaseCount 1 on a "three" phaseMode: totals only
    "7.6.175_with_cts": ("D7.6.175", 488.925, 3183793.885, [], "net", -36.162, 488.925 + -36.162, [], [], None,
                         None, "open", 7),
    "7.6.175_with_cts_3phase": ("D7.6.175", 488.925, 3183793.885, [488.925, 0.0, -1.044], "net", -36.162,
                                488.925 + -36.162, [-36.162, -0.0, -0.451], [], None, None, "open", 7),
    "7.6.185_with_cts_and_battery_3t": ("D7.6.185", -0.661, 2432969.956, [], "net", 522.043, -0.661 + 522.043, [],
                                        [("122249097612", "encharge", 15, 0, 29)], None, None, "open", 5),
    "8.1.41": ("D8.1.41", 13028.54, 1510198.655, [], "net", -7812.457, 5216.083, [],
               [("492319002585", "encharge", 100, 24, 42), ("492319002593", "encharge", 85, 16, 42)], None,
               "closed", None, 44),
    "8.2.127_with_3cts_and_battery_split": (
        "D8.2.127", 1714.424, 3165834.272, [856.031, 858.394], "net", 129.407, 1714.424 + 129.407, [-201.39, 330.797],
        [("12345678901006", "encharge", 21, -136, 12), ("12345678901005", "encharge", 21, -128, 11),
         ("12345678901004", "encharge", 21, -128, 12), ("12345678901003", "encharge", 21, -128, 12),
         ("12345678901002", "encharge", 21, -121, 13)], None, "closed", "open", 5),
    # off grid (ENPOWER mains_oper_state open), generator running (oper_state close)
    "8.2.127_with_generator_running": (
        "D8.2.127", 2336.093, 15097304.67, [1172.624, 1163.469], "net", 195.575, 2336.093 + 195.575, [267.695, -72.12],
        [("492234001350", "encharge", 98, -1250, 27)], None, "open", "close", 26),
    "8.2.4264_metered_noct": ("D8.2.4264", 4, 1583, [], None, None, None, [], [], None, None, "open", 2),
    "8.2.4286_with_3cts_and_battery_split": (
        "D8.2.4286", 7131.017, 13431336.968, [3562.174, 3568.843], "net", 1749.504, 7131.017 + 1749.504,
        [809.907, 939.597],
        [("492320000140", "encharge", 39, -1324, 18), ("492320000148", "encharge", 48, -1324, 19),
         ("492320000149", "encharge", 48, -1316, 19), ("492320000158", "encharge", 49, -1317, 19),
         ("492335008361", "encharge", 48, -1311, 23)], None, "closed", "open", 35),
    "8.2.4345_with_device_data": ("D8.2.4345", 807.326, 1243812.228, [], "net", 199.234, 807.326 + 199.234, [], [],
                                  None, "closed", "open", 15),
    # IQ Battery (inventory percentFull 10, power 105000 mW) and AC Batteries (production.json acb: 3 units)
    "8.2.4382_ACB": ("D8.2.4382", 308.373, 19213421.296, [], "net", 22.54, 308.373 + 22.54, [],
                     [("122311091641", "encharge", 10, 105, 11)], (25, 260, 930), None, "open", 20),
    "8.2.4382_ACB_2": ("D8.2.4382", 94.104, 1516088.893, [], "net", 11.256, 105.36, [],
                       [("122000000001", "acb", 0, None, 18), ("122000000002", "acb", 1, None, 27)], (18, 0, 446),
                       None, None, 5),
    # IQ Meter Collar: relay from grid_state on_grid; storage + backfeed meters
    "8.3.1598_collar": ("D8.3.1598", 0.0, 47077.959, [0.0, -0.0], "net", 3760.828, 0.0 + 3760.828,
                        [2395.037, 1459.645],
                        [("492516006337", "encharge", 92, -532, 32), ("492517004892", "encharge", 86, -552, 33)],
                        None, "closed", "open", 17),
    "8.3.5167_3rd-pv": ("D8.3.5167", 5235.674, 569122.622, [2915.527, 1162.315, 1157.832], "net", -4912.241,
                        5235.674 + -4912.241, [-2879.825, -877.472, -1154.943],
                        [("492511001422", "encharge", 100, 16, 28), ("492513006042", "encharge", 100, 16, 28)], None,
                        "closed", None, 0),
    "8.3.5169_ACB_inventory": ("D8.3.5169", -3.982, 1692970.739, [], "net", 1415.634, -3.982 + 1415.634, [],
                               [("121917000000", "acb", 2, None, 32), ("122047000000", "acb", 0, None, 32)],
                               (1, -2, 25), None, "open", 5),
    "8.3.5169_with_generator": ("D8.3.5169", 2891.863, 11567966.148, [1441.41, 1450.453], "net", 160.49,
                                2891.863 + 160.49, [-271.656, 432.145], [], None, "closed", "open", 20),
    # an inverter gone from production.json (modGone); net meter disabled
    "8.3.5289_modGone": ("D8.3.5289", 1634.739, 10251324.057, [], None, None, None, [], [], None, None, "open", 12),
    # a total-consumption CT: load measured, grid = load - production
    "8.3.5433_tot_is_net_cons": ("D8.3.5433", 352.751, 14405465.57, [180.664, 179.906], "total",
                                 786.513 - 352.751, 786.513, [431.202 - 180.664, 364.572 - 179.906], [], None,
                                 "closed", "open", 12),
}


def test_the_table_covers_every_set() -> None:
    assert set(E) == set(set_dirs())
    assert len(E) >= 38


def _approx(v: object) -> object:
    if isinstance(v, list):
        return [_approx(x) for x in v]
    return pytest.approx(v, abs=1e-6) if isinstance(v, float) else v


@pytest.mark.parametrize("name", sorted(E))
def test_key_figures(name: str) -> None:
    fw, pw, pwh, pph, ct, gw, lw, gph, batts, acb, relay, gen, ninv = E[name]
    site = parse_site(load_set(name))
    assert site.firmware == fw
    prod = site.production
    assert (prod.watts if prod else None) == _approx(pw)
    assert (prod.lifetime_wh if prod else None) == _approx(pwh)
    assert (prod.phases_w if prod else []) == _approx(pph)
    assert site.consumption_ct == ct
    assert (site.grid.watts if site.grid else None) == _approx(gw)
    assert (site.load.watts if site.load else None) == _approx(lw)
    assert (site.grid.phases_w if site.grid else []) == _approx(gph)
    got = [(b.serial, b.kind, b.soc_pct, b.power_w, b.temperature_c) for b in site.batteries]
    assert got == [tuple(_approx(x) for x in b) for b in batts]
    assert site.acb_total == acb
    assert site.relay == relay
    assert (site.generator.oper_state if site.generator else None) == gen
    assert len(site.inverters) == ninv


def test_signs_and_units_of_a_battery_site() -> None:
    """Charging batteries are negative, the storage CT agrees with the sum of the units (8.2.4286)."""
    site = parse_site(load_set("8.2.4286_with_3cts_and_battery_split"))
    assert site.storage is not None and site.storage.watts == pytest.approx(-7083.656)
    assert sum(b.power_w for b in site.batteries) == pytest.approx(-6592)  # -1324 -1324 -1316 -1317 -1311
    assert all(b.capacity_wh == 5000 for b in site.batteries)  # encharge_capacity of an IQ Battery 5P
    assert site.phase_count == 2


@pytest.mark.parametrize("name", sorted(E))
def test_truncated_responses_never_crash(name: str) -> None:
    docs = load_set(name)
    for key, text in docs.items():
        for cut in (0, 1, len(text) // 2):
            parse_site({**docs, key: text[:cut]})


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=8),
    lambda kids: st.lists(kids, max_size=4) | st.dictionaries(
        st.sampled_from(["eid", "state", "measurementType", "phaseCount", "activePower", "actEnergyDlvd",
                         "channels", "production", "consumption", "storage", "type", "activeCount", "wNow",
                         "whLifetime", "lines", "devices", "devices:", "serial_num", "percentFull",
                         "real_power_mw", "mains_oper_state", "grid_state", "oper_state", "x"]),
        kids, max_size=6),
    max_leaves=25,
)
NAMES = ["ivp_meters", "ivp_meters_readings", "production.json", "api_v1_production", "api_v1_production_inverters",
         "ivp_ensemble_inventory", "ivp_ensemble_power", "ivp_ensemble_generator", "ivp_ensemble_relay", "inventory"]


@given(st.dictionaries(st.sampled_from(NAMES), json_values, max_size=6))
def test_parse_site_survives_any_json(docs: dict) -> None:
    site = parse_site({k: json.dumps(v) for k, v in docs.items()})
    for flow in (site.production, site.grid, site.load, site.storage):
        assert flow is None or flow.watts is None or isinstance(flow.watts, int | float)


@given(st.dictionaries(st.sampled_from([*NAMES, "info"]), st.binary(max_size=200), max_size=5))
def test_parse_site_survives_garbage(docs: dict) -> None:
    parse_site(docs)
