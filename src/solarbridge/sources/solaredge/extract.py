"""Pull the SolarEdge protocol byte stream out of packet captures (``seextract``, ``semonitor --pcap``).

Three sans-IO layers, each fed bytes and handing back results, so they can be fuzzed and reused on a
file, a growing file, a directory of rotated captures or a pipe from ``tcpdump -w -``:

* :class:`CaptureParser`: classic pcap (either byte order, micro- or nanosecond) and pcapng
  (section, interface, enhanced/simple/obsolete packet blocks), fed in arbitrary chunks.
* :func:`decode_packet`: link layer (Ethernet with VLAN tags, Linux cooked v1/v2, BSD loopback,
  raw IP) -> IPv4/IPv6 (options and extension headers honoured, Ethernet padding trimmed) -> TCP.
* :class:`Extractor`: picks the connections between inverter and server, reassembles each direction
  (out-of-order segments, retransmissions, overlaps, sequence wrap, snaplen-truncated packets,
  gaps skipped and counted) and cuts the result at SolarEdge frame boundaries, so that frames of
  the two directions interleave whole, in the order they completed in the capture. The output is
  the raw byte stream ``semonitor`` reads (the format of ``.rec``/``.dat`` files).

The server is chosen by name or address (default ``prod.solaredge.com``). A server's address
changes over the years and resolving a name needs the network, so connections on the SolarEdge
server port (22222) are also taken when no server was given or its name does not resolve, and
DNS answers for the name found in the capture itself add to the server's addresses.
"""

from __future__ import annotations

import heapq
import ipaddress
import logging
import os
import re
import socket
import struct
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

log = logging.getLogger("solarbridge.solaredge.extract")

MAGIC = b"\x12\x34\x56\x79"
DEFAULT_SERVER = "prod.solaredge.com"
#: the SolarEdge monitoring server port (22221 and 80 are alternatives an inverter may fall back to)
SERVER_PORTS: tuple[int, ...] = (22222,)
DIRECTIONS = ("both", "to-server", "from-server")

_HDR = struct.Struct("<HH")
_U16BE = struct.Struct(">H")
_U32BE = struct.Struct(">I")
_TCP = struct.Struct(">HHIIBB")

# ---------------------------------------------------------------------------------------------
# capture files


class CaptureError(ValueError):
    """The bytes are not a pcap/pcapng capture, or the capture is corrupt beyond recovery."""


_PCAP_MAGICS = {
    b"\xd4\xc3\xb2\xa1": "<", b"\xa1\xb2\xc3\xd4": ">",  # microseconds
    b"\x4d\x3c\xb2\xa1": "<", b"\xa1\xb2\x3c\x4d": ">",  # nanoseconds
}
_PCAPNG_SHB = b"\x0a\x0d\x0d\x0a"
#: a record bigger than this is corruption, not a packet (pcap snaplen is at most 256 KiB in practice)
MAX_RECORD = 16 * 1024 * 1024


