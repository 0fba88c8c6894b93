"""Ethernet / IPv4 / IPv6 / TCP header parsing, just enough to feed the reassembler (sans-IO)."""

from __future__ import annotations

import struct

_HHI = struct.Struct(">HHI")
_H = struct.Struct(">H")

#: (src address, src port, dst address, dst port): one direction of one TCP connection
FlowKey = tuple[bytes, int, bytes, int]


def tcp_segment(frame: bytes) -> tuple[FlowKey, int, int, bytes] | None:
    """``(flow, seq, flags, payload)`` for an Ethernet frame carrying TCP, else None.

    Handles 802.1Q/802.1ad VLAN tags, IPv4 options, Ethernet padding (the IP length wins) and IPv6 without
    extension headers. IP fragments are not TCP segments on their own and give None.
    """
    n = len(frame)
    if n < 34:
        return None
    etype = (frame[12] << 8) | frame[13]
    off = 14
    while etype in (0x8100, 0x88A8) and n >= off + 4:
        etype = (frame[off + 2] << 8) | frame[off + 3]
        off += 4
    if etype == 0x0800:
        if n < off + 20:
            return None
        vihl = frame[off]
        if vihl >> 4 != 4 or frame[off + 9] != 6:
            return None
        if _H.unpack_from(frame, off + 6)[0] & 0x3FFF:
            return None  # a fragment
        ihl = (vihl & 0x0F) * 4
        end = off + _H.unpack_from(frame, off + 2)[0]
        src, dst = frame[off + 12:off + 16], frame[off + 16:off + 20]
        tcp = off + ihl
        if ihl < 20:
            return None
    elif etype == 0x86DD:
        if n < off + 40 or frame[off + 6] != 6:
            return None
        end = off + 40 + _H.unpack_from(frame, off + 4)[0]
        src, dst = frame[off + 8:off + 24], frame[off + 24:off + 40]
        tcp = off + 40
    else:
        return None
    if end > n:
        end = n
    if tcp + 20 > end:
        return None
    sport, dport, seq = _HHI.unpack_from(frame, tcp)
    doff = (frame[tcp + 12] >> 4) * 4
    if doff < 20 or tcp + doff > end:
        return None
    return (src, sport, dst, dport), seq, frame[tcp + 13], frame[tcp + doff:end]
