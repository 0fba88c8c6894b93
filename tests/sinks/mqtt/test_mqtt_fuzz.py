"""Garbage on the topics the MQTT sink subscribes to never crashes it and never reaches a source unvalidated."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from hypothesis import given
from hypothesis import strategies as st

from solarbridge.model import ControlRequest, ControlResult, DeviceInfo, Reading
from solarbridge.plugin import Context
from solarbridge.sinks.mqtt.sink import MqttConfig, MqttSink
from support.mqtt_influx import GIV_CONTROLS

INFO = DeviceInfo("SA1", "inverter", serial="SA1", controls=GIV_CONTROLS)


class RecordingRuntime:
    def __init__(self) -> None:
        self.requests: list[ControlRequest] = []

    async def control(self, req: ControlRequest) -> ControlResult:
        self.requests.append(req)
        return ControlResult(True, value=req.value)


topics = st.one_of(
    st.sampled_from(["solarbridge/SA1/charge_target_pct/set", "solarbridge/SA1/battery_mode/set",
                     "solarbridge/SA1/charge_target_enabled/set", "solarbridge/SA1/charge_slot_1_start/set",
                     "solarbridge/SA1/nope/set", "solarbridge/XX/charge_target_pct/set", "GivEnergy/control/SA1/x",
                     "homeassistant/status", "solarbridge/SA1/set", "solarbridge//set"]),
    st.text(max_size=40))


@given(msgs=st.lists(st.tuples(topics, st.binary(max_size=30), st.booleans()), max_size=12))
def test_garbage_commands_never_crash_and_are_validated(msgs):
    async def main() -> None:
        ctx = Context.standalone("m", "sink", "mqtt", ".")
        rt = RecordingRuntime()
        ctx.runtime = rt
        sink = MqttSink(MqttConfig(type="mqtt", name="m", layout="givtcp"), ctx)
        await sink.write([Reading("SA1", "inverter", datetime.now(UTC), {"charge_target_pct": 50}, info=INFO)])
        for topic, payload, retained in msgs:
            sink._on_message(topic, payload, retained)
        await asyncio.gather(*sink._tasks, return_exceptions=False)
        specs = {c.name: c for c in GIV_CONTROLS}
        for req in rt.requests:
            spec = specs.get(req.command)
            if spec is None:
                assert req.command == "x"  # GivTCP commands are validated by the source itself
            elif spec.kind == "number":
                assert 4 <= req.value <= 100 and float(req.value).is_integer()
            elif spec.kind == "select":
                assert req.value in spec.options
            elif spec.kind == "switch":
                assert req.value in (True, False)
            elif spec.kind == "time":
                assert len(req.value) == 5 and req.value[2] == ":"

    asyncio.run(main())
