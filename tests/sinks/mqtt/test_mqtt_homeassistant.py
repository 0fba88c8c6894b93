"""Discovery payloads generated from the data model, and command validation (no broker needed)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from solarbridge.model import CANONICAL, ControlError, ControlSpec, DeviceInfo
from solarbridge.sinks.mqtt import discovery as ha
from solarbridge.sinks.mqtt import layouts

INFO = DeviceInfo("SN 1/2", "inverter", manufacturer="Acme", model="X1", serial="SN12", sw_version="1.0",
                  name="Roof")
D = ha.Discovery("solarbridge", "homeassistant")

# what Home Assistant's Energy dashboard and sensor platform need, per canonical metric
EXPECTED = {
    "pv_power_w": ("sensor", "power", "measurement", "W"),
    "pv_energy_today_wh": ("sensor", "energy", "total_increasing", "Wh"),
    "pv_energy_total_wh": ("sensor", "energy", "total_increasing", "Wh"),
    "grid_power_w": ("sensor", "power", "measurement", "W"),
    "grid_import_energy_total_wh": ("sensor", "energy", "total_increasing", "Wh"),
    "grid_export_energy_total_wh": ("sensor", "energy", "total_increasing", "Wh"),
    "grid_voltage_v": ("sensor", "voltage", "measurement", "V"),
    "grid_frequency_hz": ("sensor", "frequency", "measurement", "Hz"),
    "grid_available": ("binary_sensor", "power", None, None),
    "battery_power_w": ("sensor", "power", "measurement", "W"),
    "battery_soc_pct": ("sensor", "battery", "measurement", "%"),
    "battery_voltage_v": ("sensor", "voltage", "measurement", "V"),
    "battery_current_a": ("sensor", "current", "measurement", "A"),
    "battery_temperature_c": ("sensor", "temperature", "measurement", "°C"),
    "battery_capacity_wh": ("sensor", "energy_storage", None, "Wh"),
    "battery_charge_energy_total_wh": ("sensor", "energy", "total_increasing", "Wh"),
    "battery_discharge_energy_total_wh": ("sensor", "energy", "total_increasing", "Wh"),
    "battery_runtime_s": ("sensor", "duration", "measurement", "s"),
    "load_power_w": ("sensor", "power", "measurement", "W"),
    "load_energy_total_wh": ("sensor", "energy", "total_increasing", "Wh"),
    "inverter_temperature_c": ("sensor", "temperature", "measurement", "°C"),
    "inverter_power_w": ("sensor", "power", "measurement", "W"),
    "self_consumption_w": ("sensor", "power", "measurement", "W"),
    "self_consumption_pct": ("sensor", None, "measurement", "%"),
    "self_sufficiency_pct": ("sensor", None, "measurement", "%"),
    "balance_residual_w": ("sensor", "power", "measurement", "W"),
    "self_consumption_energy_total_wh": ("sensor", "energy", "total_increasing", "Wh"),
    "grid_power_w_l2": ("sensor", "power", "measurement", "W"),
    "pv_voltage_v_l1": ("sensor", "voltage", "measurement", "V"),
}


def test_every_canonical_metric_is_covered():
    assert set(CANONICAL) <= set(EXPECTED)


@pytest.mark.parametrize("metric", sorted(EXPECTED))
def test_sensor_discovery_per_metric(metric):
    component, device_class, state_class, unit = EXPECTED[metric]
    value = True if component == "binary_sensor" else 1.5
    topic, p = D.sensor(INFO, metric, value)
    node = "solarbridge_SN_1_2"
    assert topic == f"homeassistant/{component}/{node}/{node}_{metric}/config"
    keys = {"unique_id", "object_id", "name", "state_topic", "value_template", "availability", "availability_mode",
            "device", "origin"}
    if component == "binary_sensor":
        keys |= {"payload_on", "payload_off"}
    for k, v in (("device_class", device_class), ("state_class", state_class), ("unit_of_measurement", unit)):
        if v is not None:
            keys.add(k)
            assert p[k] == v
    assert set(p) == keys
    assert p["unique_id"] == p["object_id"] == f"{node}_{metric}"
    assert p["state_topic"] == "solarbridge/SN_1_2/state"
    assert metric in p["value_template"]
    assert p["availability"] == [{"topic": "solarbridge/status"}, {"topic": "solarbridge/SN_1_2/availability"}]
    assert p["device"] == {"identifiers": [node], "name": "Roof", "manufacturer": "Acme", "model": "X1",
                           "serial_number": "SN12", "sw_version": "1.0"}
    assert p["origin"]["name"] == "solarbridge"


def test_string_metric_has_no_numeric_classes():
    _, p = D.sensor(INFO, "status_text", "Normal")
    assert not {"device_class", "state_class", "unit_of_measurement"} & set(p)


def test_expire_after_and_names():
    _, p = ha.Discovery("sb", expire_after=300).sensor(INFO, "pv_energy_today_wh", 1)
    assert p["expire_after"] == 300 and p["name"] == "PV energy today"
    assert ha.human_name("grid_power_w_l3") == "Grid power L3"


CONTROLS = [
    (ControlSpec("charge_target_pct", "number", unit="%", minimum=4, maximum=100, step=1,
                 state_metric="charge_target_pct"), "number",
     {"min": 4, "max": 100, "step": 1, "unit_of_measurement": "%", "mode": "box"}),
    (ControlSpec("battery_mode", "select", options=("Eco", "Timed Export")), "select",
     {"options": ["Eco", "Timed Export"], "optimistic": False}),
    (ControlSpec("discharge_enabled", "switch", state_metric="discharge_enabled"), "switch",
     {"payload_on": "ON", "payload_off": "OFF", "state_on": "ON", "state_off": "OFF"}),
    (ControlSpec("slot_1_start", "time", state_metric="slot_1_start"), "text",
     {"pattern": ha.TIME_PATTERN, "min": 5, "max": 5}),
    (ControlSpec("reboot", "button"), "button", {"payload_press": "PRESS"}),
]


@pytest.mark.parametrize(("spec", "component", "extra"), CONTROLS, ids=[c[0].name for c in CONTROLS])
def test_control_discovery(spec, component, extra):
    topic, p = D.control(INFO, spec)
    assert topic.startswith(f"homeassistant/{component}/solarbridge_SN_1_2/")
    assert p["command_topic"] == f"solarbridge/SN_1_2/{spec.name}/set"
    for k, v in extra.items():
        assert p[k] == v
    if spec.state_metric:
        assert p["state_topic"] == "solarbridge/SN_1_2/state" and spec.state_metric in p["value_template"]


NUM = ControlSpec("charge_target_pct", "number", minimum=4, maximum=100, step=1)
HALF = ControlSpec("rate", "number", minimum=0, maximum=2.5, step=0.5)


@pytest.mark.parametrize(("spec", "payload", "value"), [
    (NUM, b"45", 45), (NUM, b"45.0", 45), (NUM, b'"100"', 100), (HALF, b"1.5", 1.5),
    (ControlSpec("m", "select", options=("Eco", "Eco (Paused)")), b"Eco (Paused)", "Eco (Paused)"),
    (ControlSpec("s", "switch"), b"ON", True), (ControlSpec("s", "switch"), b"off", False),
    (ControlSpec("t", "time"), b"5:30", "05:30"), (ControlSpec("t", "time"), b"23:59:00", "23:59"),
    (ControlSpec("x", "text"), b"hello", "hello"), (ControlSpec("b", "button"), b"PRESS", None),
])
def test_validate_ok(spec, payload, value):
    assert layouts.validate_control(spec, payload) == value


@pytest.mark.parametrize(("spec", "payload", "message"), [
    (NUM, b"3", "charge_target_pct: 3 is out of range 4..100"),
    (NUM, b"101", "out of range 4..100"), (NUM, b"45.5", "not a multiple of step 1"),
    (NUM, b"abc", "expected a number"), (NUM, b"true", "expected a number"), (NUM, b"nan", "out of range"),
    (ControlSpec("m", "select", options=("Eco",)), b"eco", "'eco' is not one of Eco"),
    (ControlSpec("s", "switch"), b"maybe", "expected ON or OFF"),
    (ControlSpec("t", "time"), b"24:00", "HH:MM"), (ControlSpec("t", "time"), b"7", "HH:MM"),
    (ControlSpec("x", "text"), b"y" * 300, "longer than 255"), (NUM, b"\xff", "not UTF-8"),
])
def test_validate_rejects_with_field_and_range(spec, payload, message):
    with pytest.raises(ControlError) as e:
        layouts.validate_control(spec, payload)
    assert message in str(e.value) and e.value.field_name == spec.name


@given(st.binary(max_size=40))
def test_validate_never_crashes_on_garbage(payload):
    for spec in (NUM, HALF, ControlSpec("t", "time"), ControlSpec("s", "switch"),
                 ControlSpec("m", "select", options=("a",)), ControlSpec("x", "text")):
        try:
            layouts.validate_control(spec, payload)
        except ControlError:
            pass


def test_givtcp_flatten_and_command_topics():
    tree = {"Power": {"Power": {"SOC": 30, "PV_Power": 1.5}, "Flows": {"Battery_to_House": 2556}},
            "Control": {"Mode": "Eco", "Enabled": True}, "Battery_Details": {"Battery_Stack_1": [{"SOC": 1}]},
            "skip": None}
    leaves = dict(layouts.givtcp_leaves(tree, "GivEnergy/SA1"))
    assert leaves == {"GivEnergy/SA1/Power/Power/SOC": "30", "GivEnergy/SA1/Power/Power/PV_Power": "1.5",
                      "GivEnergy/SA1/Power/Flows/Battery_to_House": "2556", "GivEnergy/SA1/Control/Mode": "Eco",
                      "GivEnergy/SA1/Control/Enabled": "True", "GivEnergy/SA1/Battery_Details/Battery_Stack_1/0/SOC": "1"}
    assert layouts.parse_givtcp_command("GivEnergy/control/SA1/setChargeTarget", "GivEnergy") == ("SA1",
                                                                                                 "setChargeTarget")
    assert layouts.parse_givtcp_command("GivEnergy/SA1/Control/Mode", "GivEnergy") is None
    assert layouts.decode_payload(b"45") == 45 and layouts.decode_payload(b"Eco (Paused)") == "Eco (Paused)"


def test_sunsniff_entities_match_the_original():
    extra = {"serial": "1235687108", "fields": [
        {"id": "battery_charge_total", "name": "Charge Total", "group": "Battery", "unit": "kWh",
         "value": 212.20000000000002, "device_class": "energy", "state_class": "total_increasing"},
        {"id": "grid_frequency", "name": "Frequency", "group": "Grid", "unit": "Hz", "value": 50.0,
         "device_class": None, "state_class": "measurement"}]}
    (c1, s1, p1, t1), (c2, s2, p2, t2) = ha.sunsniff_entities(extra)
    assert c1 == "homeassistant/sensor/sunsniff_1235687108_battery_charge_total/config"
    assert s1 == "homeassistant/sensor/sunsniff_1235687108_battery_charge_total/state"
    assert p1 == {"device": {"identifiers": ["1235687108"]}, "device_class": "energy", "expire_after": 600,
                  "name": "Battery Charge Total", "object_id": "sunsniff_1235687108_battery_charge_total",
                  "state_class": "total_increasing", "state_topic": s1,
                  "unique_id": "sunsniff_1235687108_battery_charge_total", "unit_of_measurement": "kWh"}
    assert t1 == "212.20000000000002"  # Rust f64 Display, as the original printed it
    assert "device_class" not in p2 and t2 == "50"


def test_topic_ids_are_safe():
    assert ha.topic_id("a/b+c#d e") == "a_b_c_d_e"
    assert ha.object_id("sb/x.y") == "sb_x_y"
