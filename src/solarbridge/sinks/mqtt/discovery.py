"""Home Assistant MQTT discovery payloads, generated from the data model (sans-IO: dicts in, dicts out).

Sensors come from :func:`solarbridge.model.metric_spec` (unit, device class,
state class), controls from ``DeviceInfo.controls`` (:class:`ControlSpec`).
Each entity gets a retained config message on
``<discovery_prefix>/<component>/<node_id>/<object_id>/config`` whose state
is read from the device's JSON state topic with a ``value_template``.

HA's MQTT integration has no ``time`` platform, so ``time`` controls become
``text`` entities with an ``HH:MM`` pattern.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from ... import __version__
from ...model import ControlSpec, DeviceInfo, MetricValue, metric_spec

ORIGIN = {"name": "solarbridge", "sw_version": __version__}

_TOPIC_UNSAFE = re.compile(r"[/+#\s\x00]+")
_ID_UNSAFE = re.compile(r"[^a-zA-Z0-9_-]+")
_UNIT_SUFFIX = re.compile(r"_(w|wh|kwh|v|a|hz|pct|c|s|va|var)(?=$|_l[123]$)")
TIME_PATTERN = r"^([01][0-9]|2[0-3]):[0-5][0-9]$"

#: topics under ``<base>/<device>/`` that are not metric names
RESERVED_LEAVES = frozenset({"state", "availability", "error", "status"})


def topic_id(text: str) -> str:
    """A device id made safe for one MQTT topic level (no '/', '+', '#', whitespace)."""
    return _TOPIC_UNSAFE.sub("_", text).strip("_") or "_"


def object_id(text: str) -> str:
    """An id restricted to ``[a-zA-Z0-9_-]`` as HA requires for node_id/object_id."""
    return _ID_UNSAFE.sub("_", text).strip("_") or "_"


def human_name(metric: str) -> str:
    """``pv_energy_today_wh`` -> ``PV energy today``; ``grid_power_w_l1`` -> ``Grid power L1``."""
    base = _UNIT_SUFFIX.sub("", metric)
    words = base.split("_")
    out = []
    for w in words:
        if w in ("pv", "soc", "ac", "dc", "ct", "eps", "bms") or re.fullmatch(r"l[123]", w):
            out.append(w.upper())
        else:
            out.append(w)
    text = " ".join(x for x in out if x)
    return (text[:1].upper() + text[1:]) or metric


def _value_expr(metric: str) -> str:
    return f"value_json[{metric!r}]"


@dataclass(slots=True)
class Topics:
    """Where one device's data lives for a given ``base_topic``."""

    base: str
    device: str  # topic-safe device id

    @property
    def status(self) -> str:
        return f"{self.base}/status"

    @property
    def state(self) -> str:
        return f"{self.base}/{self.device}/state"

    @property
    def availability(self) -> str:
        return f"{self.base}/{self.device}/availability"

    @property
    def error(self) -> str:
        return f"{self.base}/{self.device}/error"

    def metric(self, name: str) -> str:
        leaf = f"metric_{name}" if name in RESERVED_LEAVES else name
        return f"{self.base}/{self.device}/{leaf}"

    def command(self, control: str) -> str:
        return f"{self.base}/{self.device}/{control}/set"


def device_block(info: DeviceInfo, identifier: str) -> dict[str, Any]:
    d: dict[str, Any] = {"identifiers": [identifier], "name": info.display_name() or info.device_id}
    if info.manufacturer:
        d["manufacturer"] = info.manufacturer
    if info.model:
        d["model"] = info.model
    if info.serial:
        d["serial_number"] = info.serial
    if info.sw_version:
        d["sw_version"] = info.sw_version
    return d


