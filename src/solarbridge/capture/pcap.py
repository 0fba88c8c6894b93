"""Classic pcap and pcapng: a sans-IO parser fed in any chunks, and a file reader on top of it.

Packets come out as ``(timestamp_seconds, linktype, frame_bytes)``. Classic pcap in either byte
order with micro- or nanosecond stamps; pcapng with any number of sections and interfaces (each
with its own link type, ``if_tsresol`` and ``if_tsoffset``), enhanced, simple and obsolete packet
blocks; other blocks are skipped.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

#: (timestamp in seconds, link type, frame bytes)
Packet = tuple[float, int, bytes]

LINKTYPE_ETHERNET = 1
CHUNK = 1 << 20
#: a record bigger than this is corruption, not a packet (pcap snaplen is at most 256 KiB in practice)
MAX_RECORD = 16 * 1024 * 1024

_PCAP_MAGICS = {  # magic -> (byte order, fraction divisor)
    b"\xd4\xc3\xb2\xa1": ("<", 1e6), b"\xa1\xb2\xc3\xd4": (">", 1e6),  # microseconds
    b"\x4d\x3c\xb2\xa1": ("<", 1e9), b"\xa1\xb2\x3c\x4d": (">", 1e9),  # nanoseconds
}
_PCAPNG_SHB = b"\x0a\x0d\x0d\x0a"


class CaptureError(ValueError):
    """The bytes are not a pcap/pcapng capture, or the capture is corrupt beyond recovery (one plain line)."""


def capture_format(head: bytes) -> str | None:
    """``"pcap"``, ``"pcapng"`` or None for the first four bytes of a file."""
    if head[:4] in _PCAP_MAGICS:
        return "pcap"
    if head[:4] == _PCAPNG_SHB:
        return "pcapng"
    return None


class CaptureParser:
    """Sans-IO reader of pcap and pcapng: ``feed(bytes)`` returns the packets completed so far.

    A corrupt capture raises :class:`CaptureError` once (further feeds return nothing);
    :attr:`leftover` after the last feed tells of a truncated end.
    """

    def __init__(self) -> None:
        self._rest = b""  # bytes not yet making a whole record
        #: "pcap" or "pcapng" once the header was seen
        self.format: str | None = None
        self._endian = "<"
        self._div = 1e6
        self._linktype = 0
        self._rec: struct.Struct | None = None
        self._ifaces: list[tuple[int, int, float, float]] = []  # pcapng: (linktype, snaplen, tick, offset)
        self._last_ts = 0.0
        self.failed = False
        self.packets = 0

    @property
    def leftover(self) -> int:
        """Bytes buffered that do not (yet) make a whole record."""
        return len(self._rest)

    def feed(self, data: bytes) -> list[Packet]:
        if self.failed:
            return []
        # one copy per chunk (none without a rest): slices of bytes are then the packets
        data = self._rest + data if self._rest else bytes(data)
        self._rest = b""
        out: list[Packet] = []
        pos = 0
        try:
            if self.format is None:
                pos = self._header(data)
                if pos < 0:
                    self._rest = data
                    return out
            if self.format == "pcap":
                pos = self._pcap_records(data, pos, out)
            else:
                pos = self._pcapng_blocks(data, pos, out)
            self._rest = data[pos:]
        except CaptureError:
            self.failed = True
            self.packets += len(out)
            raise
        self.packets += len(out)
        return out

    def _header(self, buf: bytes) -> int:
        """Offset after the file header; -1 when more bytes are needed."""
        if len(buf) < 4:
            return -1
        head = buf[:4]
        if head in _PCAP_MAGICS:
            if len(buf) < 24:
                return -1
            self._endian, self._div = _PCAP_MAGICS[head]
            (network,) = struct.unpack_from(self._endian + "I", buf, 20)
            self._linktype = network & 0x0FFFFFFF  # upper bits carry FCS length information
            self._rec = struct.Struct(self._endian + "IIII")
            self.format = "pcap"
            return 24
        if head == _PCAPNG_SHB:
            self.format = "pcapng"
            return 0
        raise CaptureError(f"not a pcap or pcapng capture (starts with {head.hex()})")

    def _pcap_records(self, data: bytes, pos: int, out: list[Packet]) -> int:
        rec = self._rec
        assert rec is not None
        unpack = rec.unpack_from
        append = out.append
        linktype, div = self._linktype, self._div
        end = len(data)
        while end - pos >= 16:
            sec, frac, incl, _orig = unpack(data, pos)
            if incl > MAX_RECORD:
                raise CaptureError(f"corrupt pcap record of {incl} bytes")
            nxt = pos + 16 + incl
            if nxt > end:
                break
            append((sec + frac / div, linktype, data[pos + 16:nxt]))
            pos = nxt
        return pos

    def _pcapng_blocks(self, buf: bytes, pos: int, out: list[Packet]) -> int:
        end = len(buf)
        while end - pos >= 12:
            if buf[pos:pos + 4] == _PCAPNG_SHB:
                bom = buf[pos + 8:pos + 12]
                if bom == b"\x4d\x3c\x2b\x1a":
                    self._endian = "<"
                elif bom == b"\x1a\x2b\x3c\x4d":
                    self._endian = ">"
                else:
                    raise CaptureError("corrupt pcapng section header (unknown byte-order mark)")
                self._ifaces = []
            e = self._endian
            btype, blen = struct.unpack_from(e + "II", buf, pos)
            if blen < 12 or blen % 4 or blen > MAX_RECORD:
                raise CaptureError(f"corrupt pcapng block of length {blen}")
            if end - pos < blen:
                break
            body = pos + 8
            blk_end = pos + blen - 4
            if btype == 6 and blk_end - body >= 20:  # enhanced packet
                iface, hi, lo, caplen, _orig = struct.unpack_from(e + "IIIII", buf, body)
                start = body + 20
                if iface < len(self._ifaces) and start + caplen <= blk_end:
                    lt, _snap, tick, toff = self._ifaces[iface]
                    self._last_ts = ((hi << 32) | lo) * tick + toff
                    out.append((self._last_ts, lt, buf[start:start + caplen]))
            elif btype == 1 and blk_end - body >= 8:  # interface description
                lt, _res, snap = struct.unpack_from(e + "HHI", buf, body)
                self._ifaces.append((lt, snap, *self._iface_time(buf, body + 8, blk_end)))
            elif btype == 3 and blk_end - body >= 4 and self._ifaces:  # simple packet: no time, interface 0
                (orig,) = struct.unpack_from(e + "I", buf, body)
                lt, snap, _tick, _toff = self._ifaces[0]
                caplen = min(orig, blk_end - body - 4, snap or MAX_RECORD)
                out.append((self._last_ts, lt, buf[body + 4:body + 4 + caplen]))
            elif btype == 2 and blk_end - body >= 20:  # obsolete packet block
                iface, _drops, hi, lo, caplen, _orig = struct.unpack_from(e + "HHIIII", buf, body)
                start = body + 20
                if iface < len(self._ifaces) and start + caplen <= blk_end:
                    lt, _snap, tick, toff = self._ifaces[iface]
                    self._last_ts = ((hi << 32) | lo) * tick + toff
                    out.append((self._last_ts, lt, buf[start:start + caplen]))
            pos += blen
        return pos

    def _iface_time(self, buf: bytes, o: int, end: int) -> tuple[float, float]:
        """(seconds per tick, offset seconds) from an interface's if_tsresol and if_tsoffset options."""
        e = self._endian
        tick, toff = 1e-6, 0.0
        while o + 4 <= end:
            code, olen = struct.unpack_from(e + "HH", buf, o)
            if code == 0:
                break
            if code == 9 and olen >= 1 and o + 5 <= end:
                r = buf[o + 4]
                tick = 2.0 ** -(r & 0x7F) if r & 0x80 else 10.0 ** -r
            elif code == 14 and olen >= 8 and o + 12 <= end:
                toff = float(struct.unpack_from(e + "q", buf, o + 4)[0])
            o += 4 + ((olen + 3) & ~3)
        return tick, toff


