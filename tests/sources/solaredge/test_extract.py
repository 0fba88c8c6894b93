"""seextract core: capture parsing (checked against dpkt's readers), packet decoding, TCP reassembly,
connection selection and the frame-aligned output stream.

Captures here are built with dpkt (an independent implementation of the formats). Real tcpdump
captures are in test_extract_tcpdump.py.
"""

from __future__ import annotations

import io
import random
import socket
from pathlib import Path

import dpkt
from hypothesis import given
from hypothesis import strategies as st

from capture.builders import INV, SRV, pcap_bytes, tcp
from solarbridge.capture.packets import decode_packet
from solarbridge.sources.solaredge import extract as ex
from solarbridge.sources.solaredge.framing import Frame, StreamDecoder, decode, encode
from support.seextract import (
    Conversation,
    ack,
    extract,
    other_traffic,
    recorded_frames,
    telemetry,
)


def _decode_all(stream: bytes) -> tuple[list[Frame], StreamDecoder]:
    dec = StreamDecoder()
    frames = dec.feed(stream)
    dec.flush()
    return frames, dec


def test_recorded_frames_pass_through_a_capture_unchanged() -> None:
    frames = recorded_frames()
    conv = Conversation()
    for raw in frames.values():
        conv.send(raw, from_server=raw[10:14] in (b"\xfe\xff\xff\xff", b"\xfd\xff\xff\xff"))
    conv.close()
    out, stats = extract(conv.packets, direction="both")
    assert sorted(_split_frames(out)) == sorted(frames.values())
    assert stats["connections"] == 1


def _split_frames(stream: bytes) -> list[bytes]:
    parts = stream.split(ex.MAGIC)
    return [ex.MAGIC + p for p in parts[1:]]


def test_retransmissions_reordering_overlaps_and_sequence_wrap() -> None:
    rng = random.Random(42)
    conv = Conversation(isn_c=0xFFFFFF00, isn_s=0xFFFFFFF0)
    inv_frames = [telemetry(i, rng.randint(0, 900)) for i in range(40)]
    segs: list[bytes] = []
    start = conv.c
    for f in inv_frames:
        segs += conv.send(f, pieces=rng.randint(1, 4))
    head = conv.packets[:3]
    data = bytes(conv.to_server)
    # overlapping re-segmentations of the same bytes (as after a retransmission timeout)
    for _ in range(15):
        a = rng.randrange(len(data) - 50)
        b = a + rng.randint(1, 700)
        segs.append(tcp(INV, SRV, 40123, 22222, start + a, data=data[a:b]))
    segs += rng.sample(segs, 20)  # exact duplicates
    rng.shuffle(segs)
    conv.packets = head + segs
    conv.close()
    out, stats = extract(conv.packets, direction="to-server")
    assert out == data
    assert stats["out_of_order_segments"] > 10
    assert stats["retransmitted_segments"] > 0 and stats["overlaps"] > 0
    assert "gaps" not in stats
    frames, dec = _decode_all(out)
    assert len(frames) == 40 and not dec.drops


def test_both_directions_interleave_whole_frames() -> None:
    """The server's ACK lands between two segments of a split frame; the output keeps frames whole."""
    conv = Conversation()
    expect_inv, expect_srv = [], []
    for i in range(30):
        f = telemetry(i, 1400)
        a, b = f[:700], f[700:]
        conv.send(a)
        if i:
            conv.send(ack(i - 1), from_server=True)  # the reply to the previous frame
            expect_srv.append(i - 1)
        conv.send(b)
        expect_inv.append(i)
    conv.close()
    out, _ = extract(conv.packets)
    frames, dec = _decode_all(out)
    assert not dec.drops
    assert [f.seq for f in frames if f.function == 0x0500] == expect_inv
    assert [f.seq for f in frames if f.function == 0x0080] == expect_srv
    # only one side
    assert extract(conv.packets, direction="to-server")[0] == bytes(conv.to_server)
    assert extract(conv.packets, direction="from-server")[0] == bytes(conv.from_server)


def test_capture_starting_mid_connection_and_a_lost_segment() -> None:
    conv = Conversation(syn=False)
    frames = [telemetry(i, 500) for i in range(10)]
    for f in frames:
        conv.send(f, pieces=2)
    # the capture begins in the middle of frame 0, and the first piece of frame 5 was never captured
    lost = conv.packets[10]
    packets = conv.packets[1:10] + conv.packets[11:]
    out, stats = extract(packets)
    assert stats["gaps"] == 1 and stats["gap_bytes"] == len(decode_packet(1, lost).payload)
    got, dec = _decode_all(out)
    assert [f.seq for f in got] == [1, 2, 3, 4, 6, 7, 8, 9]
    assert [encode(f) for f in got] == [frames[i] for i in (1, 2, 3, 4, 6, 7, 8, 9)]


