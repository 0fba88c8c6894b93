"""InfluxDB line protocol, sans-IO: escaping and encoding readings to lines.

Escaping follows the line-protocol reference: measurement names escape commas
and spaces; tag keys, tag values and field keys escape commas, equals signs
and spaces (field keys also double quotes, as InfluxDB's clients do: VictoriaMetrics keeps that
backslash in the metric name, so avoid quotes in field keys); string field values escape double
quotes and backslashes. Line
protocol cannot carry a newline (or carriage return) anywhere, so those are
replaced by a space. A backslash is doubled in names, tag keys and tag values
too: otherwise a value ending in a backslash would escape the separator after
it (InfluxDB and VictoriaMetrics both read ``\\\\`` back as one backslash).
Empty tag values are not allowed by the protocol, so such tags are left out.

Floats that are NaN or infinite cannot be written and are skipped (counted by
the caller through :func:`encode_point`'s return value).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any, Literal

Precision = Literal["ns", "us", "ms", "s"]

_PRECISION_DIV: dict[str, int] = {"ns": 1, "us": 1_000, "ms": 1_000_000, "s": 1_000_000_000}

_MEAS_TABLE = str.maketrans({"\\": "\\\\", ",": "\\,", " ": "\\ ", "\n": "\\ ", "\r": "\\ "})
_TAG_TABLE = str.maketrans({"\\": "\\\\", ",": "\\,", "=": "\\=", " ": "\\ ", "\n": "\\ ", "\r": "\\ "})
_FIELD_KEY_TABLE = str.maketrans({"\\": "\\\\", ",": "\\,", "=": "\\=", " ": "\\ ", '"': '\\"', "\n": "\\ ",
                                  "\r": "\\ "})
_STR_TABLE = str.maketrans({"\\": "\\\\", '"': '\\"', "\n": " ", "\r": " "})
_SPECIAL_MEAS = frozenset("\\, \n\r")
_SPECIAL_TAG = frozenset("\\,= \n\r")
_SPECIAL_FIELD_KEY = frozenset('\\,= "\n\r')


def escape_measurement(name: str) -> str:
    if _SPECIAL_MEAS.isdisjoint(name):
        return name
    return name.translate(_MEAS_TABLE)


def escape_tag(text: str) -> str:
    """Escape a tag key, tag value or field key."""
    if _SPECIAL_TAG.isdisjoint(text):
        return text
    return text.translate(_TAG_TABLE)


def escape_field_key(text: str) -> str:
    """Escape a field key: like a tag, plus double quotes (as InfluxDB's own clients do)."""
    if _SPECIAL_FIELD_KEY.isdisjoint(text):
        return text
    return text.translate(_FIELD_KEY_TABLE)


def format_field_value(value: Any) -> str | None:
    """The line-protocol text of one field value, or None if it cannot be written (NaN, inf, None)."""
    # bool before int: bool is an int subclass
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, int):
        return f"{value}i"
    if isinstance(value, float):
        if math.isfinite(value):
            return repr(value)
        return None
    if isinstance(value, str):
        return '"' + value.translate(_STR_TABLE) + '"'
    return None


def timestamp_ns(epoch_seconds: float) -> int:
    return int(round(epoch_seconds * 1_000_000_000))


def format_timestamp(ts_ns: int, precision: Precision = "ns") -> str:
    div = _PRECISION_DIV[precision]
    return str(ts_ns if div == 1 else ts_ns // div)


def encode_tags(tags: Mapping[str, str] | Iterable[tuple[str, str]]) -> str:
    """``,k=v,k2=v2`` sorted by key (InfluxDB's preferred order), empty values left out."""
    items = tags.items() if isinstance(tags, Mapping) else tags
    parts = [f",{escape_tag(k)}={escape_tag(v)}" for k, v in sorted(items) if k and v]
    return "".join(parts)


def encode_point(measurement: str, tags: Mapping[str, str], fields: Mapping[str, Any], ts_ns: int | None,
                 precision: Precision = "ns") -> str | None:
    """One line (without newline), or None when no field is writable."""
    fs = []
    for k, v in fields.items():
        text = format_field_value(v)
        if text is not None and k:
            fs.append(f"{escape_field_key(k)}={text}")
    if not fs:
        return None
    line = escape_measurement(measurement) + encode_tags(tags) + " " + ",".join(fs)
    if ts_ns is not None:
        line += " " + format_timestamp(ts_ns, precision)
    return line


# --------------------------------------------------------------------------- parsing (for tests and tools)


def _read_until(text: str, i: int, stops: str) -> tuple[str, int]:
    """Raw text from ``i`` up to the first unescaped char in ``stops`` (escapes kept); returns (raw, index)."""
    j = i
    while j < len(text):
        c = text[j]
        if c == "\\" and j + 1 < len(text):
            j += 2
            continue
        if c in stops:
            break
        j += 1
    return text[i:j], j


def _unescape(text: str, specials: str) -> str:
    out, i = [], 0
    while i < len(text):
        c = text[i]
        if c == "\\" and i + 1 < len(text) and text[i + 1] in specials:
            out.append(text[i + 1])
            i += 2
            continue
        out.append(c)
        i += 1
    return "".join(out)


def parse_line(line: str) -> tuple[str, dict[str, str], dict[str, Any], int | None]:
    """Parse one line as written by :func:`encode_point` (its inverse; used to check the encoder)."""
    names = "\\,= "
    raw, i = _read_until(line, 0, ", ")
    measurement = _unescape(raw, "\\, ")
    tags: dict[str, str] = {}
    while i < len(line) and line[i] == ",":
        k, i = _read_until(line, i + 1, "=")
        v, i = _read_until(line, i + 1, ", ")
        tags[_unescape(k, names)] = _unescape(v, names)
    if i >= len(line) or line[i] != " ":
        raise ValueError(f"no fields in line: {line!r}")
    fields: dict[str, Any] = {}
    sep = ","
    while sep == ",":
        k, i = _read_until(line, i + 1, "=")
        i += 1
        if i < len(line) and line[i] == '"':
            raw, i = _read_until(line, i + 1, '"')
            value: Any = _unescape(raw, '\\"')
            i += 1
        else:
            raw, i = _read_until(line, i, ", ")
            value = _parse_value(raw)
        fields[_unescape(k, names + '"')] = value
        sep = line[i] if i < len(line) else ""
    ts = int(line[i + 1:]) if sep == " " else None
    return measurement, tags, fields, ts


def _parse_value(raw: str) -> Any:
    if raw in ("true", "false"):
        return raw == "true"
    if raw.endswith("i"):
        return int(raw[:-1])
    return float(raw)