class CaptureParser:
    """Sans-IO reader of pcap and pcapng: ``feed(bytes)`` returns the packets completed so far.

    Each packet is ``(linktype, data)``. A corrupt capture raises :class:`CaptureError` once
    (further feeds return nothing); :attr:`leftover` after the last feed tells of a truncated end.
    """

    def __init__(self) -> None:
        self._buf = bytearray()
        self._kind: str | None = None  # "pcap" or "pcapng"
        self._endian = "<"
        self._linktype = 0
        self._rec: struct.Struct | None = None
        self._ifaces: list[tuple[int, int]] = []  # pcapng: (linktype, snaplen) per interface
        self.failed = False
        self.packets = 0

    @property
    def leftover(self) -> int:
        """Bytes buffered that do not (yet) make a whole record."""
        return len(self._buf)

    def feed(self, data: bytes) -> list[tuple[int, bytes]]:
        if self.failed:
            return []
        self._buf += data
        out: list[tuple[int, bytes]] = []
        try:
            if self._kind is None and not self._header():
                return out
            if self._kind == "pcap":
                self._pcap_records(out)
            else:
                self._pcapng_blocks(out)
        except CaptureError:
            self.failed = True
            self._buf.clear()
            self.packets += len(out)
            raise
        self.packets += len(out)
        return out

    def _header(self) -> bool:
        buf = self._buf
        if len(buf) < 4:
            return False
        head = bytes(buf[:4])
        if head in _PCAP_MAGICS:
            if len(buf) < 24:
                return False
            self._endian = _PCAP_MAGICS[head]
            (network,) = struct.unpack_from(self._endian + "I", buf, 20)
            self._linktype = network & 0x0FFFFFFF  # upper bits carry FCS length information
            self._rec = struct.Struct(self._endian + "IIII")
            self._kind = "pcap"
            del buf[:24]
            return True
        if head == _PCAPNG_SHB:
            self._kind = "pcapng"
            return True
        raise CaptureError(f"not a pcap or pcapng capture (starts with {head.hex()})")

    def _pcap_records(self, out: list[tuple[int, bytes]]) -> None:
        buf = self._buf
        rec = self._rec
        assert rec is not None
        linktype = self._linktype
        pos, end = 0, len(buf)
        mv = memoryview(buf)
        try:
            while end - pos >= 16:
                _sec, _frac, incl, _orig = rec.unpack_from(buf, pos)
                if incl > MAX_RECORD:
                    raise CaptureError(f"pcap record of {incl} bytes at a corrupt position")
                nxt = pos + 16 + incl
                if nxt > end:
                    break
                out.append((linktype, bytes(mv[pos + 16:nxt])))
                pos = nxt
        finally:
            mv.release()
        del buf[:pos]

    def _pcapng_blocks(self, out: list[tuple[int, bytes]]) -> None:
        buf = self._buf
        pos, end = 0, len(buf)
        while end - pos >= 12:
            if buf[pos:pos + 4] == _PCAPNG_SHB:
                bom = bytes(buf[pos + 8:pos + 12])
                if bom == b"\x4d\x3c\x2b\x1a":
                    self._endian = "<"
                elif bom == b"\x1a\x2b\x3c\x4d":
                    self._endian = ">"
                else:
                    raise CaptureError("pcapng section header with an unknown byte-order mark")
                self._ifaces = []
            e = self._endian
            btype, blen = struct.unpack_from(e + "II", buf, pos)
            if blen < 12 or blen % 4 or blen > MAX_RECORD:
                raise CaptureError(f"pcapng block of impossible length {blen}")
            if end - pos < blen:
                break
            body = pos + 8
            blk_end = pos + blen - 4
            if btype == 1 and blk_end - body >= 8:  # interface description
                lt, _res, snap = struct.unpack_from(e + "HHI", buf, body)
                self._ifaces.append((lt, snap))
            elif btype == 6 and blk_end - body >= 20:  # enhanced packet
                iface, _hi, _lo, caplen, _orig = struct.unpack_from(e + "IIIII", buf, body)
                start = body + 20
                if iface < len(self._ifaces) and start + caplen <= blk_end:
                    out.append((self._ifaces[iface][0], bytes(buf[start:start + caplen])))
            elif btype == 3 and blk_end - body >= 4 and self._ifaces:  # simple packet
                (orig,) = struct.unpack_from(e + "I", buf, body)
                lt, snap = self._ifaces[0]
                caplen = min(orig, blk_end - body - 4, snap or MAX_RECORD)
                out.append((lt, bytes(buf[body + 4:body + 4 + caplen])))
            elif btype == 2 and blk_end - body >= 20:  # obsolete packet block
                iface, _drops, _hi, _lo, caplen, _orig = struct.unpack_from(e + "HHIIII", buf, body)
                start = body + 20
                if iface < len(self._ifaces) and start + caplen <= blk_end:
                    out.append((self._ifaces[iface][0], bytes(buf[start:start + caplen])))
            pos += blen
        del buf[:pos]


# ---------------------------------------------------------------------------------------------
# packets


@dataclass(slots=True)
class Segment:
    """One TCP segment as the capture saw it."""

    src: bytes  # 4 or 16 address bytes
    dst: bytes
    sport: int
    dport: int
    seq: int
    flags: int
    payload: bytes
    #: payload bytes the segment carried that the capture cut off (snaplen)
    missing: int = 0


@dataclass(slots=True)
class Datagram:
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


