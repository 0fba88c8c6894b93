"""semonitor's JSON text of a 0x0500 payload, written directly (``semonitor -o`` spends its time here).

:func:`render_post_data_bytes` gives exactly ``json.dumps(parse_post_data(payload), sort_keys=True)``
(:mod:`.records` is the reference decoder; property tests hold the two together), without building
the dict: the text of a record is built from lookup tables holding the JSON text of each field
*with the constant text around it*, in sorted-key order, so a record is a ``"".join`` of a few table
entries. Runs of usual 0x0080 and 0x0082 optimizer records are done column-wise: one struct call
unpacks the run, and the per-record work is C-level ``map``/``zip``.
"""

from __future__ import annotations

import struct
from itertools import compress, count, repeat
from operator import getitem, itemgetter, ne

try:  # json's C helper, without importing the json package at start-up
    from _json import encode_basestring_ascii as _quote
except ImportError:  # pragma: no cover - Pythons without the C module
    from json.encoder import encode_basestring_ascii as _quote

from .records import (
    EVT_0300,
    FLOAT_NOT_REPORTED,
    HOUR_OFFSET,
    INV3_KEYS,
    INV_0010,
    INV_0011,
    METER_REC_TYPES,
    NAN,
    NO_OFFSET,
    OPT_0000,
    REC_HDR,
    TABLE_TYPES,
    TIME_CACHES,
    RecordError,
    asctime,
    date_time,
    day_text,
    hour_offset,
    layout_struct,
    merge_update,
    need_bytes,
    nest_record,
    parse_event_0300,
    parse_inverter_0011,
    parse_optimizer_0000,
    parse_table_record,
)

TYPE_CHECKING = False  # (not typing's: semonitor starts without importing typing)
if TYPE_CHECKING:
    from typing import Any

_OPT_PACKED_TEMPLATE = '"%s": {"Date": "%s", "Eday": %s, "ID": "%s", "Imod": %s, "Inverter": 0, "Temp": %s, ' \
                       '"Time": "%s%s", "Uptime": %d, "Vmod": %s, "Vopt": %s}'
_OPT_0080 = struct.Struct("<LHBBBBHb")
_OPT_0082 = struct.Struct("<LHBBBB")
#: a whole 0x0080 record of the usual 13 bytes, header included
_REC_0080 = struct.Struct("<HIHLHBBBBHb")
#: (packed optimizer type, record count) -> struct of that many records (see _PACKED_RUNS)
_RUN_STRUCTS: dict[tuple[int, int], struct.Struct] = {}


class _Ids(dict[int, str]):
    """raw device id -> its text (bit 23 cleared, upper-case hex)."""

    def __missing__(self, raw: int) -> str:
        if len(self) > 100_000:
            self.clear()
        text = self[raw] = f"{raw & 0xFF7FFFFF:X}"
        return text


