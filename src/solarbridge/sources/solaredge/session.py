"""The monitor's protocol logic without I/O: bytes in, actions out.

:class:`Monitor` is what semonitor does with each received message (decrypt, parse, answer as the
monitoring server or RS485 master, emit JSON objects); the transports only move bytes.
"""

from __future__ import annotations

import time
from collections import Counter

from . import functions as fn
from .framing import Frame, FrameError, StreamDecoder, decode, encode
from .messages import gmt_payload, parse_data
from .records import RecordError
from .render import render_post_data_bytes

TYPE_CHECKING = False  # (not typing's: semonitor starts without importing typing)
if TYPE_CHECKING:
    from typing import Any

    from .crypto import SessionCipher

UPDATE_SIZE = 0x80000
_POST_DATA = fn.POST_DATA
_ENCRYPTED = fn.ENCRYPTED


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

    def render_lines(self, data: bytes) -> tuple[list[bytes], int, list[tuple[int, Failed]]]:
        """``semonitor -o`` on a recording, in short: the JSON lines of the 0x0500 posts in ``data``.

        For a monitor that renders and neither replies nor decrypts nor collects updates (what
        :meth:`receive` would do, without an action object per frame). Returns the lines, the
        number of valid frames, and each post that failed to decode with the number of lines
        before it.
        """
        lines: list[bytes] = []
        append = lines.append
        render = render_post_data_bytes
        failed: list[tuple[int, Failed]] = []
        frames = self.decoder.feed(data)
        for frame in frames:
            function, payload = frame[3:]
            if function == _POST_DATA:
                if payload:
                    try:
                        append(render(payload))
                    except RecordError as e:
                        self.drops["record"] += 1
                        failed.append((len(lines), Failed(frame, e)))
            elif function == _ENCRYPTED:
                self.drops["encrypted_without_key"] += 1
        return lines, len(frames), failed

    @property
    def plain_render(self) -> bool:
        """True when :meth:`render_lines` does all that :meth:`receive` would."""
        return self.render and not self.reply and self.key is None and self.cipher is None and self.update is None

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


# ---------------------------------------------------------------------------------------------
# the master side of RS485: who may speak next, which answer belongs to which command
#
# Both exchanges are driven by the caller: ``poll(now)`` when ``wake_at`` has come (and at the
# start), ``received(frame, now)`` for each frame received; each returns the frames to send now.
# Time is the caller's monotonic clock, so the logic runs the same under a blocking reader
# (``semonitor``), asyncio (the daemon's source) or a test.


class MasterPoll:
    """RS485 master: grant each slave the bus in turn, wait for its grant ACK, pause, repeat.

    A slave that does not ACK within ``grant_timeout`` seconds is passed over (counted in
    :attr:`timeouts`, the last one in :attr:`timed_out`). ``next_seq`` numbers the grants.
    """

    __slots__ = ("slaves", "grant_timeout", "pause", "next_seq", "wake_at", "waiting_for", "_index",
                 "timeouts", "timed_out")

    def __init__(self, slaves: list[int], *, grant_timeout: float, pause: float,
                 next_seq: Any) -> None:
        if not slaves:
            raise ValueError("master mode needs at least one slave")
        self.slaves = list(slaves)
        self.grant_timeout = grant_timeout
        self.pause = pause
        self.next_seq = next_seq
        self.wake_at = 0.0
        #: the slave holding the bus (None: pausing between rounds)
        self.waiting_for: int | None = None
        self._index = -1
        self.timeouts = 0
        self.timed_out: int | None = None

    def poll(self, now: float) -> list[Frame]:
        if now < self.wake_at:
            return []
        if self.waiting_for is not None:
            self.timeouts += 1
            self.timed_out = self.waiting_for
        return self._next(now)

    def received(self, rec: Received, now: float) -> list[Frame]:
        frame = rec.frame
        if frame.function == fn.MASTER_GRANT_ACK and frame.src == self.waiting_for:
            return self._next(now)
        return []

    def _next(self, now: float) -> list[Frame]:
        self._index += 1
        if self._index == len(self.slaves):
            self._index = -1
            self.waiting_for = None
            self.wake_at = now + self.pause
            if self.pause > 0:
                return []
            self._index = 0
        slave = self.slaves[self._index]
        self.waiting_for = slave
        self.wake_at = now + self.grant_timeout
        return [Frame(self.next_seq(), fn.MASTER_ADDR, slave, fn.MASTER_GRANT)]


class CommandRun:
    """``semonitor -c``: send each command to one slave, match its answer, give up after a timeout.

    The answer to a command is the first frame from the slave with the command's sequence number
    that is not telemetry. With ``grant`` (RS485 master) each command is followed by a bus grant.
    Commands are ``delay`` seconds apart. :attr:`results` holds ``(command, seq, answer or None)``
    for each finished command; :attr:`done` says all are.
    """

    __slots__ = ("slave", "commands", "grant", "delay", "timeout", "next_seq", "wake_at", "results", "_seq",
                 "_next")

    def __init__(self, slave: int, commands: list[Any], *, grant: bool, delay: float, timeout: float,
                 next_seq: Any) -> None:
        self.slave = slave
        self.commands = list(commands)
        self.grant = grant
        self.delay = delay
        self.timeout = timeout
        self.next_seq = next_seq
        self.wake_at = 0.0
        self.results: list[tuple[Any, int, Received | None]] = []
        self._seq: int | None = None  # the command waiting for its answer
        self._next = 0

    @property
    def done(self) -> bool:
        return len(self.results) == len(self.commands)

    def poll(self, now: float) -> list[Frame]:
        if self.done or now < self.wake_at:
            return []
        if self._seq is not None:  # no answer in time
            self._finish(None, now)
            if self.done:
                return []
            if now < self.wake_at:
                return []
        cmd = self.commands[self._next]
        self._next += 1
        self._seq = seq = self.next_seq()
        self.wake_at = now + self.timeout
        out = [Frame(seq, fn.MASTER_ADDR, self.slave, cmd.function, cmd.payload)]
        if self.grant:
            out.append(Frame(self.next_seq(), fn.MASTER_ADDR, self.slave, fn.MASTER_GRANT))
        return out

    def received(self, rec: Received, now: float) -> list[Frame]:
        fr = rec.frame
        if self._seq is not None and fr.src == self.slave and fr.seq == self._seq and fr.function != fn.POST_DATA:
            self._finish(rec, now)
            return self.poll(now)
        return []

    def _finish(self, answer: Received | None, now: float) -> None:
        assert self._seq is not None
        self.results.append((self.commands[len(self.results)], self._seq, answer))
        self._seq = None
        self.wake_at = now + self.delay