def decode_packet(linktype: int, data: bytes, stats: PacketStats | None = None) -> Segment | Datagram | None:
    """TCP segment or UDP datagram in a captured frame; None (counted in ``stats``) for anything else."""
    st = stats if stats is not None else PacketStats()
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
    missing = max(0, end - n)
    end = min(end, n)
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
        return Segment(src, dst, sport, dport, seq, flags, data[start + hl:end], missing)
    if proto == 17:
        if end - start < 8 or missing:
            st.count("truncated_headers")
            return None
        sport, dport = struct.unpack_from(">HH", data, start)
        return Datagram(src, dst, sport, dport, data[start + 8:end])
    st.count("not_tcp")
    return None


# ---------------------------------------------------------------------------------------------
# TCP reassembly


def _signed32(x: int) -> int:
    x &= 0xFFFFFFFF
    return x - 0x100000000 if x & 0x80000000 else x


class StreamReassembler:
    """One direction of a TCP connection: segments in any order in, contiguous bytes out.

    Positions are kept as unbounded integers (sequence numbers unwrapped around the current
    position), so wrap-around at 2**32 is invisible. Data already delivered wins over a
    retransmission that differs (the receiver had already consumed it). A hole that stays open
    while more than ``max_pending`` bytes wait behind it is given up (counted in ``gap_bytes``);
    so is every hole left when the stream is closed or flushed.
    """

    __slots__ = ("next", "isn", "fin_at", "closed", "_heap", "_pending", "_order", "max_pending",
                 "deliver", "stats")

    def __init__(self, deliver: Callable[[bytes], None], stats: PacketStats,
                 max_pending: int = 4 * 1024 * 1024) -> None:
        self.deliver = deliver
        self.stats = stats
        self.max_pending = max_pending
        self.next: int | None = None
        self.isn: int | None = None
        self.fin_at: int | None = None
        self.closed = False
        self._heap: list[tuple[int, int, bytes]] = []
        self._pending = 0
        self._order = 0

    def _abs(self, seq: int) -> int:
        if self.next is None:
            return seq
        return self.next + _signed32(seq - self.next)

    def segment(self, seq: int, flags: int, payload: bytes, missing: int = 0) -> None:
        st = self.stats
        if flags & SYN:
            if seq != self.isn:
                # a new initial sequence number: a (new) connection starts here
                if self.next is not None:
                    self.flush()
                self.isn = seq
                self.next = seq + 1
                self.fin_at = None
                self.closed = False
            seq = (seq + 1) & 0xFFFFFFFF
        start = self._abs(seq)
        if self.next is None:
            self.next = start  # capture began mid-connection
        if flags & FIN:
            self.fin_at = start + len(payload) + missing
        if payload:
            self._add(start, payload)
        if missing and self.next == start + len(payload):
            # the capture cut this segment short: those bytes are gone
            self.next += missing
            st.count("gaps")
            st.count("gap_bytes", missing)
            self._drain()
        if flags & RST:
            self.flush()
            self.closed = True
        elif self.fin_at is not None and self.next is not None and self.next >= self.fin_at:
            self.closed = True

    def _add(self, start: int, payload: bytes) -> None:
        st = self.stats
        assert self.next is not None
        end = start + len(payload)
        nxt = self.next
        if end <= nxt:
            st.count("retransmitted_segments")
            return
        if start <= nxt:
            if start < nxt:
                st.count("overlaps")
                payload = payload[nxt - start:]
            self.next = end
            self.deliver(payload)
            if self._heap:
                self._drain()
            return
        st.count("out_of_order_segments")
        self._order += 1
        heapq.heappush(self._heap, (start, self._order, payload))
        self._pending += len(payload)
        if self._pending > self.max_pending:
            self._skip_gap()
            self._drain()

    def _skip_gap(self) -> None:
        assert self.next is not None
        start = self._heap[0][0]
        if start > self.next:
            self.stats.count("gaps")
            self.stats.count("gap_bytes", start - self.next)
            self.next = start

    def _drain(self) -> None:
        heap = self._heap
        while heap and heap[0][0] <= self.next:  # type: ignore[operator]
            start, _o, payload = heapq.heappop(heap)
            self._pending -= len(payload)
            end = start + len(payload)
            nxt = self.next
            assert nxt is not None
            if end <= nxt:
                self.stats.count("retransmitted_segments")
                continue
            if start < nxt:
                self.stats.count("overlaps")
                payload = payload[nxt - start:]
            self.next = end
            self.deliver(payload)

    def flush(self) -> None:
        """Deliver everything still held, giving up the holes in between."""
        while self._heap:
            self._skip_gap()
            self._drain()


