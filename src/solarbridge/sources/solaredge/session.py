"""The monitor's protocol logic without I/O: bytes in, actions out.

:class:`Monitor` is what semonitor does with each received message (decrypt, parse, answer as the
monitoring server or RS485 master, emit JSON objects); the transports only move bytes.
"""

from __future__ import annotations

import time
from collections import Counter
from typing import TYPE_CHECKING, Any

from . import functions as fn
from .devices import RecordError, render_post_data_bytes
from .framing import Frame, FrameError, StreamDecoder, decode, encode
from .messages import gmt_payload, parse_data

if TYPE_CHECKING:
    from .crypto import SessionCipher

UPDATE_SIZE = 0x80000
_POST_DATA = fn.POST_DATA


class Received:
    """One valid message (after decryption when it came wrapped in 0x003d)."""

    __slots__ = ("frame", "data", "encrypted")

    def __init__(self, frame: Frame, data: Any, encrypted: bool = False) -> None:
        self.frame, self.data, self.encrypted = frame, data, encrypted

    def __repr__(self) -> str:
        return f"Received(frame={self.frame!r}, data={self.data!r}, encrypted={self.encrypted!r})"


class Failed:
    """A valid frame whose payload could not be decoded (semonitor drops it, sends no reply)."""

    __slots__ = ("frame", "error")

    def __init__(self, frame: Frame, error: Exception) -> None:
        self.frame, self.error = frame, error

    def __repr__(self) -> str:
        return f"Failed(frame={self.frame!r}, error={self.error!r})"


class Output:
    """One JSON output line: the object, or (``Monitor(render=True)``) its JSON text already as ASCII ``raw`` bytes."""

    __slots__ = ("obj", "raw")

    def __init__(self, obj: dict[str, Any] | None, raw: bytes | None = None) -> None:
        self.obj, self.raw = obj, raw

    def __repr__(self) -> str:
        return f"Output(obj={self.obj!r}, raw={self.raw!r})"


class Send:
    """Bytes to write to the peer."""

    __slots__ = ("data", "frame")

    def __init__(self, data: bytes, frame: Frame) -> None:
        self.data, self.frame = data, frame

    def __repr__(self) -> str:
        return f"Send(data={self.data!r}, frame={self.frame!r})"


Action = Received | Failed | Output | Send


def local_tz_offset(now: float) -> int:
    return int(time.localtime(now).tm_gmtoff)


class Monitor:
    """semonitor's message handling.

    ``reply``: answer as the monitoring server / RS485 master (ACK 0x0500 and 0x0503, GMT for 0x0501).
    ``key``: 16-byte key for the legacy encryption (0x0503/0x003d); without it 0x003d messages are dropped.
    ``render``: give 0x0500 output as JSON text (fast path for semonitor) instead of objects.
    """

    def __init__(self, reply: bool = False, key: bytes | None = None, clock: Any = time.time,
                 collect_update: bool = False, render: bool = False, decoder: StreamDecoder | None = None,
                 cipher: SessionCipher | None = None) -> None:
        self.reply = reply
        self.key = key
        self.clock = clock
        self.collect_update = collect_update
        self.render = render
        self.decoder = StreamDecoder() if decoder is None else decoder
        self.cipher = cipher
        self.drops: Counter[str] = Counter()
        self.update: bytearray | None = bytearray(UPDATE_SIZE) if collect_update else None

    # ------------------------------------------------------------------ sending
    def frame_bytes(self, frame: Frame) -> bytes:
        """A frame as sent: wrapped in 0x003d when a session key is active (as semonitor does)."""
        raw = encode(frame)
        if self.cipher is None:
            return raw
        seq, payload = self.cipher.encrypt(raw)
        return encode(Frame(seq, fn.CRYPT_FROM_ADDR, fn.BROADCAST_ADDR, fn.ENCRYPTED, payload))

    def send(self, frame: Frame) -> Send:
        return Send(self.frame_bytes(frame), frame)

    # ------------------------------------------------------------------ receiving
    def receive(self, data: bytes) -> list[Action]:
        out: list[Action] = []
        for frame in self.decoder.feed(data):
            self.process(frame, out)
        return out

    def finish(self) -> list[Action]:
        self.decoder.flush()
        return []

    def _unwrap(self, frame: Frame) -> Frame | None:
        from .crypto import DecryptError

        if self.cipher is None:
            self.drops["encrypted_without_key"] += 1
            return None
        try:
            _, plain = self.cipher.decrypt(frame.payload)
            return decode(plain)
        except DecryptError:
            self.cipher = None  # as semonitor: a wrong key is forgotten until the next 0x0503
            self.drops["decrypt"] += 1
        except FrameError:
            self.drops["decrypt"] += 1
        return None

    def process(self, frame: Frame, out: list[Action]) -> None:
        function = frame.function
        if function == _POST_DATA and self.render and frame.payload and not self.reply:
            # semonitor -o on a recording: the bulk of the work, in short
            try:
                raw = render_post_data_bytes(frame.payload)
            except RecordError as e:
                self.drops["record"] += 1
                out.append(Failed(frame, e))
                return
            out.append(Received(frame, None))
            out.append(Output(None, raw))
            return
        encrypted = False
        if function == fn.KEY_EXCHANGE and self.key is not None:
            from .crypto import SessionCipher  # lazy: only encrypted links pay for `cryptography`

            try:
                self.cipher = SessionCipher(self.key, frame.payload)
            except ValueError:
                self.drops["key_exchange"] += 1
        elif function == fn.ENCRYPTED:
            inner = self._unwrap(frame)
            if inner is None:
                return
            frame, function, encrypted = inner, inner.function, True
        raw = None
        try:
            if function == fn.KEY_EXCHANGE:
                data: Any = {}
            elif self.render and function == fn.POST_DATA and frame.payload:
                data, raw = None, render_post_data_bytes(frame.payload)
            else:
                data = parse_data(function, frame.payload)
        except RecordError as e:
            self.drops["record"] += 1
            out.append(Failed(frame, e))
            return
        out.append(Received(frame, data, encrypted))
        if function == fn.POST_DATA and frame.payload:
            out.append(Output(data, raw))
        elif function == 0x0021 and self.update is not None and isinstance(data, dict):
            off, chunk = data["offset"], data["data"]
            if 0 <= off < UPDATE_SIZE:
                self.update[off:off + len(chunk)] = chunk[:UPDATE_SIZE - off]
        if self.reply:
            answer: Frame | None = None
            if function in (fn.POST_DATA, fn.KEY_EXCHANGE):
                answer = frame.reply(fn.ACK)
            elif function == fn.GET_GMT:
                now = self.clock()
                answer = frame.reply(fn.GMT_RESPONSE, gmt_payload(int(now), local_tz_offset(now)))
            if answer is not None:
                out.append(self.send(answer))
