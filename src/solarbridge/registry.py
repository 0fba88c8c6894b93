"""Where each source, sink and simulator lives, as import paths so nothing is imported early.

Adding a device or an output is one module plus one line here.
"""

from __future__ import annotations

import importlib
from typing import Any

SOURCES: dict[str, str] = {
    "synthetic": "solarbridge.sources.synthetic.source:SyntheticSource",
    "enphase": "solarbridge.sources.enphase.source:EnphaseSource",
    "solaredge": "solarbridge.sources.solaredge.source:SolarEdgeSource",
    "givenergy": "solarbridge.sources.givenergy.source:GivEnergySource",
    "sunsynk_capture": "solarbridge.sources.sunsynk.source:SunsynkCaptureSource",
}

SINKS: dict[str, str] = {
    "null": "solarbridge.sinks.null.sink:NullSink",
    "jsonl": "solarbridge.sinks.files.sink:JsonlSink",
    "csv": "solarbridge.sinks.files.sink:CsvSink",
    "state": "solarbridge.sinks.files.sink:StateSink",
    "history": "solarbridge.sinks.history.sink:HistorySink",
    "nut": "solarbridge.sinks.nut.sink:NutSink",
    "mqtt": "solarbridge.sinks.mqtt.sink:MqttSink",
    "influxdb2": "solarbridge.sinks.influx.sink:InfluxSink",
    "graphite": "solarbridge.sinks.graphite.sink:GraphiteSink",
    "ha_rest": "solarbridge.sinks.homeassistant_rest.sink:HaRestSink",
}

#: `solarbridge simulate NAME ...` -> module with ``main(argv) -> int``
SIMULATORS: dict[str, str] = {
    "enphase": "solarbridge.sources.enphase.simulator",
    "solaredge": "solarbridge.sources.solaredge.simulator",
    "givenergy": "solarbridge.sources.givenergy.simulator",
    "sunsynk": "solarbridge.sources.sunsynk.simulator",
}

#: modules with ``async def start(workdir: Path) -> DemoPart`` (see solarbridge.cli.demo)
DEMO_PARTS: tuple[str, ...] = (
    "solarbridge.sources.synthetic.demo",
    "solarbridge.sources.enphase.demo",
    "solarbridge.sources.solaredge.demo",
    "solarbridge.sources.givenergy.demo",
    "solarbridge.sources.sunsynk.demo",
)


def load(path: str) -> Any:
    """Import ``"package.module:Name"`` and return the attribute."""
    module, _, attr = path.partition(":")
    mod = importlib.import_module(module)
    return getattr(mod, attr) if attr else mod