# ---------------------------------------------------------------------------------------------
# frame-aligned output


class FrameCutter:
    """Cuts one direction's byte stream at SolarEdge frame boundaries.

    Whole frames (magic, header with length and inverted length, payload, CRC) are handed out
    as units; bytes that are not a frame (capture began mid-frame, junk) are handed out up to
    the next magic. Only the frame is awaited, never more, so nothing lingers after a frame ends.
    """

    __slots__ = ("buf", "emit")

    def __init__(self, emit: Callable[[bytes], None]) -> None:
        self.buf = bytearray()
        self.emit = emit

    def feed(self, data: bytes) -> None:
        buf = self.buf
        buf += data
        emit = self.emit
        pos, n = 0, len(buf)
        while pos < n:
            if buf.startswith(MAGIC, pos):
                if n - pos < 20:
                    break
                dlen, inv = _HDR.unpack_from(buf, pos + 4)
                if dlen ^ inv == 0xFFFF:
                    end = pos + 22 + dlen
                    if end > n:
                        break
                    emit(bytes(buf[pos:end]))
                    pos = end
                    continue
                nxt = buf.find(MAGIC, pos + 1)
            else:
                nxt = buf.find(MAGIC, pos)
            if nxt < 0:
                keep = max(pos, n - 3)  # the tail may be the start of a magic
                if keep > pos:
                    emit(bytes(buf[pos:keep]))
                pos = keep
                break
            emit(bytes(buf[pos:nxt]))
            pos = nxt
        if pos:
            del buf[:pos]

    def flush(self) -> None:
        if self.buf:
            self.emit(bytes(self.buf))
            self.buf.clear()


# ---------------------------------------------------------------------------------------------
# connection selection and the extractor


def _addr_bytes(text: str) -> bytes | None:
    try:
        return ipaddress.ip_address(text.split("%", 1)[0]).packed
    except ValueError:
        return None


def resolve_server(name: str, resolver: Callable[[str], list[str]] | None = None) -> set[bytes]:
    """Addresses of the server as packed bytes; an empty set when the name does not resolve."""
    direct = _addr_bytes(name)
    if direct is not None:
        return {direct}
    if resolver is None:
        resolver = _system_resolve
    try:
        names = resolver(name)
    except (OSError, UnicodeError) as exc:
        log.warning("cannot resolve server %s (%s): taking connections on port %s instead",
                    name, exc, ",".join(map(str, SERVER_PORTS)))
        return set()
    return {b for b in (_addr_bytes(a) for a in names) if b is not None}


def _system_resolve(name: str) -> list[str]:
    infos = socket.getaddrinfo(name, None, proto=socket.IPPROTO_TCP)
    return [str(info[4][0]) for info in infos]


def _ip_text(b: bytes) -> str:
    return str(ipaddress.ip_address(b))


@dataclass(slots=True)
class _Conn:
    server_side: int  # 0: the first-seen sender is the server, 1: its peer is
    dirs: list[StreamReassembler] = field(default_factory=list)
    cutters: list[FrameCutter | None] = field(default_factory=list)


