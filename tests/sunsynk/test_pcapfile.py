"""The streaming pcap/pcapng reader against dpkt's writer, odd chunk sizes, truncation and garbage."""

from __future__ import annotations

import struct

import dpkt
import pytest
from hypothesis import given
from hypothesis import strategies as st

from solarbridge.sources.sunsynk.frames import tcp_segment
from solarbridge.sources.sunsynk.pcapfile import CaptureFile, PcapError

from .helpers import DERIVED_PCAP, FRAME, write_dpkt_pcap

RECORDS = [(1667629966.0 + i * 0.25, FRAME[: 60 + i * 13] if i % 3 else FRAME) for i in range(40)]


@pytest.mark.parametrize("ng", [False, True], ids=["pcap", "pcapng"])
@pytest.mark.parametrize("chunk", [1, 7, 64, 1 << 20])
def test_records_match_dpkt_writer_at_any_chunk_size(tmp_path, ng, chunk):
    path = write_dpkt_pcap(tmp_path / "x", RECORDS, ng=ng)
    with CaptureFile(path, chunk=chunk) as cap:
        got = list(cap)
        assert cap.format == ("pcapng" if ng else "pcap") and not cap.truncated
        assert cap.bytes_read == path.stat().st_size
    assert [(round(ts, 6), lt, fr) for ts, lt, fr in got] == [(ts, 1, fr) for ts, fr in RECORDS]


def test_nanosecond_and_big_endian_pcap(tmp_path):
    frame = FRAME
    # big-endian, nanosecond magic, written by hand
    hdr = struct.pack(">IHHiIII", 0xA1B23C4D, 2, 4, 0, 0, 65535, 1)
    rec = struct.pack(">IIII", 1667629966, 123456789, len(frame), len(frame)) + frame
    p = tmp_path / "be.pcap"
    p.write_bytes(hdr + rec)
    ((ts, lt, fr),) = list(CaptureFile(p))
    assert (ts, lt, fr) == (pytest.approx(1667629966.123456789, abs=1e-6), 1, frame)


def test_pcapng_tsresol_nanoseconds(tmp_path):
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


def test_truncated_last_record_ends_quietly(tmp_path):
    data = DERIVED_PCAP.read_bytes()
    p = tmp_path / "t.pcap"
    p.write_bytes(data + data[24:-10])
    with CaptureFile(p) as cap:
        assert len(list(cap)) == 1 and cap.truncated


def test_derived_reference_pcap_is_the_frame():
    ((ts, lt, fr),) = list(CaptureFile(DERIVED_PCAP))
    assert (ts, lt, fr) == (1667629966.0, 1, FRAME)
    key, seq, flags, payload = tcp_segment(fr)
    assert key[1] == 50586 and key[3] == 51100 and flags == 0x18 and len(payload) == 292


def test_frames_parser_vlan_padding_ipv6():
    key, seq, flags, payload = tcp_segment(FRAME[:12] + b"\x81\x00\x00\x05" + FRAME[12:])
    assert len(payload) == 292
    # Ethernet padding after the IP packet is not payload
    assert tcp_segment(FRAME + b"\0" * 6)[3] == FRAME[54:]
    tcp = dpkt.tcp.TCP(sport=1, dport=2, seq=5, flags=0x18, data=b"\xa5hello")
    ip6 = dpkt.ip6.IP6(src=b"\x20" * 16, dst=b"\x21" * 16, nxt=6, hlim=64, data=tcp)
    ip6.plen = len(tcp)
    eth = dpkt.ethernet.Ethernet(type=dpkt.ethernet.ETH_TYPE_IP6, data=ip6)
    key, seq, flags, payload = tcp_segment(bytes(eth))
    assert payload == b"\xa5hello" and seq == 5 and key[0] == b"\x20" * 16


@given(st.binary(max_size=2000), st.sampled_from([b"\xd4\xc3\xb2\xa1", b"\x0a\x0d\x0d\x0a", b"\xa1\xb2\x3c\x4d"]),
       st.integers(1, 64))
def test_garbage_files_never_crash(tmp_path_factory, body, magic, chunk):
    p = tmp_path_factory.mktemp("g") / "g.pcap"
    p.write_bytes(magic + body)
    try:
        with CaptureFile(p, chunk=chunk) as cap:
            for _ts, _lt, fr in cap:
                tcp_segment(fr)
    except PcapError as e:
        assert str(e).startswith(str(p))


@given(st.binary(max_size=200))
def test_frame_parser_never_crashes(data):
    tcp_segment(FRAME[:14] + data)
    tcp_segment(data)


@given(st.lists(st.one_of(st.binary(max_size=120).map(lambda b: FRAME[:54] + b),
                          st.binary(max_size=400),
                          st.integers(0, 400).map(lambda n: FRAME[:n])), max_size=30))
def test_pipeline_never_crashes_on_garbage_frames(frames):
    from solarbridge.sources.sunsynk.source import Pipeline

    pipe = Pipeline(user_filter="tcp port 51100")
    out = pipe.frames_in((i * 0.5, f) for i, f in enumerate(frames))
    out += pipe.poll(1e9) + pipe.close()
    assert all(r.device_id for r in out)


def test_unknown_lengths_logged_once_each_and_capped(tmp_path, caplog):
    import logging

    from solarbridge.sources.sunsynk.simulator import DongleState, session_frames, write_pcap

    from .helpers import run_file

    path = tmp_path / "noise.pcap"
    write_pcap(path, session_frames(DongleState(seed=9), reports=30, noise=True, split=2))
    with caplog.at_level(logging.INFO):
        readings, src = run_file(path)
    assert len(readings) == 30
    notes = [r for r in caplog.records if "not a 292/302-byte report" in r.getMessage()]
    assert 1 <= len(notes) <= 5
    assert src.pipeline is not None and src.pipeline.stats()["unknown_messages"] >= 30
