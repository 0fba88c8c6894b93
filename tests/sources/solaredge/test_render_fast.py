"""The fast 0x0500 rendering paths against the obvious one: ``json.dumps(parse_post_data(p), sort_keys=True)``.

Covers the column-wise run of 0x0080 and 0x0082 records (one local day, one UTC offset), its fallback
(runs across midnight or an offset change), and the one-format 0x0010 inverter text with
non-finite floats.
"""

from __future__ import annotations

import math
import struct
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from solarbridge.sources.solaredge import records, render
from solarbridge.sources.solaredge import simulator as sim
from solarbridge.sources.solaredge.jsonout import dumps
from solarbridge.sources.solaredge.records import RecordError, parse_post_data
from solarbridge.sources.solaredge.render import render_post_data
from support.solaredge import EXAMPLES

ZONES = ("UTC", "US/Pacific", "Europe/Berlin", "Australia/Lord_Howe", "Asia/Kathmandu")


@pytest.fixture
def zone(monkeypatch: pytest.MonkeyPatch):
    """Set TZ for the test; the caches keyed on local time are cleared before and after."""

    def set_zone(tz: str) -> None:
        monkeypatch.setenv("TZ", tz)
        time.tzset()
        records.date_time.cache_clear()

    yield set_zone
    monkeypatch.undo()
    time.tzset()
    records.date_time.cache_clear()


def _expected(payload: bytes) -> str | type[RecordError]:
    try:
        return dumps(parse_post_data(payload))
    except RecordError:
        return RecordError


def _check(payload: bytes) -> None:
    want = _expected(payload)
    if want is RecordError:
        with pytest.raises(RecordError):
            render_post_data(payload)
    else:
        assert render_post_data(payload) == want


# ids from a small pool (repeats, and bit 23 set: two raw ids with the same text)
_IDS = st.sampled_from([0x20100001, 0x20900001, 0x20100008, 0x2010000F, 0x1F, 0x7F104920, 0xFFFFFFFF, 0])


@st.composite
def _run_0080(draw: st.DrawFn) -> bytes:
    """A run of 0x0080 (13-byte) or 0x0082 (10-byte) records with random bytes whose timestamps are near
    each other (or anywhere)."""
    se_type = draw(st.sampled_from([0x0080, 0x0082]))
    base = draw(st.one_of(st.integers(0, 2**32 - 1), st.sampled_from(
        [1615690800, 1636250400, 1700006400, 1700092799, 0, 2**32 - 300])))  # DST changes, midnights, ends
    out = []
    for _ in range(draw(st.integers(1, 30))):
        ts = draw(st.one_of(st.integers(max(0, base - 400), min(2**32 - 1, base + 400)), st.integers(0, 2**32 - 1)))
        body = struct.pack("<L", ts) + draw(st.binary(min_size=9, max_size=9))
        out.append(sim.record(se_type, draw(_IDS), body if se_type == 0x0080 else body[:10]))
    return b"".join(out)


@st.composite
def _other(draw: st.DrawFn) -> bytes:
    kind = draw(st.sampled_from([0x0010, 0x0011, 0x0082, 0x0000, 0x0030, 0x0022, 0x0300, 0x0017, 0x0080]))
    size = {0x0010: 104, 0x0011: 128, 0x0082: 10, 0x0000: 36, 0x0030: 86, 0x0022: 58, 0x0300: 28, 0x0017: 24,
            0x0080: 13}[kind] + draw(st.sampled_from([0, 0, 2, -1]))
    return sim.record(kind, draw(_IDS), draw(st.binary(min_size=max(0, size), max_size=max(0, size))))


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.one_of(_run_0080(), _other()), min_size=1, max_size=5), st.sampled_from(ZONES),
       st.binary(max_size=25))
def test_runs_of_0080_equal_the_obvious_path(zone, parts: list[bytes], tz: str, tail: bytes) -> None:
    zone(tz)
    _check(b"".join(parts))
    _check(b"".join(parts) + tail)  # a cut-off or garbage end: the same error or the same text


