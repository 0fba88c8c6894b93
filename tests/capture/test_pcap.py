"""pcap/pcapng: the sans-IO parser and the file reader, checked against dpkt's readers and writers
(an independent implementation of both formats), at any chunk size, with truncation and garbage."""

from __future__ import annotations

import io
import random
import struct
from pathlib import Path

import dpkt
import pytest
from hypothesis import given
from hypothesis import strategies as st

from solarbridge.capture.pcap import CaptureError, CaptureFile, CaptureParser

from .builders import block, pcap_bytes

SUNSYNK = Path(__file__).resolve().parent.parent / "data" / "sunsynk"
FRAME = (SUNSYNK / "sunsniff_test_frame_292.bin").read_bytes()
DERIVED_PCAP = SUNSYNK / "sunsniff_test_frame_292.DERIVED.pcap"


def _random_packets(n: int, seed: int = 1) -> list[bytes]:
    rng = random.Random(seed)
    return [rng.randbytes(rng.randint(0, 1600)) for _ in range(n)]


def _write(path: Path, records: list[tuple[float, bytes]], *, ng: bool = False) -> Path:
    with path.open("wb") as f:
        w = dpkt.pcapng.Writer(f) if ng else dpkt.pcap.Writer(f, nano=False)
        for ts, frame in records:
            w.writepkt(frame, ts=ts)
    return path


# --------------------------------------------------------------------------- the parser


@pytest.mark.parametrize("nano", [False, True])
def test_pcap_records_match_dpkt_reader_in_any_chunking(nano: bool) -> None:
    pkts = _random_packets(200)
    raw = pcap_bytes(pkts, linktype=113, nano=nano)
    theirs = [(float(ts), bytes(b)) for ts, b in dpkt.pcap.Reader(io.BytesIO(raw))]
    rng = random.Random(7)
    for _ in range(5):
        p = CaptureParser()
        got, pos = [], 0
        while pos < len(raw):
            n = rng.randint(1, 5000)
            got += p.feed(raw[pos:pos + n])
            pos += n
        assert [lt for _, lt, _ in got] == [113] * len(pkts)
        assert [d for _, _, d in got] == [d for _, d in theirs] == pkts
        assert [ts for ts, _, _ in got] == pytest.approx([ts for ts, _ in theirs], abs=1e-6)
        assert p.leftover == 0 and p.format == "pcap"


