"""Link layer, IPv4/IPv6 and TCP/UDP decoding of captured frames (frames built with dpkt)."""

from __future__ import annotations

import socket
import struct
from pathlib import Path

import dpkt
from hypothesis import given
from hypothesis import strategies as st

from solarbridge.capture.packets import PacketStats, Segment, decode_packet

from .builders import INV, SRV, tcp

FRAME = (Path(__file__).resolve().parent.parent / "data" / "sunsynk" / "sunsniff_test_frame_292.bin").read_bytes()


def test_decode_link_types_and_ip_versions() -> None:
    seg = dpkt.tcp.TCP(sport=1234, dport=22222, seq=77, flags=dpkt.tcp.TH_ACK, data=b"hello")
    ip = dpkt.ip.IP(src=b"\x0a\0\0\x01", dst=b"\x0a\0\0\x02", p=6, data=seg)
    ip.len = 20 + len(bytes(seg))
    ipb = bytes(ip)
    cases = {
        1: b"\x02" * 12 + b"\x08\x00" + ipb,
        101: ipb,
        228: ipb,
        113: b"\x00\x00\x03\x04\x00\x06" + b"\x00" * 8 + b"\x08\x00" + ipb,
        276: b"\x08\x00\x00\x00" + b"\x00" * 16 + ipb,
        0: struct.pack("<I", 2) + ipb,
        108: struct.pack(">I", 2) + ipb,
    }
    vlan = b"\x02" * 12 + b"\x81\x00\x00\x05" + b"\x88\xa8\x00\x06" + b"\x08\x00" + ipb
    for lt, frame in [*cases.items(), (1, vlan)]:
        s = decode_packet(lt, frame)
        assert isinstance(s, Segment), lt
        assert (s.sport, s.dport, s.seq, s.payload, s.missing) == (1234, 22222, 77, b"hello", 0)
        assert socket.inet_ntoa(s.src) == "10.0.0.1"


def test_ethernet_padding_ip_options_tcp_options_and_ipv6_extension_headers() -> None:
    # a 3-byte segment is padded to Ethernet's 60-byte minimum: the padding is not data
    f = tcp(INV, SRV, 1, 22222, 5, data=b"abc")
    padded = f + b"\0" * (60 - len(f))
    s = decode_packet(1, padded)
    assert isinstance(s, Segment) and s.payload == b"abc"
    s = decode_packet(1, tcp(INV, SRV, 1, 22222, 5, data=b"xyz", opts=b"\x01\x01\x08\x0a" + b"\0" * 8))
    assert isinstance(s, Segment) and s.payload == b"xyz"
    # IPv4 header with 4 bytes of options (IHL 6)
    seg = bytes(dpkt.tcp.TCP(sport=9, dport=22222, seq=1, data=b"opt"))
    hdr = struct.pack(">BBHHHBBH4s4s", 0x46, 0, 24 + len(seg), 0, 0, 64, 6, 0, b"\1\1\1\1", b"\2\2\2\2")
    s = decode_packet(101, hdr + b"\x94\x04\0\0" + seg)
    assert isinstance(s, Segment) and s.payload == b"opt"
    # IPv6 with a hop-by-hop header before TCP
    hbh = bytes([6, 0]) + b"\x01\x04\0\0\0\0"
    ip6 = struct.pack(">IHBB16s16s", 0x60000000, len(hbh) + len(seg), 0, 64, b"\0" * 15 + b"\1", b"\0" * 15 + b"\2")
    s = decode_packet(101, ip6 + hbh + seg)
    assert isinstance(s, Segment) and s.payload == b"opt" and len(s.src) == 16
    st_ = PacketStats()
    frag = bytearray(tcp(INV, SRV, 1, 2, 3, data=b"x", link="raw"))
    frag[6] = 0x20  # more fragments
    assert decode_packet(101, bytes(frag), st_) is None and st_["ip_fragments"] == 1


def test_snaplen_truncated_segment_reports_missing_bytes() -> None:
    f = tcp(INV, SRV, 1, 22222, 5, data=b"0123456789")
    s = decode_packet(1, f[:-4])
    assert isinstance(s, Segment) and s.payload == b"012345" and s.missing == 4




def test_real_sunsynk_frame_vlan_padding_and_ipv6() -> None:
    s = decode_packet(1, FRAME)
    assert isinstance(s, Segment)
    assert (s.sport, s.dport, s.flags, len(s.payload)) == (50586, 51100, 0x18, 292)
    tagged = decode_packet(1, FRAME[:12] + b"\x81\x00\x00\x05" + FRAME[12:])
    assert isinstance(tagged, Segment) and tagged.payload == s.payload
    padded = decode_packet(1, FRAME + b"\0" * 6)  # Ethernet padding after the IP packet is not payload
    assert isinstance(padded, Segment) and padded.payload == FRAME[54:]
    seg = dpkt.tcp.TCP(sport=1, dport=2, seq=5, flags=0x18, data=b"\xa5hello")
    ip6 = dpkt.ip6.IP6(src=b"\x20" * 16, dst=b"\x21" * 16, nxt=6, hlim=64, data=seg)
    ip6.plen = len(seg)
    s6 = decode_packet(1, bytes(dpkt.ethernet.Ethernet(type=dpkt.ethernet.ETH_TYPE_IP6, data=ip6)))
    assert isinstance(s6, Segment) and (s6.payload, s6.seq, s6.src) == (b"\xa5hello", 5, b"\x20" * 16)


@given(st.sampled_from([0, 1, 12, 101, 108, 113, 228, 229, 276, 9999]), st.binary(max_size=200))
def test_fuzz_decoder_never_crashes(linktype: int, data: bytes) -> None:
    st_ = PacketStats()
    for frame in (data, b"\x45" + data, b"\2" * 12 + b"\x08\x00\x45" + data, FRAME[:14] + data,
                  tcp(INV, SRV, 53, 22222, 1, data=data, link="raw")[:len(data) % 60 + 20]):
        pkt = decode_packet(linktype, frame, st_)
        assert pkt is None or isinstance(pkt.payload, bytes)