class Extractor:
    """Sans-IO: captured packets in, the inverter<->server byte stream out (in :attr:`out`).

    ``server_addrs``: packed addresses of the server. ``server_name``: DNS answers in the capture
    for this name add to ``server_addrs``. ``ports``: connections with an endpoint on one of these
    ports are taken too (the fallback when the server's address is unknown; pass ``()`` to take
    only the server's addresses). ``direction``: ``both`` (default), ``to-server`` (the original
    seextract's choice with ``-s``) or ``from-server``.
    """

    def __init__(self, server_addrs: Iterable[bytes] = (), *, server_name: str | None = None,
                 ports: Iterable[int] = SERVER_PORTS, direction: str = "both",
                 max_pending: int = 4 * 1024 * 1024) -> None:
        if direction not in DIRECTIONS:
            raise ValueError(f"direction must be one of {', '.join(DIRECTIONS)}, not {direction!r}")
        self.server_addrs = set(server_addrs)
        self.server_name = server_name.lower().rstrip(".") if server_name else None
        self._dns_names = {self.server_name} if self.server_name else set()
        self.ports = frozenset(ports)
        self.direction = direction
        self.max_pending = max_pending
        self.stats = PacketStats()
        self.out: list[bytes] = []
        self._conns: dict[tuple[bytes, int, bytes, int], _Conn] = {}
        #: the first-seen direction of each selected connection (its ``dirs[0]``)
        self._fwd: set[tuple[bytes, int, bytes, int]] = set()

    # -- packets

    def feed(self, packets: Iterable[tuple[int, bytes]]) -> None:
        st = self.stats
        for linktype, data in packets:
            st.count("packets")
            pkt = decode_packet(linktype, data, st)
            if type(pkt) is Segment:
                self.segment(pkt)
            elif type(pkt) is Datagram and pkt.sport == 53 and self._dns_names:
                self._learn_dns(pkt.payload)

    def segment(self, seg: Segment) -> None:
        key = (seg.src, seg.sport, seg.dst, seg.dport)
        conn = self._conns.get(key)
        if conn is None:
            if not seg.payload and not seg.flags & SYN:
                return  # the last ACK after both FINs, or a capture starting mid-connection
            conn = self._new_conn(seg)
            if conn is None:
                return
        st = self.stats
        st.count("selected_segments")
        d = conn.dirs[0] if key in self._fwd else conn.dirs[1]
        d.segment(seg.seq, seg.flags, seg.payload, seg.missing)
        if seg.flags & RST or (conn.dirs[0].closed and conn.dirs[1].closed):
            self._close(seg)

    def _new_conn(self, seg: Segment) -> _Conn | None:
        fwd = (seg.src, seg.sport, seg.dst, seg.dport)
        rev = (seg.dst, seg.dport, seg.src, seg.sport)
        addrs = self.server_addrs
        if seg.dst in addrs:
            server_side = 1
        elif seg.src in addrs:
            server_side = 0
        elif seg.dport in self.ports:
            server_side = 1
        elif seg.sport in self.ports:
            server_side = 0
        else:
            # not remembered: deciding again is a few set lookups, and a capture running for months
            # on a router would otherwise grow a table of every connection it ever saw
            return None
        self.stats.count("connections")
        conn = _Conn(server_side)
        for i in (0, 1):
            to_server = (i == 0) == (server_side == 1)
            wanted = self.direction == "both" or (self.direction == "to-server") == to_server
            cutter = FrameCutter(self.out.append) if wanted else None
            conn.cutters.append(cutter)
            conn.dirs.append(StreamReassembler(cutter.feed if cutter else _discard, self.stats,
                                               self.max_pending))
        self._conns[fwd] = self._conns[rev] = conn
        self._fwd.add(fwd)
        if log.isEnabledFor(logging.INFO):
            srv, cli = ((seg.dst, seg.dport), (seg.src, seg.sport)) if server_side else \
                ((seg.src, seg.sport), (seg.dst, seg.dport))
            log.info("connection %s:%d -> server %s:%d", _ip_text(cli[0]), cli[1], _ip_text(srv[0]), srv[1])
        return conn

    def _close(self, seg: Segment) -> None:
        fwd = (seg.src, seg.sport, seg.dst, seg.dport)
        rev = (seg.dst, seg.dport, seg.src, seg.sport)
        conn = self._conns.pop(fwd, None)
        self._conns.pop(rev, None)
        self._fwd.discard(fwd)
        self._fwd.discard(rev)
        if conn:
            self._finish(conn)

    def _finish(self, conn: _Conn) -> None:
        for d, c in zip(conn.dirs, conn.cutters, strict=True):
            d.flush()
            if c is not None:
                c.flush()

    def finish(self) -> None:
        """End of the capture: deliver what every open connection still holds."""
        seen: set[int] = set()
        for conn in self._conns.values():
            if id(conn) not in seen:
                seen.add(id(conn))
                self._finish(conn)
        self._conns.clear()
        self._fwd.clear()

    def take(self) -> bytes:
        """The stream bytes produced since the last call."""
        if not self.out:
            return b""
        data = b"".join(self.out)
        self.out.clear()
        self.stats.count("bytes_out", len(data))
        return data

    # -- DNS answers in the capture

    def _learn_dns(self, payload: bytes) -> None:
        try:
            import dpkt

            msg = dpkt.dns.DNS(payload)
        except Exception:  # noqa: BLE001 - any malformed DNS payload is just not an answer
            self.stats.count("bad_dns")
            return
        if msg.qr != 1 or msg.rcode != 0:
            return
        names = self._dns_names
        for _ in range(4):  # follow CNAME chains a few links deep
            grown = False
            for rr in msg.an:
                if str(rr.name).lower().rstrip(".") not in names:
                    continue
                if rr.type == 5 and getattr(rr, "cname", None):
                    target = str(rr.cname).lower().rstrip(".")
                    if target not in names:
                        names.add(target)
                        grown = True
                elif rr.type in (1, 28) and len(rr.rdata) in (4, 16) and rr.rdata not in self.server_addrs:
                    self.server_addrs.add(bytes(rr.rdata))
                    log.info("capture resolves %s to %s", rr.name, _ip_text(bytes(rr.rdata)))
            if not grown:
                break


