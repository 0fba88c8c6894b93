"""Server-sent events of live readings: one encoder, many bounded client queues.

The bus calls :meth:`Broadcaster.on_reading` synchronously for every reading, so
it must never block: the reading is encoded to bytes once and appended to each
client's bounded deque (oldest dropped and counted when a client is too slow).
The broadcaster only listens to the bus while at least one client is connected.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
from collections import deque
from typing import Any

from starlette.responses import Response

from ..model import Reading

log = logging.getLogger("solarbridge.api")

#: bytes that end a client's stream
_CLOSE = b""


def json_safe(value: Any) -> Any:
    """Non-finite floats become None (JSON has no NaN/Infinity); everything else passes through."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def safe_metrics(metrics: dict[str, Any]) -> dict[str, Any]:
    return {k: json_safe(v) for k, v in metrics.items()}


def reading_payload(reading: Reading) -> dict[str, Any]:
    d: dict[str, Any] = {
        "device_id": reading.device_id,
        "device_type": reading.device_type,
        "timestamp": reading.timestamp.isoformat(),
        "source": reading.source,
        "online": reading.online,
        "metrics": safe_metrics(reading.metrics),
        **({"site": {k: reading.extra[k] for k in ("members", "stale", "load", "derived") if k in reading.extra}}
           if reading.device_type == "site" else {}),
    }
    return d


def _deep_safe(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): _deep_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_deep_safe(v) for v in value]
    return value


def encode_event(event: str, data: Any, event_id: int | None = None) -> bytes:
    """One SSE frame. JSON never contains a raw newline, so ``data:`` fits on one line."""
    try:
        text = json.dumps(data, separators=(",", ":"), default=str, allow_nan=False)
    except (ValueError, TypeError):
        # NaN/inf somewhere deeper, or keys JSON cannot take: the slow path cleans the whole tree
        text = json.dumps(_deep_safe(data), separators=(",", ":"), default=str)
    head = f"id: {event_id}\n" if event_id is not None else ""
    return f"{head}event: {event}\ndata: {text}\n\n".encode()


class Client:
    """One connected browser: a bounded deque of encoded frames plus a wake-up event."""

    __slots__ = ("frames", "event", "dropped", "closed", "device", "maxlen")

    def __init__(self, maxlen: int, device: str | None = None) -> None:
        self.frames: deque[bytes] = deque()
        self.event = asyncio.Event()
        self.dropped = 0
        self.closed = False
        self.device = device
        self.maxlen = maxlen

    def put(self, frame: bytes) -> None:
        if self.closed:
            return
        frames = self.frames
        if len(frames) >= self.maxlen:
            frames.popleft()
            self.dropped += 1
        frames.append(frame)
        self.event.set()

    def close(self) -> None:
        self.closed = True
        self.event.set()

    async def next_frames(self, timeout: float) -> list[bytes] | None:
        """Frames waiting for this client ([] on timeout, None once closed)."""
        if not self.frames and not self.closed:
            self.event.clear()
            try:
                await asyncio.wait_for(self.event.wait(), timeout)
            except TimeoutError:
                return []
        if self.frames:
            out = list(self.frames)
            self.frames.clear()
            return out
        return None if self.closed else []


class Broadcaster:
    """Fans every reading out to the connected SSE clients."""

    def __init__(self, bus: Any, *, client_queue: int = 1000) -> None:
        self.bus = bus
        self.clients: set[Client] = set()
        self.client_queue = client_queue
        self.sent = 0
        self.skipped = 0
        self.closed = False
        self._next_id = 0

    def add(self, device: str | None = None) -> Client:
        c = Client(self.client_queue, device)
        if self.closed:
            c.close()
            return c
        if not self.clients:
            self.bus.listeners.append(self.on_reading)
        self.clients.add(c)
        return c

    def remove(self, client: Client) -> None:
        client.close()
        self.clients.discard(client)
        if not self.clients:
            self._detach()

    def _detach(self) -> None:
        try:
            self.bus.listeners.remove(self.on_reading)
        except ValueError:
            pass

    def on_reading(self, reading: Reading) -> None:
        # called by Bus.publish for every reading: encode once, never await, never raise into the source
        self._next_id += 1
        try:
            frame = encode_event("reading", reading_payload(reading), self._next_id)
        except Exception as e:  # noqa: BLE001 - a reading the stream cannot carry is skipped, not fatal
            self.skipped += 1
            if self.skipped == 1:
                log.warning("event stream: skipped a reading of %s that cannot be encoded: %s",
                            reading.device_id, e)
            return
        dev = reading.device_id
        for c in self.clients:
            if c.device is None or c.device == dev:
                c.put(frame)
        self.sent += 1

    def close(self) -> None:
        """End every stream (server shutdown)."""
        self.closed = True
        for c in list(self.clients):
            c.close()
        self.clients.clear()
        self._detach()


class EventStreamResponse(Response):
    """An ASGI response that streams one client's frames and notices a disconnect at once.

    Starlette's StreamingResponse only notices a gone client on its next write; this
    one watches ``receive`` for ``http.disconnect`` so the client is dropped immediately.
    """

    media_type = "text/event-stream"

    def __init__(self, broadcaster: Broadcaster, client: Client, first: list[bytes],
                 keepalive: float = 15.0) -> None:
        self.status_code = 200
        self.background = None
        self.broadcaster = broadcaster
        self.client = client
        self.first = first
        self.keepalive = keepalive

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        client = self.client

        async def watch() -> None:
            while True:
                msg = await receive()
                if msg["type"] == "http.disconnect":
                    client.close()
                    return

        watcher = asyncio.create_task(watch())
        try:
            await send({"type": "http.response.start", "status": 200, "headers": [
                (b"content-type", b"text/event-stream; charset=utf-8"),
                (b"cache-control", b"no-cache"),
                (b"x-accel-buffering", b"no"),
            ]})
            await send({"type": "http.response.body", "body": b"retry: 2000\n\n" + b"".join(self.first),
                        "more_body": True})
            while True:
                frames = await client.next_frames(self.keepalive)
                if frames is None:
                    break
                body = b"".join(frames) if frames else b": keep-alive\n\n"
                await send({"type": "http.response.body", "body": body, "more_body": True})
            if not watcher.done():
                await send({"type": "http.response.body", "body": _CLOSE, "more_body": False})
        except OSError:
            pass  # client went away mid-write
        finally:
            watcher.cancel()
            self.broadcaster.remove(client)
