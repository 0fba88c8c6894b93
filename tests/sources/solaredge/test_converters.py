"""The shared converter logic: flattening, timestamps, numeric fields, se2state state, CSV column policy."""

from __future__ import annotations

import json
import math
import os
from zoneinfo import ZoneInfo

from hypothesis import given, settings
from hypothesis import strategies as st

from solarbridge.sources.solaredge.converters import (
    CsvSet,
    PointStats,
    SeState,
    metric_fields,
    nice_key,
    record_timestamp,
    records,
    split_path,
    timed_values,
)

INV = {"Date": "2017-11-19", "Time": "10:00:04", "ID": "7F104920", "Pac": 345.25, "Eac": 12.5, "Eday": 100.0,
       "Etot": 1000.0, "Vac": 230.0, "Temp": 30.0}


def test_records_paths_as_the_original_builds_them():
    line = {"events": {}, "inverters": {"7F104920": INV},
            "batteries_0x0030": {"7E1": {"BAT 1\x00": {"Date": "d", "Time": "t"}}},
            "meters_0x0022": {"7E1": {"5_GridImportExport": {"Date": "d"}}},
            "devices": {"x": {"Date": "d"}},          # a level named "devices" disappears
            "command": 5, "list": [1, 2]}             # non-objects are ignored
    assert [p for p, _ in records(line)] == ["inverters.7F104920", "batteries_0x0030.7E1.BAT_1",
                                             "meters_0x0022.7E1.5_GridImportExport", "x"]
    assert nice_key("my devices\x00") == "my_"
    assert split_path("batteries_0x0030.7E1.BAT_1") == ("batteries_0x0030", "7E1.BAT_1")
    assert split_path("x") == ("x", "")


def test_deep_nesting_does_not_exhaust_the_stack():
    obj: dict = {"Date": "2020-01-01"}
    for _ in range(5000):
        obj = {"k": obj}
    assert [len(p.split(".")) for p, _ in records(obj)] == [5000]


def test_timestamp_is_local_time_with_dst_decided_by_the_system(local_tz):
    local_tz("Europe/Berlin")
    summer = record_timestamp({"Date": "2019-10-12", "Time": "10:25:35"})
    winter = record_timestamp({"Date": "2019-12-12", "Time": "10:25:35"})
    assert summer == 1570868735.0  # 08:25:35 UTC (CEST)
    assert winter == 1576142735.0  # 09:25:35 UTC (CET)
    local_tz("UTC")
    assert record_timestamp({"Date": "2019-10-12", "Time": "10:25:35"}) == 1570875935.0


def test_timestamp_with_explicit_zone_ignores_the_host_zone(local_tz):
    local_tz("America/Los_Angeles")
    ts = record_timestamp({"Date": "2019-10-12", "Time": "10:25:35"}, ZoneInfo("Europe/Berlin"))
    assert ts == 1570868735.0


def test_missing_or_invalid_date_gives_no_timestamp():
    assert record_timestamp({"Date": "2019-10-12"}) is None
    assert record_timestamp({"Date": "invalid", "Time": "invalid"}) is None
    assert record_timestamp({"Date": "2019-13-40", "Time": "10:00:00"}) is None
    assert record_timestamp({"Date": 5, "Time": "10:00:00"}) is None


def test_only_json_numbers_are_metrics():
    rec = {"Date": "d", "Time": "t", "Undeciphered_data": 5, "ID": "12345678", "a": 1, "b": 2.5, "c": float("nan"),
           "d": True, "e": None, "f": [1], "g": float("inf"), "h": -3}
    assert list(metric_fields(rec)) == [("a", 1), ("b", 2.5), ("h", -3)]


def test_timed_values_skip_untimed_records_and_count_them(utc):
    stats = PointStats()
    pts = timed_values({"inverters": {"A": INV, "B": {"Date": "bad", "Time": "x", "Pac": 1.0}}}, "solar",
                          stats=stats)
    assert stats.records == 2 and stats.untimed == 1 and stats.points == len(pts) == 6
    assert pts[0] == ("solar.inverters.A.Pac", 1511085604.0, 345.25)


# ----------------------------------------------------------------------------- se2state


def test_state_stats_and_optimizer_power():
    st_ = SeState()
    st_.update({"inverters": {"A": dict(INV), "B": dict(INV, Pac=100.0, Vac=240.0, Temp=40.0)},
                "optimizers": {"O1": {"Date": "2017-11-19", "Vmod": 30.0, "Imod": 2.0, "Temp": 20.0},
                               "O2": {"Date": "2017-11-19", "Vmod": 10.0, "Imod": 1.0, "Temp": 30.0}},
                "events": {}})
    s = st_.state
    assert s["inverters"]["stats"]["Pac"] == 445.25
    assert s["inverters"]["stats"]["Vac"] == 235.0
    assert s["inverters"]["stats"]["Temp"] == 35.0
    assert s["inverters"]["stats"]["Etot"] == 2000.0
    assert s["optimizers"]["O1"]["Pdc"] == 60.0 and s["optimizers"]["O2"]["Pdc"] == 10.0
    assert s["optimizers"]["stats"]["Temp"] == 25.0


def test_state_eday_never_decreases_within_a_day_and_restarts_next_day():
    st_ = SeState()
    st_.update({"inverters": {"A": dict(INV, Eday=500.0)}})
    st_.update({"inverters": {"A": dict(INV, Eday=400.0)}})
    assert st_.state["inverters"]["stats"]["Eday"] == 500.0
    st_.update({"inverters": {"A": dict(INV, Date="2017-11-20", Eday=3.0)}})
    assert st_.state["inverters"]["stats"]["Eday"] == 3.0


