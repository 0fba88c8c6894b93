"""Payload parsers for every function semonitor decodes (``parse_data``), and payload builders.

Unknown functions, and known ones whose payload has an unexpected length, give the payload as a
lower-case hex string: never an exception. 0x0500 telemetry is :mod:`.records`.
"""

from __future__ import annotations

import struct

from . import functions as fn
from .records import asctime, parse_post_data

TYPE_CHECKING = False  # (not typing's: semonitor starts without importing typing)
if TYPE_CHECKING:
    from typing import Any

#: functions without arguments: the payload as hex (normally "")
_NO_ARGS = frozenset({0x0080, 0x0081, 0x0033, 0x0034, 0x0501, 0x0502, 0x0347, 0x0302, 0x039A})


def _param(data: bytes) -> dict[str, Any]:
    return {"param": struct.unpack("<H", data)[0]}


def _long(data: bytes) -> dict[str, Any]:
    return {"param": struct.unpack("<L", data)[0]}


def _value_type(data: bytes) -> dict[str, Any]:
    value, type_ = struct.unpack("<LH", data)
    return {"value": value, "type": type_}


def _param_value(data: bytes) -> dict[str, Any]:
    param, value = struct.unpack("<HL", data)
    return {"param": param, "value": value}


def _version(data: bytes) -> dict[str, Any]:
    major, minor = struct.unpack("<HH", data[0:4])
    return {"version": f"{major:04d}.{minor:04d}"}


def _offset_length(data: bytes) -> dict[str, Any]:
    offset, length = struct.unpack("<LL", data[0:8])
    return {"offset": offset, "length": length, "data": data[8:]}


def _gmt(data: bytes) -> dict[str, Any]:
    t, tz = struct.unpack("<Ll", data)
    return {"time": t, "tz": tz}


def _energy(data: bytes) -> dict[str, Any]:
    eday, emon, eyear, etot, t1 = struct.unpack("<ffffL", data[0:20])
    return {"Eday": eday, "Emon": emon, "Eyear": eyear, "Etot": etot, "Time1": asctime(t1)}


_PARSERS: dict[int, Any] = {
    0x039F: lambda data: {"status": 0},
    0x0012: _param, 0x0020: _param, 0x00B1: _param,
    0x0030: _value_type, 0x0090: _value_type,
    0x00B0: _version,
    0x0011: _param_value,
    0x0021: _offset_length,
    0x00A1: _long,
    0x0580: _gmt,
    0x038D: _energy,
    0x0503: lambda data: {},
}


def parse_data(function: int, data: bytes) -> Any:
    """semonitor's ``parseData``: the decoded payload of one message.

    0x0500 raises :class:`~.records.RecordError` for a record too short for its layout (semonitor
    then drops the message); everything else returns a value.
    """
    if function == fn.POST_DATA:
        return parse_post_data(data)
    if function in _NO_ARGS:
        return data.hex()
    parser = _PARSERS.get(function)
    if parser is not None:
        try:
            return parser(data)
        except struct.error:
            pass
    return data.hex()


# --------------------------------------------------------------------------- builders (simulator, -c)

def gmt_payload(utc: int, tz_offset: int) -> bytes:
    return struct.pack("<Ll", utc & 0xFFFFFFFF, tz_offset)
