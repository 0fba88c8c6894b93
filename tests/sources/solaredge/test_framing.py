from __future__ import annotations

import random
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from solarbridge.sources.solaredge.crc import crc16, crc16_py
from solarbridge.sources.solaredge.framing import MAGIC, Frame, FrameError, StreamDecoder, decode, encode
from support.solaredge import EXAMPLES, GARBAGE_EXAMPLES, load_table

GOOD = [k for k in load_table("frames.txt") if k != "i8_0347"]


def _bitwise_crc(data: bytes, crc: int = 0x5A5A) -> int:
    """Independent bit-by-bit CRC-16 (reflected 0x8005) to check the table versions."""
    for b in data:
        crc ^= b
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1
    return crc


@pytest.mark.parametrize("n", [0, 1, 2, 63, 64, 65, 1000, 1001])
def test_crc_matches_bitwise(n: int) -> None:
    data = bytes(random.Random(n).randrange(256) for _ in range(n))
    assert crc16(data) == crc16_py(data) == _bitwise_crc(data)
    assert crc16(data[3:], crc16(data[:3])) == crc16_py(data[3:], crc16_py(data[:3])) == _bitwise_crc(data)


def test_crc_covers_big_endian_header(frames: dict[str, bytes]) -> None:
    raw = frames["pysolaredge_nodata"]
    assert crc16(struct.pack(">HIIH", 0x0227, 0xDEADBEEF, 0xFFFFFFFE, 0x0500)) == 0x20B3
    assert raw[-2:] == b"\xb3\x20"


@pytest.mark.parametrize("name", GOOD)
def test_worked_frames_decode_and_reencode(frames: dict[str, bytes], name: str) -> None:
    raw = frames[name]
    f = decode(raw)
    assert encode(f) == raw


def test_worked_frame_fields(frames: dict[str, bytes]) -> None:
    assert decode(frames["pysolaredge_data"]) == Frame(0x000C, 0xDEADBEEF, 0xFFFFFFFD, 0x04D2, b"I am lots of data")
    assert decode(frames["i106_0302"]) == Frame(0x0017, 0xFFFFFFFE, 0x7E1A9D47, 0x0302, b"")
    f = decode(frames["i136_0500_meter0022"])
    assert (f.seq, f.src, f.dst, f.function, len(f.payload)) == (0x00C7, 0x73123D96, 0xFFFFFFFE, 0x0500, 66)


def test_bad_crc_frame_is_rejected(frames: dict[str, bytes]) -> None:
    with pytest.raises(FrameError) as e:
        decode(frames["i8_0347"])
    assert e.value.reason == "crc"


def test_length_mismatch_and_zeros() -> None:
    raw = bytearray(encode(Frame(1, 2, 3, 0x500, b"abc")))
    raw[6] ^= 1
    with pytest.raises(FrameError) as e:
        decode(bytes(raw))
    assert e.value.reason == "length"
    with pytest.raises(FrameError) as e:
        decode(MAGIC + bytes(30))
    assert e.value.reason == "zeros"


def test_stream_counts_drops_by_reason(frames: dict[str, bytes]) -> None:
    good = frames["i136_0500_meter0022"]
    bad_crc = frames["i8_0347"]
    truncated = good[:40]
    stream = b"junk" + good + bad_crc + MAGIC + bytes(20) + truncated + good + b"\x01\x02"
    d = StreamDecoder()
    out = d.feed(stream)
    d.flush()
    assert [f.seq for f in out] == [0x00C7, 0x00C7]
    assert d.drops["crc"] == 1
    assert d.drops["zeros"] == 1
    assert d.drops["truncated"] == 1
    assert d.drops["garbage"] >= 2


def test_truncated_at_end_of_stream(frames: dict[str, bytes]) -> None:
    d = StreamDecoder()
    assert d.feed(frames["i136_0500_meter0022"][:-3]) == []
    d.flush()
    assert d.drops["truncated"] == 1


frame_st = st.builds(Frame, st.integers(0, 0xFFFF), st.integers(0, 0xFFFFFFFF), st.integers(0, 0xFFFFFFFF),
                     st.integers(0, 0xFFFF), st.binary(max_size=600))


@settings(max_examples=EXAMPLES, deadline=None)
@given(frame_st)
def test_encode_decode_identity(f: Frame) -> None:
    assert decode(encode(f)) == f


@settings(max_examples=EXAMPLES, deadline=None)
@given(st.lists(frame_st, max_size=6), st.lists(st.integers(1, 200), min_size=1, max_size=30),
       st.lists(st.binary(max_size=12), max_size=6))
def test_any_chunking_gives_same_frames(frames_: list[Frame], cuts: list[int], junk: list[bytes]) -> None:
    parts = []
    for i, f in enumerate(frames_):
        # junk may not contain the magic itself, or it could form a valid frame with what follows
        j = junk[i].replace(b"\x12\x34", b"\x12\x00") if i < len(junk) else b""
        parts.append(j + encode(f))
    stream = b"".join(parts)
    whole = StreamDecoder().feed(stream)
    d = StreamDecoder()
    got: list[Frame] = []
    pos = 0
    k = 0
    while pos < len(stream):
        n = cuts[k % len(cuts)]
        got += d.feed(stream[pos:pos + n])
        pos += n
        k += 1
    assert got == whole == frames_


@settings(max_examples=GARBAGE_EXAMPLES, deadline=None)
@given(st.binary(max_size=300), st.integers(1, 64))
def test_garbage_never_raises(data: bytes, chunk: int) -> None:
    d = StreamDecoder()
    for i in range(0, len(data), chunk):
        for f in d.feed(data[i:i + chunk]):
            assert encode(f) in data  # anything decoded really is in the input
    d.flush()
    assert d.pending == 0


@settings(max_examples=EXAMPLES, deadline=None)
@given(st.binary(min_size=1, max_size=200))
def test_garbage_with_magic_never_raises(data: bytes) -> None:
    d = StreamDecoder()
    d.feed(MAGIC + data + MAGIC + data[: len(data) // 2])
    d.flush()
