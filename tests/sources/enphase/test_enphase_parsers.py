"""Gateway response parsers, JWT and the KEY=value config parser: real fixtures, edge cases, fuzzing."""

from __future__ import annotations

import base64
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from solarbridge.sinks.nut.portfile import MeterRow, NutInputs, generate, json_number
from solarbridge.sources.enphase import conffile, jwt
from solarbridge.sources.enphase.responses import (
    parse_info,
    parse_livedata,
    parse_relay,
    parse_reports,
    parse_secctrl,
)
from support.enphase import DATA, EXAMPLE, FIXTURES

FIRMWARES = sorted(p.name for p in FIXTURES.iterdir() if p.is_dir() and p.name not in ("example", "livedata"))


def _rows(rows: list | None) -> list[MeterRow]:
    """The source's meter rows as the nut sink's (what the documented ``meter_rows`` extra carries)."""
    return [MeterRow(**r.as_extra()) for r in rows or []]


@pytest.mark.parametrize("fw", FIRMWARES)
def test_every_fixture_gives_a_port_file(fw: str) -> None:
    d = FIXTURES / fw
    info = parse_info((d / "info").read_text())
    # per line, like the original: firmware 4.2.33 writes info.xml on one line, which the original misses
    assert (info is None) == (fw == "4.2.33") and (info is None or info.startswith(("D", "R")))
    sec = d / "ivp_ensemble_secctrl"
    restart = parse_secctrl(sec.read_text()) if sec.exists() else None
    reports = parse_reports((d / "ivp_meters_reports").read_text()) if (d / "ivp_meters_reports").exists() else None
    relay = parse_relay((d / "ivp_ensemble_relay").read_text()) if (d / "ivp_ensemble_relay").exists() else None
    inputs = NutInputs(status="OL", charge="50", capacity="5000", restart=json_number(restart), firmware=info,
                       input=_rows(reports.net if reports else None), output=_rows(reports.total if reports else None))
    out = generate(inputs, {})
    assert out.get("ups.firmware") == info
    assert out["battery.charge.restart"] == (json_number(restart) or "10")
    if relay is not None:
        assert relay.state == "online"


def test_fixture_specifics() -> None:
    assert parse_info((FIXTURES / "8.3.5169_with_generator" / "info").read_text()) == "D8.3.5169"
    assert parse_secctrl((FIXTURES / "8.3.5169_with_generator" / "ivp_ensemble_secctrl").read_text()) == 10
    assert parse_secctrl((FIXTURES / "7.6.175_with_cts_3phase" / "ivp_ensemble_secctrl").read_text()) is None
    live = parse_livedata((DATA / "livedata" / "ivp_livedata_status.meters-excerpt.json").read_text())
    assert live is not None
    assert (live.soc, live.phase_count, live.capacity_wh) == (86, 3, 8600)
    assert live.powers["storage"] == pytest.approx(-6774.0)


def test_relay_states() -> None:
    assert parse_relay('{"mains_oper_state":"closed"}').state == "online"
    assert parse_relay('{"mains_oper_state":"open"}').state == "onbatt"
    r = parse_relay('{"mains_admin_state":"closed"}')
    assert r.state == "nocomms" and r.warning == "envoy relay API missing mains_oper_state"
    r = parse_relay('{"mains_oper_state":null}')
    assert r.state == "nocomms" and "missing" in r.warning
    r = parse_relay('{"mains_oper_state":"weird"}')
    assert r.state == "nocomms" and r.warning == "envoy relay API unknown mains_oper_state 'weird'"
    for bad in ("", "<html>500</html>", '{"mains_oper_state":"clo', "[]", "null", b"\xff\xfe"):
        assert parse_relay(bad) is None


def test_absurd_numbers_do_not_crash_the_mapping() -> None:
    # found by the fuzzer: a soc of 1e26 overflowed the x100 decimal arithmetic
    for soc in ("1e+26", "-1e300", "1e999999"):
        out = generate(NutInputs(status="OB", charge=soc, capacity="5000"), {})
        assert out["ups.status"] == "OB" and "battery.voltage" not in out


def test_livedata_quirks() -> None:
    assert parse_livedata('{"meters":{"soc":null,"phase_count":3}}').soc is None
    assert parse_livedata('{"meters":{"soc":86.5}}').soc == 86.5
    assert json_number(parse_livedata('{"meters":{"soc":100.0}}').soc) == "100"  # printed as jq does
    assert parse_livedata('{"meters":{"soc":"90"}}').soc == 90
    assert parse_livedata('{"meters":{"soc":true}}').soc is None
    assert parse_livedata('{"other":1}') is None


def test_reports_missing_types_and_nulls() -> None:
    rep = parse_reports('[{"reportType":"net-consumption","cumulative":{"currW":null,"rmsVoltage":240},"lines":[]}]')
    assert rep is not None and rep.total is None and rep.storage is None
    assert rep.net is not None and rep.net[0].real_w is None and rep.net[0].voltage_v == 240
    assert parse_reports('{"not":"a list"}') is None
    assert parse_reports("[1, null, \"x\"]") is not None


@given(st.one_of(st.binary(max_size=300), st.text(max_size=300)))
def test_parsers_never_crash_on_garbage(data: bytes | str) -> None:
    for parse in (parse_relay, parse_livedata, parse_secctrl, parse_info, parse_reports):
        parse(data)  # type: ignore[operator]


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=8),
    lambda kids: st.lists(kids, max_size=4) | st.dictionaries(
        st.sampled_from(["meters", "soc", "reportType", "cumulative", "lines", "currW", "rmsVoltage",
                         "mains_oper_state", "soc_recovery_exit", "phase_count", "enc_agg_energy", "x"]),
        kids, max_size=5),
    max_leaves=20,
)