def _discard(_data: bytes) -> None:
    pass


# ---------------------------------------------------------------------------------------------
# files, directories, following


_NUM = re.compile(r"(\d+)")


def _natural(p: Path) -> list[object]:
    return [int(t) if t.isdigit() else t for t in _NUM.split(p.name)]


def capture_files(directory: Path) -> list[Path]:
    """Capture files of a directory in capture order: natural name order (``x.pcap2`` < ``x.pcap10``)."""
    files = [p for p in directory.iterdir() if p.is_file() and not p.name.startswith(".")]
    return sorted(files, key=_natural)


def newest_file(directory: Path) -> Path | None:
    best: tuple[float, list[object]] | None = None
    found: Path | None = None
    for p in capture_files(directory):
        try:
            key = (p.stat().st_mtime, _natural(p))
        except OSError:
            continue
        if best is None or key > best:
            best, found = key, p
    return found


def make_extractor(server: str | None = None, *, direction: str = "both",
                   ports: Iterable[int] | None = None,
                   resolver: Callable[[str], list[str]] | None = None) -> Extractor:
    """An :class:`Extractor` for a server given by name or address (None: ``prod.solaredge.com``).

    When no server is given, or its name cannot be resolved, connections on the SolarEdge server
    port are taken too; a server given by address selects that address only (unless ``ports``).
    """
    name = server or DEFAULT_SERVER
    addrs = resolve_server(name, resolver)
    if ports is None:
        ports = SERVER_PORTS if (server is None or not addrs) else ()
    return Extractor(addrs, server_name=None if _addr_bytes(name) else name,
                     ports=ports, direction=direction)


def _pump(fileobj: BinaryIO, parser: CaptureParser, ex: Extractor, name: str,
          chunk_size: int) -> Iterator[bytes]:
    # read1: a pipe (tcpdump -w -) hands over what it has instead of blocking for a full chunk
    read = getattr(fileobj, "read1", fileobj.read)
    while True:
        data = read(chunk_size)
        if not data:
            return
        try:
            ex.feed(parser.feed(data))
        except CaptureError as exc:
            ex.stats.count("capture_errors")
            log.warning("%s: %s", name, exc)
            out = ex.take()
            if out:
                yield out
            return
        out = ex.take()
        if out:
            yield out


def _end_of_file(parser: CaptureParser, ex: Extractor, name: str) -> None:
    if parser.leftover and not parser.failed:
        ex.stats.count("truncated_captures")
        log.warning("%s: capture ends inside a record (%d bytes left over)", name, parser.leftover)


