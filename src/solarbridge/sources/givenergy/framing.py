"""GivEnergy dongle framing: bytes in, frames out, frames back to bytes (sans-IO).

Every frame starts with the marker ``59 59 00 01`` followed by a big-endian length
(bytes after the length field), a unit id (0/1) and the main function
(1 = heartbeat, 2 = transparent Modbus).  Transparent frames carry the adapter
serial, an 8-byte "padding" (bytes remaining), then a Modbus-like PDU whose
CRC-16/MODBUS covers the device address up to the data and sits low byte first.

:class:`Framer` scans a byte stream, cuts frames out and counts everything it
throws away by reason, so a bad dongle shows up in the health counters instead
of in an exception.
"""

from __future__ import annotations

import struct
from collections import Counter
from dataclasses import dataclass

from ...util.crc16 import make_crc16

MARKER = b"YY\x00\x01"
HEADER_LEN = 8
MAX_LENGTH = 300  # sanity bound for the length field (a 60-register reply is 158)
MAX_REGISTERS = 60
DEFAULT_ADAPTER_SERIAL = "AB1234G567"

FC_READ_HOLDING = 3
FC_READ_INPUT = 4
FC_WRITE_SINGLE = 6
FC_READ_METER = 0x16
READ_FUNCTIONS = frozenset({FC_READ_HOLDING, FC_READ_INPUT, FC_READ_METER})


#: CRC-16/MODBUS (reflected 0x8005, init 0xFFFF) of a bytes-like object; goes on the wire low byte first.
#: The table is the one of :mod:`solarbridge.util.crc16` (SolarEdge's CRC differs only in its start).
crc16_modbus = make_crc16(0xFFFF, accelerate=False)


# --------------------------------------------------------------------------- frames


@dataclass(frozen=True, slots=True)
class Heartbeat:
    """Heartbeat, same layout both ways: the dongle asks, the client echoes it back."""

    adapter_serial: str
    adapter_type: int


@dataclass(frozen=True, slots=True)
class ReadRequest:
    device: int
    function: int  # 3, 4 or 0x16
    base: int
    count: int
    adapter_serial: str = DEFAULT_ADAPTER_SERIAL

    @property
    def key(self) -> tuple[int, int, int, int]:
        return (self.function, self.device, self.base, self.count)


@dataclass(frozen=True, slots=True)
class WriteRequest:
    device: int
    register: int
    value: int
    adapter_serial: str = DEFAULT_ADAPTER_SERIAL

    @property
    def key(self) -> tuple[int, int, int]:
        return (FC_WRITE_SINGLE, self.device, self.register)


@dataclass(frozen=True, slots=True)
class ReadResponse:
    adapter_serial: str
    device: int
    function: int
    inverter_serial: str
    base: int
    values: tuple[int, ...]

    @property
    def count(self) -> int:
        return len(self.values)

    @property
    def key(self) -> tuple[int, int, int, int]:
        return (self.function, self.device, self.base, len(self.values))


@dataclass(frozen=True, slots=True)
class WriteResponse:
    adapter_serial: str
    device: int
    inverter_serial: str
    register: int
    value: int

    @property
    def key(self) -> tuple[int, int, int]:
        return (FC_WRITE_SINGLE, self.device, self.register)


@dataclass(frozen=True, slots=True)
class ErrorResponse:
    """Exception reply (function code with the 0x80 bit): the inverter refused the request."""

    adapter_serial: str
    device: int
    function: int  # without the error bit
    inverter_serial: str
    register: int
    count: int


@dataclass(frozen=True, slots=True)
class NullResponse:
    """Function code 0, all zeros: sent unprompted by some dongles; carries nothing."""

    adapter_serial: str


@dataclass(frozen=True, slots=True)
class LanConfig:
    """WO-prefix dongles broadcast ``,ip,netmask,gateway``; recognised and ignored."""

    adapter_serial: str
    text: str


Frame = Heartbeat | ReadRequest | WriteRequest | ReadResponse | WriteResponse | ErrorResponse | NullResponse | LanConfig


