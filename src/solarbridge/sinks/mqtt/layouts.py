"""Topic layouts and command parsing for the MQTT sink (sans-IO: values in, topics and payloads out).

* ``solarbridge`` (default): see :mod:`solarbridge.sinks.mqtt.discovery` for the topics.
* ``givtcp``: GivEnergy readings carry ``extra["givtcp"]``, GivTCP's runAll-shaped
  nested dict; each leaf goes to ``<root>/<serial>/<path...>`` as GivTCP did, and
  commands arrive on ``<root>/control/<serial>/<command>``.
* ``sunsniff``: Sunsynk readings carry ``extra["sunsniff"]``; see
  :func:`solarbridge.sinks.mqtt.discovery.sunsniff_entities`.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterator
from datetime import date, datetime, time
from typing import Any

from ...model import ControlError, ControlSpec, MetricValue

_TIME_RE = re.compile(r"^([01]?[0-9]|2[0-3]):([0-5][0-9])(?::([0-5][0-9]))?$")


def givtcp_leaf_text(value: Any) -> str | None:
    """GivTCP publishes int/float/str leaves; bools and datetimes as strings first."""
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int | str):
        return str(value)
    if isinstance(value, float):
        return repr(value) if math.isfinite(value) else None
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    return None


def givtcp_leaves(tree: dict[str, Any], prefix: str) -> Iterator[tuple[str, str]]:
    """Flatten a nested dict into ``(topic, text)`` pairs under ``prefix``."""
    stack: list[tuple[str, Any]] = [(prefix, tree)]
    while stack:
        path, node = stack.pop()
        if isinstance(node, dict):
            items = list(node.items())
            for k, v in reversed(items):
                stack.append((f"{path}/{_level(str(k))}", v))
        elif isinstance(node, list | tuple):
            for i in range(len(node) - 1, -1, -1):
                stack.append((f"{path}/{i}", node[i]))
        else:
            text = givtcp_leaf_text(node)
            if text is not None:
                yield path, text


def _level(key: str) -> str:
    # '+' and '#' are wildcards and may not appear in a published topic
    return key.replace("+", "_").replace("#", "_").replace("/", "_") or "_"


def parse_givtcp_command(topic: str, root: str) -> tuple[str, str] | None:
    """``<root>/control/<serial>/<command>`` -> (serial, command), else None."""
    parts = topic.split("/")
    root_parts = root.split("/")
    n = len(root_parts)
    if len(parts) != n + 3 or parts[:n] != root_parts or parts[n] != "control":
        return None
    return parts[n + 1], parts[n + 2]


def decode_payload(payload: bytes) -> Any:
    """A command payload: JSON if it parses (``45``, ``"Eco"``, ``{"state": "enable"}``), else the text."""
    text = payload.decode("utf-8", errors="strict").strip()
    try:
        return json.loads(text)
    except ValueError:
        return text


def validate_control(spec: ControlSpec, payload: bytes) -> Any:
    """Check a command payload against its :class:`ControlSpec`; returns the typed value or raises ControlError."""
    name = spec.name
    try:
        raw = decode_payload(payload)
    except UnicodeDecodeError:
        raise ControlError(f"{name}: payload is not UTF-8 text", field_name=name) from None
    kind = spec.kind
    if kind == "number":
        if isinstance(raw, bool) or not isinstance(raw, int | float | str):
            raise ControlError(f"{name}: expected a number (got {raw!r})", field_name=name)
        try:
            value = float(raw)
        except ValueError:
            raise ControlError(f"{name}: expected a number (got {raw!r})", field_name=name) from None
        lo, hi = spec.minimum, spec.maximum
        if not math.isfinite(value) or (lo is not None and value < lo) or (hi is not None and value > hi):
            raise ControlError(f"{name}: {raw!r} is out of range {_fmt(lo)}..{_fmt(hi)}"
                               f"{f' {spec.unit}' if spec.unit else ''}", field_name=name)
        if spec.step:
            base = lo if lo is not None else 0.0
            k = (value - base) / spec.step
            if abs(k - round(k)) > 1e-6:
                raise ControlError(f"{name}: {raw!r} is not a multiple of step {_fmt(spec.step)}"
                                   f" from {_fmt(base)} (allowed {_fmt(lo)}..{_fmt(hi)})", field_name=name)
        return int(value) if value.is_integer() and (spec.step is None or float(spec.step).is_integer()) else value
    if kind == "select":
        text = str(raw)
        if text not in spec.options:
            raise ControlError(f"{name}: {text!r} is not one of {', '.join(spec.options)}", field_name=name)
        return text
    if kind == "switch":
        text = str(raw).strip().lower()
        if text in ("on", "true", "1", "enable", "enabled"):
            return True
        if text in ("off", "false", "0", "disable", "disabled"):
            return False
        raise ControlError(f"{name}: expected ON or OFF (got {raw!r})", field_name=name)
    if kind == "time":
        m = _TIME_RE.match(str(raw).strip())
        if not m:
            raise ControlError(f"{name}: expected a time HH:MM between 00:00 and 23:59 (got {raw!r})",
                               field_name=name)
        return f"{int(m.group(1)):02d}:{m.group(2)}"
    if kind == "button":
        return None
    text = raw if isinstance(raw, str) else json.dumps(raw)
    if len(text) > 255:
        raise ControlError(f"{name}: text longer than 255 characters", field_name=name)
    return text


def _fmt(x: float | None) -> str:
    if x is None:
        return ""
    return str(int(x)) if float(x).is_integer() else str(x)


def metric_text(value: MetricValue) -> str:
    """A metric value as a plain topic payload: numbers as JSON numbers, booleans true/false, text as is."""
    if isinstance(value, str):
        return value
    if isinstance(value, float) and not math.isfinite(value):
        return ""
    return json.dumps(value)