def test_run_fast_path_is_taken_and_exact(zone) -> None:
    """A usual post (24 optimizers within a minute) goes through the column-wise path, in every zone."""
    for tz in ZONES:
        zone(tz)
        for start in (1700000000, 1615690800 - 4000, 1636250400 + 4000, 1700006400 + 10):
            recs = b"".join(sim.record(0x0080, 0x20100000 + 7 * i, sim.optimizer_0080(
                start - i, 3600 + i, 30 + i / 8, 40.0, 5 + i / 16, 100.0 + i, 20.0 - 3 * i)) for i in range(24))
            out = render._OptTexts()
            span_ok = time.localtime(start - 23).tm_mday == time.localtime(start).tm_mday and \
                time.localtime(start - 23).tm_gmtoff == time.localtime(start).tm_gmtoff
            end = render._render_packed_run(recs, 0, out)
            assert end == (len(recs) if span_ok else 0), (tz, start)
            _check(recs)
            _check(sim.record(0x0010, 0x7F104920, bytes(104)) + recs + sim.record(0x0082, 0x20200000, bytes(10)))
            # the same optimizers as S440 (0x0082) records
            recs = b"".join(sim.record(0x0082, 0x20100000 + 7 * i, sim.optimizer_0080(
                start - i, 3600 + i, 30 + i / 8, 40.0, 5 + i / 16, 0, 0)[:10]) for i in range(24))
            end = render._render_packed_run(recs, 0, render._OptTexts(), 0x0082)
            assert end == (len(recs) if span_ok else 0), (tz, start)
            _check(recs)
            _check(recs + sim.record(0x0082, 0x20100007, bytes(10)) + recs[:18 * 5])  # repeated ids: later wins


def test_run_stops_at_a_record_of_another_kind() -> None:
    good = [sim.record(0x0080, 0x20100000 + i, sim.optimizer_0080(1700000000 - i, 1, 30, 40, 5, 100, 20))
            for i in range(5)]
    longer = sim.record(0x0080, 0x20200000, sim.optimizer_0080(1700000000, 1, 30, 40, 5, 100, 20) + b"\x00")
    payload = b"".join(good[:3]) + longer + b"".join(good[3:])
    out = render._OptTexts()
    assert render._render_packed_run(payload, 0, out) == 3 * 21
    assert [t[:11] for t in out.sorted_texts()] == [b'"20100000":', b'"20100001":', b'"20100002":']
    _check(payload)
    # a 0x0082 run ends at a record of another length or type
    s440 = [sim.record(0x0082, 0x20100000 + i, bytes(10)) for i in range(4)]
    payload = b"".join(s440[:2]) + sim.record(0x0082, 0x20200000, bytes(11)) + b"".join(s440[2:])
    assert render._render_packed_run(payload, 0, render._OptTexts(), 0x0082) == 2 * 18
    _check(payload)
    payload = b"".join(s440[:3]) + good[0] + s440[3]
    assert render._render_packed_run(payload, 0, render._OptTexts(), 0x0082) == 3 * 18
    _check(payload)
    # records of another type with the same 13-byte length end the run too
    for other_type in (0x0082, 0x0017):
        other = sim.record(other_type, 0x20300000, sim.optimizer_0080(1700000000, 1, 30, 40, 5, 100, 20))
        payload = b"".join(good[:2]) + other + b"".join(good[2:])
        assert render._render_packed_run(payload, 0, render._OptTexts()) == 2 * 21
        _check(payload)


_NAMES = [b"BAT000000SIM", b"BAT000001SIM", b'BA"T\\1\x00\x00\x00\x00\x00', "Batt\u00e9ry\u20ac".encode() + b"\x00",
          b"\xff\xfeBAD-UTF8!!", bytes(12)]


