"""MQTT sink (``mqtt``): device state, availability, Home Assistant discovery and controls.

Topics (``base_topic`` default ``solarbridge``)::

    <base>/status                         online / offline (retained; last will = offline)
    <base>/<device>/availability          online / offline (retained; offline when the source lost comms)
    <base>/<device>/state                 JSON of all current metrics + timestamp
    <base>/<device>/<metric>              one plain value per metric
    <base>/<device>/<control>/set         commands (Home Assistant command_topic)
    <base>/<device>/error                 why a command was rejected (JSON)
    <prefix>/<component>/<node>/<object>/config   discovery (retained)

The newest payload per topic is kept in memory; states are published when they
change and again every ``heartbeat`` seconds. While the broker is away nothing
queues up: on reconnect (and when Home Assistant's birth message arrives) the
sink publishes discovery, availability and the newest state per topic again.

The paho-mqtt client runs on the event loop itself (its socket is watched with
``add_reader``/``add_writer``; no network thread), reconnecting with capped
exponential backoff (``reconnect_max``, default 4 s, so everything is back within
about 5 s of the broker's return however long it was away) with jitter of up to
half the delay, so a fleet of clients does not reconnect in lockstep; only the
blocking TCP/TLS connect runs in an executor.

Delivery: there is no spool, so the sink has taken a reading only once the broker
has it. :meth:`MqttSink.flush` (shutdown, end of a file run) connects first if
need be, sends the newest payload of every topic, and waits for the broker to
acknowledge a QoS 1 message sent after them on the same connection.

Devices the sink has published are remembered in the state dir
(``mqtt-<name>.devices.json``); at the next start each is marked offline
(retained) until its source reports it again, so a restart while a device is
unreachable does not leave the last run's "online" on the broker.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import Field, field_validator

from ...config import Secret
from ...model import ControlError, ControlRequest, ControlSpec, DeviceInfo, MetricValue, Reading
from ...plugin import Context, Sink, SinkConfig
from ...util.backoff import Backoff
from . import discovery as ha
from . import layouts

_UNACKED_HIGH = 10_000
_UNACKED_LOW = 2_000


class MqttConfig(SinkConfig):
    type: Literal["mqtt"] = "mqtt"
    url: str = Field("mqtt://127.0.0.1:1883", description="mqtt://host[:1883] or mqtts://host[:8883]")
    username: str = ""
    password: Secret | None = None
    client_id: str = Field("", description="default: solarbridge-<name>-<random>")
    base_topic: str = "solarbridge"
    discovery: bool = Field(True, description="publish Home Assistant discovery")
    discovery_prefix: str = "homeassistant"
    ha_status_topic: str = Field("", description="HA birth topic; default <discovery_prefix>/status")
    retain_state: bool = True
    per_metric_topics: bool = True
    qos: int = Field(0, ge=0, le=2, description="QoS of state messages")
    heartbeat: float = Field(60.0, ge=0, le=86400, description="re-publish unchanged state every N s (0: never)")
    expire_after: int = Field(0, ge=0, le=86400, description="HA expire_after for sensors (0: none)")
    layout: Literal["solarbridge", "givtcp", "sunsniff"] = "solarbridge"
    givtcp_root: str = Field("GivEnergy", description="root of the GivTCP topic tree (layout givtcp)")
    keepalive: int = Field(30, ge=5, le=3600)
    reconnect_min: float = Field(0.5, gt=0, le=60, description="first reconnect delay (s)")
    reconnect_max: float = Field(4.0, gt=0, le=3600,
                                 description="longest reconnect delay (s); jitter spreads clients below it")
    ca_file: str = ""
    cert_file: str = ""
    key_file: str = ""
    tls_insecure: bool = False

    @field_validator("url")
    @classmethod
    def _url(cls, v: str) -> str:
        u = urlsplit(v)
        if u.scheme not in ("mqtt", "mqtts", "tcp", "ssl") or not u.hostname:
            raise ValueError(f"url must look like mqtt://host:1883 or mqtts://host:8883 (got {v!r})")
        try:
            u.port  # noqa: B018 - validates the port
        except ValueError:
            raise ValueError(f"url has an invalid port (got {v!r})") from None
        return v

    @field_validator("base_topic", "discovery_prefix", "givtcp_root")
    @classmethod
    def _topic(cls, v: str) -> str:
        if not v or any(c in v for c in "+#\x00") or v.startswith("/") or v.endswith("/"):
            raise ValueError(f"must be a topic without wildcards or leading/trailing '/' (got {v!r})")
        return v


@dataclass
class _Device:
    device_id: str
    topics: ha.Topics
    info: DeviceInfo
    latest: dict[str, MetricValue] = field(default_factory=dict)
    timestamp: str = ""
    online: bool | None = None
    discovered: set[str] = field(default_factory=set)
    discovered_controls: tuple[ControlSpec, ...] = ()
    controls: dict[str, ControlSpec] = field(default_factory=dict)
    givtcp_serial: str = ""


class MqttSink(Sink):
    Config = MqttConfig

    def __init__(self, config: MqttConfig, ctx: Context) -> None:
        super().__init__(config, ctx)
        c = config
        #: one worker of a fleet (docs/fleet.md): its own LWT topic, so that one worker's death marks only
        #: its own devices unavailable, and commands for other workers' devices are left to them
        self.shard = getattr(getattr(ctx.runtime, "config", None), "shard", None)
        self.status_topic = f"{c.base_topic}/status" + (f"/{self.shard.index}" if self.shard else "")
        self.discovery = ha.Discovery(c.base_topic, c.discovery_prefix, c.expire_after, self.status_topic)
        self.ha_status_topic = c.ha_status_topic or f"{c.discovery_prefix}/status"
        self.devices: dict[str, _Device] = {}
        self._by_topic_id: dict[str, str] = {}
        self._by_givtcp_serial: dict[str, str] = {}
        #: newest retained/stateful payload per topic: discovery first, then availability/state
        self._disc_cache: dict[str, bytes] = {}
        self._state_cache: dict[str, tuple[bytes, bool, int]] = {}
        self._client: Any = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.connected = False
        self._ever_connected = False
        self._last_conn_error = ""
        self._heartbeat_task: asyncio.Task[None] | None = None
        self._conn_task: asyncio.Task[None] | None = None
        self._loop_thread = 0
        self._sock: Any = None
        self._gone = asyncio.Event()
        self._stopping = False
        #: QoS>0 messages sent but not yet acknowledged, oldest first (bounded by back-pressure in write());
        #: checked lazily because an on_publish callback costs more than the publish itself
        self._unacked: deque[Any] = deque()
        self._tasks: set[asyncio.Task[Any]] = set()
        self.published = 0
        self.connections = 0
        #: delivery accounting: cache changes made, handed to a live connection, confirmed by the broker
        self._changes = 0
        self._sent_upto = 0
        self._confirmed = 0
        self._up = asyncio.Event()
        self._known: dict[str, str] = {}
        #: sharded: devices of the last run to mark offline once, at the first connection
        self._offline_once: dict[str, str] = {}
        self._known_file: Path | None = None

    # ------------------------------------------------------------------ connection
    async def start(self) -> None:
        if self._client is not None:
            return
        import paho.mqtt.client as mqtt

        c = self.config
        self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        client_id = self.client_id()
        # clean session: the broker keeps no session for us, so a restarted or rescheduled worker is not
        # handed commands queued while it was away, and a broker cluster replicates no per-worker state
        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=True)
        if c.username:
            client.username_pw_set(c.username, c.password.get_secret_value() if c.password else None)
        if self._tls:
            client.tls_set(ca_certs=c.ca_file or None, certfile=c.cert_file or None, keyfile=c.key_file or None)
            if c.tls_insecure:
                client.tls_insecure_set(True)
        client.will_set(self.status_topic, "offline", qos=1, retain=True)
        # no paho-side window (its queue handling is O(n) per ack): write() bounds what is unacknowledged
        client.max_inflight_messages_set(0)
        client.on_connect = self._cb_connect
        client.on_disconnect = self._cb_disconnect
        client.on_message = self._cb_message
        # paho runs on this event loop (no network thread): the loop watches its socket
        client.on_socket_open = lambda cl, ud, sock: self._in_loop(self._sock_open, sock)
        client.on_socket_close = lambda cl, ud, sock: self._in_loop(self._sock_close, sock)
        client.on_socket_register_write = lambda cl, ud, sock: self._in_loop(self._sock_want_write, sock, True)
        client.on_socket_unregister_write = lambda cl, ud, sock: self._in_loop(self._sock_want_write, sock, False)
        self._client = client
        self._stopping = False
        self._mark_known_offline()
        self._conn_task = asyncio.create_task(self._connection_loop(), name=f"mqtt-connection:{self.ctx.name}")
        if c.heartbeat > 0:
            self._heartbeat_task = asyncio.create_task(self._heartbeat(), name=f"mqtt-heartbeat:{self.ctx.name}")

    def client_id(self) -> str:
        """The configured id, else ``solarbridge-<name>[-s<k>]-<random>``; one per worker of a fleet.

        Workers share one config, so a configured id gets ``-s<k>`` appended when sharded: two clients
        with one id would take each other's connection over, in a loop.
        """
        c = self.config
        shard = f"-s{self.shard.index}" if self.shard else ""
        if c.client_id:
            return c.client_id + shard
        return f"solarbridge-{self.ctx.name or 'mqtt'}{shard}-{uuid.uuid4().hex[:8]}"

    @property
    def _tls(self) -> bool:
        return urlsplit(self.config.url).scheme in ("mqtts", "ssl")

    def _in_loop(self, fn: Any, *args: Any) -> None:
        """Run ``fn`` on the event loop (paho calls socket callbacks from the connect executor thread too)."""
        if threading.get_ident() == self._loop_thread:
            fn(*args)
        elif self._loop is not None:
            with contextlib.suppress(RuntimeError):
                self._loop.call_soon_threadsafe(fn, *args)

    def _sock_open(self, sock: Any) -> None:
        client = self._client
        if client is None:
            return
        self._sock = sock
        self._loop.add_reader(sock, client.loop_read)  # type: ignore[union-attr]

    def _sock_close(self, sock: Any) -> None:
        with contextlib.suppress(Exception):
            self._loop.remove_reader(sock)  # type: ignore[union-attr]
            self._loop.remove_writer(sock)  # type: ignore[union-attr]
        if self._sock is sock:
            self._sock = None
        self._gone.set()

    def _sock_want_write(self, sock: Any, want: bool) -> None:
        client = self._client
        if client is None or sock is not self._sock:
            return
        if want:
            self._loop.add_writer(sock, client.loop_write)  # type: ignore[union-attr]
        else:
            self._loop.remove_writer(sock)  # type: ignore[union-attr]

    async def _connection_loop(self) -> None:
        """Connect, keep alive, reconnect with exponential backoff; never gives up."""
        c = self.config
        u = urlsplit(c.url)
        host, port = u.hostname, u.port or (8883 if self._tls else 1883)
        # jitter of up to half the delay: clients that lost the broker together come back spread out
        backoff = Backoff(initial=min(c.reconnect_min, c.reconnect_max), cap=c.reconnect_max, jitter=0.5)
        loop = asyncio.get_running_loop()
        client = self._client
        first = True
        while not self._stopping:
            self._gone = asyncio.Event()
            try:
                # the TCP (and TLS) connect blocks: run it off the loop
                if first:
                    await loop.run_in_executor(None, client.connect, host, port, c.keepalive)
                else:
                    await loop.run_in_executor(None, client.reconnect)
                first = False
            except Exception as exc:  # noqa: BLE001 - refused, unreachable, DNS, TLS: retry
                self._conn_failed(f"cannot connect to {c.url}: {type(exc).__name__}: {exc}")
                await asyncio.sleep(backoff.next_delay())
                continue
            t_up = time.monotonic()
            while not self._gone.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._gone.wait(), 1.0)
                if not self._gone.is_set():
                    client.loop_misc()  # keepalive pings, ping timeout detection
            if self._stopping:
                return
            if self.connected:
                self._on_disconnect("connection closed")
            if time.monotonic() - t_up > 10:
                backoff.reset()
            await asyncio.sleep(backoff.next_delay())

    def _conn_failed(self, text: str) -> None:
        if text != self._last_conn_error:
            self.ctx.log.error("mqtt sink %s: %s (retrying with backoff)", self.ctx.name, text)
            self._last_conn_error = text
        self.ctx.health.last_error = text

    # paho callbacks (called from loop_read/loop_write/loop_misc, on the event loop)
    def _cb_connect(self, client: Any, userdata: Any, flags: Any, reason_code: Any, properties: Any) -> None:
        self._in_loop(self._on_connect, not reason_code.is_failure, str(reason_code))

    def _cb_disconnect(self, client: Any, userdata: Any, flags: Any, reason_code: Any, properties: Any) -> None:
        self._in_loop(self._on_disconnect, str(reason_code))

    def _cb_message(self, client: Any, userdata: Any, msg: Any) -> None:
        self._in_loop(self._on_message, msg.topic, bytes(msg.payload), bool(msg.retain))

    def _on_connect(self, ok: bool, reason: str) -> None:
        if not ok:
            self._conn_failed(f"broker {self.config.url} refused the connection: {reason}")
            return
        self.connected = True
        self._up.set()
        self.connections += 1
        self.ctx.health.count("connects")
        self.ctx.health.gauges["connected"] = 1
        if self._last_conn_error or self._ever_connected:
            self.ctx.log.warning("mqtt sink %s: connected to %s again", self.ctx.name, self.config.url)
        else:
            self.ctx.log.info("mqtt sink %s: connected to %s", self.ctx.name, self.config.url)
        self._last_conn_error = ""
        self._ever_connected = True
        self.ctx.health.last_error = ""
        client = self._client
        c = self.config
        subs = [(f"{c.base_topic}/+/+/set", 1)]
        if c.discovery or c.layout == "sunsniff":
            subs.append((self.ha_status_topic, 1))
        if c.layout == "givtcp":
            subs.append((f"{c.givtcp_root}/control/+/+", 1))
        client.subscribe(subs)
        self._raw_publish(self.status_topic, b"online", True, 1)
        self.republish_all()
        for device_id, topic in self._offline_once.items():
            if device_id not in self.devices:
                self._raw_publish(topic, b"offline", True, 1)
        self._offline_once.clear()

    def _on_disconnect(self, reason: str) -> None:
        was = self.connected
        self.connected = False
        self._up.clear()
        self._unacked.clear()
        self.ctx.health.gauges["connected"] = 0
        if was and not self._stopping:
            self.ctx.health.count("disconnects")
            text = f"lost connection to {self.config.url}: {reason}; reconnecting with backoff"
            self.ctx.log.warning("mqtt sink %s: %s", self.ctx.name, text)
            self._last_conn_error = text
            self.ctx.health.last_error = text

    def republish_all(self) -> None:
        """Discovery first, then status/availability/state: the newest payload per topic."""
        if not self.connected:
            return
        for topic, payload in list(self._disc_cache.items()):
            self._raw_publish(topic, payload, True, 1)
        for topic, (payload, retain, qos) in list(self._state_cache.items()):
            self._raw_publish(topic, payload, retain, qos)
        self._sent_upto = self._changes

    async def _heartbeat(self) -> None:
        while True:
            await asyncio.sleep(self.config.heartbeat)
            if self.connected:
                for topic, (payload, retain, qos) in list(self._state_cache.items()):
                    self._raw_publish(topic, payload, retain, qos)

    # ------------------------------------------------------------------ publishing
    def _raw_publish(self, topic: str, payload: bytes, retain: bool, qos: int) -> None:
        if not self.connected or self._client is None:
            return
        info = self._client.publish(topic, payload, qos=qos, retain=retain)
        if info.rc == 0:
            self.published += 1
            if qos:
                self._unacked.append(info)
        else:
            self.ctx.health.count("publish_errors")

    def _publish_state(self, topic: str, payload: bytes, retain: bool | None = None, qos: int | None = None,
                       force: bool = False) -> bool:
        """Publish if the payload changed (or ``force``); remember it as the newest for this topic."""
        r = self.config.retain_state if retain is None else retain
        q = self.config.qos if qos is None else qos
        old = self._state_cache.get(topic)
        if old is not None and old[0] == payload and not force:
            return False
        self._state_cache[topic] = (payload, r, q)
        self._changes += 1
        self._raw_publish(topic, payload, r, q)
        if self.connected:
            self._sent_upto = self._changes
        return True

    def _publish_discovery(self, topic: str, payload: dict[str, Any]) -> None:
        data = json.dumps(payload, separators=(",", ":"), sort_keys=True).encode()
        if self._disc_cache.get(topic) == data:
            return
        self._disc_cache[topic] = data
        self._changes += 1
        self._raw_publish(topic, data, True, 1)
        if self.connected:
            self._sent_upto = self._changes

    async def write(self, batch: list[Reading]) -> None:
        if len(self._unacked) > _UNACKED_HIGH:
            await self._wait_acks()
        dirty: dict[str, _Device] = {}
        layout = self.config.layout
        for r in batch:
            dev = self._device(r)
            if layout == "givtcp" and r.extra and "givtcp" in r.extra:
                self._write_givtcp(dev, r)
            if layout == "sunsniff" and r.extra and "sunsniff" in r.extra:
                if dev.online is not r.online:
                    dev.online = r.online
                    self._publish_state(dev.topics.availability, b"online" if r.online else b"offline", True, 1)
                self._write_sunsniff(dev, r)
                continue
            if dev.online is not r.online:
                dev.online = r.online
                self._publish_state(dev.topics.availability, b"online" if r.online else b"offline", True, 1)
            if r.metrics:
                dev.latest.update(r.metrics)
                dev.timestamp = r.timestamp.isoformat()
                dirty[r.device_id] = dev
        for dev in dirty.values():
            self._flush_device(dev)
        g = self.ctx.health.gauges
        g["published"] = self.published
        g["devices"] = len(self.devices)
        g["unacked"] = len(self._unacked)

    async def _wait_acks(self) -> None:
        """QoS>0 backlog: let the broker catch up (bounded wait; the runtime queue drops oldest beyond it)."""
        unacked = self._unacked
        deadline = time.monotonic() + 5.0
        while unacked and self.connected and time.monotonic() < deadline:
            while unacked and unacked[0].is_published():
                unacked.popleft()
            if len(unacked) < _UNACKED_LOW:
                return
            await asyncio.sleep(0.002)

    def _device(self, r: Reading) -> _Device:
        dev = self.devices.get(r.device_id)
        if dev is None:
            tid = ha.topic_id(r.device_id)
            info = r.info or DeviceInfo(r.device_id, r.device_type, source=r.source)
            dev = self.devices[r.device_id] = _Device(r.device_id, ha.Topics(self.config.base_topic, tid), info)
            self._by_topic_id[tid] = r.device_id
            self._set_controls(dev)
            self._remember(dev)
        elif r.info is not None and r.info != dev.info:
            dev.info = r.info
            dev.discovered.clear()  # device block changed: re-send every entity
            self._set_controls(dev)
        return dev

    def _set_controls(self, dev: _Device) -> None:
        dev.controls = {c.name: c for c in dev.info.controls}
        serial = dev.info.serial or dev.device_id
        dev.givtcp_serial = serial
        self._by_givtcp_serial[serial] = dev.device_id
        self._by_givtcp_serial.setdefault(dev.device_id, dev.device_id)

    def _flush_device(self, dev: _Device) -> None:
        c = self.config
        if c.discovery:
            self._discover(dev)
        state = {"timestamp": dev.timestamp}
        state.update(dev.latest)
        self._publish_state(dev.topics.state, json.dumps(state, separators=(",", ":"), default=str).encode())
        if c.per_metric_topics:
            for name, value in dev.latest.items():
                self._publish_state(dev.topics.metric(name), layouts.metric_text(value).encode())

    def _discover(self, dev: _Device) -> None:
        new = [m for m in dev.latest if m not in dev.discovered]
        for m in new:
            topic, payload = self.discovery.sensor(dev.info, m, dev.latest[m])
            self._publish_discovery(topic, payload)
            dev.discovered.add(m)
        if dev.discovered_controls != dev.info.controls:
            for spec in dev.info.controls:
                topic, payload = self.discovery.control(dev.info, spec)
                self._publish_discovery(topic, payload)
            dev.discovered_controls = dev.info.controls

    def _write_givtcp(self, dev: _Device, r: Reading) -> None:
        tree = r.extra.get("givtcp")
        if not isinstance(tree, dict):
            return
        prefix = f"{self.config.givtcp_root}/{ha.topic_id(dev.givtcp_serial)}"
        for topic, text in layouts.givtcp_leaves(tree, prefix):
            self._publish_state(topic, text.encode())

    def _write_sunsniff(self, dev: _Device, r: Reading) -> None:
        ss = r.extra.get("sunsniff")
        if not isinstance(ss, dict):
            return
        avail = [{"topic": self.status_topic}, {"topic": dev.topics.availability}]
        for config_topic, state_topic, payload, text in ha.sunsniff_entities(ss, self.config.discovery_prefix,
                                                                           avail):
            self._publish_discovery(config_topic, payload)
            # the original published states QoS 0, not retained; every capture is a fresh value
            if text:
                self._publish_state(state_topic, text.encode(), retain=False, qos=0, force=True)

    # ------------------------------------------------------------------ delivery
    async def flush(self) -> None:
        """Wait until the broker has the newest payload of every topic (connecting first if need be).

        MQTT has no per-message receipt for QoS 0, so a QoS 1 message (the retained ``online`` status)
        is sent after everything else on the same connection: the broker handles one connection's
        packets in order, so its PUBACK means it has the earlier messages too. The caller bounds the wait.
        """
        if self._client is None:
            return
        while self._confirmed < self._changes:
            if not self.connected:
                await self._up.wait()
                continue
            if self._sent_upto < self._changes:
                self.republish_all()  # changes made while disconnected
            target = self._changes
            conn = self.connections
            info = self._client.publish(self.status_topic, b"online", qos=1, retain=True)
            while self.connected and self.connections == conn and not info.is_published():
                await asyncio.sleep(0.005)
            if info.is_published() and self.connections == conn:
                self._confirmed = max(self._confirmed, target)

    def undelivered(self) -> str:
        n = self._changes - self._confirmed
        if not n:
            return ""
        why = f" ({self._last_conn_error})" if self._last_conn_error else ""
        return f"{n} message(s) not confirmed by the broker {self.config.url}{why}"

    # ------------------------------------------------------------------ devices seen before
    def _mark_known_offline(self) -> None:
        """Devices seen by an earlier run: offline (retained) until their source reports them again.

        Only under the runtime (daemon, sunsynk-capture): a standalone sink has no state dir of its own.
        """
        if self.ctx.runtime is None:
            return
        # the runtime's state dir (a sink added by hand to a Supervisor keeps its own context's ".")
        state_dir = Path(getattr(self.ctx.runtime, "state_dir", None) or self.ctx.state_dir)
        shard = f"-s{self.shard.index}" if self.shard else ""
        self._known_file = state_dir / f"mqtt-{self.ctx.name or 'mqtt'}{shard}.devices.json"
        try:
            known = json.loads(self._known_file.read_text())
            devices = known.get("devices", {}) if known.get("base_topic") == self.config.base_topic else {}
        except (OSError, ValueError, AttributeError):
            devices = {}
        self._known = {str(k): str(v) for k, v in devices.items()} if isinstance(devices, dict) else {}
        for device_id, tid in self._known.items():
            if device_id not in self.devices:
                topic = ha.Topics(self.config.base_topic, tid).availability
                if self.shard is not None:
                    # in a fleet the device may have moved to another worker (n changed): say "offline"
                    # once, and do not keep re-asserting it with the heartbeat over its new owner's "online"
                    self._offline_once[device_id] = topic
                else:
                    self._publish_state(topic, b"offline", True, 1)
        if self._known:
            self.ctx.log.info("mqtt sink %s: %d device(s) from the last run marked offline until they report",
                              self.ctx.name, len(self._known))

    def _remember(self, dev: _Device) -> None:
        if self._known_file is None or self._known.get(dev.device_id) == dev.topics.device:
            return
        self._known[dev.device_id] = dev.topics.device
        from ...util.atomic import atomic_write

        try:
            self._known_file.parent.mkdir(parents=True, exist_ok=True)
            atomic_write(self._known_file, json.dumps({"base_topic": self.config.base_topic,
                                                       "devices": self._known}, indent=1, sort_keys=True) + "\n")
        except OSError as exc:
            self.ctx.log.warning("mqtt sink %s: cannot remember devices in %s: %s", self.ctx.name,
                                 self._known_file, exc)

    async def stop(self) -> None:
        self._stopping = True
        for task in (self._heartbeat_task, self._conn_task):
            if task is not None:
                task.cancel()
                with contextlib.suppress(BaseException):
                    await task
        self._heartbeat_task = self._conn_task = None
        for t in list(self._tasks):
            t.cancel()
        client = self._client
        if client is None:
            return
        try:
            if self.connected:
                info = client.publish(self.status_topic, b"offline", qos=1, retain=True)
                deadline = time.monotonic() + 2.0
                while not info.is_published() and self.connected and time.monotonic() < deadline:
                    await asyncio.sleep(0.01)
                client.disconnect()
                deadline = time.monotonic() + 2.0
                while self._sock is not None and time.monotonic() < deadline:
                    await asyncio.sleep(0.01)
        except Exception as exc:  # noqa: BLE001 - stop must not raise
            self.ctx.log.debug("mqtt sink %s: error on stop: %s", self.ctx.name, exc)
        if self._sock is not None:
            self._sock_close(self._sock)
        self._client = None
        self.connected = False

    def pending(self) -> int:
        """Changes not yet handed to a live broker connection (they go out on reconnect)."""
        return self._changes - self._sent_upto

    # ------------------------------------------------------------------ commands
    def _on_message(self, topic: str, payload: bytes, retained: bool) -> None:
        c = self.config
        if topic == self.ha_status_topic:
            if payload.strip().lower() == b"online":
                self.ctx.log.info("mqtt sink %s: Home Assistant came online; re-publishing discovery and state",
                                  self.ctx.name)
                self.ctx.health.count("ha_births")
                self.republish_all()
            return
        if not payload:
            return  # an empty message is how a retained message is cleared, not a command
        if retained:
            # a retained command would be executed again at every reconnect: never act on one
            self.ctx.health.count("retained_commands_ignored")
            self.ctx.log.warning("mqtt sink %s: ignoring retained command on %s", self.ctx.name, topic)
            return
        if c.layout == "givtcp":
            parsed = layouts.parse_givtcp_command(topic, c.givtcp_root)
            if parsed is not None:
                self._givtcp_command(*parsed, payload)
                return
        parts = topic.split("/")
        base_n = len(c.base_topic.split("/"))
        if len(parts) == base_n + 3 and parts[-1] == "set":
            self._command(parts[base_n], parts[base_n + 1], payload)

    def _not_ours(self, dev: _Device | None) -> bool:
        """In a fleet every worker hears every command: only the one that holds the device answers."""
        if dev is None and self.shard is not None:
            self.ctx.health.count("commands_for_other_workers")
            return True
        return False

    def _command(self, tid: str, control: str, payload: bytes) -> None:
        device_id = self._by_topic_id.get(tid, tid)
        dev = self.devices.get(device_id)
        if self._not_ours(dev):
            return
        topics = dev.topics if dev else ha.Topics(self.config.base_topic, tid)
        spec = dev.controls.get(control) if dev else None
        if spec is None:
            self._reject(topics, device_id, control, payload,
                         ControlError(f"{control}: device {device_id!r} has no such control"
                                      + (f" (controls: {', '.join(dev.controls)})" if dev and dev.controls else ""),
                                      field_name=control, status=404))
            return
        try:
            value = layouts.validate_control(spec, payload)
        except ControlError as exc:
            self._reject(topics, device_id, control, payload, exc)
            return
        self._spawn(self._execute(topics, ControlRequest(device_id, control, value, origin="mqtt"), spec, payload))

    def _givtcp_command(self, serial: str, command: str, payload: bytes) -> None:
        device_id = self._by_givtcp_serial.get(serial, serial)
        dev = self.devices.get(device_id)
        if self._not_ours(dev):
            return
        topics = dev.topics if dev else ha.Topics(self.config.base_topic, ha.topic_id(device_id))
        try:
            value = layouts.decode_payload(payload)
        except UnicodeDecodeError:
            self._reject(topics, device_id, command, payload, ControlError(f"{command}: payload is not UTF-8 text"))
            return
        spec = dev.controls.get(command) if dev else None
        if spec is not None:
            try:
                value = layouts.validate_control(spec, payload)
            except ControlError as exc:
                self._reject(topics, device_id, command, payload, exc)
                return
        self._spawn(self._execute(topics, ControlRequest(device_id, command, value, origin="mqtt"), spec, payload))

    def _spawn(self, coro: Any) -> None:
        t = asyncio.ensure_future(coro)
        self._tasks.add(t)
        t.add_done_callback(self._tasks.discard)

    async def _execute(self, topics: ha.Topics, req: ControlRequest, spec: ControlSpec | None,
                       payload: bytes) -> None:
        runtime = self.ctx.runtime
        if runtime is None:
            self._reject(topics, req.device_id, req.command, payload,
                         ControlError("controls need the daemon runtime", status=503))
            return
        try:
            result = await runtime.control(req)
        except ControlError as exc:
            self._reject(topics, req.device_id, req.command, payload, exc)
            return
        except Exception as exc:  # noqa: BLE001 - a failing source must not kill the sink
            self._reject(topics, req.device_id, req.command, payload,
                         ControlError(f"{req.command}: failed: {type(exc).__name__}: {exc}", status=500))
            return
        if not getattr(result, "ok", True):
            self._reject(topics, req.device_id, req.command, payload,
                         ControlError(f"{req.command}: {result.message or 'failed'}", status=500))
            return
        self.ctx.health.count("commands_ok")
        self.ctx.log.info("mqtt sink %s: %s %s = %r done%s", self.ctx.name, req.device_id, req.command, req.value,
                          f" ({result.message})" if getattr(result, "message", "") else "")
        dev = self.devices.get(req.device_id)
        # the source read the value back (in the metric's own type); publish it now rather than at the next
        # poll. Anything else a result carries (e.g. the writes done) is for the log, never a state topic.
        if dev is not None and spec is not None and spec.state_metric \
                and isinstance(result.value, bool | int | float | str):
            dev.latest[spec.state_metric] = result.value
            self._flush_device(dev)

    def _reject(self, topics: ha.Topics, device_id: str, command: str, payload: bytes, exc: ControlError) -> None:
        self.ctx.health.count("commands_rejected")
        text = str(exc)
        self.ctx.log.warning("mqtt sink %s: rejected command %s for %s: %s", self.ctx.name, command, device_id, text)
        body = {"device_id": device_id, "command": command, "payload": payload.decode("utf-8", "replace")[:200],
                "error": text, "field": exc.field_name, "status": exc.status, "timestamp": time.time()}
        self._raw_publish(topics.error, json.dumps(body).encode(), False, 1)
