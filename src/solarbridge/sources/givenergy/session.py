"""GivEnergy client session (sans-IO): what is outstanding, which reply matches, what has timed out.

The dongle fans every reply out to every connected client and forwards the cloud's traffic,
so a reply is matched by its shape, (function, device, base register, count) for reads and
(6, device, register) for writes, never by arrival order. Every read reply refreshes the
register cache (:class:`~.model.Plant`), asked for or not. Heartbeats are echoed.

The session never reads a clock: the driver passes ``now`` (monotonic seconds) with each call
and asks :meth:`Session.expire` which requests ran out of time. It never touches a socket
either: :meth:`Session.request` returns the bytes to send, :meth:`Session.receive` takes the
bytes that arrived, and :meth:`Session.data_to_send` hands over what the session itself must
send (heartbeat echoes).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from .controls import register_name
from .framing import (
    DEFAULT_ADAPTER_SERIAL,
    FC_WRITE_SINGLE,
    ErrorResponse,
    Framer,
    Heartbeat,
    LanConfig,
    NullResponse,
    ReadRequest,
    ReadResponse,
    WriteRequest,
    WriteResponse,
    encode_heartbeat,
    encode_read_request,
    encode_write_request,
)
from .model import Plant, is_garbage_block

#: (function, device, base, count) for reads, (6, device, register) for writes
RequestKey = tuple[int, ...]


@dataclass(frozen=True, slots=True)
class Answered:
    """The reply to an outstanding request arrived."""

    key: RequestKey
    reply: ReadResponse | WriteResponse


@dataclass(frozen=True, slots=True)
class Refused:
    """The inverter answered an outstanding request with an exception reply."""

    key: RequestKey
    message: str


Event = Answered | Refused


def _error_key(frame: ErrorResponse) -> RequestKey:
    if frame.function == FC_WRITE_SINGLE:
        return (FC_WRITE_SINGLE, frame.device, frame.register)
    return (frame.function, frame.device, frame.register, frame.count)


class Session:
    """Protocol state of one connection to a dongle.

    Counters in :attr:`stats`: ``requests``, ``timeouts``, ``unsolicited`` (a reply nobody here asked
    for, e.g. another client's), ``heartbeats``, ``error_replies``, ``garbage_blocks``,
    ``ignored_frames`` (null replies, LAN-config broadcasts), ``unexpected_frames`` (requests echoed
    by other clients); frames the framer threw away are in ``framer.drops``.
    """

    def __init__(self, plant: Plant | None = None, *, adapter_serial: str = DEFAULT_ADAPTER_SERIAL,
                 gap: float = 0.0) -> None:
        self.plant = plant if plant is not None else Plant()
        self.adapter_serial = adapter_serial
        #: minimum seconds between transmitted requests (dongles drop frames sent back to back)
        self.gap = gap
        self.framer = Framer()
        self.stats: Counter[str] = Counter()
        self.last_heartbeat: float | None = None
        self._outstanding: dict[RequestKey, float] = {}  # key -> deadline
        self._last_send: float | None = None
        self._outbox = bytearray()

    # ------------------------------------------------------------------ connection life

    def reset(self) -> list[RequestKey]:
        """A new connection: fresh framer, nothing outstanding. Returns what was abandoned."""
        abandoned = list(self._outstanding)
        self._outstanding.clear()
        self.framer = Framer()
        self._outbox.clear()
        return abandoned

    # ------------------------------------------------------------------ sending

    def send_delay(self, now: float) -> float:
        """Seconds to wait before the next request may go out (the request gap)."""
        if self._last_send is None:
            return 0.0
        return max(0.0, self._last_send + self.gap - now)

    def request(self, req: ReadRequest | WriteRequest, now: float, timeout: float) -> tuple[RequestKey, bytes]:
        """Register ``req`` as outstanding until ``now + timeout``; returns its key and its bytes.

        A request with the same key as one still outstanding replaces it: the dongle's reply
        cannot tell the two apart, so one answer serves both.
        """
        if isinstance(req, ReadRequest):
            data = encode_read_request(req.device, req.function, req.base, req.count, self.adapter_serial)
        else:
            data = encode_write_request(req.device, req.register, req.value, self.adapter_serial)
        key = req.key
        self._outstanding[key] = now + timeout
        self._last_send = now
        self.stats["requests"] += 1
        return key, data

    def outstanding(self) -> tuple[RequestKey, ...]:
        return tuple(self._outstanding)

    def deadline(self, key: RequestKey) -> float | None:
        return self._outstanding.get(key)

    def next_deadline(self) -> float | None:
        return min(self._outstanding.values(), default=None)

    def expire(self, now: float) -> list[RequestKey]:
        """Requests whose time ran out by ``now``: no longer outstanding, each counted in ``timeouts``."""
        gone = [k for k, d in self._outstanding.items() if d <= now]
        for k in gone:
            del self._outstanding[k]
            self.stats["timeouts"] += 1
        return gone

    def cancel(self, key: RequestKey) -> None:
        """Stop waiting for ``key`` (its reply, if it still comes, counts as unsolicited)."""
        self._outstanding.pop(key, None)

    def data_to_send(self) -> bytes:
        """Bytes the session must send on its own (heartbeat echoes); empties the outbox."""
        out = bytes(self._outbox)
        self._outbox.clear()
        return out

    # ------------------------------------------------------------------ receiving

    def receive(self, data: bytes, now: float) -> list[Event]:
        """Bytes from the dongle -> the events of the requests they answer."""
        events: list[Event] = []
        for frame in self.framer.feed(data):
            ev = self._on_frame(frame, now)
            if ev is not None:
                events.append(ev)
        return events

    def _match(self, key: RequestKey) -> bool:
        if key in self._outstanding:
            del self._outstanding[key]
            return True
        self.stats["unsolicited"] += 1
        return False

    def _on_frame(self, frame: object, now: float) -> Event | None:
        stats = self.stats
        if isinstance(frame, Heartbeat):
            self.last_heartbeat = now
            stats["heartbeats"] += 1
            self._outbox += encode_heartbeat(frame.adapter_serial, frame.adapter_type)
            return None
        if isinstance(frame, ReadResponse):
            if is_garbage_block(frame.values):
                stats["garbage_blocks"] += 1
                return None
            self.plant.apply(frame)
            return Answered(frame.key, frame) if self._match(frame.key) else None
        if isinstance(frame, WriteResponse):
            return Answered(frame.key, frame) if self._match(frame.key) else None
        if isinstance(frame, ErrorResponse):
            stats["error_replies"] += 1
            key = _error_key(frame)
            if key not in self._outstanding:
                return None
            del self._outstanding[key]
            if frame.function == FC_WRITE_SINGLE:
                return Refused(key, f"inverter refused the write of {register_name(frame.register)}")
            return Refused(key, f"inverter refused the read of registers {frame.register}-"
                                f"{frame.register + frame.count - 1}")
        if isinstance(frame, NullResponse | LanConfig):
            stats["ignored_frames"] += 1
            return None
        stats["unexpected_frames"] += 1  # requests echoed by other clients etc.
        return None