def test_port_reuse_new_connection_same_four_tuple() -> None:
    a = Conversation(isn_c=10, isn_s=20)
    a.send(telemetry(1))
    a.close()
    b = Conversation(isn_c=900000, isn_s=7)
    b.send(telemetry(2))
    b.close()
    out, stats = extract(a.packets + b.packets, direction="to-server")
    assert out == telemetry(1) + telemetry(2)
    assert stats["connections"] == 2


def test_rst_and_missing_fin_still_deliver_everything() -> None:
    a = Conversation(sport=1)
    a.send(telemetry(1))
    a.packets.append(tcp(SRV, INV, 22222, 1, a.s, dpkt.tcp.TH_RST))
    b = Conversation(sport=2)
    b.send(telemetry(2))  # capture ends without FIN
    out, _ = extract(a.packets + b.packets, direction="to-server")
    assert out == telemetry(1) + telemetry(2)


def test_truncated_capture_snaplen() -> None:
    conv = Conversation()
    for i in range(5):
        conv.send(telemetry(i, 200))
    packets = [p[:120] for p in conv.packets]  # snaplen 120: every data segment loses its tail
    out, stats = extract(packets, direction="to-server")
    assert stats["truncated_packets"] == 5 and stats["gaps"] == 5
    assert len(out) == 5 * (120 - 54)


# ---------------------------------------------------------------------------------------------
# which connections




def test_server_by_address_ignores_other_connections() -> None:
    conv = Conversation()
    conv.send(telemetry(1))
    out, stats = extract(other_traffic() + conv.packets, server=SRV)
    assert out == telemetry(1) and stats["connections"] == 1


def test_server_given_by_address_takes_only_that_address() -> None:
    other = Conversation(srv="198.51.100.9")
    other.send(telemetry(5))
    conv = Conversation()
    conv.send(telemetry(1))
    assert extract(other.packets + conv.packets, server=SRV)[0] == telemetry(1)


def test_unresolvable_name_falls_back_to_port_22222() -> None:
    conv = Conversation(srv="198.51.100.9")
    conv.send(telemetry(1))
    out, stats = extract(other_traffic() + conv.packets, server="prod.solaredge.com")
    assert out == telemetry(1) and stats["connections"] == 1


def test_resolved_name_and_default_server() -> None:
    conv = Conversation(dport=80)  # the inverter fell back to port 80
    conv.send(telemetry(1))
    e = ex.make_extractor("se.example", resolver=lambda n: [SRV])
    assert e.server_addrs == {socket.inet_aton(SRV)} and not e.ports
    out = b"".join(ex.iter_streams(io.BytesIO(pcap_bytes(conv.packets)), extractor=e))
    assert out == telemetry(1)
    # default server: its address plus port 22222 (addresses change over the years)
    e = ex.make_extractor(None, resolver=lambda n: ["203.0.113.1"])
    assert e.ports == {22222}


def test_dns_answer_in_the_capture_identifies_the_server() -> None:
    """Offline, the name does not resolve, but the capture holds the inverter's own DNS lookup."""
    dns = dpkt.dns.DNS(id=1, qr=1, rcode=0, qd=[dpkt.dns.DNS.Q(name="prod.solaredge.com", type=1)])
    cname = dpkt.dns.DNS.RR(name="prod.solaredge.com", type=5, cls=1, ttl=60)
    cname.cname = "prod-lb.solaredge.com"
    a = dpkt.dns.DNS.RR(name="prod-lb.solaredge.com", type=1, cls=1, ttl=60, rdata=socket.inet_aton("203.0.113.7"))
    dns.an = [cname, a]
    udp = dpkt.udp.UDP(sport=53, dport=5353, data=bytes(dns))
    udp.ulen = 8 + len(bytes(dns))
    ip = dpkt.ip.IP(src=socket.inet_aton("192.168.1.1"), dst=socket.inet_aton(INV), p=17, data=udp)
    ip.len = 20 + udp.ulen
    answer = bytes(dpkt.ethernet.Ethernet(src=b"\2" * 6, dst=b"\2" * 6, type=0x0800, data=ip))
    conv = Conversation(srv="203.0.113.7", dport=80)
    conv.send(telemetry(3))
    out, _ = extract([answer, *conv.packets], server=None)
    assert out == telemetry(3)
    # without the DNS answer, port 80 traffic is not taken
    assert extract(conv.packets, server=None)[0] == b""


def test_ipv6_connection() -> None:
    conv = Conversation(inv="2001:db8::50", srv="2001:db8::1")
    conv.send(telemetry(8), pieces=3)
    conv.close()
    assert extract(conv.packets, server="2001:db8::1", direction="to-server")[0] == telemetry(8)