@given(json_values)
def test_parsers_and_mapping_survive_any_json(doc: object) -> None:
    text = json.dumps(doc)
    live = parse_livedata(text)
    rep = parse_reports(text)
    relay = parse_relay(text)
    inputs = NutInputs(status="OL", charge=json_number(live.soc) if live else None,
                       capacity=json_number(live.capacity_wh) if live else None,
                       restart=json_number(parse_secctrl(text)), input=_rows(rep.net if rep else None),
                       output=_rows(rep.total if rep else None),
                       storage=_rows([rep.storage])[0] if rep and rep.storage else None)
    out = generate(inputs, {})
    assert out["ups.status"] in ("OL", "OL LB")
    if relay is not None:
        assert relay.state in ("online", "onbatt", "nocomms")


def test_truncated_fixture_reports_are_no_data() -> None:
    text = (FIXTURES / "8.3.5169_with_generator" / "ivp_meters_reports").read_text()
    for cut in range(0, len(text) - 1, 97):
        assert parse_reports(text[:cut]) is None


# --------------------------------------------------------------------------- JWT


def _tok(claims: dict) -> str:
    return jwt.make(claims)


def test_jwt_expiry_edges() -> None:
    now = 1_800_000_000
    assert jwt.check(_tok({"exp": now + 3600}), now) == (True, "")  # exactly one hour: still usable
    assert jwt.check(_tok({"exp": now + 3599}), now) == (False, "Token lifetime less than 1 hour")
    assert jwt.check(_tok({"exp": now}), now) == (False, "Token expired")
    assert jwt.check(_tok({"exp": now - 5}), now) == (False, "Token expired")
    assert jwt.check(_tok({"other": 1}), now) == (False, "Token expired")  # missing exp counts as 0
    assert jwt.check(_tok({"exp": "soon"}), now) == (False, "Token expired")


def test_jwt_of_example_config() -> None:
    tok = conffile.parse((EXAMPLE / "test.conf").read_text(), {})["TEST_TOKEN"]
    assert jwt.expiry(tok) == 1796474212


def test_jwt_malformed() -> None:
    with pytest.raises(jwt.TokenFormatError, match="Failed to parse token"):
        jwt.payload("no-dots-here")
    with pytest.raises(jwt.TokenFormatError, match="Failed to parse token"):
        jwt.payload("a..b")
    with pytest.raises(jwt.TokenFormatError, match="base64"):
        jwt.payload("a.!!!!.b")
    with pytest.raises(jwt.TokenFormatError, match="base64"):
        jwt.payload("a." + base64.b64encode(b"not json").decode() + ".b")


def test_jwt_accepts_base64url_and_padding() -> None:
    claims = {"exp": 2_000_000_000, "u": "\u00ff\u00fe>>>??"}  # bytes that need - and _ in base64url
    body = base64.urlsafe_b64encode(json.dumps(claims).encode()).decode().rstrip("=")
    assert jwt.expiry(f"h.{body}.s") == 2_000_000_000


@given(st.text(max_size=100))
def test_jwt_fuzz(text: str) -> None:
    try:
        jwt.check(text, 0)
    except jwt.TokenFormatError:
        pass


# --------------------------------------------------------------------------- KEY=value config


def test_conffile_quoting() -> None:
    text = """# comment
USERNAME=me@example.com   # trailing comment
PASSWORD='it''s "quoted"'
export SERIAL="1234"
A=x\\ y; B="$A-${SERIAL}" C='$A'
MULTI='line1
line2'
EMPTY=
ESC="a\\"b\\\\c\\$d"
"""
    v = conffile.parse(text, {"HOME": "/root"})
    assert v["USERNAME"] == "me@example.com"
    assert v["PASSWORD"] == 'its "quoted"'
    assert v["SERIAL"] == "1234"
    assert v["A"] == "x y" and v["B"] == "x y-1234" and v["C"] == "$A"
    assert v["MULTI"] == "line1\nline2"
    assert v["EMPTY"] == ""
    assert v["ESC"] == 'a"b\\c$d'


def test_conffile_env_expansion() -> None:
    assert conffile.parse('D="$HOME/x"', {"HOME": "/h"})["D"] == "/h/x"


@pytest.mark.parametrize("text,line", [
    ("A=1\nrm -rf /\n", 2),
    ("A=$(id)\n", 1),
    ("A=`id`\n", 1),
    ("A=1\nB='open\n\nC=2\n", 2),
    ("A=1 2\n", 1),
    ("if true; then A=1; fi\n", 1),
    ("A=x|y\n", 1),
])
def test_conffile_errors_name_the_line(text: str, line: int) -> None:
    with pytest.raises(conffile.ConfSyntaxError) as e:
        conffile.parse(text, {})
    assert e.value.line == line
    assert str(e.value).startswith(f"line {line}: ")


def test_conffile_example_test_conf() -> None:
    v = conffile.parse((EXAMPLE / "test.conf").read_text(), {})
    assert v["TEST"] == "1" and v["PORT_FILE"] == "test.dev"
    assert json.loads(v["TEST_SECCTRL"])["soc_recovery_exit"] == 10
    assert "@BATT_SOC@" in v["TEST_LIVE"] and "@RELAY_STATE@" in v["TEST_RELAY"]
    assert "DEBUG" not in v  # commented out


@given(st.text(max_size=200))
def test_conffile_fuzz(text: str) -> None:
    try:
        conffile.parse(text, {})
    except conffile.ConfSyntaxError:
        pass
