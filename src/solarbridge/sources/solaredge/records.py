"""0x0500 SERVER_POST_DATA payloads: the device records, decoded from their layout tables.

A payload is a run of records, each ``type u16 | id u32 | len u16 | data[len]`` (little-endian).
The record layouts are tables below; one generic decoder per family reads them. The output of
:func:`parse_post_data` is exactly the dict semonitor dumps (``json.dumps(sort_keys=True)``):
``inverters``/``optimizers``/``events`` always present, other types under ``<name>_0x<type>``.
:mod:`.render` writes the same JSON text directly, fast; this module is its reference.

Times are formatted in the host's local time zone, as semonitor does (``TZ`` applies).
"""

from __future__ import annotations

import math
import struct
import time
from functools import lru_cache

TYPE_CHECKING = False  # (not typing's: semonitor starts without importing typing)
if TYPE_CHECKING:
    from typing import Any

NAN = math.nan
#: float32 bytes FF FF 7F FF: the devices' "not reported" marker
NOT_REPORTED = b"\xff\xff\x7f\xff"
REC_HDR = struct.Struct("<HIH")


class RecordError(ValueError):
    """A device record too short for its layout (semonitor drops the whole message)."""


def parse_id(raw: int) -> str:
    """Device ids are shown with bit 23 cleared, upper-case hex without leading zeros."""
    return f"{raw & 0xFF7FFFFF:X}"


NO_OFFSET = -(1 << 40)
#: hour -> the local UTC offset valid for that whole hour (or NO_OFFSET across a change)
HOUR_OFFSET: dict[int, int] = {}
#: local day number -> "%Y-%m-%d"
_DAY_TEXT: dict[int, str] = {}


def _date_time_slow(ts: int) -> tuple[str, str]:
    try:
        lt = time.localtime(ts)
        return time.strftime("%Y-%m-%d", lt), time.strftime("%H:%M:%S", lt)
    except (OverflowError, OSError, ValueError):
        return "invalid", "invalid"


