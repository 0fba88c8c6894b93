"""Streaming reader for capture files, classic pcap and pcapng, with flat memory.

The file is read in fixed-size chunks and records are handed out one at a time, so a capture of any size
is decoded with the memory of one chunk. Yields ``(timestamp_seconds, linktype, frame_bytes)``.
A truncated last record (capture killed mid-write) ends the iteration quietly; ``truncated`` says so.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

CHUNK = 1 << 20
LINKTYPE_ETHERNET = 1
_MAX_RECORD = 1 << 26  # a record claiming more than 64 MiB is corruption, not a packet


class PcapError(Exception):
    """Not a capture file this reader understands (one plain line)."""


class CaptureFile:
    """Iterate the records of a pcap or pcapng file without loading it."""

    def __init__(self, path: str | Path, chunk: int = CHUNK) -> None:
        self.path = Path(path)
        self.chunk = chunk
        try:
            self.size = self.path.stat().st_size
            self._f: BinaryIO = self.path.open("rb")
        except FileNotFoundError:
            raise PcapError(f"{self.path}: no such file") from None
        except IsADirectoryError:
            raise PcapError(f"{self.path}: is a directory, not a capture file") from None
        except PermissionError:
            raise PcapError(f"{self.path}: permission denied") from None
        head = self._f.read(4)
        self._f.seek(0)
        if head in (b"\xd4\xc3\xb2\xa1", b"\xa1\xb2\xc3\xd4", b"\x4d\x3c\xb2\xa1", b"\xa1\xb2\x3c\x4d"):
            self.format = "pcap"
        elif head == b"\x0a\x0d\x0d\x0a":
            self.format = "pcapng"
        else:
            self._f.close()
            raise PcapError(f"{self.path}: not a pcap or pcapng capture file")
        self._buf = b""
        self._pos = 0
        self._base = 0  # file offset of _buf[0]
        self.truncated = False
        self.records = 0

    # ------------------------------------------------------------------ buffering
    @property
    def bytes_read(self) -> int:
        """File offset of the next record (for progress)."""
        return self._base + self._pos

    def _need(self, n: int) -> bool:
        """Make sure ``n`` bytes are available at ``_pos``; False at end of file."""
        avail = len(self._buf) - self._pos
        if avail >= n:
            return True
        rest = self._buf[self._pos:]
        self._base += self._pos
        more = self._f.read(max(self.chunk, n - avail))
        self._buf = rest + more
        self._pos = 0
        return len(self._buf) >= n

    def close(self) -> None:
        self._f.close()

    def __enter__(self) -> CaptureFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __iter__(self) -> Iterator[tuple[float, int, bytes]]:
        return self._pcap() if self.format == "pcap" else self._pcapng()

    # ------------------------------------------------------------------ classic pcap
    def _pcap(self) -> Iterator[tuple[float, int, bytes]]:
        if not self._need(24):
            raise PcapError(f"{self.path}: truncated pcap header")
        magic = self._buf[:4]
        e = "<" if magic in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1") else ">"
        nano = magic in (b"\x4d\x3c\xb2\xa1", b"\xa1\xb2\x3c\x4d")
        linktype = struct.unpack_from(e + "I", self._buf, 20)[0] & 0x0FFFFFFF
        self._pos = 24
        rec = struct.Struct(e + "IIII")
        div = 1e9 if nano else 1e6
        unpack = rec.unpack_from
        while True:
            buf, pos = self._buf, self._pos
            if len(buf) - pos < 16:
                if not self._need(16):
                    self.truncated = len(self._buf) - self._pos > 0
                    return
                buf, pos = self._buf, self._pos
            sec, frac, caplen, _ = unpack(buf, pos)
            if caplen > _MAX_RECORD:
                raise PcapError(f"{self.path}: corrupt record at byte {self.bytes_read} (length {caplen})")
            end = pos + 16 + caplen
            if end > len(buf):
                if not self._need(16 + caplen):
                    self.truncated = True
                    return
                buf, pos = self._buf, self._pos
                end = pos + 16 + caplen
            self._pos = end
            self.records += 1
            yield sec + frac / div, linktype, buf[pos + 16:end]

    # ------------------------------------------------------------------ pcapng
    def _pcapng(self) -> Iterator[tuple[float, int, bytes]]:
        e = "<"
        ifaces: list[tuple[int, float, float]] = []  # (linktype, seconds per tick, offset seconds)
        last_ts = 0.0
        while True:
            if not self._need(12):
                self.truncated = len(self._buf) - self._pos > 0
                return
            buf, pos = self._buf, self._pos
            btype = struct.unpack_from(e + "I", buf, pos)[0]
            if btype == 0x0A0D0D0A:
                bom = buf[pos + 8:pos + 12]
                if bom == b"\x4d\x3c\x2b\x1a":
                    e = "<"
                elif bom == b"\x1a\x2b\x3c\x4d":
                    e = ">"
                else:
                    raise PcapError(f"{self.path}: corrupt pcapng section header at byte {self.bytes_read}")
                ifaces = []
            blen = struct.unpack_from(e + "I", buf, pos + 4)[0]
            if blen < 12 or blen % 4 or blen > _MAX_RECORD:
                raise PcapError(f"{self.path}: corrupt pcapng block at byte {self.bytes_read} (length {blen})")
            if not self._need(blen):
                self.truncated = True
                return
            buf, pos = self._buf, self._pos
            body = pos + 8
            self._pos = pos + blen
            if btype == 6:  # enhanced packet block
                iid, hi, lo, caplen, _ = struct.unpack_from(e + "IIIII", buf, body)
                if iid >= len(ifaces) or 20 + caplen > blen - 12:
                    continue
                lt, tick, toff = ifaces[iid]
                last_ts = ((hi << 32) | lo) * tick + toff
                self.records += 1
                yield last_ts, lt, buf[body + 20:body + 20 + caplen]
            elif btype == 1:  # interface description block
                lt = struct.unpack_from(e + "H", buf, body)[0]
                tick, toff = 1e-6, 0.0
                o, oend = body + 8, pos + blen - 4
                while o + 4 <= oend:
                    code, olen = struct.unpack_from(e + "HH", buf, o)
                    if code == 0:
                        break
                    if code == 9 and olen >= 1:
                        r = buf[o + 4]
                        tick = 2.0 ** -(r & 0x7F) if r & 0x80 else 10.0 ** -r
                    elif code == 14 and olen >= 8:
                        toff = float(struct.unpack_from(e + "q", buf, o + 4)[0])
                    o += 4 + ((olen + 3) & ~3)
                ifaces.append((lt, tick, toff))
            elif btype == 3:  # simple packet block: no timestamp, interface 0
                if not ifaces:
                    continue
                origlen = struct.unpack_from(e + "I", buf, body)[0]
                caplen = min(origlen, blen - 16)
                self.records += 1
                yield last_ts, ifaces[0][0], buf[body + 4:body + 4 + caplen]
            elif btype == 2:  # obsolete packet block
                iid, _, hi, lo, caplen, _ = struct.unpack_from(e + "HHIIII", buf, body)
                if iid >= len(ifaces) or 20 + caplen > blen - 12:
                    continue
                lt, tick, toff = ifaces[iid]
                last_ts = ((hi << 32) | lo) * tick + toff
                self.records += 1
                yield last_ts, lt, buf[body + 20:body + 20 + caplen]