class Discovery:
    """Builds discovery messages for one sink instance (base topic + discovery prefix)."""

    def __init__(self, base_topic: str, prefix: str = "homeassistant", expire_after: int = 0,
                 status_topic: str = "") -> None:
        self.base = base_topic
        self.prefix = prefix
        self.expire_after = expire_after
        self.node_prefix = object_id(base_topic)
        #: the publishing daemon's LWT topic (per worker in a fleet: <base>/status/<k>)
        self.status_topic = status_topic or f"{base_topic}/status"

    def node_id(self, device_id: str) -> str:
        return object_id(f"{self.node_prefix}_{device_id}")

    def _common(self, info: DeviceInfo, topics: Topics, obj: str) -> dict[str, Any]:
        node = self.node_id(info.device_id)
        return {
            "unique_id": obj,
            "object_id": obj,
            "availability": [{"topic": self.status_topic}, {"topic": topics.availability}],
            "availability_mode": "all",
            "device": device_block(info, node),
            "origin": ORIGIN,
        }

    def sensor(self, info: DeviceInfo, metric: str, value: MetricValue) -> tuple[str, dict[str, Any]]:
        """(config topic, payload) for one metric of one device."""
        topics = Topics(self.base, topic_id(info.device_id))
        node = self.node_id(info.device_id)
        obj = object_id(f"{node}_{metric}")
        spec = metric_spec(metric)
        payload = self._common(info, topics, obj)
        payload["name"] = human_name(metric)
        payload["state_topic"] = topics.state
        expr = _value_expr(metric)
        if isinstance(value, bool) or spec.kind == "bool":
            component = "binary_sensor"
            payload["value_template"] = f"{{{{ 'ON' if {expr} else 'OFF' }}}}"
            payload["payload_on"] = "ON"
            payload["payload_off"] = "OFF"
            if metric.startswith("grid_available"):
                payload["device_class"] = "power"
        else:
            component = "sensor"
            payload["value_template"] = f"{{{{ {expr} }}}}"
            if not isinstance(value, str):
                payload.update(spec.ha_attributes())
        if self.expire_after:
            payload["expire_after"] = self.expire_after
        return f"{self.prefix}/{component}/{node}/{obj}/config", payload

    def control(self, info: DeviceInfo, spec: ControlSpec) -> tuple[str, dict[str, Any]]:
        """(config topic, payload) for one control of one device."""
        topics = Topics(self.base, topic_id(info.device_id))
        node = self.node_id(info.device_id)
        obj = object_id(f"{node}_{spec.name}_control")
        payload = self._common(info, topics, obj)
        payload["name"] = spec.label or human_name(spec.name)
        payload["command_topic"] = topics.command(spec.name)
        if spec.state_metric:
            payload["state_topic"] = topics.state
            expr = _value_expr(spec.state_metric)
            if spec.kind == "switch":
                payload["value_template"] = f"{{{{ 'ON' if {expr} else 'OFF' }}}}"
            else:
                payload["value_template"] = f"{{{{ {expr} }}}}"
        kind = spec.kind
        if kind == "number":
            component = "number"
            if spec.minimum is not None:
                payload["min"] = spec.minimum
            if spec.maximum is not None:
                payload["max"] = spec.maximum
            if spec.step is not None:
                payload["step"] = spec.step
            if spec.unit:
                payload["unit_of_measurement"] = spec.unit
            payload["mode"] = "box"
        elif kind == "select":
            component = "select"
            payload["options"] = list(spec.options)
        elif kind == "switch":
            component = "switch"
            payload.update(payload_on="ON", payload_off="OFF", state_on="ON", state_off="OFF")
        elif kind == "button":
            component = "button"
            payload["payload_press"] = "PRESS"
        else:  # text and time
            component = "text"
            if kind == "time":
                payload["pattern"] = TIME_PATTERN
                payload["min"] = 5
                payload["max"] = 5
        if kind in ("number", "select", "switch", "text", "time") and "state_topic" not in payload:
            payload["optimistic"] = False
        return f"{self.prefix}/{component}/{node}/{obj}/config", payload


# --------------------------------------------------------------------------- sunsniff layout

SUNSNIFF_EXPIRE_AFTER = 600


def sunsniff_entities(extra: dict[str, Any], prefix: str = "homeassistant",
                      availability: list[dict[str, str]] | None = None
                      ) -> list[tuple[str, str, dict[str, Any], str]]:
    """For a reading's ``extra["sunsniff"]``: (config topic, state topic, config payload, state text) per field.

    Reproduces the Sunsynk capture tool's entities (unique_id ``sunsniff_<serial>_<id>``, state
    under the discovery tree, ``expire_after`` 600) and adds an availability list.
    """
    serial = str(extra.get("serial", ""))
    out = []
    for f in extra.get("fields", ()):
        fid = object_id(str(f.get("id", "")))
        uid = f"sunsniff_{object_id(serial)}_{fid}"
        state_topic = f"{prefix}/sensor/{uid}/state"
        payload: dict[str, Any] = {"device": {"identifiers": [serial]}}
        if f.get("device_class"):
            payload["device_class"] = f["device_class"]
        payload["expire_after"] = SUNSNIFF_EXPIRE_AFTER
        payload["name"] = f"{f.get('group', '')} {f.get('name', '')}".strip()
        payload["object_id"] = uid
        if f.get("state_class"):
            payload["state_class"] = f["state_class"]
        payload["state_topic"] = state_topic
        payload["unique_id"] = uid
        if f.get("unit"):
            payload["unit_of_measurement"] = f["unit"]
        if availability:
            payload["availability"] = availability
            payload["availability_mode"] = "all"
        value = f.get("value")
        out.append((f"{prefix}/sensor/{uid}/config", state_topic, payload, sunsniff_value_text(value)))
    return out


def sunsniff_value_text(value: Any) -> str:
    """A number as the original printed it (Rust f64 Display: shortest round-trip, no ``.0``)."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, float):
        if value.is_integer() and abs(value) < 1e16:
            return str(int(value))
        return repr(value)
    return str(value)