def date_time(ts: int) -> tuple[str, str]:
    """Local ``("%Y-%m-%d", "%H:%M:%S")`` of a Unix time, as semonitor formats it.

    Records rarely share a timestamp, so instead of caching results this caches the UTC offset
    per hour (checked at both ends of the hour, so DST changes take the exact path) and the date
    text per day; the time of day is then arithmetic.
    """
    off = HOUR_OFFSET.get(ts // 3600)
    if off is None:
        off = hour_offset(ts // 3600)
    if off == NO_OFFSET:
        return _date_time_slow(ts)
    day, sec = divmod(ts + off, 86400)
    text = _DAY_TEXT.get(day)
    if text is None:
        text = day_text(day)
    tod = _TIME_OF_DAY[sec]
    if tod is None:
        tod = _TIME_OF_DAY[sec] = f"{sec // 3600:02d}:{sec // 60 % 60:02d}:{sec % 60:02d}"
    return text, tod


#: second of the day -> "HH:MM:SS" (filled on first use; independent of the time zone)
_TIME_OF_DAY: list[str | None] = [None] * 86400


def hour_offset(hour: int) -> int:
    """The UTC offset valid for that whole hour, or ``NO_OFFSET`` (cached)."""
    off = HOUR_OFFSET.get(hour)
    if off is None:
        if len(HOUR_OFFSET) > 100_000:
            HOUR_OFFSET.clear()
        try:
            a = time.localtime(hour * 3600).tm_gmtoff
            b = time.localtime(hour * 3600 + 3599).tm_gmtoff
            off = a if a == b else NO_OFFSET
        except (OverflowError, OSError, ValueError):
            off = NO_OFFSET
        HOUR_OFFSET[hour] = off
    return off


def day_text(day: int) -> str:
    """``"%Y-%m-%d"`` of a local day number (days since 1970-01-01 in local time; cached)."""
    text = _DAY_TEXT.get(day)
    if text is None:
        if len(_DAY_TEXT) > 100_000:
            _DAY_TEXT.clear()
        text = _DAY_TEXT[day] = time.strftime("%Y-%m-%d", time.gmtime(day * 86400))
    return text


#: more caches of local-time texts (the renderer's) to forget with these
TIME_CACHES: list[Any] = []


def _clear_time_caches() -> None:
    """Forget cached offsets (after the process changes TZ)."""
    HOUR_OFFSET.clear()
    _DAY_TEXT.clear()
    _ASC_DAY.clear()
    for cache in TIME_CACHES:
        cache.clear()
    asctime.cache_clear()


date_time.cache_clear = _clear_time_caches  # type: ignore[attr-defined]


def _asctime_slow(ts: int) -> str:
    try:
        return time.asctime(time.localtime(ts))
    except (OverflowError, OSError, ValueError):
        return "invalid"


#: local day number -> ("Www Mmm dd ", " yyyy"): time.asctime's text around the time of day
_ASC_DAY: dict[int, tuple[str, str]] = {}


@lru_cache(maxsize=8192)
def asctime(ts: int) -> str:
    """``time.asctime(time.localtime(ts))``, or ``"invalid"`` out of range (semonitor's event times).

    Like :func:`date_time`: the hour's UTC offset, the day's text and the time of day from caches.
    """
    off = HOUR_OFFSET.get(ts // 3600)
    if off is None:
        off = hour_offset(ts // 3600)
    if off == NO_OFFSET:
        return _asctime_slow(ts)
    day, sec = divmod(ts + off, 86400)
    parts = _ASC_DAY.get(day)
    if parts is None:
        if len(_ASC_DAY) > 100_000:
            _ASC_DAY.clear()
        try:
            text = time.asctime(time.gmtime(day * 86400))
        except (OverflowError, OSError, ValueError):
            return _asctime_slow(ts)
        parts = _ASC_DAY[day] = (text[:11], text[19:])  # "Sat Nov  4 " "00:00:00" " 2023"
    tod = _TIME_OF_DAY[sec]
    if tod is None:
        tod = _TIME_OF_DAY[sec] = f"{sec // 3600:02d}:{sec // 60 % 60:02d}:{sec % 60:02d}"
    return parts[0] + tod + parts[1]


def hex_data(data: bytes) -> str:
    """``"xx xx .."`` with 16 bytes per line, lines joined by ``" | "`` (semonitor's hex field format)."""
    if len(data) <= 16:
        return data.hex(" ")
    return " | ".join([data[i:i + 16].hex(" ") for i in range(0, len(data), 16)])


# --------------------------------------------------------------------------- fixed-layout (legacy) records
# (struct format, minimum length, [(output key, word index)], post-processing)

OPT_0000 = struct.Struct("<LLLLfffff")  # 36 bytes
INV_0010 = struct.Struct("<LLLffffffLLfLffLfffffLLffL")  # 104 bytes
INV_0011 = struct.Struct("<LLLffffffffffffLLfLffLLLfffLfffL")  # 128 bytes
EVT_0300 = struct.Struct("<LLLlLLL")  # 28 bytes

#: 0x0010 single-phase inverter: key -> word
INV1_FIELDS: tuple[tuple[str, int], ...] = (
    ("Uptime", 1), ("Interval", 2), ("Temp", 3), ("Eday", 4), ("Eac", 5), ("Vac", 6), ("Iac", 7),
    ("Freq", 8), ("Vdc", 11), ("Etot", 13), ("Pmax", 18), ("Pac", 23),
)
#: 0x0011 three-phase inverter: every word after the timestamp, in order
INV3_KEYS: tuple[str, ...] = (
    "Uptime", "Interval", "Temp", "Eday", "Eac", "Vac1", "Vac2", "Vac3", "Iac1", "Iac2", "Iac3",
    "Freq1", "Freq2", "Freq3", "EdayDC", "Edc", "Vdc", "Idc", "Etot", "Irdc", "data21", "data22",
    "data23", "CosPhi1", "CosPhi2", "CosPhi3", "mode", "GndFrR", "data29", "IoutDC", "data31",
)
#: 0x0000 optimizer: key -> word
OPT_FIELDS: tuple[tuple[str, int], ...] = (
    ("Uptime", 3), ("Vmod", 4), ("Vopt", 5), ("Imod", 6), ("Eday", 7), ("Temp", 8),
)


def _base(ts: int, dev_id: str) -> dict[str, Any]:
    d, t = date_time(ts)
    return {"Date": d, "Time": t, "ID": dev_id}


def need_bytes(data: bytes, n: int, what: str) -> None:
    if len(data) < n:
        raise RecordError(f"{what} record needs {n} bytes, has {len(data)}")


def parse_optimizer_0000(dev_id: str, data: bytes) -> dict[str, Any]:
    need_bytes(data, 36, "optimizer 0x0000")
    w = OPT_0000.unpack_from(data)
    rec = _base(w[0], dev_id)
    rec["Inverter"] = parse_id(w[1])
    for key, i in OPT_FIELDS:
        rec[key] = w[i]
    return rec


def _packed_optimizer(dev_id: str, data: bytes) -> dict[str, Any]:
    ts, uptime = struct.unpack_from("<LH", data)
    b6, b7, b8, b9 = data[6], data[7], data[8], data[9]
    rec = _base(ts, dev_id)
    rec["Inverter"] = 0
    rec["Uptime"] = uptime
    rec["Vmod"] = 0.125 * (b6 | (b7 << 8 & 0x300))  # 10 bits, 1/8 V
    rec["Vopt"] = 0.125 * (b7 >> 2 | (b8 << 6 & 0x3C0))  # 10 bits, 1/8 V
    rec["Imod"] = 0.00625 * (b9 << 4 | (b8 >> 4 & 0xF))  # 12 bits, 1/160 A
    return rec


def parse_optimizer_0080(dev_id: str, data: bytes) -> dict[str, Any]:
    need_bytes(data, 13, "optimizer 0x0080")
    rec = _packed_optimizer(dev_id, data)
    rec["Eday"] = 0.25 * (data[11] << 8 | data[10])
    rec["Temp"] = 2.0 * struct.unpack_from("<b", data, 12)[0]
    return rec


def parse_optimizer_0082(dev_id: str, data: bytes) -> dict[str, Any]:
    need_bytes(data, 10, "optimizer 0x0082")
    rec = _packed_optimizer(dev_id, data)
    rec["Eday"] = 0  # the S440 layout carries neither energy nor temperature
    rec["Temp"] = 0
    return rec


def parse_inverter_0010(dev_id: str, data: bytes) -> dict[str, Any]:
    need_bytes(data, 104, "inverter 0x0010")
    w = INV_0010.unpack_from(data)
    rec = _base(w[0], dev_id)
    for key, i in INV1_FIELDS:
        rec[key] = w[i]
    if rec["Pmax"] < -3e38:  # FF FF 7F FF read little-endian
        rec["Pmax"] = NAN
    return rec


def parse_inverter_0011(dev_id: str, data: bytes) -> dict[str, Any]:
    need_bytes(data, 128, "inverter 0x0011")
    w = INV_0011.unpack_from(data)
    rec = _base(w[0], dev_id)
    for i, key in enumerate(INV3_KEYS, 1):
        rec[key] = w[i]
    return rec


def parse_event_0300(dev_id: str, data: bytes) -> dict[str, Any]:
    if len(data[:104]) != 28:
        raise RecordError(f"event 0x0300 record must be 28 bytes, has {len(data)}")
    w = EVT_0300.unpack(data)
    rec = _base(w[0], dev_id)
    rec["Type"] = w[1]
    rec["Event1"] = asctime(w[2])
    if w[1] == 0:
        rec["Event2"] = asctime(w[3])
        rec["Event3"] = w[4]
    else:
        rec["Event2"] = w[3]
        rec["Event3"] = asctime(w[4])
    return rec


#: seType -> (output dict, parser)
LEGACY: dict[int, tuple[str, Any]] = {
    0x0000: ("optimizers", parse_optimizer_0000),
    0x0080: ("optimizers", parse_optimizer_0080),
    0x0082: ("optimizers", parse_optimizer_0082),
    0x0010: ("inverters", parse_inverter_0010),
    0x0011: ("inverters", parse_inverter_0011),
    0x0300: ("events", parse_event_0300),
}

# --------------------------------------------------------------------------- table-described records
# Field: (length, format, name); format "hex" -> hex_data string, "dateTime" -> u32 + Date/Time keys,
# "str" -> utf-8 text with NULs stripped, a struct letter otherwise ("f" honours NOT_REPORTED).

BATTERY_0030: tuple[tuple[int, str, str], ...] = (
    (4, "dateTime", "dateTime"), (12, "str", "batteryId"), (4, "f", "Vdc"), (4, "f", "Idc"),
    (4, "f", "BattCapacityNom"), (4, "f", "BattCapacityActual"), (4, "f", "BattCharge"),
    (4, "L", "TotalEnergyIn"), (4, "f", "AlwaysZero_40_float"), (4, "L", "TotalEnergyOut"),
    (4, "f", "AlwaysZero_48_float"), (4, "hex", "HexConst_52"), (4, "hex", "HexConst_56"),
    (4, "f", "Temp"), (2, "H", "BattChargingStatus"), (4, "f", "AlwaysZero_66_float"),
    (4, "f", "AlwaysZero_70_float"), (4, "L", "Interval"), (4, "L", "EIn"), (4, "L", "EOut"),
)
METER_0022: tuple[tuple[int, str, str], ...] = (
    (4, "dateTime", "dateTime"), (1, "b", "recType"), (1, "b", "onlyIntervalData"),
    (4, "L", "TotalE2Grid"), (2, "H", "AlwaysZero_off10_int2"), (2, "hex", "Flag_off12_hex"),
    (4, "L", "TotalEfromGrid"), (2, "H", "AlwaysZero_off18_int2"), (2, "hex", "Flag_off20_hex"),
    (4, "L", "Totaloff22_int4"), (2, "H", "AlwaysZero_off26_int2"), (2, "hex", "Flag_off28_hex"),
    (4, "L", "Totaloff30_int4"), (2, "H", "AlwaysZero_off34_int2"), (2, "hex", "Flag_off36_hex"),
    (4, "L", "Interval"), (4, "L", "E2X"), (4, "L", "EfromX"), (4, "f", "P2X"), (4, "f", "PfromX"),
)
UNKNOWN: tuple[tuple[int, str, str], ...] = ((4, "dateTime", "dateTime"),)

METER_REC_TYPES = {3: "3_Consumption", 5: "5_GridImportExport", 7: "7_Battery", 8: "8_MostlyZeroes",
                   9: "9_PVProduction"}

#: seType -> (name, layout)
TABLE_TYPES: dict[int, tuple[str, tuple[tuple[int, str, str], ...]]] = {
    0x0030: ("batteries", BATTERY_0030),
    0x0022: ("meters", METER_0022),
}

_STRUCTS = {c: struct.Struct("<" + c) for c in "bBhHlLf"}


FLOAT_NOT_REPORTED = struct.unpack("<f", NOT_REPORTED)[0]  # -FLT_MAX: only one encoding has this value
_COMPILED: dict[int, tuple[struct.Struct, tuple[tuple[int, str, str], ...]]] = {}


def layout_struct(layout: tuple[tuple[int, str, str], ...]) -> struct.Struct:
    hit = _COMPILED.get(id(layout))
    if hit is None:
        fmt = "<" + "".join(f"{n}s" if kind in ("str", "hex") else "L" if kind == "dateTime" else kind
                            for n, kind, _ in layout)
        hit = _COMPILED[id(layout)] = (struct.Struct(fmt), layout)
    return hit[0]


def parse_table_record(se_type: int, raw_id: int, dev_len: int, data: bytes) -> tuple[str, dict[str, Any]]:
    """A record described by a field table; returns (devType, record)."""
    name, layout = TABLE_TYPES.get(se_type, ("Unknown_device", UNKNOWN))
    dev_type = f"{name}_0x{se_type:04x}"
    rec: dict[str, Any] = {"seType": f"0x{se_type:04x}", "seId": parse_id(raw_id), "devLen": dev_len,
                           "devType": dev_type}
    st = layout_struct(layout)
    defined = st.size
    if defined > dev_len:
        raise RecordError(f"{dev_type} needs {defined} bytes, record has {dev_len}")
    if len(data) < defined:
        _parse_fields_short(layout, data, rec, dev_type)
    else:
        for (_, kind, key), v in zip(layout, st.unpack_from(data), strict=True):
            if kind == "f":
                rec[key] = NAN if v == FLOAT_NOT_REPORTED else v
            elif kind == "hex":
                rec[key] = hex_data(v)
            elif kind == "dateTime":
                rec[key] = v
                rec["Date"], rec["Time"] = date_time(v)
            elif kind == "str":
                try:
                    rec[key] = v.decode("utf-8").strip("\x00")
                except UnicodeDecodeError as e:
                    raise RecordError(f"{dev_type} field {key} is not UTF-8") from e
            else:
                rec[key] = v
    if dev_len > defined:
        rec["Undeciphered_data"] = hex_data(data[defined:dev_len])
    if se_type == 0x0022 and rec["P2X"] < -3e38:
        rec["P2X"] = NAN
    return dev_type, rec


def _parse_fields_short(layout: tuple[tuple[int, str, str], ...], data: bytes, rec: dict[str, Any],
                        dev_type: str) -> None:
    """A record whose payload ends early: hex fields take what is there, numbers fail (as semonitor)."""
    ptr = 0
    for length, fmt, key in layout:
        chunk = data[ptr:ptr + length]
        if fmt == "hex":
            rec[key] = hex_data(chunk)
        elif len(chunk) != length:
            raise RecordError(f"{dev_type} field {key} truncated")
        elif fmt == "str":
            try:
                rec[key] = chunk.decode("utf-8").strip("\x00")
            except UnicodeDecodeError as e:
                raise RecordError(f"{dev_type} field {key} is not UTF-8") from e
        elif fmt == "dateTime":
            v = _STRUCTS["L"].unpack(chunk)[0]
            rec[key] = v
            rec["Date"], rec["Time"] = date_time(v)
        elif fmt == "f" and chunk == NOT_REPORTED:
            rec[key] = NAN
        else:
            rec[key] = _STRUCTS[fmt].unpack(chunk)[0]
        ptr += length


def nest_record(se_type: int, dev_type: str, rec: dict[str, Any]) -> dict[str, Any]:
    if se_type == 0x0030:
        return {dev_type: {rec["seId"]: {rec["batteryId"]: rec}}}
    if se_type == 0x0022:
        label = METER_REC_TYPES.get(rec["recType"], f"{rec['recType']}_UnrecognisedRecType")
        return {dev_type: {rec["seId"]: {label: rec}}}
    return {dev_type: {rec["seId"]: rec}}


def merge_update(into: dict[str, Any], new: dict[str, Any]) -> None:
    """Recursive update: new keys are added, nested dicts merged, leaf values overwritten."""
    for k, v in new.items():
        cur = into.get(k)
        if cur is None and k not in into:
            into[k] = v
        elif isinstance(v, dict) and isinstance(cur, dict):
            merge_update(cur, v)
        else:
            into[k] = v


def iter_records(payload: bytes) -> list[tuple[int, int, int, bytes]]:
    """Split a 0x0500 payload into (type, raw id, declared length, data) records."""
    out = []
    ptr = 0
    n = len(payload)
    unpack = REC_HDR.unpack_from
    while ptr < n:
        if n - ptr < 8:
            raise RecordError(f"{n - ptr} bytes left at offset {ptr}, a record header needs 8")
        se_type, raw_id, dev_len = unpack(payload, ptr)
        ptr += 8
        out.append((se_type, raw_id, dev_len, payload[ptr:ptr + dev_len]))
        ptr += dev_len
    return out


def parse_post_data(payload: bytes) -> dict[str, Any]:
    """The whole 0x0500 payload as semonitor's dict. Raises :class:`RecordError` like semonitor fails."""
    inverters: dict[str, Any] = {}
    optimizers: dict[str, Any] = {}
    events: dict[str, Any] = {}
    out: dict[str, Any] = {}
    groups = {"inverters": inverters, "optimizers": optimizers, "events": events}
    for se_type, raw_id, dev_len, data in iter_records(payload):
        legacy = LEGACY.get(se_type)
        if legacy is not None:
            dev_id = parse_id(raw_id)
            groups[legacy[0]][dev_id] = legacy[1](dev_id, data)
        else:
            dev_type, rec = parse_table_record(se_type, raw_id, dev_len, data)
            merge_update(out, nest_record(se_type, dev_type, rec))
    out.update(groups)
    return out
