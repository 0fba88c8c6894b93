"""Graphite sink configuration errors and client bookkeeping that need no server."""

from __future__ import annotations

import socket
from datetime import UTC, datetime

import pytest

from solarbridge import config
from solarbridge.model import Reading
from solarbridge.sinks.graphite.sink import GraphiteClient, reading_points


@pytest.mark.parametrize(("entry", "message"), [
    ({"template": "{prefix}.{serial}.{metric}"}, "sinks[0].template: unknown placeholder {serial}"),
    ({"template": "{prefix}.x"}, "sinks[0].template: template must contain {metric}"),
    ({"protocol": "udp"}, "sinks[0].protocol: Input should be 'text' or 'pickle'"),
    ({"port": 70000}, "sinks[0].port: Input should be less than or equal to 65535"),
    ({"confirm_interval": "soon"}, "sinks[0].confirm_interval: not a duration"),
    ({"colour": "red"}, "sinks[0]"),
])
def test_bad_config_is_one_line_naming_the_key(entry, message):
    with pytest.raises(config.ConfigError) as e:
        config.build({"daemon": {"history": False}, "sinks": [{"type": "graphite", **entry}]})
    assert str(e.value).startswith(message) and "\n" not in str(e.value)


def test_default_port_follows_the_protocol(tmp_path):
    from solarbridge.plugin import Context
    from solarbridge.sinks.graphite.sink import GraphiteSink

    for proto, port in (("text", 2003), ("pickle", 2004)):
        cfg = config.build({"daemon": {"history": False}, "sinks": [{"type": "graphite", "protocol": proto}]})
        sink = GraphiteSink(cfg.sinks[0], Context.standalone("g", "sink", "graphite", tmp_path))
        assert sink.client.port == port


def test_reading_points_template_booleans_and_strings():
    r = Reading("SN.1", "inverter", datetime(2026, 1, 1, 12, 0, 0, 700_000, tzinfo=UTC),
                {"pv_power_w": 10.5, "grid_available": False, "mode": "MPPT", "nan_w": float("nan")}, "se")
    pts = reading_points([r, Reading("x", "y", r.timestamp, {}, online=False)], "{source}.{device_id}.{metric}", "p")
    assert pts == [("se.SN_1.pv_power_w", 1767268800.0, 10.5), ("se.SN_1.grid_available", 1767268800.0, 0)]


def test_failed_sends_do_not_pile_up_in_the_replay_window():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    client = GraphiteClient("127.0.0.1", port, timeout=1, sleep=lambda _s: None, status=lambda _m: None)
    for _ in range(5):
        with pytest.raises(ConnectionError, match="unreachable"):
            client.send(b"a.b 1 2\n", 1, retry_for=0)
    assert client.unconfirmed() == 0 and client.sent_points == 0
    client.close()
