"""Captured frames and capture files built with dpkt (an implementation independent of ours)."""

from __future__ import annotations

import io
import socket
import struct

import dpkt

INV, SRV = "192.168.1.50", "217.68.152.66"


def tcp(src: str, dst: str, sport: int, dport: int, seq: int, flags: int = dpkt.tcp.TH_ACK,
        data: bytes = b"", *, link: str = "eth", opts: bytes = b"") -> bytes:
    """One captured frame carrying a TCP segment (Ethernet, or raw IP with ``link="raw"``)."""
    seg = dpkt.tcp.TCP(sport=sport, dport=dport, seq=seq & 0xFFFFFFFF, flags=flags, data=data, opts=opts)
    seg.off = (20 + len(opts)) // 4
    if ":" in src:
        ip6 = dpkt.ip6.IP6(src=socket.inet_pton(socket.AF_INET6, src), dst=socket.inet_pton(socket.AF_INET6, dst),
                           nxt=6, hlim=64, data=seg, plen=len(bytes(seg)))
        ipb, etype = bytes(ip6), 0x86DD
    else:
        ip = dpkt.ip.IP(src=socket.inet_aton(src), dst=socket.inet_aton(dst), p=6, data=seg)
        ip.len = 20 + len(bytes(seg))
        ipb, etype = bytes(ip), 0x0800
    if link == "raw":
        return ipb
    return bytes(dpkt.ethernet.Ethernet(src=b"\x00\x27\x02\x11\x22\x33", dst=b"\x02" * 6, type=etype, data=ipb))


def pcap_bytes(frames: list[bytes], linktype: int = 1, nano: bool = False) -> bytes:
    """A classic pcap (dpkt's writer), packets a millisecond apart from 1_700_000_000."""
    buf = io.BytesIO()
    w = dpkt.pcap.Writer(buf, linktype=linktype, nano=nano)
    for i, f in enumerate(frames):
        w.writepkt(f, ts=1_700_000_000 + i / 1000)
    return buf.getvalue()


def block(btype: int, body: bytes, e: str = "<") -> bytes:
    """One pcapng block, padded."""
    body += b"\0" * (-len(body) % 4)
    n = len(body) + 12
    return struct.pack(e + "II", btype, n) + body + struct.pack(e + "I", n)