class CaptureFile:
    """The packets of a pcap or pcapng file, read a chunk at a time (flat memory for any size).

    Opening checks the file (one plain line naming it in :class:`CaptureError`). Iterating yields
    ``(timestamp, linktype, frame)``; a truncated last record (capture killed mid-write) ends the
    iteration quietly and sets :attr:`truncated`; a corrupt record raises :class:`CaptureError`.
    """

    def __init__(self, path: str | Path, chunk: int = CHUNK) -> None:
        self.path = Path(path)
        self.chunk = chunk
        try:
            self.size = self.path.stat().st_size
            self._f: BinaryIO = self.path.open("rb")
        except FileNotFoundError:
            raise CaptureError(f"{self.path}: no such file") from None
        except IsADirectoryError:
            raise CaptureError(f"{self.path}: is a directory, not a capture file") from None
        except PermissionError:
            raise CaptureError(f"{self.path}: permission denied") from None
        except OSError as e:
            raise CaptureError(f"{self.path}: {e.strerror or e}") from None
        try:
            head = self._f.read(4)
        except OSError as e:
            self._f.close()
            raise CaptureError(f"{self.path}: {e.strerror or e}") from None
        self._f.seek(0)
        fmt = capture_format(head)
        if fmt is None:
            self._f.close()
            raise CaptureError(f"{self.path}: not a pcap or pcapng capture file")
        self.format = fmt
        self._parser = CaptureParser()
        self.truncated = False
        #: file offset up to which records were handed out (for progress)
        self.bytes_read = 0

    @property
    def records(self) -> int:
        return self._parser.packets

    def close(self) -> None:
        self._f.close()

    def __enter__(self) -> CaptureFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __iter__(self) -> Iterator[Packet]:
        parser, read = self._parser, self._f.read
        fed = 0
        while True:
            data = read(self.chunk)
            if not data:
                self.truncated = parser.leftover > 0
                return
            fed += len(data)
            try:
                packets = parser.feed(data)
            except CaptureError as e:
                raise CaptureError(f"{self.path}: {e} near byte {fed - len(data)}") from None
            self.bytes_read = fed - parser.leftover
            yield from packets