def test_big_endian_pcap() -> None:
    pkts = _random_packets(20, seed=3)
    body = b"".join(struct.pack(">IIII", 1, 2, len(p), len(p)) + p for p in pkts)
    raw = struct.pack(">IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 101) + body
    assert CaptureParser().feed(raw) == [(1.000002, 101, d) for d in pkts]


def test_pcapng_matches_dpkt_reader() -> None:
    pkts = _random_packets(100, seed=5)
    buf = io.BytesIO()
    w = dpkt.pcapng.Writer(buf, linktype=1)
    for i, pk in enumerate(pkts):
        w.writepkt(pk, ts=1_700_000_000 + i + 0.25)
    raw = buf.getvalue()
    theirs = [(ts, bytes(b)) for ts, b in dpkt.pcapng.Reader(io.BytesIO(raw))]
    p = CaptureParser()
    got = []
    for i in range(0, len(raw), 333):
        got += p.feed(raw[i:i + 333])
    assert [(ts, d) for ts, _, d in got] == theirs
    assert [d for _, _, d in got] == pkts


@pytest.mark.parametrize("e", ["<", ">"])
def test_pcapng_interfaces_simple_packets_and_unknown_blocks(e: str) -> None:
    shb = block(0x0A0D0D0A, struct.pack(e + "IHHq", 0x1A2B3C4D, 1, 0, -1), e)
    idb_eth = block(1, struct.pack(e + "HHI", 1, 0, 65535), e)
    # if_tsresol 2^-10 s, if_tsoffset 100 s
    opts = struct.pack(e + "HH", 9, 1) + b"\x8a\0\0\0" + struct.pack(e + "HHq", 14, 8, 100) + bytes(4)
    idb_raw = block(1, struct.pack(e + "HHI", 101, 0, 65535) + opts, e)
    a, b, c = b"ethernet-frame", b"raw-ip-packet", b"simple"

    def epb(iface: int, data: bytes, ticks: int = 0) -> bytes:
        return block(6, struct.pack(e + "IIIII", iface, ticks >> 32, ticks & 0xFFFFFFFF, len(data), len(data))
                     + data, e)

    nrb = block(4, b"\x00" * 8, e)  # name resolution block: skipped
    spb = block(3, struct.pack(e + "I", len(c)) + c, e)
    raw = shb + idb_eth + idb_raw + epb(0, a, 2_500_000) + nrb + epb(1, b, 3 * 1024) + spb \
        + epb(7, b"no such interface")
    # the simple packet block has no time: it takes the last one seen
    assert CaptureParser().feed(raw) == [(2.5, 1, a), (103.0, 101, b), (103.0, 1, c)]


def test_not_a_capture_and_corruption() -> None:
    with pytest.raises(CaptureError, match="not a pcap"):
        CaptureParser().feed(b"GIF89a....")
    raw = pcap_bytes([b"abc"]) + struct.pack("<IIII", 0, 0, 0x7FFFFFFF, 0)
    p = CaptureParser()
    with pytest.raises(CaptureError):
        p.feed(raw)
    assert p.feed(b"more") == []  # stays failed, never raises twice


@given(st.binary(max_size=2000), st.integers(1, 300), st.sampled_from([b"", b"pcap", b"pcapng"]))
def test_fuzz_capture_parser_never_crashes(data: bytes, chunk: int, prefix: bytes) -> None:
    head = {b"": b"", b"pcap": pcap_bytes([])[:24],
            b"pcapng": block(0x0A0D0D0A, struct.pack("<IHHq", 0x1A2B3C4D, 1, 0, -1))}[prefix]
    raw = head + data
    p = CaptureParser()
    try:
        for i in range(0, len(raw), chunk):
            for ts, lt, pkt in p.feed(raw[i:i + chunk]):
                assert isinstance(ts, float) and isinstance(lt, int) and isinstance(pkt, bytes)
    except CaptureError:
        assert p.failed


# --------------------------------------------------------------------------- the file reader

RECORDS = [(1667629966.0 + i * 0.25, FRAME[: 60 + i * 13] if i % 3 else FRAME) for i in range(40)]


@pytest.mark.parametrize("ng", [False, True], ids=["pcap", "pcapng"])
@pytest.mark.parametrize("chunk", [1, 7, 64, 1 << 20])
def test_file_records_match_dpkt_writer_at_any_chunk_size(tmp_path: Path, ng: bool, chunk: int) -> None:
    path = _write(tmp_path / "x", RECORDS, ng=ng)
    with CaptureFile(path, chunk=chunk) as cap:
        got = list(cap)
        assert cap.format == ("pcapng" if ng else "pcap") and not cap.truncated
        assert cap.bytes_read == path.stat().st_size and cap.records == len(RECORDS)
    assert [(round(ts, 6), lt, fr) for ts, lt, fr in got] == [(ts, 1, fr) for ts, fr in RECORDS]


def test_nanosecond_big_endian_file(tmp_path: Path) -> None:
    hdr = struct.pack(">IHHiIII", 0xA1B23C4D, 2, 4, 0, 0, 65535, 1)
    rec = struct.pack(">IIII", 1667629966, 123456789, len(FRAME), len(FRAME)) + FRAME
    p = tmp_path / "be.pcap"
    p.write_bytes(hdr + rec)
    ((ts, lt, fr),) = list(CaptureFile(p))
    assert (ts, lt, fr) == (pytest.approx(1667629966.123456789, abs=1e-6), 1, FRAME)


def test_pcapng_tsresol_nanoseconds_agrees_with_dpkt(tmp_path: Path) -> None:
    p = tmp_path / "ns.pcapng"
    with p.open("wb") as f:
        shb = dpkt.pcapng.SectionHeaderBlockLE()
        idb = dpkt.pcapng.InterfaceDescriptionBlockLE(snaplen=65535, linktype=1, opts=[
            dpkt.pcapng.PcapngOptionLE(code=dpkt.pcapng.PCAPNG_OPT_IF_TSRESOL, data=b"\x09"),
            dpkt.pcapng.PcapngOptionLE(code=dpkt.pcapng.PCAPNG_OPT_ENDOFOPT)])
        w = dpkt.pcapng.Writer(f, shb=shb, idb=idb)
        # dpkt's writer always counts microsecond ticks: give it the nanosecond count as "seconds * 1e6"
        w.writepkt(FRAME, ts=1667629966_500_000_000 / 1e6)
    ((ts, lt, fr),) = list(CaptureFile(p))
    assert ts == pytest.approx(1667629966.5, abs=1e-6) and fr == FRAME
    with p.open("rb") as f:  # dpkt's reader honours if_tsresol: the two readers agree
        ((dts, dfr),) = list(dpkt.pcapng.Reader(f))
    assert dts == pytest.approx(ts, abs=1e-6) and dfr == fr


def test_truncated_last_record_ends_quietly(tmp_path: Path) -> None:
    data = DERIVED_PCAP.read_bytes()
    p = tmp_path / "t.pcap"
    p.write_bytes(data + data[24:-10])
    with CaptureFile(p) as cap:
        assert len(list(cap)) == 1 and cap.truncated


def test_derived_reference_pcap_is_the_frame() -> None:
    ((ts, lt, fr),) = list(CaptureFile(DERIVED_PCAP))
    assert (ts, lt, fr) == (1667629966.0, 1, FRAME)


def test_open_errors_are_one_line_naming_the_file(tmp_path: Path) -> None:
    (tmp_path / "text").write_text("hello\n")
    for path, why in [(tmp_path / "missing.pcap", "no such file"), (tmp_path, "is a directory"),
                      (tmp_path / "text", "not a pcap or pcapng capture file")]:
        with pytest.raises(CaptureError) as e:
            CaptureFile(path)
        assert str(e.value) == f"{path}: {why}" or str(e.value).startswith(f"{path}: {why}")


def test_corrupt_record_midway_names_the_file(tmp_path: Path) -> None:
    p = tmp_path / "bad.pcap"
    p.write_bytes(DERIVED_PCAP.read_bytes() + (2**31).to_bytes(4, "little") * 4)
    with CaptureFile(p) as cap, pytest.raises(CaptureError, match=f"^{p}: corrupt"):
        list(cap)


@given(st.binary(max_size=2000), st.sampled_from([b"\xd4\xc3\xb2\xa1", b"\x0a\x0d\x0d\x0a", b"\xa1\xb2\x3c\x4d"]),
       st.integers(1, 64))
def test_garbage_files_never_crash(tmp_path_factory: pytest.TempPathFactory, body: bytes, magic: bytes,
                                   chunk: int) -> None:
    p = tmp_path_factory.mktemp("g") / "g.pcap"
    p.write_bytes(magic + body)
    try:
        with CaptureFile(p, chunk=chunk) as cap:
            for _ts, _lt, fr in cap:
                assert isinstance(fr, bytes)
    except CaptureError as e:
        assert str(e).startswith(str(p))