class FrameError(ValueError):
    """A frame that cannot be decoded; ``reason`` is the drop-counter key."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason


# --------------------------------------------------------------------------- decoding


def _ascii(b: bytes) -> str:
    return b.decode("latin-1").rstrip("\x00")


def _looks_like_lan_config(frame: bytes) -> bool:
    # a real reply whose padding happens to be 44 has a valid CRC where the LAN text does not
    if crc16_modbus(frame[26:-2]) == frame[-2] | (frame[-1] << 8):
        return False
    text = frame[26:]
    return text[:1].isdigit() and text.count(b",") >= 2


def decode_frame(frame: bytes) -> Frame:
    """Decode one complete frame (marker through CRC). Raises :class:`FrameError`."""
    n = len(frame)
    if n < HEADER_LEN or frame[:4] != MARKER:
        raise FrameError("bad_header")
    length = (frame[4] << 8) | frame[5]
    if length + 6 != n:
        raise FrameError("bad_length", f"length field {length}, frame {n}")
    fid = frame[7]
    if fid == 1:
        if length != 13:
            raise FrameError("bad_length", "heartbeat")
        return Heartbeat(_ascii(frame[8:18]), frame[18])
    if fid != 2:
        raise FrameError("bad_header", f"function id {fid}")
    if n < 34:
        raise FrameError("bad_length", "transparent frame too short")
    adapter = _ascii(frame[8:18])
    # LAN-config broadcast: 7 zero bytes then a CSV text instead of padding + PDU
    if frame[25] == 0x2C and not any(frame[18:25]) and _looks_like_lan_config(frame):
        return LanConfig(adapter, frame[26:].decode("latin-1", "replace").strip("\r\n\x00"))
    fc = frame[27]
    if n == 34:  # request: adapter + padding + addr fc reg count/value crc
        if crc16_modbus(frame[26:32]) != frame[32] | (frame[33] << 8):
            raise FrameError("bad_crc")
        device, reg, val = frame[26], (frame[28] << 8) | frame[29], (frame[30] << 8) | frame[31]
        if fc in READ_FUNCTIONS:
            return ReadRequest(device, fc, reg, val, adapter)
        if fc == FC_WRITE_SINGLE:
            return WriteRequest(device, reg, val, adapter)
        raise FrameError("unknown_function", f"request fc {fc}")
    if fc == 0:
        return NullResponse(adapter)
    if n < 44:
        raise FrameError("bad_length", "response too short")
    if crc16_modbus(frame[26:-2]) != frame[-2] | (frame[-1] << 8):
        raise FrameError("bad_crc")
    device = frame[26]
    inverter = _ascii(frame[28:38])
    reg, cnt = struct.unpack_from(">HH", frame, 38)
    if fc & 0x80:
        return ErrorResponse(adapter, device, fc & 0x7F, inverter, reg, cnt)
    if fc == FC_WRITE_SINGLE:
        if n != 44:
            raise FrameError("bad_length", "write reply")
        return WriteResponse(adapter, device, inverter, reg, cnt)
    if fc in READ_FUNCTIONS:
        if cnt > MAX_REGISTERS or n != 44 + 2 * cnt:
            raise FrameError("bad_length", f"{cnt} registers in {n} bytes")
        return ReadResponse(adapter, device, fc, inverter, reg, struct.unpack_from(f">{cnt}H", frame, 42))
    raise FrameError("unknown_function", f"response fc {fc}")


class Framer:
    """Stream scanner: ``feed(bytes) -> frames``; keeps partial frames; counts drops by reason.

    Drop reasons: ``garbage`` (bytes before a marker), ``bad_length``, ``bad_header``,
    ``bad_crc``, ``truncated`` (a frame cut short by the next marker), ``unknown_function``,
    ``overflow`` (buffer bound exceeded while waiting for a frame).
    """

    __slots__ = ("_buf", "drops", "frames", "max_buffer")

    def __init__(self, max_buffer: int = 65536) -> None:
        self._buf = bytearray()
        self.drops: Counter[str] = Counter()
        self.frames = 0
        self.max_buffer = max_buffer

    @property
    def buffered(self) -> int:
        return len(self._buf)

    def feed(self, data: bytes) -> list[Frame]:
        buf = self._buf
        buf += data
        out: list[Frame] = []
        drops = self.drops
        while True:
            i = buf.find(MARKER)
            if i < 0:
                # keep a possible marker prefix at the end, drop the rest
                keep = 3 if len(buf) >= 3 else len(buf)
                if len(buf) > keep:
                    drops["garbage"] += 1
                    del buf[: len(buf) - keep]
                break
            if i:
                drops["garbage"] += 1
                del buf[:i]
            if len(buf) < HEADER_LEN:
                break
            length = (buf[4] << 8) | buf[5]
            if length < 13 or length > MAX_LENGTH:
                drops["bad_length"] += 1
                del buf[:4]
                continue
            if buf[6] > 1 or buf[7] not in (1, 2):
                drops["bad_header"] += 1
                del buf[:4]
                continue
            total = length + 6
            if len(buf) < total:
                # a new marker inside the pending frame that is followed by a plausible
                # header means the pending one was cut short; resynchronise there
                j = buf.find(MARKER, 4)
                if j > 0 and len(buf) >= j + HEADER_LEN and buf[j + 6] <= 1 and buf[j + 7] in (1, 2):
                    drops["truncated"] += 1
                    del buf[:j]
                    continue
                if len(buf) > self.max_buffer:
                    drops["overflow"] += 1
                    del buf[:4]
                    continue
                break
            raw = bytes(buf[:total])
            try:
                frame = decode_frame(raw)
            except FrameError as e:
                j = raw.find(MARKER, 4)
                if j > 0:
                    drops["truncated"] += 1
                    del buf[:j]
                else:
                    drops[e.reason] += 1
                    del buf[:total]
                continue
            del buf[:total]
            self.frames += 1
            out.append(frame)
        return out


# --------------------------------------------------------------------------- encoding


def _serial(s: str) -> bytes:
    b = s.encode("latin-1")[:10]
    return b.ljust(10, b"\x00")


def _transparent(adapter_serial: str, pdu: bytes) -> bytes:
    """Wrap a PDU (addr .. data, without CRC): adds padding, CRC and header."""
    crc = crc16_modbus(pdu)
    body = _serial(adapter_serial) + struct.pack(">Q", len(pdu) + 2) + pdu + bytes((crc & 0xFF, crc >> 8))
    return MARKER + struct.pack(">H", len(body) + 2) + b"\x01\x02" + body


def encode_heartbeat(adapter_serial: str, adapter_type: int) -> bytes:
    return MARKER + b"\x00\x0d\x01\x01" + _serial(adapter_serial) + bytes((adapter_type & 0xFF,))


def _check_u16(name: str, v: int) -> None:
    if not 0 <= v <= 0xFFFF:
        raise ValueError(f"{name} must be 0..65535 (got {v})")


def encode_read_request(device: int, function: int, base: int, count: int,
                        adapter_serial: str = DEFAULT_ADAPTER_SERIAL) -> bytes:
    if function not in READ_FUNCTIONS:
        raise ValueError(f"function must be 3, 4 or 0x16 (got {function})")
    if not 1 <= count <= MAX_REGISTERS:
        raise ValueError(f"count must be 1..{MAX_REGISTERS} (got {count})")
    _check_u16("base", base)
    return _transparent(adapter_serial, struct.pack(">BBHH", device & 0xFF, function, base, count))


def encode_write_request(device: int, register: int, value: int,
                         adapter_serial: str = DEFAULT_ADAPTER_SERIAL) -> bytes:
    _check_u16("register", register)
    _check_u16("value", value)
    return _transparent(adapter_serial, struct.pack(">BBHH", device & 0xFF, FC_WRITE_SINGLE, register, value))


def encode_read_response(adapter_serial: str, device: int, function: int, inverter_serial: str, base: int,
                         values: tuple[int, ...] | list[int]) -> bytes:
    pdu = (struct.pack(">BB", device, function) + _serial(inverter_serial)
           + struct.pack(f">HH{len(values)}H", base, len(values), *values))
    return _transparent(adapter_serial, pdu)


def encode_write_response(adapter_serial: str, device: int, inverter_serial: str, register: int, value: int) -> bytes:
    pdu = struct.pack(">BB", device, FC_WRITE_SINGLE) + _serial(inverter_serial) + struct.pack(">HH", register, value)
    return _transparent(adapter_serial, pdu)


def encode_error_response(adapter_serial: str, device: int, function: int, inverter_serial: str, register: int,
                          count: int) -> bytes:
    pdu = (struct.pack(">BB", device, function | 0x80) + _serial(inverter_serial)
           + struct.pack(">HH", register, count))
    return _transparent(adapter_serial, pdu)


def encode_null_response(adapter_serial: str, device: int = 0x32) -> bytes:
    """The unprompted all-zero reply seen from real dongles (fc 0, 62 zero registers)."""
    pdu = bytes((device, 0)) + bytes(10) + bytes(4 + 2 * 60)
    return _transparent(adapter_serial, pdu)


def encode(frame: Frame, adapter_serial: str = DEFAULT_ADAPTER_SERIAL) -> bytes:
    """Encode any frame object (round trip of :func:`decode_frame`)."""
    if isinstance(frame, Heartbeat):
        return encode_heartbeat(frame.adapter_serial, frame.adapter_type)
    if isinstance(frame, ReadRequest):
        return encode_read_request(frame.device, frame.function, frame.base, frame.count, frame.adapter_serial)
    if isinstance(frame, WriteRequest):
        return encode_write_request(frame.device, frame.register, frame.value, frame.adapter_serial)
    if isinstance(frame, ReadResponse):
        return encode_read_response(frame.adapter_serial, frame.device, frame.function, frame.inverter_serial,
                                    frame.base, frame.values)
    if isinstance(frame, WriteResponse):
        return encode_write_response(frame.adapter_serial, frame.device, frame.inverter_serial, frame.register,
                                     frame.value)
    if isinstance(frame, ErrorResponse):
        return encode_error_response(frame.adapter_serial, frame.device, frame.function, frame.inverter_serial,
                                     frame.register, frame.count)
    if isinstance(frame, NullResponse):
        return encode_null_response(frame.adapter_serial)
    raise TypeError(f"cannot encode {type(frame).__name__}")


def parse_capture_line(line: str) -> tuple[str, bytes] | None:
    """One line of a capture log -> (direction, bytes); None for comments/blank lines.

    Two formats occur: ``<timestamp> <rx|tx> <hex>`` and ``<rx|tx>: <hex>``.
    """
    parts = line.split()
    if not parts or parts[0].startswith("#"):
        return None
    if len(parts) == 3 and parts[1] in ("rx", "tx"):
        return parts[1], bytes.fromhex(parts[2])
    if len(parts) == 2 and parts[0] in ("rx:", "tx:"):
        return parts[0][:2], bytes.fromhex(parts[1])
    return None