@st.composite
def _table_record(draw: st.DrawFn) -> bytes:
    """A battery (0x0030) or meter (0x0022) record: names with quotes, non-ASCII, bad UTF-8; meter kinds."""
    se_type = draw(st.sampled_from([0x0030, 0x0022]))
    size = {0x0030: 86, 0x0022: 58}[se_type]
    data = bytearray(draw(st.binary(min_size=size, max_size=size)))
    data[0:4] = struct.pack("<L", draw(st.sampled_from([1700000000, 1700006399, 0, 2**32 - 1])))
    if se_type == 0x0030:
        data[4:16] = draw(st.sampled_from(_NAMES))
    else:
        data[4] = draw(st.sampled_from([3, 5, 7, 8, 9, 0x81, data[4]]))
    floats = [16, 20, 40, 48, 60, 66, 70] if se_type == 0x0030 else [50, 54, 50]  # 50: the meter's P2X
    for off in draw(st.lists(st.sampled_from(floats), max_size=3)):
        # not reported (-FLT_MAX), NaN, -3.39e38 (below -3e38), -inf, +inf
        data[off:off + 4] = draw(st.sampled_from([b"\xff\xff\x7f\xff", b"\x00\x00\xc0\x7f", b"\x00\x00\x7f\xff",
                                                  b"\x00\x00\x80\xff", b"\x00\x00\x80\x7f"]))
    data = bytes(data) + draw(st.sampled_from([b"", b"", b"", b"\x01\x02"]))
    return sim.record(se_type, draw(st.sampled_from([0x7F104920, 0x7F904920, 0x7F10492A])), data)


@settings(max_examples=EXAMPLES, deadline=None)
@given(st.lists(st.one_of(_table_record(), _other()), min_size=1, max_size=8), st.binary(max_size=9))
def test_battery_and_meter_texts_equal_the_obvious_path(parts: list[bytes], tail: bytes) -> None:
    _check(b"".join(parts))
    _check(b"".join(parts) + tail)


_F32 = st.one_of(st.floats(width=32, allow_nan=True, allow_infinity=True),
                 st.sampled_from([b"\xff\xff\x7f\xff", b"\xff\xff\x7f\x7f", b"\x00\x00\xc0\x7f", b"\x00\x00\x80\xff"]))


@settings(max_examples=EXAMPLES, deadline=None)
@given(st.lists(_F32, min_size=26, max_size=26), st.integers(0, 2**32 - 1), st.integers(-2, 3))
def test_inverter_0010_equals_the_obvious_path(values: list, ts: int, extra: int) -> None:
    words = [struct.pack("<f", v) if isinstance(v, float) else v for v in values]
    words[0] = struct.pack("<L", ts)
    for i in (1, 2, 9, 10, 12, 15, 21, 22, 25):  # the u32 words
        words[i] = words[i][::-1]
    data = b"".join(words)
    data = data + bytes(extra) if extra >= 0 else data[:extra]
    _check(sim.record(0x0010, 0x7F104920, data))


def test_inverter_0010_non_finite_texts() -> None:
    w = list(struct.unpack("<LLLffffffLLfLffLfffffLLffL", bytes(104)))
    for i, v in ((4, math.nan), (5, math.inf), (18, -math.inf), (23, -math.inf)):
        w[i] = v
    data = struct.pack("<LLLffffffLLfLffLfffffLLffL", *w)
    text = render_post_data(sim.record(0x0010, 0x7F104920, data))
    assert '"Eday": NaN' in text and '"Eac": Infinity' in text and '"Pmax": NaN' in text and '"Pac": -Infinity' in text
    _check(sim.record(0x0010, 0x7F104920, data))



def _words(fmt: str, values: list, ts: int) -> bytes:
    """A record body of struct ``fmt``: floats from ``values`` (or raw float bytes), random-ish integers."""
    out = []
    for i, (c, v) in enumerate(zip(fmt, values, strict=False)):
        if i == 0:
            out.append(struct.pack("<L", ts))
        elif c == "f":
            out.append(struct.pack("<f", v) if isinstance(v, float) else v)
        else:
            out.append((struct.pack("<f", v) if isinstance(v, float) else v)[::-1])  # any 4 bytes as an integer
    return b"".join(out)


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(_F32, min_size=32, max_size=32), st.integers(0, 2**32 - 1), st.integers(-2, 3),
       st.sampled_from(ZONES), st.integers(1, 3))