class _Minutes(dict[int, "tuple[str, str] | None"]):
    """Unix minute -> (local date, "HH:MM:") when that minute is a whole local minute, else None."""

    def __missing__(self, m: int) -> tuple[str, str] | None:
        if len(self) > 200_000:
            self.clear()
        # from the hour's UTC offset and the day's text, as records.date_time: a minute of an hour with an
        # offset change, or of an offset with seconds (local mean times), takes date_time's exact path
        off = hour_offset(m // 60)
        if off == NO_OFFSET or off % 60:
            hit = None
        else:
            day, sec = divmod(m * 60 + off, 86400)
            hit = (day_text(day), f"{sec // 3600:02d}:{sec // 60 % 60:02d}:")
        self[m] = hit
        return hit


class _Lazy(dict["Any", "Any"]):
    """key -> ``make(key)``, computed on first use (bounded: cleared when it grows past ``limit``)."""

    __slots__ = ("make", "limit")

    def __init__(self, make: Any, limit: int = 100_000) -> None:
        super().__init__()
        self.make = make
        self.limit = limit

    def __missing__(self, key: Any) -> Any:
        if len(self) >= self.limit:
            self.clear()
        value = self[key] = self.make(key)
        return value


_IDS = _Ids()
_MINUTES = _Minutes()
TIME_CACHES.append(_MINUTES)
_SECONDS = [f"{i:02d}" for i in range(60)]


class _Texts:
    """JSON texts of every value a packed optimizer field can take (exactly ``repr`` of semonitor's float).

    ``volt``, ``amp``, ``energy``, ``temp``: the value texts (str). The rest are the pieces of a
    0x0080 or 0x0082 record's text (ASCII bytes), each with the constant text that follows it.
    """

    def __init__(self) -> None:
        self.volt = _Lazy(lambda i: repr(0.125 * i))  # 10 bits
        self.amp = _Lazy(lambda i: repr(0.00625 * i))  # 12 bits
        self.energy = _Lazy(lambda i: repr(0.25 * i))
        self.temp = [repr(2.0 * (i - 256 if i > 127 else i)) for i in range(256)]
        volt, amp = self.volt, self.amp
        #: raw id -> b'ID", "Imod": '
        self.id_imod = _Lazy(lambda raw: f'{raw & 0xFF7FFFFF:X}", "Imod": '.encode())
        #: energy word -> b'Eday, "ID": "'
        self.eday_id = _Lazy(lambda e: f'{0.25 * e!r}, "ID": "'.encode())
        def by_byte8(b9: int, after: str) -> list[bytes]:
            # the current is byte 9 and the high nibble of byte 8: 16 texts, each for 16 values of byte 8
            texts = [f"{amp[b9 << 4 | hi]}{after}".encode() for hi in range(16)]
            return [text for text in texts for _ in range(16)]

        #: byte 9 -> [byte 8 -> b'Imod, "Inverter": 0, "Temp": ']
        self.imod_temp = _Lazy(lambda b9: by_byte8(b9, ', "Inverter": 0, "Temp": '))
        #: the same for 0x0082 records, which have no temperature: b'Imod, "Inverter": 0, "Temp": 0, "Time": "'
        self.imod_temp0 = _Lazy(lambda b9: by_byte8(b9, ', "Inverter": 0, "Temp": 0, "Time": "'))
        #: signed byte 12 (a negative index reads from the end) -> b'Temp, "Time": "'
        self.temp_time = [f'{x}, "Time": "'.encode() for x in self.temp]
        #: byte 8 -> {bytes 6-7 as a word -> b', "Vmod": Vmod, "Vopt": Vopt}'}
        self.vmod_vopt = _Lazy(lambda b8: _Lazy(
            lambda w: f', "Vmod": {volt[w & 0x3FF]}, "Vopt": {volt[w >> 10 | (b8 & 0xF) << 6]}}}'.encode(), 65536))
        #: uptime word -> b"%d"
        self.uptime = _Lazy(b"%d".__mod__)
        #: second of the day -> b'HH:MM:SS", "Uptime": ' (each minute filled on first use)
        self.tod_uptime: list[bytes | None] = [None] * 86400
        self.filled = bytearray(1440)
        self._seconds = [b'%02d", "Uptime": ' % s for s in range(60)]
        self._heads: dict[tuple[str, int], _Lazy] = {}

    def fill_minutes(self, first: int, last: int) -> None:
        """Fill :attr:`tod_uptime` for the minutes ``first..last`` of the day."""
        for m in range(first, last + 1):
            if not self.filled[m]:
                hm = b"%02d:%02d:" % divmod(m, 60)
                self.tod_uptime[m * 60:m * 60 + 60] = [hm + s for s in self._seconds]
                self.filled[m] = 1

    def heads(self, date: str, se_type: int = 0x0080) -> _Lazy:
        """raw id -> b'"ID": {"Date": "date", "Eday": ' for one date; for 0x0082 records (no energy)
        b'"ID": {"Date": "date", "Eday": 0, "ID": "ID", "Imod": '."""
        hit = self._heads.get((date, se_type))
        if hit is None:
            if len(self._heads) > 16:
                self._heads.clear()
            if se_type == 0x0080:
                hit = _Lazy(lambda raw: f'"{raw & 0xFF7FFFFF:X}": {{"Date": "{date}", "Eday": '.encode())
            else:
                hit = _Lazy(lambda raw: '"{0:X}": {{"Date": "{1}", "Eday": 0, "ID": "{0:X}", "Imod": '.format(
                    raw & 0xFF7FFFFF, date).encode())
            self._heads[date, se_type] = hit
        return hit


_texts: _Texts | None = None


def _opt_texts() -> _Texts:
    global _texts
    if _texts is None:
        _texts = _Texts()
    return _texts


class _OptTexts(dict[str, bytes]):
    """Optimizer id -> its text (``"ID": {...}``), later records replacing earlier ones.

    A first run of records with distinct ids is kept as the list :attr:`run` instead (no keys to
    make); :meth:`spill` moves it into the dict before anything else is added. A text starts with
    its quoted id, and ``"`` sorts before every hex digit, so texts sort as their ids do.
    """

    run: list[bytes] | None = None  # (a class default: making one stays a C-level call)

    def spill(self) -> None:
        if self.run is not None:
            for text in self.run:
                self[text[1:text.index(b'"', 1)].decode()] = text
            self.run = None

    def sorted_texts(self) -> list[bytes]:
        if self.run is not None:
            return sorted(self.run)
        return list(map(self.__getitem__, sorted(self)))


#: packed optimizer type -> (its usual data length, the whole record (header included) as struct letters,
#: with bytes 6 and 7 of the data as one little-endian word (Vmod and the low bits of Vopt))
_PACKED_RUNS = {0x0080: (13, "HIHLHHBBHb"), 0x0082: (10, "HIHLHHBB")}


def _render_packed_run(payload: bytes, ptr: int, optimizers: _OptTexts, se_type: int = 0x0080) -> int:
    """Render the run of usual 0x0080 (13-byte) or 0x0082 (10-byte) records at ``ptr`` into ``optimizers``.

    Returns the offset after the run, or ``ptr`` when the run is not all in one local day with
    one UTC offset (the caller then takes the record-by-record path). 0x0082 records carry neither
    energy nor temperature: their texts have ``0`` in those places, in fewer, longer pieces.
    """
    dlen, letters = _PACKED_RUNS[se_type]
    k = len(letters)  # values per record
    size = 8 + dlen
    m = (len(payload) - ptr) // size
    st = _RUN_STRUCTS.get((se_type, m))
    if st is None:
        if len(_RUN_STRUCTS) > 256:
            _RUN_STRUCTS.clear()
        st = _RUN_STRUCTS[se_type, m] = struct.Struct("<" + letters * m)
    # one flat tuple for the whole run; a column is every k-th value
    f = st.unpack_from(payload, ptr)
    typ, lens = f[0::k], f[2::k]
    if typ.count(se_type) != m or lens.count(dlen) != m:
        # the run ends at the first record of another type or length
        m = min(next(compress(count(), map(ne, typ, repeat(se_type))), m),
                next(compress(count(), map(ne, lens, repeat(dlen))), m))
        f = f[:m * k]
    raw, ts, up, w67, b8, b9 = f[1::k], f[3::k], f[4::k], f[5::k], f[6::k], f[7::k]
    lo, hi = min(ts), max(ts)
    if hi - lo >= 86400:
        return ptr
    hour = lo // 3600
    off = HOUR_OFFSET.get(hour)
    if off is None:
        off = hour_offset(hour)
    if off == NO_OFFSET:
        return ptr
    while hour < hi // 3600:
        hour += 1
        if HOUR_OFFSET.get(hour, NO_OFFSET) != off and hour_offset(hour) != off:
            return ptr
    day = (lo + off) // 86400
    if (hi + off) // 86400 != day:
        return ptr
    tx = _texts if _texts is not None else _opt_texts()
    start = day * 86400 - off
    m0, m1 = (lo - start) // 60, (hi - start) // 60
    if m1 - m0 > 1 or not tx.filled[m0] or not tx.filled[m1]:
        tx.fill_minutes(m0, m1)
    heads = list(map(tx.heads(day_text(day), se_type).__getitem__, raw))
    tail = (map(tx.tod_uptime.__getitem__, map(start.__rsub__, ts)), map(tx.uptime.__getitem__, up),
            map(getitem, map(tx.vmod_vopt.__getitem__, b8), w67))
    if se_type == 0x0080:
        texts = list(map(b"".join, zip(
            heads, map(tx.eday_id.__getitem__, f[8::k]), map(tx.id_imod.__getitem__, raw),
            map(getitem, map(tx.imod_temp.__getitem__, b9), b8), map(tx.temp_time.__getitem__, f[9::k]), *tail,
            strict=True)))
    else:  # the head holds the constant energy and the id, the current the constant temperature
        texts = list(map(b"".join, zip(heads, map(getitem, map(tx.imod_temp0.__getitem__, b9), b8), *tail,
                                       strict=True)))
    if optimizers.run is None and not optimizers and len(set(heads)) == m:
        optimizers.run = texts  # the usual post: one run of distinct optimizers
    else:
        optimizers.spill()
        optimizers.update(zip(map(_IDS.__getitem__, raw), texts, strict=True))
    return ptr + m * size


def _render_0080_records(payload: bytes, ptr: int, optimizers: _OptTexts) -> int:
    """Record by record, the run of usual 0x0080 records at ``ptr`` (any times); returns the offset after it."""
    optimizers.spill()
    tx = _opt_texts()
    volt, amp, energy, temp = tx.volt, tx.amp, tx.energy, tx.temp
    ids, minutes, seconds = _IDS, _MINUTES, _SECONDS
    template = _OPT_PACKED_TEMPLATE
    n = len(payload)
    for se_type, raw_id, dev_len, ts, uptime, b6, b7, b8, b9, e, t in _REC_0080.iter_unpack(
            memoryview(payload)[ptr:ptr + (n - ptr) // 21 * 21]):
        if se_type != 0x0080 or dev_len != 13:
            break
        ptr += 21
        dev_id = ids[raw_id]
        m = ts // 60
        dm = minutes[m]
        if dm is None:
            d, tod = date_time(ts)
            hm, sec = tod, ""
        else:
            d, hm = dm
            sec = seconds[ts - m * 60]
        optimizers[dev_id] = (template % (dev_id, d, energy[e], dev_id, amp[b9 << 4 | b8 >> 4], temp[t & 0xFF], hm,
                                          sec, uptime, volt[b6 | (b7 & 3) << 8],
                                          volt[b7 >> 2 | (b8 & 0xF) << 6])).encode()
    return ptr


#: a whole 0x0000 record of its 36 bytes, header included
_REC_0000 = struct.Struct("<HIHLLLLfffff")
#: a whole 0x0082 record of its usual 10 bytes, header included
_REC_0082 = struct.Struct("<HIHLHBBBB")


def _render_0000_run(payload: bytes, ptr: int, optimizers: _OptTexts) -> int:
    """The run of 36-byte 0x0000 records with finite values at ``ptr``; returns the offset after it."""
    optimizers.spill()
    ids, minutes, seconds = _IDS, _MINUTES, _SECONDS
    template = _OPT0_TEMPLATE
    size = _REC_0000.size
    n = len(payload)
    for se_type, raw_id, dev_len, ts, inv, _, uptime, vmod, vopt, imod, eday, temp in _REC_0000.iter_unpack(
            memoryview(payload)[ptr:ptr + (n - ptr) // size * size]):
        total = vmod + vopt + imod + eday + temp  # finite unless one is NaN or infinite
        if se_type != 0x0000 or dev_len != 36 or total - total != 0.0:
            break
        ptr += size
        dev_id = ids[raw_id]
        m = ts // 60
        dm = minutes[m]
        if dm is None:
            d, tod = date_time(ts)
        else:
            d, tod = dm[0], dm[1] + seconds[ts - m * 60]
        optimizers[dev_id] = (template % (dev_id, d, eday, dev_id, imod, ids[inv], temp, tod, uptime, vmod,
                                          vopt)).encode()
    return ptr


def _render_0082_run(payload: bytes, ptr: int, optimizers: _OptTexts) -> int:
    """Record by record, the run of 10-byte 0x0082 records at ``ptr`` (any times); returns the offset after it."""
    optimizers.spill()
    tx = _opt_texts()
    volt, amp = tx.volt, tx.amp
    ids, minutes, seconds = _IDS, _MINUTES, _SECONDS
    template = _OPT_PACKED_TEMPLATE
    size = _REC_0082.size
    n = len(payload)
    for se_type, raw_id, dev_len, ts, uptime, b6, b7, b8, b9 in _REC_0082.iter_unpack(
            memoryview(payload)[ptr:ptr + (n - ptr) // size * size]):
        if se_type != 0x0082 or dev_len != 10:
            break
        ptr += size
        dev_id = ids[raw_id]
        m = ts // 60
        dm = minutes[m]
        if dm is None:
            d, hm = date_time(ts)
            sec = ""
        else:
            d, hm = dm
            sec = seconds[ts - m * 60]
        optimizers[dev_id] = (template % (dev_id, d, "0", dev_id, amp[b9 << 4 | b8 >> 4], "0", hm, sec, uptime,
                                          volt[b6 | (b7 & 3) << 8], volt[b7 >> 2 | (b8 & 0xF) << 6])).encode()
    return ptr


def _render_packed_optimizer(se_type: int, dev_id: str, payload: bytes, start: int, avail: int) -> bytes:
    """One 0x0080 (of any length) or 0x0082 record."""
    tx = _opt_texts()
    volt, amp = tx.volt, tx.amp
    if se_type == 0x0080:
        if avail < 13:
            raise RecordError(f"optimizer 0x0080 record needs 13 bytes, has {avail}")
        ts, uptime, b6, b7, b8, b9, e, t = _OPT_0080.unpack_from(payload, start)
        e_txt, t_txt = tx.energy[e], tx.temp[t & 0xFF]
    else:
        if avail < 10:
            raise RecordError(f"optimizer 0x0082 record needs 10 bytes, has {avail}")
        ts, uptime, b6, b7, b8, b9 = _OPT_0082.unpack_from(payload, start)
        e_txt = t_txt = "0"
    d, tod = date_time(ts)
    return (_OPT_PACKED_TEMPLATE % (dev_id, d, e_txt, dev_id, amp[b9 << 4 | b8 >> 4], t_txt, tod, "", uptime,
                                    volt[b6 | (b7 & 3) << 8], volt[b7 >> 2 | (b8 & 0xF) << 6])).encode()


def _sorted_template(keys: tuple[str, ...], kinds: str, item: bool = True) -> tuple[str, list[int]]:
    """A ``%`` template of a record's JSON text with its keys in sorted order, and the value order.

    ``keys[i]`` is written with ``kinds[i]``: ``f`` a finite float (``%r`` is its JSON text), ``d``
    an integer, ``s`` a plain text needing no escapes (quoted). With ``item`` the template starts
    with ``"ID": `` (its first value).
    """
    fmt = {"f": "%r", "d": "%d", "s": '"%s"'}
    order = sorted(range(len(keys)), key=keys.__getitem__)
    body = "{" + ", ".join(f'"{keys[i]}": {fmt[kinds[i]]}' for i in order) + "}"
    return ('"%s": ' + body if item else body), order


#: 0x0000 optimizer: (ID, Date, Time, Inverter, then the words 3..8 of OPT_0000)
_OPT0_KEYS = ("Date", "Time", "ID", "Inverter", "Uptime", "Vmod", "Vopt", "Imod", "Eday", "Temp")
_OPT0_TEMPLATE, _OPT0_ORDER = _sorted_template(_OPT0_KEYS, "ssssdfffff")
# the run renderer writes the values in this order by hand
assert _OPT0_ORDER == [0, 8, 2, 7, 3, 9, 1, 4, 5, 6], _OPT0_ORDER


def _optimizer_0000_item(dev_id: str, payload: bytes, start: int, end: int) -> bytes:
    """b'"ID": {...}' of the 0x0000 record ``payload[start:end]``."""
    if end - start >= 36 and len(payload) - start >= 36:
        ts, inv, _, uptime, vmod, vopt, imod, eday, temp = OPT_0000.unpack_from(payload, start)
        total = vmod + vopt + imod + eday + temp  # finite unless one is NaN or infinite
        if total - total == 0.0:
            d, t = date_time(ts)
            return (_OPT0_TEMPLATE % (dev_id, d, eday, dev_id, imod, _IDS[inv], temp, t, uptime, vmod,
                                      vopt)).encode()
    return f'"{dev_id}": {_dumps(parse_optimizer_0000(dev_id, payload[start:end]))}'.encode()


#: 0x0011 three-phase inverter: Date, Time, ID, then every word after the timestamp
_INV3_KINDS = "".join("f" if c == "f" else "d" for c in INV_0011.format.lstrip("<"))[1:]
_INV3_TEMPLATE, _INV3_ORDER = _sorted_template(("Date", "Time", "ID", *INV3_KEYS), "sss" + _INV3_KINDS)
_INV3_FLOATS = [i for i, c in enumerate(INV_0011.format.lstrip("<")) if c == "f"]
#: (Date, Time, ID, words 1..31) -> the template's values, "ID" key first
_INV3_PICK = itemgetter(2, *_INV3_ORDER)
_INV3_SUM = itemgetter(*_INV3_FLOATS)
#: a post of one inverter and nothing else: its line around the inverter's item
_LINE_HEAD, _LINE_TAIL = b'{"events": {}, "inverters": {', b'}, "optimizers": {}}'
_INV3_LINE = _LINE_HEAD.decode() + _INV3_TEMPLATE + _LINE_TAIL.decode()


def _inverter_0011_item(dev_id: str, payload: bytes, start: int, end: int, line: bool = False) -> bytes:
    """b'"ID": {...}' of the 0x0011 record ``payload[start:end]`` (with ``line``, the post's line of it alone)."""
    if end - start >= 128 and len(payload) - start >= 128:
        w = INV_0011.unpack_from(payload, start)
        total = sum(_INV3_SUM(w))
        if total - total == 0.0:
            return ((_INV3_LINE if line else _INV3_TEMPLATE) % _INV3_PICK((*date_time(w[0]), dev_id, *w[1:]))).encode()
    item = f'"{dev_id}": {_dumps(parse_inverter_0011(dev_id, payload[start:end]))}'.encode()
    return _LINE_HEAD + item + _LINE_TAIL if line else item


#: 0x0300 event: Type 0 has times in Event1 and Event2, other types in Event1 and Event3
_EVT_KEYS = ("Date", "Time", "ID", "Type", "Event1", "Event2", "Event3")
_EVT0_TEMPLATE, _EVT_ORDER = _sorted_template(_EVT_KEYS, "sssdssd")
_EVT1_TEMPLATE, _ = _sorted_template(_EVT_KEYS, "sssdsds")
# the renderer writes the values in this order by hand
assert _EVT_ORDER == [0, 4, 5, 6, 2, 1, 3], _EVT_ORDER


#: a whole 0x0300 record of the usual 28 bytes, header included
_REC_0300 = struct.Struct("<HIH" + EVT_0300.format.lstrip("<"))


def _events_line(payload: bytes) -> bytes | None:
    """The line of a post of usual 0x0300 records only (as :func:`_event_0300_item` each), else None."""
    events: dict[str, str] = {}
    ids = _IDS
    last = -1
    for se_type, raw_id, dev_len, ts, type_, e1, e2, e3, _, _ in _REC_0300.iter_unpack(payload):
        if se_type != 0x0300 or dev_len != 28:
            return None
        dev_id = ids[raw_id]
        if ts != last:  # the events of a post often share their time
            d, t = date_time(ts)
            last = ts
        if type_ == 0:
            events[dev_id] = _EVT0_TEMPLATE % (dev_id, d, asctime(e1), asctime(e2), e3, dev_id, t, type_)
        else:
            events[dev_id] = _EVT1_TEMPLATE % (dev_id, d, asctime(e1), e2, asctime(e3), dev_id, t, type_)
    return ('{"events": {' + ", ".join(map(events.__getitem__, sorted(events))) +
            '}, "inverters": {}, "optimizers": {}}').encode()


def _event_0300_item(dev_id: str, payload: bytes, start: int, end: int) -> bytes:
    """b'"ID": {...}' of the 0x0300 record ``payload[start:end]`` (raises like parse_event_0300)."""
    if end - start != 28 or len(payload) - start < 28:
        return f'"{dev_id}": {_dumps(parse_event_0300(dev_id, payload[start:end]))}'.encode()
    ts, type_, e1, e2, e3, _, _ = EVT_0300.unpack_from(payload, start)
    d, t = date_time(ts)
    if type_ == 0:
        return (_EVT0_TEMPLATE % (dev_id, d, asctime(e1), asctime(e2), e3, dev_id, t, type_)).encode()
    return (_EVT1_TEMPLATE % (dev_id, d, asctime(e1), e2, asctime(e3), dev_id, t, type_)).encode()


def _dumps(obj: Any) -> str:
    from .jsonout import dumps

    return dumps(obj)


#: 0x0010 record with its keys in sorted order
_INV1_TEMPLATE = ('{"Date": "%s", "Eac": %s, "Eday": %s, "Etot": %s, "Freq": %s, "ID": "%s", "Iac": %s, '
                  '"Interval": %s, "Pac": %s, "Pmax": %s, "Temp": %s, "Time": "%s", "Uptime": %s, "Vac": %s, "Vdc": %s}')
#: the same with %r for the float fields (repr is the JSON text of a finite float)
_INV1_TEMPLATE_R = ('"%s": {"Date": "%s", "Eac": %r, "Eday": %r, "Etot": %r, "Freq": %r, "ID": "%s", "Iac": %r, '
                    '"Interval": %d, "Pac": %r, "Pmax": %s, "Temp": %r, "Time": "%s", "Uptime": %d, "Vac": %r, '
                    '"Vdc": %r}')
_INV1_LINE_R = _LINE_HEAD.decode() + _INV1_TEMPLATE_R + _LINE_TAIL.decode()
_NON_FINITE = {"nan": "NaN", "inf": "Infinity", "-inf": "-Infinity"}
#: the words of INV_0010 that are written (0-8, 11, 13, 18, 23); the others are skipped as padding
_INV1_USED = struct.Struct("<LLLffffff8xf4xf16xf16xf8x")
assert _INV1_USED.size == INV_0010.size


def _inverter_0010_text(dev_id: str, data: bytes) -> str:
    need_bytes(data, 104, "inverter 0x0010")
    w = INV_0010.unpack_from(data)
    pmax = w[18]
    if pmax < -3e38:
        pmax = NAN
    nums = [repr(w[5]), repr(w[4]), repr(w[13]), repr(w[8]), repr(w[7]), repr(w[2]), repr(w[23]), repr(pmax),
            repr(w[3]), repr(w[1]), repr(w[6]), repr(w[11])]
    if "nan" in nums or "inf" in nums or "-inf" in nums:
        nums = [_NON_FINITE.get(x, x) for x in nums]
    d, t = date_time(w[0])
    return _INV1_TEMPLATE % (d, nums[0], nums[1], nums[2], nums[3], dev_id, nums[4], nums[5], nums[6], nums[7],
                             nums[8], t, nums[9], nums[10], nums[11])


def _inverter_0010_item(dev_id: str, payload: bytes, start: int, end: int, line: bool = False) -> bytes:
    """b'"ID": {...}' of the 0x0010 record ``payload[start:end]``: one % with %r when every float is finite.

    With ``line``, the post's line of this record alone.
    """
    if end - start >= 104 and len(payload) - start >= 104:
        ts, uptime, interval, temp, eday, eac, vac, iac, freq, vdc, etot, pmax, pac = _INV1_USED.unpack_from(payload,
                                                                                                          start)
        # the sum of finite float32 values is finite; one NaN or infinity makes it NaN or infinite
        total = temp + eday + eac + vac + iac + freq + vdc + etot + pac + (0.0 if pmax < -3e38 else pmax)
        if total - total == 0.0:
            d, tod = date_time(ts)
            return ((_INV1_LINE_R if line else _INV1_TEMPLATE_R) % (
                dev_id, d, eac, eday, etot, freq, dev_id, iac, interval, pac, "NaN" if pmax < -3e38 else pmax, temp,
                tod, uptime, vac, vdc)).encode()
    item = f'"{dev_id}": {_inverter_0010_text(dev_id, payload[start:end])}'.encode()
    return _LINE_HEAD + item + _LINE_TAIL if line else item


class _TablePlan:
    """How to write a full-length record of a table layout as JSON text with one ``%``."""

    __slots__ = ("dev_type", "struct", "template", "pick", "floats", "hexes", "strs", "label", "labels", "p2x",
                 "get_floats", "get_values")

    def __init__(self, se_type: int) -> None:
        quote = _quote
        name, layout = TABLE_TYPES[se_type]
        self.dev_type = f"{name}_0x{se_type:04x}"
        self.struct = layout_struct(layout)
        n = len(layout)
        # the values list is the unpacked fields, then Date, Time, seId, devLen
        fields: dict[str, tuple[int, str]] = {key: (i, kind) for i, (_, kind, key) in enumerate(layout)}
        fields.update({"Date": (n, "text"), "Time": (n + 1, "text"), "seId": (n + 2, "text"),
                       "devLen": (n + 3, "int")})
        consts = {"seType": quote(f"0x{se_type:04x}"), "devType": quote(self.dev_type)}
        parts, pick = [], []
        for key in sorted([*fields, *consts]):
            if key in consts:
                parts.append(f"{quote(key)}: {consts[key]}")
                continue
            i, kind = fields[key]
            fmt = {"f": "%s", "hex": '"%s"', "text": '"%s"', "str": "%s"}.get(kind, "%d")  # str(float) is repr
            parts.append(f"{quote(key)}: {fmt}")
            pick.append(i)
        self.template = "{" + ", ".join(parts) + "}"
        self.pick = pick
        self.floats = [i for i, (_, kind, _) in enumerate(layout) if kind == "f"]
        self.hexes = [i for i, (_, kind, _) in enumerate(layout) if kind == "hex"]
        self.strs = [i for i, (_, kind, _) in enumerate(layout) if kind == "str"]
        self.label = layout.index((12, "str", "batteryId")) if se_type == 0x0030 else \
            layout.index((1, "b", "recType"))
        #: the meter's record type (a signed byte) -> its label; batteries are labelled by their name
        self.labels = {t: METER_REC_TYPES.get(t, f"{t}_UnrecognisedRecType") for t in range(-128, 128)} \
            if se_type == 0x0022 else None
        #: the meter's P2X: any value below -3e38 is not reported (parse_table_record's rule)
        self.p2x = layout.index((4, "f", "P2X")) if se_type == 0x0022 else -1
        self.get_floats = itemgetter(*self.floats)
        self.get_values = itemgetter(*pick)
        assert len(self.floats) > 1 and len(pick) > 1  # itemgetter of one index gives a value, not a tuple
        assert all(layout[i][0] <= 16 for i in self.hexes)  # one line of hex_data


_TABLE_PLANS: dict[int, _TablePlan] = {}
# render_post_data_bytes sorts the top-level texts with "events" and "inverters" in one text: no table
# type's name may sort between them
assert not any("events" < name < "inverters" for name in ("Unknown_device", *(n for n, _ in TABLE_TYPES.values())))
#: bytes of a short hex field -> its text (flag and constant fields: few distinct values)
_HEX_TEXTS = _Lazy(lambda b: b.hex(" "), 10_000)


def _table_item(se_type: int, raw_id: int, dev_len: int, data: bytes) -> tuple[str, str, str, str] | None:
    """(devType, seId, label, JSON text) of a battery or meter record of exactly its layout's length.

    None when the record needs the general path: another type or length, a text field that is
    not UTF-8.
    """
    plan = _TABLE_PLANS.get(se_type)
    if plan is None:
        if se_type not in (0x0030, 0x0022):
            return None
        plan = _TABLE_PLANS[se_type] = _TablePlan(se_type)
    st = plan.struct
    if dev_len != st.size or len(data) != dev_len:
        return None
    values = list(st.unpack_from(data))
    floats = plan.get_floats(values)
    total = sum(floats)
    if total - total != 0.0 or min(floats) < -3e38:  # non-finite or not reported (-FLT_MAX): JSON texts
        for i in plan.floats:
            v = values[i]
            if v == FLOAT_NOT_REPORTED or v != v or (i == plan.p2x and v < -3e38):
                values[i] = "NaN"
            elif v - v != 0.0:
                values[i] = "Infinity" if v > 0 else "-Infinity"
    for i in plan.hexes:
        values[i] = _HEX_TEXTS[values[i]]  # hex_data of a field of at most 16 bytes (checked in _TablePlan)
    for i in plan.strs:
        try:
            values[i] = values[i].decode("utf-8").strip("\x00")
        except UnicodeDecodeError:
            return None
    label_value = values[plan.label]
    for i in plan.strs:
        values[i] = _quote(values[i])
    seid = _IDS[raw_id]
    values.extend(date_time(values[0]))
    values.append(seid)
    values.append(dev_len)
    text = plan.template % plan.get_values(values)
    return plan.dev_type, seid, label_value if plan.labels is None else plan.labels[label_value], text


def _tables_text(items: list[tuple[str, str, str, str]]) -> list[bytes]:
    """The texts ``"devType": {seId: {label: record}}`` of the records, in devType order.

    Two records in one place are merged key by key in the original; records of one layout and
    its exact length have the same keys, so the later one simply wins.
    """
    places: dict[tuple[str, str], dict[str, str]] = {}
    for dev_type, seid, label, text in items:
        recs = places.get((dev_type, seid))
        if recs is None:
            places[dev_type, seid] = {label: text}
        else:
            recs[label] = text
    out: list[str] = []
    last = ""
    for dev_type, seid in sorted(places):
        recs = places[dev_type, seid]
        if len(recs) == 1:
            ((label, text),) = recs.items()
            body = _quote(label) + ": " + text
        else:
            body = ", ".join([_quote(label) + ": " + recs[label] for label in sorted(recs)])
        if dev_type != last:
            if last:
                out[-1] += "}"
            out.append('"' + dev_type + '": {"' + seid + '": {' + body + "}")
            last = dev_type
        else:
            out[-1] += ', "' + seid + '": {' + body + "}"
    out[-1] += "}"
    return [text.encode() for text in out]


def render_post_data(payload: bytes, encode: Any = None) -> str:
    """``json.dumps(parse_post_data(payload), sort_keys=True)``, faster (see :func:`render_post_data_bytes`)."""
    return render_post_data_bytes(payload, encode).decode("ascii")


def render_post_data_bytes(payload: bytes, encode: Any = None) -> bytes:
    """``json.dumps(parse_post_data(payload), sort_keys=True)`` as ASCII bytes, faster.

    Optimizer records (the bulk of real traffic) and single-phase inverter records are written
    from text pieces with their keys already in sorted order; everything else goes through the
    JSON encoder (``encode``, default ``json.JSONEncoder(sort_keys=True).encode``). Raises
    :class:`RecordError` exactly where :func:`parse_post_data` does (tested against it).
    """
    n = len(payload)
    if n % 36 == 0 and payload[:2] == b"\x00\x03" and n:
        # events only: a post of one kind of record, as a line
        line = _events_line(payload)
        if line is not None:
            return line
    if n == 112 or n == 136:
        se_type, raw_id, dev_len = REC_HDR.unpack_from(payload)
        # one inverter and nothing else: the usual post of an inverter without optimizers, as one line
        if se_type == 0x0010 and dev_len == 104 and n == 112:
            return _inverter_0010_item(_IDS[raw_id], payload, 8, 112, True)
        if se_type == 0x0011 and dev_len == 128 and n == 136:
            return _inverter_0011_item(_IDS[raw_id], payload, 8, 136, True)
    inverters: dict[str, bytes] = {}
    optimizers = _OptTexts()
    events: dict[str, bytes] = {}
    tables: list[tuple[int, int, int, bytes]] = []
    table_items: list[tuple[str, str, str, str]] | None = []
    ptr = 0
    while ptr < n:
        if n - ptr < 8:
            raise RecordError(f"{n - ptr} bytes left at offset {ptr}, a record header needs 8")
        se_type, raw_id, dev_len = REC_HDR.unpack_from(payload, ptr)
        if se_type == 0x0080 and dev_len == 13 and n - ptr >= 21:
            end = _render_packed_run(payload, ptr, optimizers)
            # a run across a day or a UTC offset change: record by record
            ptr = end if end > ptr else _render_0080_records(payload, ptr, optimizers)
            continue
        if se_type == 0x0082 and dev_len == 10 and n - ptr >= 18:
            end = _render_packed_run(payload, ptr, optimizers, 0x0082)
            ptr = end if end > ptr else _render_0082_run(payload, ptr, optimizers)
            continue
        if se_type == 0x0000 and dev_len == 36 and n - ptr >= 44:
            end = _render_0000_run(payload, ptr, optimizers)
            if end > ptr:
                ptr = end
                continue
        start = ptr + 8
        ptr = start + dev_len
        if se_type == 0x0010:
            dev_id = _IDS[raw_id]
            inverters[dev_id] = _inverter_0010_item(dev_id, payload, start, ptr)
        elif se_type == 0x0080 or se_type == 0x0082:
            dev_id = _IDS[raw_id]
            optimizers.spill()
            optimizers[dev_id] = _render_packed_optimizer(se_type, dev_id, payload, start,
                                                          dev_len if ptr <= n else n - start)
        elif se_type == 0x0000:
            dev_id = _IDS[raw_id]
            optimizers.spill()
            optimizers[dev_id] = _optimizer_0000_item(dev_id, payload, start, ptr)
        elif se_type == 0x0011:
            dev_id = _IDS[raw_id]
            inverters[dev_id] = _inverter_0011_item(dev_id, payload, start, ptr)
        elif se_type == 0x0300:
            dev_id = _IDS[raw_id]
            events[dev_id] = _event_0300_item(dev_id, payload, start, ptr)
        else:
            # table-described records: texts from a template while every one allows it
            data = payload[start:ptr]
            tables.append((se_type, raw_id, dev_len, data))
            if table_items is not None:
                item = _table_item(se_type, raw_id, dev_len, data)
                if item is not None:
                    table_items.append(item)
                    continue
                table_items = None
            parse_table_record(se_type, raw_id, dev_len, data)  # raises where the general path does
    inv = b", ".join(map(inverters.__getitem__, sorted(inverters))) if len(inverters) > 1 else b"".join(
        inverters.values())
    if not tables and not events:
        head = b'{"events": {}, "inverters": {' + inv + b'}, "optimizers": {'
        items = optimizers.sorted_texts()
        if not items:
            return head + b"}}"
        # one join for the whole line: the head and tail go onto the first and last item
        items[0] = head + items[0]
        items[-1] += b"}}"
        return b", ".join(items)
    evt = b", ".join(map(events.__getitem__, sorted(events))) if len(events) > 1 else b"".join(events.values())
    # the keys in sorted order: events, inverters, optimizers
    opt = b", ".join(optimizers.sorted_texts()) if optimizers or optimizers.run else b""
    if not tables:
        return b'{"events": {' + evt + b'}, "inverters": {' + inv + b'}, "optimizers": {' + opt + b"}}"
    fixed = [b'"events": {' + evt + b'}, "inverters": {' + inv + b'}', b'"optimizers": {' + opt + b"}"]
    if table_items is not None:
        parts = _tables_text(table_items)
    else:
        if encode is None:
            from .jsonout import dumps as encode
        other: dict[str, Any] = {}
        for se_type, raw_id, dev_len, data in tables:
            dev_type, rec = parse_table_record(se_type, raw_id, dev_len, data)
            merge_update(other, nest_record(se_type, dev_type, rec))
        parts = [_KEY_TEXTS[k] + encode(other[k]).encode() for k in sorted(other)]
    # each text starts with its quoted key: sorting the texts sorts the keys (the table types' names are
    # ASCII letters, digits and underscores, and "events" and "inverters" stay together)
    parts += fixed
    parts.sort()
    return b"{" + b", ".join(parts) + b"}"


class _KeyTexts(dict[str, bytes]):
    """Top-level key -> its JSON text with the colon after it (``b'"events": '``)."""

    def __missing__(self, key: str) -> bytes:
        if len(self) > 1000:
            self.clear()
        text = self[key] = _quote(key).encode() + b": "
        return text


_KEY_TEXTS = _KeyTexts()
