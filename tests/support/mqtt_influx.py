"""Helpers for the MQTT and InfluxDB sink tests (a uniquely named module: every area has a conftest): a real MQTT subscriber, a controllable source, a daemon."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt

from servers import async_wait_for, wait_for
from solarbridge.config import Config, DaemonConfig
from solarbridge.model import ControlError, ControlRequest, ControlResult, ControlSpec, DeviceInfo, Reading
from solarbridge.plugin import Context, PluginConfig, Source
from solarbridge.runtime import Supervisor


@dataclass
class Msg:
    topic: str
    payload: bytes
    retain: bool
    qos: int
    at: float

    def json(self) -> Any:
        return json.loads(self.payload)


class Collector:
    """A real MQTT client subscribed to ``#`` that records every message it receives."""

    def __init__(self, port: int, topics: tuple[str, ...] = ("#",), username: str = "", password: str = "") -> None:
        self.messages: list[Msg] = []
        self.lock = threading.Lock()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"collector-{time.monotonic_ns()}")
        if username:
            self.client.username_pw_set(username, password)
        self._subscribed = threading.Event()
        self.topics = topics
        self.client.on_connect = self._on_connect
        self.client.on_message = self._on_message
        self.client.on_subscribe = lambda *a: self._subscribed.set()
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        assert self._subscribed.wait(10), "collector could not subscribe"

    def _on_connect(self, client: Any, userdata: Any, flags: Any, rc: Any, props: Any) -> None:
        client.subscribe([(t, 1) for t in self.topics])

    def _on_message(self, client: Any, userdata: Any, msg: Any) -> None:
        with self.lock:
            self.messages.append(Msg(msg.topic, bytes(msg.payload), bool(msg.retain), msg.qos, time.monotonic()))

    def snapshot(self) -> list[Msg]:
        with self.lock:
            return list(self.messages)

    def clear(self) -> None:
        with self.lock:
            self.messages.clear()

    def on(self, topic: str) -> list[Msg]:
        return [m for m in self.snapshot() if m.topic == topic]

    def last(self, topic: str) -> Msg | None:
        ms = self.on(topic)
        return ms[-1] if ms else None

    def seen(self, what: str | Callable[[], str]) -> Callable[[], str]:
        """``what`` (a text or a callable giving one) worded with the topics received so far, for a wait's
        failure message."""
        return lambda: (f"{what() if callable(what) else what}; "
                        f"topics seen: {sorted({m.topic for m in self.snapshot()})[:40]}")

    def find(self, topic: str, pred: Callable[[Msg], bool] | None = None) -> Msg | None:
        """The latest message on ``topic`` (that ``pred`` accepts), or None."""
        return next((m for m in reversed(self.snapshot()) if m.topic == topic and (pred is None or pred(m))), None)

    def wait(self, pred: Callable[[list[Msg]], Any], timeout: float = 10.0, what: str = "messages") -> Any:
        """:func:`servers.wait_for` on ``pred(messages so far)``; a timeout lists the topics seen."""
        return wait_for(lambda: pred(self.snapshot()), timeout, self.seen(what), interval=0.02)

    def wait_topic(self, topic: str, timeout: float = 10.0, pred: Callable[[Msg], bool] | None = None) -> Msg:
        return wait_for(lambda: self.find(topic, pred), timeout, self.seen(topic), interval=0.02)  # type: ignore[return-value]

    def publish(self, topic: str, payload: str | bytes, retain: bool = False, qos: int = 1) -> None:
        self.client.publish(topic, payload, qos=qos, retain=retain).wait_for_publish(5)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()




async def wait_msg(col: Collector, topic: str, timeout: float = 15.0, pred: Callable[[Msg], bool] | None = None) -> Msg:
    """``col.wait_topic`` from inside an event loop."""
    return await async_wait_for(lambda: col.find(topic, pred), timeout, col.seen(topic))  # type: ignore[return-value]


# --------------------------------------------------------------------------- a controllable source

