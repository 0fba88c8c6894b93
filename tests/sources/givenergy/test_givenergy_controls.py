"""Control payloads -> register writes (pure), with the fact sheet's tables as the oracle."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from solarbridge.model import ControlError
from solarbridge.sources.givenergy.controls import (
    CONTROL_NAMES,
    MODE_NAMES,
    check_write,
    control_specs,
    mode_name,
    mode_number,
    plan,
)
from solarbridge.sources.givenergy.framing import LanConfig, decode_frame


@pytest.mark.parametrize(("command", "payload", "writes"), [
    ("enableChargeTarget", None, [(20, 1)]),
    ("disableChargeTarget", None, [(20, 0)]),
    ("pauseChargeSchedule", None, [(96, 0)]),
    ("resumeChargeSchedule", "", [(96, 1)]),
    ("pauseDischargeSchedule", {}, [(59, 0)]),
    ("resumeDischargeSchedule", None, [(59, 1)]),
    ("setChargeTarget", {"chargeToPercent": "50"}, [(96, 1), (20, 1), (116, 50)]),
    ("setChargeTarget", {"chargeToPercent": 100}, [(96, 1), (20, 0), (116, 100)]),
    ("setChargeTarget", "45", [(96, 1), (20, 1), (116, 45)]),  # MQTT: bare payload
    ("setBatteryReserve", {"dischargeToPercent": "5"}, [(110, 5)]),
    ("setBatteryReserve", '{"dischargeToPercent": 20}', [(110, 20)]),
    ("setChargeSlot1", {"start": "0100", "finish": "0400", "chargeToPercent": "55"},
     [(94, 100), (95, 400), (20, 1), (116, 55)]),
    ("setChargeSlot1", {"start": "23:30", "finish": "05:30"}, [(94, 2330), (95, 530)]),
    ("setChargeSlot2", {"start": "0130", "finish": "02:45"}, [(31, 130), (32, 245)]),
    ("setDischargeSlot1", {"start": "16:00", "finish": "1900", "dischargeToPercent": 20},
     [(56, 1600), (57, 1900), (114, 20)]),
    ("setDischargeSlot2", {"start": "0000", "finish": "0001"}, [(44, 0), (45, 1)]),
    ("setBatteryMode", {"mode": "1"}, [(110, 4), (59, 0), (27, 1)]),
    ("setBatteryMode", {"mode": 2}, [(110, 100), (59, 1), (27, 1), (56, 1600), (57, 700)]),
    ("setBatteryMode", {"mode": "3"}, [(110, 100), (59, 1), (27, 1)]),
    ("setBatteryMode", {"mode": "4"}, [(110, 4), (59, 1), (27, 0)]),
    ("setBatteryMode", {"mode": "Eco"}, [(27, 1), (59, 0), (110, 4)]),
    ("setBatteryMode", "Eco (Paused)", [(27, 1), (59, 0), (110, 100)]),
    ("setBatteryMode", {"mode": "timed demand"}, [(27, 1), (59, 1)]),
    ("setBatteryMode", {"mode": "Timed Export"}, [(27, 0), (59, 1)]),
    ("charge_target_pct", 80, [(96, 1), (20, 1), (116, 80)]),
    ("battery_reserve_pct", "10", [(110, 10)]),
    ("battery_mode", "Timed Export", [(27, 0), (59, 1)]),
    ("charge_target_enabled", False, [(20, 0)]),
    ("charge_schedule_enabled", "ON", [(96, 1)]),
    ("discharge_schedule_enabled", True, [(59, 1)]),
    ("charge_slot_1_start", "01:15", [(94, 115)]),
    ("charge_slot_2_end", "0630", [(32, 630)]),
    ("discharge_slot_1_end", "19:00", [(57, 1900)]),
    ("discharge_slot_2_start", "17:00", [(44, 1700)]),
])
def test_plans(command: str, payload: object, writes: list[tuple[int, int]]) -> None:
    assert plan(command, payload).writes == writes


def test_eco_restores_saved_reserve() -> None:
    assert plan("setBatteryMode", "Eco", saved_reserve=25).writes == [(27, 1), (59, 0), (110, 25)]
    assert plan("setBatteryReserve", "30").saved_reserve == 30


@pytest.mark.parametrize(("command", "payload", "field", "hint"), [
    ("setChargeTarget", {"chargeToPercent": "150"}, "chargeToPercent", "4..100"),
    ("setChargeTarget", {"chargeToPercent": "3"}, "chargeToPercent", "4..100"),
    ("setChargeTarget", {"chargeToPercent": "lots"}, "chargeToPercent", "4..100"),
    ("setChargeTarget", {"chargeToPercent": 50.5}, "chargeToPercent", "4..100"),
    ("setChargeTarget", {}, "chargeToPercent", "required"),
    ("setBatteryReserve", {"dischargeToPercent": "101"}, "dischargeToPercent", "4..100"),
    ("setChargeSlot1", {"start": "2400", "finish": "0400"}, "start", "23:59"),
    ("setChargeSlot1", {"start": "0100", "finish": "04:60"}, "finish", "23:59"),
    ("setChargeSlot1", {"start": "0100"}, "finish", "required"),
    ("setChargeSlot1", {"start": "0100", "finish": "0400", "chargeToPercent": "0"}, "chargeToPercent", "4..100"),
    ("setBatteryMode", {"mode": "5"}, "mode", "Timed Export"),
    ("setBatteryMode", {"mode": "Turbo"}, "mode", "1..4"),
    ("setChargeTarget", "{not json", "payload", "JSON"),
    ("frobnicate", None, "command", "setChargeTarget"),
    ("charge_target_enabled", "maybe", "charge_target_enabled", "enable/disable"),
])
def test_invalid_payloads_name_field_and_range(command: str, payload: object, field: str, hint: str) -> None:
    with pytest.raises(ControlError) as ei:
        plan(command, payload)
    assert ei.value.field_name == field
    assert field in str(ei.value) and hint in str(ei.value)
    assert 400 <= ei.value.status < 500


def test_whitelist() -> None:
    check_write(116, 50)
    with pytest.raises(ControlError, match="whitelist"):
        check_write(0, 1)  # device type code
    with pytest.raises(ControlError, match="4..100"):
        check_write(110, 2)
    with pytest.raises(ControlError, match="HHMM"):
        check_write(94, 1275)


def test_mode_derivations() -> None:
    assert mode_name(1, 0, 4) == "Eco"
    assert mode_name(1, 0, 100) == "Eco (Paused)"
    assert mode_name(1, 1, 4) == "Timed Demand"
    assert mode_name(0, 1, 4) == "Timed Export"
    assert mode_name(0, 0, 4) == "Export (Paused)"
    assert mode_number(1, 0, 4) == 1 and mode_number(1, 1, 100) == 3 and mode_number(0, 1, 4) == 4
    assert mode_number(1, 1, 4) == "unknown"


def test_control_specs_cover_contract_names() -> None:
    names = {s.name for s in control_specs(allow_reboot=True)}
    assert names <= set(CONTROL_NAMES) and "reboot" in names
    assert "reboot" not in {s.name for s in control_specs()}
    mode = next(s for s in control_specs() if s.name == "battery_mode")
    assert mode.options == MODE_NAMES
    assert all(s.state_metric for s in control_specs())


@given(st.one_of(st.none(), st.integers(), st.floats(allow_nan=True), st.text(max_size=30),
                 st.dictionaries(st.sampled_from(["start", "finish", "chargeToPercent", "mode", "state",
                                                  "dischargeToPercent"]),
                                 st.one_of(st.integers(-10, 3000), st.text(max_size=8)), max_size=4)),
       st.sampled_from(["setChargeTarget", "setChargeSlot1", "setBatteryMode", "setBatteryReserve",
                        "enableChargeTarget", "setDischargeSlot2", "charge_slot_1_start", "battery_mode"]))
def test_any_payload_is_a_valid_plan_or_a_control_error(payload: object, command: str) -> None:
    try:
        p = plan(command, payload)
    except ControlError as e:
        assert e.field_name
        return
    for reg, val in p.writes:
        check_write(reg, val)


def test_lan_config_broadcast_is_recognised() -> None:
    body = b"WO2314G000" + bytes(7) + b",192.168.1.20,255.255.255.0,192.168.1.1\r\n\r\n" + b"\x00\x00"
    frame = b"YY\x00\x01" + (len(body) + 2).to_bytes(2, "big") + b"\x01\x02" + body
    fr = decode_frame(frame)
    assert isinstance(fr, LanConfig) and fr.text.startswith("192.168.1.20,")


def test_rates_in_watts() -> None:
    from solarbridge.sources.givenergy.controls import PlanContext

    ctx = PlanContext(battery_capacity_wh=8192.0, max_battery_w=2600.0)
    assert plan("setChargeRate", {"chargeRate": "2600"}, context=ctx).writes == [(111, 32)]
    assert plan("setDischargeRate", "10000", context=ctx).writes == [(112, 32)]  # capped at the battery rate
    assert plan("setChargeRate", {"chargeRate": 0}, context=ctx).writes == [(111, 0)]
    big = PlanContext(battery_capacity_wh=2000.0, max_battery_w=6000.0)
    assert plan("setChargeRate", "5000", context=big).writes == [(111, 50)]  # register limit 50
    with pytest.raises(ControlError, match="chargeRate: must be a power"):
        plan("setChargeRate", {"chargeRate": "-5"}, context=ctx)
    with pytest.raises(ControlError) as ei:
        plan("setChargeRate", "100")  # capacity not known yet
    assert ei.value.status == 503


def test_date_time() -> None:
    from datetime import datetime

    from solarbridge.sources.givenergy.controls import PlanContext

    assert plan("setDateTime", {"dateTime": "25/11/2026 13:45:10"}).writes == [
        (35, 26), (36, 11), (37, 25), (38, 13), (39, 45), (40, 10)]
    ctx = PlanContext(now=datetime(2027, 1, 2, 3, 4, 5))
    assert plan("syncDateTime", None, context=ctx).writes == [(35, 27), (36, 1), (37, 2), (38, 3), (39, 4), (40, 5)]
    with pytest.raises(ControlError, match="DD/MM/YYYY"):
        plan("setDateTime", {"dateTime": "2026-11-25 13:45"})