def test_legacy_optimizer_and_three_phase_inverter_equal_the_obvious_path(zone, values: list, ts: int, extra: int,
                                                                          tz: str, count: int) -> None:
    zone(tz)
    for kind, fmt in ((0x0000, "LLLLfffff"), (0x0011, "LLLffffffffffffLLfLffLLLfffLfffL")):
        data = _words(fmt, values, ts)
        data = data + bytes(extra) if extra >= 0 else data[:extra]
        # several records of the kind, and one beside an inverter and optimizers
        _check(b"".join(sim.record(kind, 0x20100000 + i, data) for i in range(count)))
        _check(sim.record(0x0010, 0x7F104920, bytes(104)) + sim.record(kind, 0x7F104921, data)
               + sim.record(0x0080, 0x20900001, bytes(13)))


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.tuples(st.integers(0, 2**32 - 1), st.sampled_from([0, 1, 7, 2**32 - 1]),
                          st.integers(0, 2**32 - 1), st.integers(-2**31, 2**31 - 1), st.integers(0, 2**32 - 1),
                          _IDS), min_size=1, max_size=4),
       st.sampled_from(ZONES), st.sampled_from([0, 0, 1, -1]))
def test_events_equal_the_obvious_path(zone, events: list, tz: str, extra: int) -> None:
    zone(tz)
    for same_time in (False, True):  # a post's events often share their time
        recs = []
        for ts, type_, a, b, c, dev in events:
            data = struct.pack("<LLLlLLL", events[0][0] if same_time else ts, type_, a, b, c, 0, 0)
            recs.append(sim.record(0x0300, dev, data + bytes(extra) if extra >= 0 else data[:extra]))
        _check(b"".join(recs))
        _check(b"".join(recs) + sim.record(0x0080, 0x20900001, bytes(13)))
        _check(sim.record(0x0080, 0x20900001, bytes(13)) + b"".join(recs))

def test_time_of_day_table_filled_minute_by_minute(zone, monkeypatch: pytest.MonkeyPatch) -> None:
    """Minutes of the time-of-day table are filled on first use; a run over unfilled middle ones is still exact."""
    zone("Asia/Kathmandu")
    monkeypatch.setattr(render, "_texts", None)
    day = 1700006400 - 20700  # a local midnight in Kathmandu (UTC+5:45)

    def run(*hours_and_seconds: int) -> bytes:
        return b"".join(sim.record(0x0080, 0x20100000 + i, sim.optimizer_0080(day + s, i, 30, 40, 5, 100, 20))
                        for i, s in enumerate(hours_and_seconds))

    # minutes 04:00 and 09:59 filled first, then a run from 04:00 to 09:59: the minutes between are filled too
    for payload in (run(4 * 3600 + 1), run(9 * 3600 + 3599, 9 * 3600 + 3540), run(4 * 3600, 9 * 3600 + 3599, 6 * 3600 + 7),
                    run(0, 86399, 43200)):
        assert render._render_packed_run(payload, 0, render._OptTexts()) == len(payload)
        _check(payload)
    assert None not in render._texts.tod_uptime[4 * 3600:10 * 3600]


def test_battery_and_meter_template_path_is_taken(zone) -> None:
    """A simulated battery site's posts (2 batteries, meters) go through the template path and match."""
    zone("Europe/Berlin")
    site = sim.make_site(1, 3, 2, seed=3)
    for t in (1700000000, 1700003600):
        payload = site[0].telemetry(t)
        tables = [r for r in records.iter_records(payload) if r[0] in (0x0030, 0x0022)]
        assert len(tables) >= 3
        assert all(render._table_item(*r) is not None for r in tables)
        _check(payload)


def test_minute_texts_match_the_time_module(zone) -> None:
    """The per-minute (date, "HH:MM:") cache of the record-by-record paths: None only where the exact path is needed."""
    import random

    for tz in (*ZONES, "Africa/Monrovia"):  # Monrovia: an offset with seconds before 1972
        zone(tz)
        rng = random.Random(tz)
        minutes = [rng.randrange(0, 2**32 // 60) for _ in range(3000)] + list(range(26906400 - 120, 26906400 + 120))
        minutes += [(1615690800 + d) // 60 for d in range(-7200, 7200, 60)] + [31536000 // 60 - 1, 0]
        for m in minutes:
            hit = render._MINUTES[m]
            lt = time.localtime(m * 60)
            if hit is None:
                continue
            assert lt.tm_sec == 0 and hit == (time.strftime("%Y-%m-%d", lt), time.strftime("%H:%M:", lt)), (tz, m)
        assert sum(render._MINUTES[m] is not None for m in minutes) > len(minutes) * 0.9, tz