GIV_CONTROLS = (
    ControlSpec("charge_target_pct", "number", label="Charge target", unit="%", minimum=4, maximum=100, step=1,
                state_metric="charge_target_pct"),
    ControlSpec("battery_reserve_pct", "number", unit="%", minimum=4, maximum=100, step=1,
                state_metric="battery_reserve_pct"),
    ControlSpec("battery_mode", "select", options=("Eco", "Eco (Paused)", "Timed Demand", "Timed Export"),
                state_metric="battery_mode"),
    ControlSpec("charge_target_enabled", "switch", state_metric="charge_target_enabled"),
    ControlSpec("charge_slot_1_start", "time", state_metric="charge_slot_1_start"),
)


class FakeInverterConfig(PluginConfig):
    type: str = "fake_inverter"
    interval: float = 0.2
    serial: str = "SA2047G098"


class FakeInverter(Source):
    """A battery inverter with GivTCP-like settings kept in memory; validates like a real source would."""

    Config = FakeInverterConfig

    def __init__(self, config: FakeInverterConfig, ctx: Context) -> None:
        super().__init__(config, ctx)
        self.settings: dict[str, Any] = {"charge_target_pct": 80, "battery_reserve_pct": 4, "battery_mode": "Eco",
                                         "charge_target_enabled": False, "charge_slot_1_start": "00:30"}
        self.executed: list[ControlRequest] = []
        self.info = DeviceInfo(config.serial, "inverter", manufacturer="GivEnergy", model="Hybrid Gen3",
                               serial=config.serial, sw_version="D0.449-A0.449", name="Fake inverter",
                               source=ctx.name, controls=GIV_CONTROLS)
        self.online = True
        self.n = 0
        self._emit: Any = None

    def devices(self) -> list[DeviceInfo]:
        return [self.info]

    def reading(self) -> Reading:
        self.n += 1
        metrics = {"pv_power_w": 1000.0 + self.n, "battery_soc_pct": 55, "grid_available": True, **self.settings}
        tree = {"Power": {"Power": {"SOC": 55, "PV_Power": 1000.0 + self.n}},
                "Control": {"Mode": self.settings["battery_mode"],
                            "Target_SOC": self.settings["charge_target_pct"]}}
        if not self.online:
            return Reading(self.config.serial, "inverter", datetime.now(UTC), {}, source=self.ctx.name,
                           info=self.info, online=False)
        return Reading(self.config.serial, "inverter", datetime.now(UTC), metrics, source=self.ctx.name,
                       info=self.info, extra={"givtcp": tree})

    async def run(self, emit: Any) -> None:
        self._emit = emit
        while True:
            emit(self.reading())
            await asyncio.sleep(self.config.interval)

    async def control(self, request: ControlRequest) -> ControlResult:
        spec = {c.name: c for c in GIV_CONTROLS}
        aliases = {"setChargeTarget": "charge_target_pct", "setBatteryReserve": "battery_reserve_pct",
                   "setBatteryMode": "battery_mode"}
        name = aliases.get(request.command, request.command)
        if name not in spec:
            raise ControlError(f"unknown command {request.command!r}", field_name="command")
        value = request.value
        if spec[name].kind == "number":
            try:
                value = int(value)
            except (TypeError, ValueError):
                raise ControlError(f"{name}: expected a whole number", field_name=name) from None
            if not 4 <= value <= 100:
                raise ControlError(f"{name}: {value} is out of range 4..100", field_name=name)
        if spec[name].kind == "select" and value not in spec[name].options:
            raise ControlError(f"{name}: {value!r} is not a mode", field_name=name)
        self.executed.append(request)
        self.settings[name] = value
        if self._emit:
            self._emit(self.reading())
        return ControlResult(True, "done", value=self.settings[name])


def supervisor(tmp_path: Path) -> Supervisor:
    cfg = Config(daemon=DaemonConfig(state_dir=tmp_path / "state", history=False, backoff_initial=0.2,
                                     backoff_cap=1.0, shutdown_timeout=5))
    sup = Supervisor(cfg)
    sup.state_dir.mkdir(parents=True, exist_ok=True)
    return sup


def context(sup: Supervisor, name: str, kind: str, type_: str) -> Context:
    return sup._context(name, kind, type_)
