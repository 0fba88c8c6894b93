"""Fixtures for the MQTT and InfluxDB sink tests (helpers live in tests/support/mqtt_influx.py)."""

from __future__ import annotations

from typing import Any

import pytest

from support.mqtt_influx import Collector


@pytest.fixture
def collector_factory():
    made: list[Collector] = []

    def make(port: int, **kw: Any) -> Collector:
        c = Collector(port, **kw)
        made.append(c)
        return c

    yield make
    for c in made:
        c.close()
