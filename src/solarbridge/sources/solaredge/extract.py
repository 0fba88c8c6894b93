"""Pull the SolarEdge protocol byte stream out of packet captures (``seextract``, ``semonitor --pcap``).

The capture itself (pcap/pcapng, link/IP/TCP decoding, TCP reassembly, files and directories) is
:mod:`solarbridge.capture`; this module adds what is SolarEdge's:

* :class:`FrameCutter`: cuts one direction's reassembled bytes at SolarEdge frame boundaries, so that
  frames of the two directions interleave whole, in the order they completed in the capture;
* :class:`Extractor`: picks the connections between inverter and server and keeps one reassembler and
  one cutter per direction. The output is the raw byte stream ``semonitor`` reads (the format of
  ``.rec``/``.dat`` files).

The server is chosen by name or address (default ``prod.solaredge.com``). A server's address
changes over the years and resolving a name needs the network, so connections on the SolarEdge
server port (22222) are also taken when no server was given or its name does not resolve, and
DNS answers for the name found in the capture itself add to the server's addresses.
"""

from __future__ import annotations

import ipaddress
import logging
import socket
import struct
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

from ...capture.files import Sources, iter_packets
from ...capture.packets import RST, SYN, Datagram, PacketStats, Segment, decode_packet, ip_text
from ...capture.pcap import Packet
from ...capture.tcp import StreamReassembler

log = logging.getLogger("solarbridge.solaredge.extract")

MAGIC = b"\x12\x34\x56\x79"
DEFAULT_SERVER = "prod.solaredge.com"
#: the SolarEdge monitoring server port (22221 and 80 are alternatives an inverter may fall back to)
SERVER_PORTS: tuple[int, ...] = (22222,)
DIRECTIONS = ("both", "to-server", "from-server")

_HDR = struct.Struct("<HH")


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

    def feed(self, packets: Iterable[Packet]) -> None:
        """Captured ``(timestamp, linktype, frame)`` packets."""
        st = self.stats
        for _ts, linktype, data in packets:
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
            log.info("connection %s:%d -> server %s:%d", ip_text(cli[0]), cli[1], ip_text(srv[0]), srv[1])
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
                    log.info("capture resolves %s to %s", rr.name, ip_text(bytes(rr.rdata)))
            if not grown:
                break


def _discard(_data: bytes) -> None:
    pass


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


def iter_streams(sources: Sources,
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
    for packets in iter_packets(sources, follow=follow, poll_interval=poll_interval, should_stop=should_stop,
                                stats=ex.stats, chunk_size=chunk_size):
        ex.feed(packets)
        out = ex.take()
        if out:
            yield out
    ex.finish()
    tail = ex.take()
    if tail:
        yield tail


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
