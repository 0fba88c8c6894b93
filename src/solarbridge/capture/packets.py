"""Link layer -> IPv4/IPv6 -> TCP segment or UDP datagram (sans-IO, one captured frame at a time).

Link types: Ethernet (with 802.1Q/802.1ad/QinQ VLAN tags), raw IP (101, 12, 14, 228, 229), Linux
cooked v1 (113) and v2 (276), BSD loopback (0, 108). IPv4 options and IPv6 extension headers are
honoured, Ethernet padding after the IP packet is trimmed, IP fragments are counted and skipped,
and a segment the capture cut short (snaplen) says how many payload bytes it lost.
"""

from __future__ import annotations

import ipaddress
import struct
from typing import NamedTuple

_U16BE = struct.Struct(">H")
_TCP = struct.Struct(">HHIIBB")
#: IPv4 header without options (total length, flags/fragment, protocol, src, dst), then TCP's ports, seq,
#: data offset and flags
_FAST = struct.Struct(">2xH2xH1xB2x4s4sHHI4xBB")
_PORTS = struct.Struct(">HH")


class Segment(NamedTuple):
    """One TCP segment as the capture saw it."""

    src: bytes  # 4 or 16 address bytes
    sport: int
    dst: bytes
    dport: int
    seq: int
    flags: int
    payload: bytes
    #: payload bytes the segment carried that the capture cut off (snaplen)
    missing: int = 0


_new = tuple.__new__  # builds a Segment without the Python-level __new__ of NamedTuple


class Datagram(NamedTuple):
    """One UDP datagram (only DNS answers are of interest)."""

    src: bytes
    dst: bytes
    sport: int
    dport: int
    payload: bytes


FIN, SYN, RST = 0x01, 0x02, 0x04

_ETH_IP = {0x0800: 4, 0x86DD: 6}
_VLAN = {0x8100, 0x88A8, 0x9100}
_AF_INET6 = {10, 24, 28, 30}  # Linux, BSDs, FreeBSD, Darwin


def _ip_start(linktype: int, data: bytes) -> int:
    """Offset of the IP header in a link-layer frame, or -1 if the frame does not carry IP."""
    n = len(data)
    if linktype == 1:  # Ethernet
        if n < 14:
            return -1
        off = 12
        (etype,) = _U16BE.unpack_from(data, off)
        while etype in _VLAN and n >= off + 6:
            off += 4
            (etype,) = _U16BE.unpack_from(data, off)
        return off + 2 if etype in _ETH_IP else -1
    if linktype in (101, 12, 14, 228, 229):  # raw IP
        return 0
    if linktype == 113:  # Linux cooked v1
        return 16 if n >= 16 and _U16BE.unpack_from(data, 14)[0] in _ETH_IP else -1
    if linktype == 276:  # Linux cooked v2
        return 20 if n >= 20 and _U16BE.unpack_from(data, 0)[0] in _ETH_IP else -1
    if linktype in (0, 108):  # BSD loopback: address family, host or network byte order
        if n < 4:
            return -1
        af = int.from_bytes(data[:4], "little")
        if af > 0xFFFF:
            af = int.from_bytes(data[:4], "big")
        return 4 if af == 2 or af in _AF_INET6 else -1
    return -1


class PacketStats(dict[str, int]):
    def count(self, key: str, n: int = 1) -> None:
        self[key] = self.get(key, 0) + n


class _Uncounted(PacketStats):
    def count(self, key: str, n: int = 1) -> None:
        pass


_UNCOUNTED = _Uncounted()


def decode_packet(linktype: int, data: bytes, stats: PacketStats | None = None) -> Segment | Datagram | None:
    """TCP segment or UDP datagram in a captured frame; None (counted in ``stats``) for anything else."""
    n = len(data)
    if linktype == 1 and n >= 54 and data[12:15] == b"\x08\x00\x45":
        # the usual frame: Ethernet, IPv4 without options; IP and TCP (or UDP) header in one unpack
        total, frag, proto, src, dst, sport, dport, seq, doff, flags = _FAST.unpack_from(data, 14)
        end = 14 + total
        if not frag & 0x3FFF and end <= n:
            if proto == 6:
                hl = (doff >> 4) * 4
                if hl >= 20 and 34 + hl <= end:
                    return _new(Segment, (src, sport, dst, dport, seq, flags, data[34 + hl:end], 0))
            elif proto == 17 and total >= 28:
                return _new(Datagram, (src, dst, sport, dport, data[42:end]))
    return _decode(linktype, data, stats if stats is not None else _UNCOUNTED)


def _decode(linktype: int, data: bytes, st: PacketStats) -> Segment | Datagram | None:
    off = _ip_start(linktype, data)
    n = len(data)
    if off < 0 or n < off + 1:
        st.count("not_ip")
        return None
    version = data[off] >> 4
    if version == 4:
        if n < off + 20:
            st.count("truncated_headers")
            return None
        ihl = (data[off] & 0x0F) * 4
        (total,) = _U16BE.unpack_from(data, off + 2)
        (frag,) = _U16BE.unpack_from(data, off + 6)
        proto = data[off + 9]
        if ihl < 20 or total < ihl:
            st.count("bad_ip_header")
            return None
        if frag & 0x3FFF:  # more-fragments flag or an offset: not reassembled
            st.count("ip_fragments")
            return None
        src, dst = data[off + 12:off + 16], data[off + 16:off + 20]
        start, end = off + ihl, off + total
    elif version == 6:
        if n < off + 40:
            st.count("truncated_headers")
            return None
        (plen,) = _U16BE.unpack_from(data, off + 4)
        proto = data[off + 6]
        src, dst = data[off + 8:off + 24], data[off + 24:off + 40]
        start, end = off + 40, off + 40 + plen
        while proto in (0, 43, 60, 51, 44):
            if n < start + 8:
                st.count("truncated_headers")
                return None
            if proto == 44:
                st.count("ip_fragments")
                return None
            size = (data[start + 1] + 2) * 4 if proto == 51 else (data[start + 1] + 1) * 8
            proto = data[start]
            start += size
        if start > end:
            st.count("bad_ip_header")
            return None
    else:
        st.count("not_ip")
        return None
    # ``end`` is where the IP packet ends: anything after it in the frame is link padding
    missing = end - n if end > n else 0
    if missing:
        end = n
    if proto == 6:
        if end - start < 20:
            st.count("truncated_headers")
            return None
        sport, dport, seq, _ack, doff, flags = _TCP.unpack_from(data, start)
        hl = (doff >> 4) * 4
        if hl < 20 or start + hl > end:
            st.count("truncated_headers" if missing else "bad_tcp_header")
            return None
        if missing:
            st.count("truncated_packets")
        return _new(Segment, (src, sport, dst, dport, seq, flags, data[start + hl:end], missing))
    if proto == 17:
        if end - start < 8 or missing:
            st.count("truncated_headers")
            return None
        sport, dport = _PORTS.unpack_from(data, start)
        return _new(Datagram, (src, dst, sport, dport, data[start + 8:end]))
    st.count("not_tcp")
    return None


def ip_text(b: bytes) -> str:
    """A packed IPv4/IPv6 address as text."""
    return str(ipaddress.ip_address(b))