def test_state_event_zeroes_power_everywhere():
    st_ = SeState()
    st_.update({"inverters": {"A": dict(INV)}, "optimizers": {"O": {"Date": "d", "Vmod": 30.0, "Imod": 2.0,
                                                                     "Vopt": 40.0}}})
    st_.update({"events": {"A": {"Date": "d", "Type": 0}}, "inverters": {}, "optimizers": {}})
    s = st_.state
    assert s["inverters"]["A"]["Pac"] == 0.0 and s["inverters"]["A"]["Eac"] == 0.0
    assert s["inverters"]["stats"]["Pac"] == 0.0
    assert s["optimizers"]["O"]["Vmod"] == s["optimizers"]["O"]["Imod"] == s["optimizers"]["O"]["Vopt"] == 0.0
    assert s["optimizers"]["O"]["Pdc"] == 60.0  # computed before the event, as the original


def test_state_initial_inverters_and_reload():
    st_ = SeState.initial(["A", "B"])
    assert st_.state["inverters"]["A"]["Pac"] == 0.0 and "A" not in st_.state["inverters"]["stats"]
    again = SeState(json.loads(st_.to_json()))
    assert again.state == st_.state


def test_state_tolerates_partial_records():
    st_ = SeState()
    assert st_.update({"inverters": {"3ph": {"Date": "d", "Vac1": 230.0, "Etot": 5.0}, "junk": 3}})
    assert st_.state["inverters"]["stats"]["Etot"] == 5.0
    assert st_.state["inverters"]["stats"]["Vac"] == 0
    assert not st_.update({"command": 1})


# ----------------------------------------------------------------------------- CSV


def test_csv_delimiter_header_and_identifier(tmp_path):
    out = CsvSet(str(tmp_path / "p"), delimiter="\t", header=True)
    out.write_line({"inverters": {"A": INV}})
    out.close()
    lines = (tmp_path / "p.inverters.csv").read_bytes().decode().split("\r\n")
    assert lines[0] == "\t".join(["__Identifier__", "Date", "Eac", "Eday", "Etot", "ID", "Pac", "Temp", "Time", "Vac"])
    assert lines[1].split("\t")[:3] == ["A", "2017-11-19", "12.5"]


def test_csv_new_keys_widen_the_file_without_shifting_columns(tmp_path):
    out = CsvSet(str(tmp_path / "p"), header=True)
    out.write_line({"inverters": {"A": {"Date": "d", "b": 1}}})
    out.write_line({"inverters": {"A": {"Date": "d", "b": 2, "a": 3, "c": 4}}})
    out.write_line({"inverters": {"A": {"Date": "d", "c": 5}}})
    out.close()
    rows = [r.split(",") for r in (tmp_path / "p.inverters.csv").read_bytes().decode().split("\r\n") if r]
    assert rows == [["__Identifier__", "Date", "b", "a", "c"], ["A", "d", "1", "", ""], ["A", "d", "2", "3", "4"],
                    ["A", "d", "", "", "5"]]
    assert out.widened == [("inverters", ["a", "c"])]


def test_csv_append_keeps_existing_header_columns(tmp_path):
    first = CsvSet(str(tmp_path / "p"), header=True)
    first.write_line({"inverters": {"A": {"Date": "d", "x": 1, "y": 2}}})
    first.close()
    second = CsvSet(str(tmp_path / "p"), header=True, append=True)
    second.write_line({"inverters": {"B": {"y": 5, "Date": "e", "x": 6}}})
    second.close()
    text = (tmp_path / "p.inverters.csv").read_bytes().decode()
    assert text == "__Identifier__,Date,x,y\r\nA,d,1,2\r\nB,e,6,5\r\n"


def test_csv_device_type_cannot_leave_the_prefix_directory(tmp_path):
    (tmp_path / "out").mkdir()
    out = CsvSet(str(tmp_path / "out" / "p"))
    out.write_line({"../../x": {"A": {"Date": "d"}}, "a/b": {"B": {"Date": "d"}}})
    out.close()
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["p..csv", "p.a_b.csv"]  # dots split levels: "../../x" has an empty type
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_csv_quotes_cells_containing_the_delimiter(tmp_path):
    out = CsvSet(str(tmp_path / "p"), delimiter=";")
    out.write_line({"events": {"A": {"Date": "d", "Event1": "a;b", "n": float("nan")}}})
    out.close()
    assert (tmp_path / "p.events.csv").read_bytes().decode() == 'A;d;"a;b";nan\r\n'


# ----------------------------------------------------------------------------- fuzzing

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=6), children, max_size=4),
    max_leaves=25)
record_like = st.fixed_dictionaries({"Date": st.sampled_from(["2020-01-01", "bad", "2020-02-30"]),
                                     "Time": st.sampled_from(["10:00:00", "x", "25:00:00"])},
                                    optional={"Pac": json_values, "ID": json_values, "Vmod": json_values,
                                              "Imod": json_values, "Eday": json_values})
lines = st.dictionaries(st.sampled_from(["inverters", "optimizers", "events", "x y", "devices", "m"]),
                        st.dictionaries(st.text(max_size=5), record_like | json_values, max_size=3) | json_values,
                        max_size=4)


@settings(max_examples=1500 if os.environ.get("SOLARBRIDGE_FUZZ") else 60)
@given(st.lists(lines, max_size=4))
def test_every_converter_survives_arbitrary_json_objects(tmp_path_factory, objs):
    d = tmp_path_factory.mktemp("fuzz")
    state = SeState()
    out = CsvSet(str(d / "p"), header=True)
    try:
        for obj in objs:
            for p, ts, v in timed_values(obj, "b"):
                assert p.startswith("b.") and isinstance(ts, float) and math.isfinite(v)
            state.update(obj)
            out.write_line(obj)
        json.loads(state.to_json())
    finally:
        out.close()
