"""Fleet test helpers: a reader of a real broker's retained state (and of what is published meanwhile)."""

from __future__ import annotations

import threading
import time
from typing import Any

import paho.mqtt.client as mqtt


class Retained:
    """Connect, subscribe, collect messages for a while: with a fresh client that is the broker's retained state
    (plus whatever is published meanwhile, kept apart by the retain flag)."""

    def __init__(self, port: int, topics: tuple[str, ...] = ("#",), qos: int = 1) -> None:
        self.retained: dict[str, bytes] = {}
        #: newest payload per topic, retained or live (a live subscriber gets retain=False messages)
        self.latest: dict[str, bytes] = {}
        #: every (topic, payload) received, in order
        self.every: list[tuple[str, bytes]] = []
        self.live: list[tuple[str, bytes]] = []
        self._lock = threading.Lock()
        self._subscribed = threading.Event()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"fleet-reader-{time.monotonic_ns()}")
        self.client.on_connect = lambda c, u, f, rc, p: c.subscribe([(t, qos) for t in topics])
        self.client.on_subscribe = lambda *a: self._subscribed.set()
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        assert self._subscribed.wait(10), "could not subscribe"

    def _on_message(self, client: Any, userdata: Any, msg: Any) -> None:
        with self._lock:
            self.latest[msg.topic] = bytes(msg.payload)
            self.every.append((msg.topic, bytes(msg.payload)))
            if msg.retain:
                if msg.payload:
                    self.retained[msg.topic] = bytes(msg.payload)
                else:
                    self.retained.pop(msg.topic, None)
            else:
                self.live.append((msg.topic, bytes(msg.payload)))

    def snapshot(self) -> dict[str, bytes]:
        with self._lock:
            return dict(self.retained)

    def seen(self) -> dict[str, bytes]:
        with self._lock:
            return dict(self.latest)

    def live_on(self, suffix: str) -> list[tuple[str, bytes]]:
        with self._lock:
            return [(t, p) for t, p in self.live if t.endswith(suffix)]

    def publish(self, topic: str, payload: bytes | str) -> None:
        self.client.publish(topic, payload, qos=1).wait_for_publish(5)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def read_retained(port: int, topics: tuple[str, ...] = ("#",), settle: float = 1.0) -> dict[str, bytes]:
    """The broker's retained messages under ``topics`` as a fresh subscriber sees them.

    QoS 0: mosquitto queues at most 1000 QoS 1 messages per client (max_queued_messages), fewer than a fleet's
    retained discovery messages."""
    r = Retained(port, topics, qos=0)
    try:
        time.sleep(settle)
        return r.snapshot()
    finally:
        r.close()
