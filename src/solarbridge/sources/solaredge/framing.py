"""Frame encode/decode and a streaming decoder. Pure: bytes in, frames out.

Wire layout::

    12 34 56 79 | len u16 | ~len u16 | seq u16 | from u32 | to u32 | function u16 | payload | crc u16
    magic         (header: 16 bytes, little-endian)                                            (LE)

The CRC covers seq/from/to/function packed *big-endian* followed by the payload; the magic and the
two length fields are not covered.
"""

from __future__ import annotations

import struct
from collections import Counter, namedtuple

from ...util.crc16 import c_function
from .crc import INIT, crc16

MAGIC = b"\x12\x34\x56\x79"
HEADER = struct.Struct("<HHHIIH")
_CRC_HEADER = struct.Struct(">HIIH")
_CRC = struct.Struct("<H")


def _crc_py(data: bytes, crc: int, table: bytes) -> int:
    return crc16(data, crc)


#: ``(fun, table)``: ``fun(data, crc, table)`` is crcmod's C routine when installed (one C call per CRC in
#: the stream decoder), else the pure Python CRC
_C_CRC = c_function(INIT) or (_crc_py, b"")
HEADER_LEN = HEADER.size  # 16
#: bytes of a frame that are not payload: magic + header + crc
OVERHEAD = len(MAGIC) + HEADER_LEN + 2
MAX_PAYLOAD = 0xFFFF

#: reasons the stream decoder drops bytes or frames
DROP_REASONS = ("garbage", "zeros", "length", "crc", "truncated")


