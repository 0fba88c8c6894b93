"""Graphite (Carbon) output: the daemon's ``graphite`` sink and the connection the se2graphite tools share.

Delivery without loss over a protocol without acknowledgements
---------------------------------------------------------------
Carbon never answers on its line (2003) or pickle (2004) ports, so a successful ``send()`` only
means the kernel took the bytes. If Carbon stops, what it had not read yet is gone, and the
first write after it closed the connection usually succeeds too. :class:`GraphiteClient` closes
that gap with three rules:

1. Before each write it checks whether Carbon closed the connection (Carbon never sends data,
   so a readable socket means EOF or reset) and reconnects first.
2. Everything written since the last *confirmation* is kept (the replay window). After a
   reconnect the whole window is sent again before new data. Graphite writes are idempotent
   (one value per path and timestamp), so a point sent twice is stored once.
3. A confirmation is a half-close: ``shutdown(SHUT_WR)`` and wait for Carbon to close its side.
   Carbon reads up to our end-of-stream before it closes, so everything sent has reached it.
   This happens when the window exceeds ``confirm_bytes`` or ``confirm_interval`` seconds, on
   ``flush()`` and at the end of a command, then the window is emptied and the next write
   reconnects.
4. Confirmed is not yet stored: Carbon writes its cache to whisper about once a second and a
   stopping Carbon drops what is still cached. So data confirmed in the last ``grace`` seconds
   (5 s) is kept as well and sent again after a connection failure, or on a planned reconnect
   that came late enough for Carbon to have restarted in between.

Spool policy (daemon sink), ``spool = "disk"`` (default): every batch is appended to a durable,
size-capped SQLite spool (:mod:`solarbridge.sinks.spool`, ``spool_max_mb``, oldest data dropped and
counted beyond the cap) before anything is sent; a sender task delivers it and removes entries only
after a confirmation covered them, so nothing is lost across a Carbon outage or a daemon restart
(points sent but not yet confirmed when the daemon stops are sent again at the next start).
``spool = "memory"``: no disk; a batch whose write fails goes back to the front of the runtime's
queue (``queue_size`` readings, oldest dropped and counted beyond that) and unconfirmed data stays in
the replay window; what is still undelivered when the daemon stops is lost and logged.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import select
import socket
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any, Literal

from pydantic import Field, field_validator

from ...model import Reading, slug
from ...plugin import Context, Sink, SinkConfig
from ...util.aiorun import cancel_and_wait
from ...util.backoff import Backoff
from ...util.timeparse import parse_duration
from .wire import Point, WireError, decode_text, encode_text, numeric, pickle_frames, render_template

DEFAULT_PORTS = {"text": 2003, "pickle": 2004}


class GraphiteClient:
    """A blocking TCP connection to Carbon with reconnect, replay and confirmation (see module doc).

    ``send`` takes whole protocol units (complete lines, complete pickle frames) so a replay
    never splits one. ``retry_for=None`` retries forever with backoff (the commands);
    ``retry_for=0`` tries once, plus one immediate reconnect if an old connection had died
    (the daemon sink, whose runtime does the backoff).
    """

    def __init__(self, host: str, port: int, *, timeout: float = 10.0, confirm_bytes: int = 1 << 20,
                 confirm_interval: float = 60.0, backoff: Backoff | None = None,
                 log: logging.Logger | None = None, sleep: Callable[[float], None] = time.sleep,
                 status: Callable[[str], None] | None = None, grace: float = 5.0) -> None:
        self.host = host
        self.port = port
        self.timeout = timeout
        self.confirm_bytes = confirm_bytes
        self.confirm_interval = confirm_interval
        self.backoff = backoff or Backoff(initial=0.2, cap=10.0)
        self.log = log or logging.getLogger("solarbridge.graphite")
        self.sleep = sleep
        self.status = status
        self.sock: socket.socket | None = None
        #: called after each successful confirmation (the disk spool removes what was confirmed)
        self.on_confirm: Callable[[], None] | None = None
        self._window: list[tuple[bytes, int]] = []
        self._window_bytes = 0
        self._window_since = 0.0
        self.grace = grace
        self._recent: deque[tuple[float, bytes]] = deque()
        self._recent_bytes = 0
        self._last_confirm = 0.0
        self._failing = False
        self._lost = False  # the last connection ended in a failure (not a planned confirm)
        # counters
        self.connects = 0
        self.reconnects = 0
        self.replayed_bytes = 0
        self.sent_points = 0
        self.confirmed_points = 0
        self.last_error = ""

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def unconfirmed(self) -> int:
        """Datapoints written but not yet confirmed (kept for replay)."""
        return sum(n for _, n in self._window)

    # ------------------------------------------------------------------ connection
    def _connect(self) -> None:
        sock = socket.create_connection((self.host, self.port), timeout=self.timeout)
        try:
            if sock.getsockname() == sock.getpeername():
                # TCP simultaneous open with itself: nothing listens on this (ephemeral) port
                raise ConnectionRefusedError(f"nothing listens on {self.address} (self-connected socket)")
        except OSError:
            sock.close()
            raise
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock = sock
        self.connects += 1
        if self._lost:
            self.reconnects += 1
            self._lost = False

    def _drop(self) -> None:
        if self.sock is not None:
            try:
                self.sock.close()
            except OSError:
                pass
            self.sock = None

    def _peer_closed(self) -> bool:
        """True if Carbon closed or reset the connection (it never sends data on these ports)."""
        assert self.sock is not None
        try:
            poller = select.poll()  # not select(): the daemon may hold more than 1024 descriptors
            poller.register(self.sock, select.POLLIN)
            if not poller.poll(0):
                return False
            return self.sock.recv(4096, socket.MSG_DONTWAIT) == b""
        except BlockingIOError:
            return False
        except OSError:
            return True

    def _say(self, msg: str) -> None:
        if self.status is not None:
            self.status(msg)
        else:
            self.log.warning(msg)

    def _note_failure(self, exc: BaseException) -> None:
        self.last_error = f"{type(exc).__name__}: {exc}"
        if not self._failing:
            self._failing = True
            self._say(f"carbon at {self.address}: {self.last_error}; reconnecting (nothing is dropped)")

    def _note_ok(self) -> None:
        if self._failing:
            self._failing = False
            self._say(f"carbon at {self.address}: connected again, {self.unconfirmed()} point(s) replayed")
        self.backoff.reset()

    def _attempts(self, retry_for: float | None) -> Callable[[BaseException], None]:
        """A function to call after each failure: sleeps with backoff, or raises when time is up."""
        deadline = None if retry_for is None else time.monotonic() + retry_for
        free = [True]  # one immediate retry when an established connection turns out dead

        def failed(exc: BaseException) -> None:
            self._lost = self._lost or self.connects > 0
            self._drop()
            self._note_failure(exc)
            if free[0] and self.connects and not isinstance(exc, ConnectionRefusedError):
                free[0] = False
                return
            if deadline is not None and time.monotonic() >= deadline:
                raise ConnectionError(f"carbon at {self.address} unreachable: {self.last_error}") from exc
            delay = self.backoff.next_delay()
            if deadline is not None:
                delay = min(delay, max(0.0, deadline - time.monotonic()))
            self.sleep(delay)

        return failed

    # ------------------------------------------------------------------ sending
    def _prune_recent(self, now: float) -> None:
        recent = self._recent
        while recent and (now - recent[0][0] > self.grace or self._recent_bytes > self.confirm_bytes):
            self._recent_bytes -= len(recent.popleft()[1])

    def _recent_to_replay(self) -> bytes:
        """Data Carbon confirmed in the last ``grace`` seconds, when a Carbon restart may have lost it.

        Carbon's writer persists its cache about once a second and a stopping Carbon drops what is
        still cached, so a confirmation alone does not mean "stored". After a failure, or when a
        planned reconnect comes late enough for Carbon to have restarted in between, the recent data
        is sent again (harmless duplicates). Back-to-back reconnects at high rates skip it.
        """
        now = time.monotonic()
        self._prune_recent(now)
        if not self._recent or not (self._lost or now - self._last_confirm >= 0.3):
            return b""
        return b"".join(chunk for _, chunk in self._recent)

    def confirm_due(self) -> bool:
        """True when the unconfirmed window is big or old enough to be confirmed now."""
        return bool(self._window) and (self._window_bytes >= self.confirm_bytes
                                       or time.monotonic() - self._window_since >= self.confirm_interval)

    def send(self, data: bytes, points: int = 0, *, retry_for: float | None = None,
             auto_confirm: bool = True) -> None:
        """Deliver ``data`` (whole lines or frames). Raises ConnectionError once ``retry_for`` has passed;
        the data is then not kept, the caller still owns it."""
        if not data:
            return
        if not self._window:
            self._window_since = time.monotonic()
        self._window.append((data, points))
        self._window_bytes += len(data)
        failed = self._attempts(retry_for)
        while True:
            try:
                if self.sock is not None and self._peer_closed():
                    raise ConnectionResetError("connection closed by carbon")
                if self.sock is None:
                    recent = self._recent_to_replay()
                    self._connect()
                    replay = recent + b"".join(d for d, _ in self._window)
                    self.replayed_bytes += len(replay) - len(data)
                    self.sock.sendall(replay)  # type: ignore[union-attr]
                else:
                    self.sock.sendall(data)
                break
            except OSError as e:
                try:
                    failed(e)
                except ConnectionError:
                    self._window.pop()
                    self._window_bytes -= len(data)
                    raise
        self.sent_points += points
        self._note_ok()
        if auto_confirm and self.confirm_due():
            self.confirm(retry_for=retry_for)

    def confirm(self, *, retry_for: float | None = None) -> None:
        """Make sure Carbon has read everything sent so far (half-close, wait for its close).

        On failure the window is replayed on a new connection and confirmed again.
        Raises ConnectionError once ``retry_for`` has passed (the window is kept).
        """
        if not self._window:
            self._drop()
            return
        failed = self._attempts(retry_for)
        while True:
            try:
                if self.sock is None:
                    recent = self._recent_to_replay()
                    self._connect()
                    replay = recent + b"".join(d for d, _ in self._window)
                    self.replayed_bytes += len(replay)
                    self.sock.sendall(replay)  # type: ignore[union-attr]
                elif self._peer_closed():
                    # Carbon closed first: what we sent after that may be lost, so replay it
                    raise ConnectionResetError("connection closed by carbon")
                sock = self.sock
                assert sock is not None
                sock.shutdown(socket.SHUT_WR)
                # wait for Carbon's end-of-stream; bounded even if a peer keeps talking (not Carbon)
                until = time.monotonic() + self.timeout
                while True:
                    left = until - time.monotonic()
                    if left <= 0:
                        raise TimeoutError(f"no end-of-stream from {self.address} within {self.timeout}s")
                    sock.settimeout(left)
                    if not sock.recv(4096):
                        break
                break
            except OSError as e:
                failed(e)
        self._drop()
        self.confirmed_points += self.unconfirmed()
        now = time.monotonic()
        self._last_confirm = now
        if self.grace > 0:
            for chunk, _n in self._window:
                self._recent.append((now, chunk))
                self._recent_bytes += len(chunk)
            self._prune_recent(now)
        self._window.clear()
        self._window_bytes = 0
        self._note_ok()
        if self.on_confirm is not None:
            self.on_confirm()

    def close(self, *, confirm: bool = True, retry_for: float | None = 0) -> None:
        """Confirm delivery (unless ``confirm=False``) and close; never raises."""
        try:
            if confirm:
                self.confirm(retry_for=retry_for)
        except ConnectionError as e:
            self._say(f"carbon at {self.address}: {self.unconfirmed()} point(s) not confirmed yet "
                      f"(kept for the next connection): {e}")
        finally:
            self._drop()


# ----------------------------------------------------------------------------- daemon sink


class GraphiteConfig(SinkConfig):
    host: str = Field("127.0.0.1", min_length=1, description="Carbon host")
    port: int | None = Field(None, ge=1, le=65535, description="Carbon port (default 2003 text, 2004 pickle)")
    protocol: Literal["text", "pickle"] = Field("text", description="plaintext lines or pickle batches")
    prefix: str = Field("solarbridge", description="first path component(s), {prefix} in the template")
    template: str = Field("{prefix}.{device_type}.{device_id}.{metric}",
                          description="metric path; placeholders {prefix} {source} {device_type} {device_id} {metric}")
    timeout: float = Field(10.0, gt=0, le=300, description="connect and confirm timeout, seconds")
    confirm_interval: str | float = Field("60s", description="confirm delivery at least this often")
    confirm_bytes: int = Field(1 << 20, ge=1024, le=1 << 30, description="confirm after this many bytes")
    spool: Literal["disk", "memory"] = Field("disk", description="where undelivered data waits (see module doc)")
    spool_dir: str = Field("", description="default: <state_dir>/spool")
    spool_max_mb: float = Field(256.0, gt=0, le=1_000_000, description="spool size cap; oldest data dropped beyond")

    @field_validator("template")
    @classmethod
    def _check_template(cls, v: str) -> str:
        try:
            path = render_template(v, _SAMPLE_FIELDS)
        except WireError as e:
            raise ValueError(str(e)) from None
        if "{metric}" not in v:
            raise ValueError("template must contain {metric}")
        if not path:
            raise ValueError("template renders an empty path")
        return v

    @field_validator("confirm_interval")
    @classmethod
    def _check_interval(cls, v: str | float) -> str | float:
        try:
            seconds = parse_duration(v)
        except ValueError as e:
            raise ValueError(str(e)) from None
        if not 0.1 <= seconds <= 86400:
            raise ValueError("confirm_interval must be between 0.1s and 1d")
        return v


_SAMPLE_FIELDS = {"prefix": "p", "source": "s", "device_type": "t", "device_id": "i", "metric": "m"}


def reading_points(readings: Sequence[Reading], template: str, prefix: str,
                   cache: dict[tuple[str, str, str, str], str] | None = None) -> list[Point]:
    """Numeric metrics of ``readings`` as Graphite points (booleans as 1/0, strings skipped)."""
    out: list[Point] = []
    paths = cache if cache is not None else {}
    for r in readings:
        if not r.metrics:
            continue
        ts = float(int(r.timestamp.timestamp()))
        for metric, value in r.metrics.items():
            v = numeric(value)
            if v is None:
                continue
            key = (r.source, r.device_type, r.device_id, metric)
            path = paths.get(key)
            if path is None:
                if len(paths) > 200_000:
                    paths.clear()
                path = paths[key] = render_template(template, {
                    "prefix": prefix, "source": r.source, "device_type": r.device_type,
                    "device_id": r.device_id, "metric": metric})
            out.append((path, ts, v))
    return out


class GraphiteSink(Sink):
    """Any source's readings to Carbon, plaintext or pickle, delivered without loss (see module doc)."""

    Config = GraphiteConfig

    def __init__(self, config: GraphiteConfig, ctx: Context) -> None:
        super().__init__(config, ctx)
        self.confirm_every = parse_duration(config.confirm_interval)
        self.client = GraphiteClient(config.host, config.port or DEFAULT_PORTS[config.protocol],
                                     timeout=config.timeout, confirm_bytes=config.confirm_bytes,
                                     confirm_interval=self.confirm_every, log=ctx.log)
        self._paths: dict[tuple[str, str, str, str], str] = {}
        # disk spool mode
        spool_dir = config.spool_dir or str(ctx.state_dir / "spool")
        self.spool_path = f"{spool_dir}/{slug(ctx.name or 'graphite') or 'graphite'}.graphite.sqlite"
        self.spool: Any = None
        self._sender: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._stopping = asyncio.Event()
        self._deliver_lock = threading.Lock()
        self._unacked: list[Any] = []  # spool entries sent, waiting for a confirmation
        self._sent_upto = 0  # highest spool entry id handed to the client

    # ------------------------------------------------------------------ encoding
    def points(self, batch: Sequence[Reading]) -> list[Point]:
        return reading_points(batch, self.config.template, self.config.prefix, self._paths)

    def encode(self, batch: Sequence[Reading]) -> list[tuple[bytes, int]]:
        """Protocol-native chunks (one text block, or pickle frames) with their point counts."""
        return self._native(self.points(batch))

    def _native(self, points: list[Point]) -> list[tuple[bytes, int]]:
        if not points:
            return []
        if self.config.protocol == "text":
            return [(encode_text(points), len(points))]
        return pickle_frames(points)

    # ------------------------------------------------------------------ lifecycle
    async def start(self) -> None:
        if self.config.spool == "disk":
            self._open_spool()
            if self._sender is None or self._sender.done():
                self._stopping.clear()
                self._sender = asyncio.create_task(self._send_loop(), name=f"graphite-sender:{self.ctx.name}")
        self._gauges()

    async def write(self, batch: list[Reading]) -> None:
        if self.config.spool == "disk":
            pts = self.points(batch)
            if pts:
                spool = self._open_spool()
                dropped = spool.dropped_points
                # the spool stores plaintext lines whatever the protocol: readable and protocol-neutral
                spool.put(encode_text(pts), len(pts))
                if spool.dropped_points != dropped:
                    self.ctx.health.count("dropped_points", spool.dropped_points - dropped)
                self._wake.set()
                self._gauges()
            return
        chunks = self.encode(batch)
        if not chunks:
            return
        before = self.client.reconnects
        try:
            await asyncio.to_thread(self._send_chunks, chunks)
        finally:
            if self.client.reconnects > before:
                self.ctx.health.count("reconnects", self.client.reconnects - before)
            self._gauges()
        self.ctx.health.count("points", sum(n for _, n in chunks))

    def _send_chunks(self, chunks: list[tuple[bytes, int]]) -> None:
        for data, n in chunks:
            self.client.send(data, n, retry_for=0)

    async def flush(self) -> None:
        if self.config.spool == "disk":
            if self.spool is None:
                return
            try:
                await asyncio.to_thread(self._deliver_spooled, True)
            except ConnectionError as e:
                self.ctx.log.warning("graphite %s: %s; %d point(s) stay in the spool %s for the next start",
                                     self.ctx.name, e, self.spool.points, self.spool_path)
            self._gauges()
            return
        try:
            await asyncio.to_thread(self.client.confirm, retry_for=self.config.timeout)
        except ConnectionError as e:
            raise ConnectionError(f"{e}; {self.client.unconfirmed()} point(s) not confirmed") from None
        self._gauges()

    async def deliver(self) -> None:
        """End of a finite run: send until carbon has confirmed everything (the caller bounds the wait)."""
        if self.config.spool != "disk":
            await self.flush()
            return
        backoff = Backoff(initial=0.2, cap=2.0)
        while self.spool is not None and self.spool.points:
            try:
                await asyncio.to_thread(self._deliver_spooled, True)
            except ConnectionError as e:
                self.ctx.health.last_error = str(e)
                await asyncio.sleep(backoff.next_delay())
            self._gauges()

    def undelivered(self) -> str:
        n = self.pending()
        if not n:
            return ""
        where = f"carbon {self.config.host}:{self.client.port}"
        why = f" (last error: {self.ctx.health.last_error})" if self.ctx.health.last_error else ""
        kept = f"; they stay in the spool {self.spool_path}" if self.config.spool == "disk" else ""
        return f"{n} point(s) not confirmed by {where}{kept}{why}"

    async def stop(self) -> None:
        if self._sender is not None:
            # the flag ends the loop even if a cancellation is lost (Python 3.11's wait_for can swallow one
            # that arrives as its timeout fires); the wait is bounded either way
            self._stopping.set()
            self._wake.set()
            await cancel_and_wait([self._sender], max(1.0, self.config.timeout))
            self._sender = None
        if self.config.spool == "disk":
            # unconfirmed entries stay in the spool and are sent again at the next start
            with self._deliver_lock:
                self.client.close(confirm=False)
                self._unacked = []
                self._sent_upto = 0
            if self.spool is not None:
                self._gauges()
                self.spool.close()
                self.spool = None
            return
        # after a failed write the socket is already gone: keep the window for the restart, no noise
        await asyncio.to_thread(self.client.close, confirm=self.client.sock is not None, retry_for=0)

    def pending(self) -> int:
        if self.config.spool == "disk":
            return self.spool.points if self.spool is not None else 0
        return self.client.unconfirmed()

    # ------------------------------------------------------------------ disk spool delivery
    def _open_spool(self) -> Any:
        if self.spool is None:
            from ..spool import Spool

            self.spool = Spool(self.spool_path, max_bytes=int(self.config.spool_max_mb * 1024 * 1024),
                               log=self.ctx.log)
            self.client.on_confirm = self._confirmed
            if self.spool.points:
                self.ctx.log.info("spool %s holds %d point(s) from before; sending them first",
                                  self.spool_path, self.spool.points)
        return self.spool

    def _confirmed(self) -> None:
        """Carbon has read everything sent: remove those entries from the spool."""
        if self._unacked and self.spool is not None:
            self.spool.ack(self._unacked)
            self.ctx.health.count("points", sum(e.points for e in self._unacked))
            self._unacked = []

    def _deliver_spooled(self, confirm: bool = False) -> None:
        """Send every spooled entry not sent yet; confirm when due (or when ``confirm``). Raises ConnectionError."""
        with self._deliver_lock:
            spool = self.spool
            if spool is None:
                return
            before = self.client.reconnects
            try:
                while True:
                    unacked_points = sum(e.points for e in self._unacked)
                    fresh = [e for e in spool.peek(unacked_points + 5000) if e.id > self._sent_upto]
                    if not fresh:
                        break
                    for entry in fresh:
                        chunks = ([(entry.body, entry.points)] if self.config.protocol == "text"
                                  else self._native(decode_text(entry.body, final=True).points))
                        self._unacked.append(entry)
                        try:
                            for data, n in chunks:
                                self.client.send(data, n, retry_for=0, auto_confirm=False)
                        except ConnectionError:
                            self._unacked.remove(entry)
                            raise
                        self._sent_upto = entry.id
                        if self.client.confirm_due():
                            self.client.confirm(retry_for=0)
                if self._unacked and (confirm or self.client.confirm_due()):
                    self.client.confirm(retry_for=self.config.timeout if confirm else 0)
            finally:
                if self.client.reconnects > before:
                    self.ctx.health.count("reconnects", self.client.reconnects - before)

    async def _send_loop(self) -> None:
        backoff = Backoff(initial=0.2, cap=30.0)
        while not self._stopping.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=min(self.confirm_every, 5.0))
            self._wake.clear()
            if self._stopping.is_set():
                break
            try:
                await asyncio.to_thread(self._deliver_spooled)
                backoff.reset()
            except ConnectionError:
                await self._pause(backoff.next_delay())
                self._wake.set()
            except Exception as e:  # noqa: BLE001 - keep delivering; the spool keeps the data
                self.ctx.log.error("graphite %s: delivery failed: %s", self.ctx.name, e)
                await self._pause(backoff.next_delay())
                self._wake.set()
            self._gauges()

    async def _pause(self, seconds: float) -> None:
        """Sleep for a retry delay, but wake at once when the sink stops."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), seconds)

    def _gauges(self) -> None:
        g = self.ctx.health.gauges
        g["unconfirmed_points"] = float(self.client.unconfirmed())
        if self.spool is not None:
            g["spool_depth_points"] = self.spool.points
            g["spool_bytes"] = self.spool.bytes
            g["dropped_points"] = self.spool.dropped_points
