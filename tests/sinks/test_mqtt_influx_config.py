"""Daemon config for the mqtt and influxdb2 sinks: valid tables load, bad ones give one line naming the key."""

from __future__ import annotations

import pytest

from solarbridge.config import ConfigError, build


def sinks(*tables: dict) -> dict:
    return {"daemon": {"history": False}, "sinks": list(tables)}


def test_valid_tables_load_with_defaults(monkeypatch):
    monkeypatch.setenv("MQTT_PW", "pw")
    cfg = build(sinks({"type": "mqtt", "url": "mqtts://broker.lan", "username": "u", "password": {"env": "MQTT_PW"}},
                      {"type": "influxdb2", "host": "http://influx:8086", "org": "o", "bucket": "b", "token": "s3cr3t-token",
                       "schema": "sunsniff"}))
    m, i = cfg.sinks
    assert (m.base_topic, m.discovery_prefix, m.retain_state, m.qos, m.layout) == \
        ("solarbridge", "homeassistant", True, 0, "solarbridge")
    assert m.password.get_secret_value() == "pw"
    assert (i.schema_, i.precision, i.version, i.gzip) == ("sunsniff", "ns", 2, True)
    assert "s3cr3t" not in repr(i) and i.token.get_secret_value() == "s3cr3t-token"


@pytest.mark.parametrize(("table", "message"), [
    ({"type": "mqtt", "url": "http://x"}, "sinks[0].url: url must look like mqtt://host:1883"),
    ({"type": "mqtt", "qos": 3}, "sinks[0].qos: Input should be less than or equal to 2"),
    ({"type": "mqtt", "base_topic": "a/#"}, "sinks[0].base_topic: must be a topic without wildcards"),
    ({"type": "mqtt", "layout": "foo"}, "sinks[0].layout: Input should be 'solarbridge', 'givtcp' or 'sunsniff'"),
    ({"type": "mqtt", "colour": 1}, "sinks[0].colour: unknown key"),
    ({"type": "influxdb2", "org": "o"}, "bucket is required with version = 2"),
    ({"type": "influxdb2", "bucket": "b", "host": "localhost:8086"}, "host must start with http://"),
    ({"type": "influxdb2", "version": 1}, "database is required with version = 1"),
    ({"type": "influxdb2", "bucket": "b", "schema": "tall"}, "sinks[0].schema: Input should be 'wide' or 'sunsniff'"),
    ({"type": "influxdb2", "bucket": "b", "precision": "m"}, "sinks[0].precision: Input should be"),
    ({"type": "influxdb2", "bucket": "b", "token": {"env": "NOPE_NOT_SET"}}, "NOPE_NOT_SET is not set"),
])
def test_bad_tables_give_one_line(table, message):
    with pytest.raises(ConfigError) as e:
        build(sinks(table))
    text = str(e.value)
    assert message in text and "\n" not in text