def iter_streams(sources: str | os.PathLike[str] | BinaryIO | Iterable[str | os.PathLike[str]],
                 server: str | None = None, *, direction: str = "both",
                 ports: Iterable[int] | None = None,
                 follow: bool = False, poll_interval: float = 1.0,
                 should_stop: Callable[[], bool] | None = None,
                 resolver: Callable[[str], list[str]] | None = None,
                 extractor: Extractor | None = None,
                 chunk_size: int = 1 << 20) -> Iterator[bytes]:
    """The SolarEdge byte stream carried in captures, as chunks (what ``semonitor`` reads).

    ``sources``: a capture file, a directory (all its captures in natural name order; TCP
    connections continue across files), ``"-"`` or a binary file object (read to its end, e.g.
    ``tcpdump -w -``), or a list of these. ``follow``: a file is followed as it grows; a directory
    follows its newest file and moves on when a newer one appears; stops when ``should_stop()``.
    ``server``, ``direction``, ``ports``, ``resolver``: see :func:`make_extractor`. Statistics
    are in ``extractor.stats`` when an ``extractor`` is passed in.
    """
    ex = extractor or make_extractor(server, direction=direction, ports=ports, resolver=resolver)
    stop = should_stop or (lambda: False)
    if isinstance(sources, str | os.PathLike) or hasattr(sources, "read"):
        items: list[str | os.PathLike[str] | BinaryIO] = [sources]  # type: ignore[list-item]
    else:
        items = list(sources)  # type: ignore[arg-type]
    for item in items:
        if hasattr(item, "read"):
            yield from _one_file(item, "<stream>", ex, chunk_size)  # type: ignore[arg-type]
            continue
        if str(item) == "-":
            yield from _one_file(sys.stdin.buffer, "<stdin>", ex, chunk_size)
            continue
        path = Path(item)  # type: ignore[arg-type]
        if path.is_dir():
            if follow:
                yield from _follow_dir(path, ex, poll_interval, stop, chunk_size)
            else:
                for f in capture_files(path):
                    yield from _path(f, ex, chunk_size)
        elif follow:
            yield from _follow_file(path, ex, poll_interval, stop, chunk_size, None)
        else:
            yield from _path(path, ex, chunk_size)
    ex.finish()
    tail = ex.take()
    if tail:
        yield tail


def _one_file(fileobj: BinaryIO, name: str, ex: Extractor, chunk_size: int) -> Iterator[bytes]:
    parser = CaptureParser()
    yield from _pump(fileobj, parser, ex, name, chunk_size)
    _end_of_file(parser, ex, name)


def _path(path: Path, ex: Extractor, chunk_size: int) -> Iterator[bytes]:
    log.info("reading %s", path)
    try:
        f = path.open("rb")
    except OSError as exc:
        ex.stats.count("capture_errors")
        log.warning("%s: %s", path, exc.strerror or exc)
        return
    with f:
        yield from _one_file(f, str(path), ex, chunk_size)


def _follow_file(path: Path, ex: Extractor, poll: float, stop: Callable[[], bool], chunk_size: int,
                 newer: Callable[[], Path | None] | None) -> Iterator[bytes]:
    """Read ``path`` as it grows; return when stopped or when ``newer()`` names another file."""
    log.info("following %s", path)
    parser = CaptureParser()
    with path.open("rb") as f:
        while True:
            yield from _pump(f, parser, ex, str(path), chunk_size)
            if stop():
                return
            if newer is not None and newer() is not None:
                # the writer moved on: read what was appended meanwhile, then switch
                yield from _pump(f, parser, ex, str(path), chunk_size)
                _end_of_file(parser, ex, str(path))
                return
            if parser.failed:
                if newer is None:
                    return
            time.sleep(poll)


def _follow_dir(directory: Path, ex: Extractor, poll: float, stop: Callable[[], bool],
                chunk_size: int) -> Iterator[bytes]:
    current: Path | None = None
    while not stop():
        current = newest_file(directory) if current is None else current
        if current is None:
            time.sleep(poll)
            continue
        this = current

        def newer(this: Path = this) -> Path | None:
            latest = newest_file(directory)
            return latest if latest is not None and latest != this else None

        yield from _follow_file(this, ex, poll, stop, chunk_size, newer)
        current = newer()
        if current is not None:
            log.info("newer capture %s: switching to it", current)


class StreamReader:
    """A readable file-like object over :func:`iter_streams` (``read(n)``), for byte-stream readers."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self._chunks = chunks
        self._buf = bytearray()
        self._eof = False

    def read(self, n: int = -1) -> bytes:
        while not self._eof and (n < 0 or len(self._buf) < n):
            try:
                self._buf += next(self._chunks)
            except StopIteration:
                self._eof = True
        if n < 0 or n >= len(self._buf):
            data = bytes(self._buf)
            self._buf.clear()
        else:
            data = bytes(self._buf[:n])
            del self._buf[:n]
        return data

    def readable(self) -> bool:
        return True

    def close(self) -> None:
        close = getattr(self._chunks, "close", None)
        if close:
            close()