# ---------------------------------------------------------------------------------------------
# files and directories


def test_directory_in_natural_order_with_a_connection_spanning_files(tmp_path: Path) -> None:
    conv = Conversation()
    for i in range(12):
        conv.send(telemetry(i, 100))
    conv.close()
    pk = conv.packets
    # tcpdump -C names: cap, cap1, cap2 ... cap10 (name order would put cap10 before cap2)
    names = ["cap", "cap1", "cap2", "cap10"]
    chunks = [pk[0:4], pk[4:8], pk[8:12], pk[12:]]
    for name, chunk in zip(names, chunks, strict=True):
        (tmp_path / name).write_bytes(pcap_bytes(chunk))
    (tmp_path / "notes.txt").write_text("not a capture\n")
    e = ex.make_extractor(SRV, direction="to-server")
    out = b"".join(ex.iter_streams(tmp_path, extractor=e))
    assert out == bytes(conv.to_server)
    assert e.stats["capture_errors"] == 1 and "gaps" not in e.stats


def test_stream_reader_reads_in_any_sizes() -> None:
    conv = Conversation()
    for i in range(20):
        conv.send(telemetry(i))
    reader = ex.StreamReader(ex.iter_streams(io.BytesIO(pcap_bytes(conv.packets)), SRV, direction="to-server"))
    got = bytearray()
    n = 1
    while chunk := reader.read(n):
        got += chunk
        n = n * 3 % 1000 + 1
    assert bytes(got) == bytes(conv.to_server)


# ---------------------------------------------------------------------------------------------
# fuzzing: random segment orders, duplicates, overlaps, garbage


@given(data=st.binary(min_size=1, max_size=3000), seed=st.integers(0, 2**32 - 1),
       isn=st.integers(0, 2**32 - 1), frames=st.booleans())
def test_fuzz_reassembly_restores_the_stream(data: bytes, seed: int, isn: int, frames: bool) -> None:
    rng = random.Random(seed)
    if frames:  # valid frames make the cutter take its frame path
        data = b"".join(encode(Frame(i, 1, 2, 0x0500, data[i * 50:(i + 1) * 50])) for i in range(len(data) // 50 + 1))
    n = len(data)
    segs = []
    pos = 0
    while pos < n:  # a covering segmentation
        k = rng.randint(1, 400)
        segs.append((pos, pos + k))
        pos += k
    for _ in range(rng.randint(0, 10)):  # overlapping extra segments and duplicates
        a = rng.randrange(n)
        segs.append((a, min(n, a + rng.randint(1, 500))))
    rng.shuffle(segs)
    pk = [tcp(INV, SRV, 1, 22222, isn, dpkt.tcp.TH_SYN)]
    pk += [tcp(INV, SRV, 1, 22222, isn + 1 + a, data=data[a:b]) for a, b in segs]
    out, stats = extract(pk, direction="to-server")
    assert out == data
    assert "gaps" not in stats


@given(st.sampled_from([0, 1, 12, 101, 108, 113, 228, 229, 276, 9999]), st.binary(max_size=200))
def test_fuzz_packet_decoder_and_extractor_never_crash(linktype: int, data: bytes) -> None:
    e = ex.Extractor(ports=range(65536), server_name="prod.solaredge.com")
    # give every garbage packet a plausible IPv4/TCP start now and then
    e.feed([(0.0, linktype, data), (0.0, 101, b"\x45" + data), (0.0, 1, b"\2" * 12 + b"\x08\x00\x45" + data)])
    e.feed([(0.0, 101, tcp(INV, SRV, 53, 22222, 1, data=data, link="raw")[:len(data) % 60 + 20])])
    e.finish()
    assert isinstance(e.take(), bytes)


@given(st.binary(max_size=600))
def test_fuzz_dns_answers_never_crash(payload: bytes) -> None:
    e = ex.Extractor(server_name="prod.solaredge.com")
    e._learn_dns(payload)


@given(st.lists(st.binary(max_size=120), max_size=30))
def test_fuzz_frame_cutter_preserves_every_byte(chunks: list[bytes]) -> None:
    out: list[bytes] = []
    c = ex.FrameCutter(out.append)
    for ch in chunks:
        c.feed(ch.replace(b"\xab", ex.MAGIC))  # plenty of magics
    c.flush()
    assert b"".join(out) == b"".join(ch.replace(b"\xab", ex.MAGIC) for ch in chunks)


def test_frame_cutter_holds_only_an_incomplete_frame() -> None:
    out: list[bytes] = []
    c = ex.FrameCutter(out.append)
    f = telemetry(1, 100)
    c.feed(b"junk" + f[:30])
    assert out == [b"junk"]
    c.feed(f[30:] + f[:2])
    assert out[1] == f and decode(out[1]).seq == 1