class FrameError(ValueError):
    """A byte string that is not one valid frame; ``reason`` is one of :data:`DROP_REASONS`."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class Frame(namedtuple("Frame", "seq src dst function payload", defaults=(b"",))):
    """One frame (immutable): ``seq``, ``src``, ``dst``, ``function`` (ints) and ``payload`` (bytes, default empty).

    A named tuple: the stream decoder makes one per frame, cheaply. (``collections.namedtuple``, not
    ``typing.NamedTuple``: importing typing would add 3 ms to every semonitor start.)
    """

    __slots__ = ()
    seq: int
    src: int
    dst: int
    function: int
    payload: bytes

    def reply(self, function: int, payload: bytes = b"") -> Frame:
        """The answer to this frame: same sequence number, addresses swapped."""
        return Frame(self.seq, self.dst, self.src, function, payload)


def frame_crc(seq: int, src: int, dst: int, function: int, payload: bytes) -> int:
    return crc16(payload, crc16(_CRC_HEADER.pack(seq, src, dst, function)))


def encode(frame: Frame) -> bytes:
    """Magic + header + payload + CRC."""
    p = frame.payload
    n = len(p)
    if n > MAX_PAYLOAD:
        raise ValueError(f"payload of {n} bytes is longer than the maximum {MAX_PAYLOAD}")
    crc = frame_crc(frame.seq, frame.src, frame.dst, frame.function, p)
    return b"".join((MAGIC, HEADER.pack(n, ~n & 0xFFFF, frame.seq, frame.src, frame.dst, frame.function),
                     p, _CRC.pack(crc)))


def decode(data: bytes) -> Frame:
    """Decode exactly one frame starting with the magic (trailing bytes are ignored, like semonitor)."""
    if data[:4] != MAGIC:
        raise FrameError("garbage", "frame does not start with the magic 12 34 56 79")
    if len(data) < OVERHEAD:
        raise FrameError("truncated", f"frame of {len(data)} bytes is shorter than the minimum {OVERHEAD}")
    dlen, dinv, seq, src, dst, fn = HEADER.unpack_from(data, 4)
    if dlen != (~dinv & 0xFFFF):
        if not any(data[4:20]):
            raise FrameError("zeros", "all-zero header")
        raise FrameError("length", f"length 0x{dlen:04x} does not match inverted length 0x{dinv:04x}")
    end = 20 + dlen
    if len(data) < end + 2:
        raise FrameError("truncated", f"frame needs {end + 2} bytes, have {len(data)}")
    payload = bytes(data[20:end])
    (crc,) = _CRC.unpack_from(data, end)
    calc = frame_crc(seq, src, dst, fn, payload)
    if crc != calc:
        raise FrameError("crc", f"CRC 0x{crc:04x} does not match computed 0x{calc:04x}")
    return Frame(seq, src, dst, fn, payload)


class StreamDecoder:
    """Frames from a byte stream cut into arbitrary chunks.

    Resynchronises on the magic; drops garbage, all-zero blocks, length/inverse mismatches, CRC errors
    and frames cut short by the start of the next frame, counting each in :attr:`drops` by reason.
    """

    #: how many later magics to try when deciding whether an incomplete frame was cut short
    _LOOKAHEAD = 8

    def __init__(self) -> None:
        self._buf = b""
        self.drops: Counter[str] = Counter()
        self.skipped_bytes = 0
        self.frames = 0
        self.bytes_in = 0

    @property
    def pending(self) -> int:
        """Bytes buffered waiting for the rest of a frame."""
        return len(self._buf)

    def _valid_at(self, buf: bytes, i: int) -> bool:
        if len(buf) - i < OVERHEAD:
            return False
        dlen, dinv = struct.unpack_from("<HH", buf, i + 4)
        if dlen != (~dinv & 0xFFFF) or len(buf) < i + OVERHEAD + dlen:
            return False
        try:
            decode(buf[i:i + OVERHEAD + dlen])
        except FrameError:
            return False
        return True

    def feed(self, data: bytes | bytearray | memoryview) -> list[Frame]:
        # The buffer is an immutable bytes (the unused tail of the last chunk + this one): a payload
        # is then one slice, one copy.
        buf = self._buf + data if self._buf else bytes(data)
        self.bytes_in += len(data)
        out: list[Frame] = []
        append = out.append
        pos = 0
        n = len(buf)
        find = buf.find
        unpack = HEADER.unpack_from
        pack_be = _CRC_HEADER.pack
        new = tuple.__new__
        c_crc, c_table = _C_CRC
        while True:
            i = find(MAGIC, pos)
            if i < 0:
                # keep a possible partial magic at the end
                keep = max(pos, n - 3)
                if keep > pos:
                    self._skip(keep - pos)
                pos = keep
                break
            if i > pos:
                self._skip(i - pos)
                pos = i
            if n - i < 20:
                break
            dlen, dinv, seq, src, dst, fn = unpack(buf, i + 4)
            if dlen + dinv != 0xFFFF:  # the inverted length (two 16-bit numbers add up to 0xFFFF)
                self.drops["zeros" if not any(buf[i + 4:i + 20]) else "length"] += 1
                pos = i + 4
                continue
            end = i + 20 + dlen
            if n < end + 2:
                # Incomplete. If a complete valid frame starts at a later magic, this one was cut short.
                j = i + 4
                cut = False
                for _ in range(self._LOOKAHEAD):
                    j = find(MAGIC, j)
                    if j < 0:
                        break
                    if self._valid_at(buf, j):
                        cut = True
                        break
                    j += 1
                if cut:
                    self.drops["truncated"] += 1
                    pos = j
                    continue
                break
            payload = buf[i + 20:end]
            if c_crc(payload, c_crc(pack_be(seq, src, dst, fn), INIT, c_table), c_table) != buf[end] | buf[end + 1] << 8:
                # a frame cut short and followed by the next one fails its CRC too: tell them apart
                j = find(MAGIC, i + 4, end + 2)
                self.drops["truncated" if j >= 0 and self._valid_at(buf, j) else "crc"] += 1
                pos = i + 4
                continue
            append(new(Frame, (seq, src, dst, fn, payload)))
            pos = end + 2
        self._buf = buf[pos:] if pos < n else b""
        self.frames += len(out)
        return out

    def _skip(self, n: int) -> None:
        self.skipped_bytes += n
        self.drops["garbage"] += 1

    def flush(self) -> list[Frame]:
        """End of stream: whatever is left is a truncated frame (or garbage)."""
        buf = self._buf
        if buf:
            if buf.startswith(MAGIC):
                self.drops["truncated"] += 1
            else:
                self._skip(len(buf))
            self._buf = b""
        return []
