"""Sans-IO decoder for the dongle's reports: payload bytes in, :class:`Report` out.

A report is recognised the way the original tool recognises it: TCP payload length 292 or 302 and first
byte 0xA5. There is no checksum in the format, so recognition is all there is; anything else is the caller's
to count. No sockets, clocks or logging here.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo

from .fields import CLOCK_OFFSET, FIELDS, LAYOUTS, MAGIC, PV_STRINGS, SERIAL_SLICE


class DecodeError(ValueError):
    """The payload is not a report of a known layout."""


@dataclass(slots=True)
class Report:
    serial: str
    layout: int
    #: inverter local clock (year, month, day, hour, minute, second) as sent, or None if not a valid date
    clock: tuple[int, int, int, int, int, int] | None
    #: field id -> value (raw * scale + bias), including the computed ``pv_power``
    values: dict[str, float]


def identify(payload: bytes | bytearray | memoryview) -> int | None:
    """The layout (292 or 302) if ``payload`` is a report, else None."""
    n = len(payload)
    if n in LAYOUTS and payload[0] == MAGIC:
        return n
    return None


def _compile(layout: int) -> tuple[struct.Struct, tuple[tuple[str, int, int, int, int], ...]]:
    rows = []
    for f in FIELDS:
        lo, hi = f.offsets(layout)
        rows.append((f.id, lo // 2, -1 if hi is None else hi // 2, f.divisor, f.raw_bias))
    return struct.Struct(f">{layout // 2}h"), tuple(rows)


_PLANS = {layout: _compile(layout) for layout in LAYOUTS}


def decode(payload: bytes | bytearray | memoryview, layout: int | None = None) -> Report:
    """Decode one report. ``layout`` forces 292 or 302 (the payload length must match)."""
    found = identify(payload)
    if found is None:
        raise DecodeError(f"not a report: {len(payload)} bytes, first byte "
                          f"{payload[0] if len(payload) else None!r}")
    if layout is not None and layout != found:
        raise DecodeError(f"report is {found} bytes, layout {layout} expected")
    st, rows = _PLANS[found]
    words = st.unpack_from(payload)
    values: dict[str, float] = {}
    for id_, lo, hi, divisor, bias in rows:
        raw = words[lo]
        if hi >= 0:
            # 32-bit counter, low word first; signed at the combined width
            raw = (raw & 0xFFFF) | (words[hi] << 16)
        # int / int is correctly rounded: 2122 / 10 is 212.2, where 2122 * 0.1 is 212.20000000000002
        values[id_] = (raw + bias) / divisor
    values["pv_power"] = values[PV_STRINGS[0]] + values[PV_STRINGS[1]] + values[PV_STRINGS[2]]
    raw_serial = bytes(payload[SERIAL_SLICE])
    try:
        serial = raw_serial.decode("utf-8")
    except UnicodeDecodeError:
        serial = "unknown"
    c = payload[CLOCK_OFFSET:CLOCK_OFFSET + 6]
    clock: tuple[int, int, int, int, int, int] | None = (2000 + c[0], c[1], c[2], c[3], c[4], c[5])
    try:
        datetime(*clock)  # type: ignore[misc]
    except ValueError:
        clock = None
    return Report(serial=serial, layout=found, clock=clock, values=values)


def clock_to_utc(clock: tuple[int, int, int, int, int, int] | None, tz: tzinfo) -> datetime | None:
    """The dongle's local clock as an aware UTC time, or None when invalid, ambiguous or non-existent in ``tz``."""
    if clock is None:
        return None
    try:
        naive = datetime(*clock)
    except ValueError:
        return None
    a = naive.replace(tzinfo=tz, fold=0)
    b = naive.replace(tzinfo=tz, fold=1)
    if a.utcoffset() != b.utcoffset():
        return None  # ambiguous (clocks going back) or skipped (clocks going forward)
    utc = a.astimezone(UTC)
    if utc.astimezone(tz).replace(tzinfo=None) != naive:
        return None
    return utc


def pcap_time(ts: float) -> datetime:
    """A capture timestamp (seconds since the epoch) as an aware UTC datetime, exact to the microsecond."""
    sec = int(ts // 1)
    usec = round((ts - sec) * 1_000_000)
    return datetime(1970, 1, 1, tzinfo=UTC) + timedelta(seconds=sec, microseconds=usec)


def encode(values: dict[str, float], *, serial: str, clock: tuple[int, int, int, int, int, int],
           layout: int = 292, header: bytes = b"\xa5\x06\x01\x09\x02\xce\x00\x00\xfa\x01\x19") -> bytes:
    """Build a report from field values (for the simulator and tests): the inverse of :func:`decode`.

    Values are rounded to the field's resolution; fields not given are zero.
    """
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {LAYOUTS}")
    buf = bytearray(layout)
    buf[0:len(header)] = header
    buf[0] = MAGIC
    sb = serial.encode("ascii")[:10].ljust(10, b"\0")
    buf[SERIAL_SLICE] = sb
    y, mo, d, h, mi, s = clock
    buf[CLOCK_OFFSET:CLOCK_OFFSET + 6] = bytes((y - 2000, mo, d, h, mi, s))
    for f in FIELDS:
        if f.id not in values:
            continue
        raw = round((values[f.id] - f.bias) / f.scale)
        lo, hi = f.offsets(layout)
        if hi is None:
            if not -0x8000 <= raw <= 0x7FFF:
                raise ValueError(f"{f.id}: {values[f.id]} does not fit 16 bits")
            struct.pack_into(">h", buf, lo, raw)
        else:
            if not -0x8000_0000 <= raw <= 0x7FFF_FFFF:
                raise ValueError(f"{f.id}: {values[f.id]} does not fit 32 bits")
            struct.pack_into(">H", buf, lo, raw & 0xFFFF)
            struct.pack_into(">h", buf, hi, raw >> 16)
    return bytes(buf)
