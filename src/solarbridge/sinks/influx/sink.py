"""InfluxDB sink (``influxdb2``): line protocol over HTTP, behind a durable disk spool.

Every batch of readings is encoded to line protocol and appended to the spool
(:mod:`solarbridge.sinks.spool`) before anything is sent. A sender task reads
the oldest spooled points, POSTs them gzip-compressed to ``/api/v2/write``
(or ``/write?db=`` with ``version = 1``) and removes them from the spool only
after a 2xx reply. So data waits on disk while the server is down, slow or
misconfigured, survives a daemon restart, and arrives in order exactly once.

Errors are logged once per state change: a 401/403/404 (bad token, org or
bucket) is logged loudly with the server's own message and retried with
backoff (the data is kept: fixing the config delivers it); a 400 for content
the server will never accept drops that chunk (counted as ``rejected``).

Schemas: ``wide`` writes one point per reading (measurement = ``measurement``
or the device type, tag ``device_id``, one field per metric); ``sunsniff``
writes what the Sunsynk capture tool wrote (measurement ``inverter``, tags
serial/group/name/unit, field ``value``) for readings that carry
``extra["sunsniff"]`` and falls back to ``wide`` for others.
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import time
from datetime import UTC, datetime, timedelta
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import ConfigDict, Field, model_validator

from ...config import Secret
from ...model import Reading, slug
from ...plugin import Context, Sink, SinkConfig
from ...util.aiorun import cancel_and_wait
from ...util.backoff import Backoff
from ..spool import Entry, Spool
from . import lineprotocol as lp

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_US = timedelta(microseconds=1)


class InfluxConfig(SinkConfig):
    type: Literal["influxdb2"] = "influxdb2"
    host: str = Field("http://localhost:8086", description="server base URL (http:// or https://), with an"
                      " optional path prefix: http://vminsert:8480/insert/0/influx, http://proxy/influxdb")
    version: Literal[1, 2] = Field(2, description="2: /api/v2/write with org/bucket/token; 1: /write?db=")
    org: str = ""
    bucket: str = ""
    token: Secret | None = None
    #: InfluxDB 1.x: database, retention policy and optional basic-auth credentials
    database: str = ""
    retention_policy: str = ""
    username: str = ""
    password: Secret | None = None
    measurement: str = Field("", description="measurement name; default: the device type (wide), inverter (sunsniff)")
    schema_: Literal["wide", "sunsniff"] = Field("wide", alias="schema")
    precision: Literal["ns", "us", "ms", "s"] = "ns"
    tags: dict[str, str] = Field(default_factory=dict, description="static tags added to every point")
    gzip: bool = True
    batch_points: int = Field(5000, ge=1, le=1_000_000, description="points per HTTP request at most")
    flush_interval: float = Field(1.0, ge=0.0, le=3600, description="seconds to wait to fill a batch")
    timeout: float = Field(10.0, gt=0, le=300, description="HTTP request timeout, seconds")
    verify_tls: bool = True
    ca_file: str = ""
    spool_dir: str = Field("", description="default: <state_dir>/spool")
    spool_max_mb: float = Field(256.0, gt=0, le=1_000_000, description="spool size cap; oldest data dropped beyond")
    spool_sync: Literal["NORMAL", "FULL"] = Field("NORMAL", description="FULL also survives power loss")
    backoff_initial: float = Field(1.0, gt=0, le=60)
    backoff_cap: float = Field(30.0, gt=0, le=3600)

    model_config = ConfigDict(extra="forbid")

    @model_validator(mode="after")
    def _check(self) -> InfluxConfig:
        if not self.host.startswith(("http://", "https://")):
            raise ValueError(f"host must start with http:// or https:// (got {self.host!r})")
        u = urlsplit(self.host)
        if u.query or u.fragment or not u.hostname:
            raise ValueError(f"host is a base URL with an optional path prefix, no query (got {self.host!r})")
        if u.path.rstrip("/").endswith(("/api/v2/write", "/write")):
            raise ValueError(f"host is the base URL: leave out /api/v2/write or /write, which the sink adds"
                             f" (got {self.host!r})")
        if self.version == 2 and not self.bucket:
            raise ValueError("bucket is required with version = 2")
        if self.version == 1 and not self.database:
            raise ValueError("database is required with version = 1")
        return self


def reading_ns(r: Reading) -> int:
    """Exact integer nanoseconds of a reading's timestamp (no float rounding)."""
    ts = r.timestamp
    if ts.tzinfo is None:
        ts = ts.replace(tzinfo=UTC)
    d = ts - _EPOCH
    return (d.days * 86_400 + d.seconds) * 1_000_000_000 + d.microseconds * 1_000


class LineEncoder:
    """Readings -> line-protocol lines for one schema (sans-IO; shared by the sink and the benchmarks)."""

    def __init__(self, schema: str = "wide", measurement: str = "", precision: lp.Precision = "ns",
                 tags: dict[str, str] | None = None) -> None:
        self.schema = schema
        self.measurement = measurement
        self.precision = precision
        self.static_tags = dict(tags or {})
        self._tag_cache: dict[tuple[str, str], str] = {}
        self._key_cache: dict[str, str] = {}
        self.skipped_values = 0

    def _series_key(self, measurement: str, device_id: str) -> str:
        key = (measurement, device_id)
        s = self._tag_cache.get(key)
        if s is None:
            if len(self._tag_cache) > 100_000:
                self._tag_cache.clear()
            tags = dict(self.static_tags)
            tags["device_id"] = device_id
            s = self._tag_cache[key] = lp.escape_measurement(measurement) + lp.encode_tags(tags)
        return s

    def _field_key(self, name: str) -> str:
        k = self._key_cache.get(name)
        if k is None:
            if len(self._key_cache) > 100_000:
                self._key_cache.clear()
            k = self._key_cache[name] = lp.escape_field_key(name) + "="
        return k

    def encode(self, readings: list[Reading], out: list[str]) -> int:
        """Append lines for ``readings`` to ``out``; returns how many points were added.

        This is the sink's hot path, hence the inlined type dispatch and the caches.
        """
        n0 = len(out)
        fmt = lp.format_field_value
        precision = self.precision
        ns = precision == "ns"
        div = {"ns": 1, "us": 1, "ms": 1_000, "s": 1_000_000}[precision]
        keys = self._key_cache
        series = self._tag_cache
        measurement = self.measurement
        sunsniff = self.schema == "sunsniff"
        append = out.append
        for r in readings:
            metrics = r.metrics
            if not metrics and not (sunsniff and r.extra):
                continue
            ts = r.timestamp
            if ts.tzinfo is None:
                ts = ts.replace(tzinfo=UTC)
            us = (ts - _EPOCH) // _US
            stamp = us * 1000 if ns else us // div
            if sunsniff:
                ss = r.extra.get("sunsniff") if r.extra else None
                if ss:
                    self._encode_sunsniff(ss, stamp, out)
                    continue
                if not metrics:
                    continue
            parts = []
            for k, v in metrics.items():
                key = keys.get(k)
                if key is None:
                    key = self._field_key(k)
                t = type(v)
                if t is float:
                    if v - v == 0.0:  # finite (NaN and inf are not writable)
                        parts.append(key + repr(v))
                        continue
                elif t is int:
                    parts.append(f"{key}{v}i")
                    continue
                elif t is bool:
                    parts.append(key + ("true" if v else "false"))
                    continue
                else:
                    text = fmt(v)
                    if text is not None:
                        parts.append(key + text)
                        continue
                self.skipped_values += 1
            if parts:
                sk = series.get((measurement or r.device_type, r.device_id))
                if sk is None:
                    sk = self._series_key(measurement or r.device_type, r.device_id)
                append(f"{sk} {','.join(parts)} {stamp}")
        return len(out) - n0

    def _encode_sunsniff(self, ss: dict[str, Any], ts: int, out: list[str]) -> None:
        meas = self.measurement or "inverter"
        serial = str(ss.get("serial", ""))
        for f in ss.get("fields", ()):
            value = f.get("value")
            if isinstance(value, bool):
                value = float(value)
            if not isinstance(value, int | float):
                self.skipped_values += 1
                continue
            tags = dict(self.static_tags)
            tags.update(serial=serial, group=str(f.get("group", "")), name=str(f.get("name", "")),
                        unit=str(f.get("unit") or ""))
            line = lp.encode_point(meas, tags, {"value": float(value)}, None)
            if line is None:
                self.skipped_values += 1
                continue
            out.append(f"{line} {ts}")


class InfluxSink(Sink):
    Config = InfluxConfig

    def __init__(self, config: InfluxConfig, ctx: Context) -> None:
        super().__init__(config, ctx)
        self.encoder = LineEncoder(config.schema_, config.measurement, config.precision, config.tags)
        spool_dir = config.spool_dir or str(ctx.state_dir / "spool")
        self.spool_path = f"{spool_dir}/{slug(ctx.name or 'influxdb2') or 'influxdb2'}.influx.sqlite"
        self.spool: Spool | None = None
        self._client: Any = None
        self._sender: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._send_lock = asyncio.Lock()
        self._error_state = ""
        self._last_ok = True
        self.url, self.params, self.headers = self._endpoint()

    # ------------------------------------------------------------------ setup
    def _endpoint(self) -> tuple[str, dict[str, str], dict[str, str]]:
        c = self.config
        host = c.host.rstrip("/")
        headers = {"Content-Type": "text/plain; charset=utf-8"}
        if c.gzip:
            headers["Content-Encoding"] = "gzip"
        if c.version == 2:
            params = {"bucket": c.bucket, "precision": c.precision}
            if c.org:
                params["org"] = c.org
            if c.token is not None:
                headers["Authorization"] = f"Token {c.token.get_secret_value()}"
            return f"{host}/api/v2/write", params, headers
        params = {"db": c.database, "precision": {"us": "u"}.get(c.precision, c.precision)}
        if c.retention_policy:
            params["rp"] = c.retention_policy
        if c.username:
            import base64

            pw = c.password.get_secret_value() if c.password is not None else ""
            headers["Authorization"] = "Basic " + base64.b64encode(f"{c.username}:{pw}".encode()).decode()
        elif c.token is not None:
            headers["Authorization"] = f"Token {c.token.get_secret_value()}"
        return f"{host}/write", params, headers

    def _open_spool(self) -> Spool:
        if self.spool is None:
            self.spool = Spool(self.spool_path, max_bytes=int(self.config.spool_max_mb * 1024 * 1024),
                               synchronous=self.config.spool_sync, log=self.ctx.log)
            if self.spool.points:
                self.ctx.log.info("spool %s holds %d point(s) from before; sending them first",
                                  self.spool_path, self.spool.points)
            self._update_gauges()
        return self.spool

    async def start(self) -> None:
        import logging

        import httpx

        httpx_log = logging.getLogger("httpx")
        if httpx_log.level == logging.NOTSET:
            httpx_log.setLevel(logging.WARNING)  # one INFO line per request would flood the daemon log
        self._open_spool()
        if self._client is None:
            verify: Any = self.config.verify_tls
            if self.config.ca_file:
                import ssl

                verify = ssl.create_default_context(cafile=self.config.ca_file)
            self._client = httpx.AsyncClient(timeout=self.config.timeout, verify=verify)
        if self._sender is None or self._sender.done():
            self._sender = asyncio.create_task(self._send_loop(), name=f"influx-sender:{self.ctx.name}")

    # ------------------------------------------------------------------ sink interface
    async def write(self, batch: list[Reading]) -> None:
        spool = self._open_spool()
        lines: list[str] = []
        n = self.encoder.encode(batch, lines)
        if n:
            lines.append("")
            dropped = spool.dropped_points
            spool.put("\n".join(lines).encode(), n)
            if spool.dropped_points != dropped:
                self.ctx.health.count("dropped_points", spool.dropped_points - dropped)
            self._update_gauges()
            self._wake.set()

    async def flush(self) -> None:
        """Deliver what is spooled while the server answers; whatever is left stays on disk for next time."""
        if self.spool is None or self._client is None:
            return
        while self.spool.points:
            try:
                if not await self._send_once():
                    return
            except Exception:  # noqa: BLE001 - flush is best effort; the spool keeps the rest
                return

    async def deliver(self) -> None:
        """End of a finite run: send the spool until the server accepted all of it (the caller bounds it)."""
        backoff = Backoff(initial=0.2, cap=2.0)
        while self.spool is not None and self._client is not None and self.spool.points:
            await self.flush()
            if self.spool is not None and self.spool.points:
                await asyncio.sleep(backoff.next_delay())

    def undelivered(self) -> str:
        n = self.pending()
        if not n:
            return ""
        why = f" (last error: {self.ctx.health.last_error})" if self.ctx.health.last_error else ""
        return f"{n} point(s) not accepted by {self.url}; they stay in the spool {self.spool_path}{why}"

    async def stop(self) -> None:
        if self._sender is not None:
            # let a request in flight finish (bounded by the HTTP timeout) so its points are acked, not resent
            with contextlib.suppress(BaseException):
                await asyncio.wait_for(self._send_lock.acquire(), self.config.timeout + 1)
            # bounded: Python 3.11's wait_for can swallow a cancellation that arrives as its timeout fires,
            # and a sender that lives on must not hang the daemon's shutdown
            await cancel_and_wait([self._sender], 2.0)
            self._sender = None
            if self._send_lock.locked():
                self._send_lock.release()
        if self._client is not None:
            with contextlib.suppress(Exception):
                await self._client.aclose()
            self._client = None
        if self.spool is not None:
            self._update_gauges()
            self.spool.close()
            self.spool = None

    def pending(self) -> int:
        return self.spool.points if self.spool is not None else 0

    # ------------------------------------------------------------------ sending
    def _update_gauges(self) -> None:
        s = self.spool
        if s is None:
            return
        g = self.ctx.health.gauges
        g["spool_depth_points"] = s.points
        g["spool_entries"] = s.entries
        g["spool_bytes"] = s.bytes
        g["spool_oldest_age_s"] = round(s.oldest_age(), 3) if s.entries else 0.0
        g["sent_points"] = s.sent_points
        g["dropped_points"] = s.dropped_points

    async def _send_loop(self) -> None:
        c = self.config
        backoff = Backoff(initial=c.backoff_initial, cap=c.backoff_cap)
        spool = self._open_spool()
        while True:
            if not spool.points:
                self._wake.clear()
                await self._wake.wait()
            if spool.points < c.batch_points and c.flush_interval > 0:
                # wait for a full batch, at most flush_interval after the oldest point was spooled
                remaining = c.flush_interval - spool.oldest_age()
                deadline = time.monotonic() + max(0.0, remaining)
                while spool.points < c.batch_points and (left := deadline - time.monotonic()) > 0:
                    self._wake.clear()
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._wake.wait(), left)
            try:
                ok = await self._send_once()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - anything else: keep data, retry later
                self._set_error(f"{type(exc).__name__}: {exc}")
                ok = False
            if ok:
                backoff.reset()
            else:
                await asyncio.sleep(backoff.next_delay())

    async def _send_once(self) -> bool:
        """Send the oldest chunk. True if delivered (or discarded as never deliverable).

        Serialised by a lock: the shutdown flush and the sender task must never send the same entries.
        """
        async with self._send_lock:
            return await self._send_locked()

    async def _send_locked(self) -> bool:
        spool = self.spool
        assert spool is not None
        entries = await asyncio.to_thread(spool.peek, self.config.batch_points)
        if not entries:
            return True
        body = entries[0].body if len(entries) == 1 else b"".join(e.body for e in entries)
        if self.config.gzip:
            body = await asyncio.to_thread(gzip.compress, body, 1)
        try:
            status, text = await self._post(body)
        except Exception as exc:  # noqa: BLE001 - connection refused, timeout, TLS...: keep data, retry
            self._set_error(f"cannot reach {self.url}: {type(exc).__name__}: {exc}".rstrip(": "))
            return False
        if 200 <= status < 300:
            await asyncio.to_thread(spool.ack, entries)
            self.ctx.health.count("sent_points", sum(e.points for e in entries))
            self.ctx.health.count("requests")
            self.ctx.health.ok()
            self._set_ok()
            self._update_gauges()
            return True
        return self._handle_status(status, text, entries)

    def _handle_status(self, status: int, text: str, entries: list[Entry]) -> bool:
        msg = _server_message(text)
        self.ctx.health.count("http_errors")
        if status in (401, 403):
            self._set_error(f"HTTP {status} from {self.url}: {msg} (check token/username/password;"
                            f" data is kept in the spool)", loud=True)
            return False
        if status == 404 or (status == 400 and "unsupported path" in msg):
            # VictoriaMetrics answers a path it does not serve (a wrong prefix) with 400, not 404
            self._set_error(f"HTTP {status} from {self.url}: {msg} (check org/bucket/database and host with its"
                            f" path prefix; data is kept in the spool)", loud=True)
            return False
        if status in (400, 422):
            # the content will never be accepted: drop this chunk so later data is not stuck behind it
            assert self.spool is not None
            n = sum(e.points for e in entries)
            self.spool.discard(entries)
            self.ctx.health.count("rejected_points", n)
            self.ctx.log.error("server rejected %d point(s) as invalid (HTTP %d): %s; dropped them", n, status, msg)
            self._update_gauges()
            return True
        if status == 413 and self.config.batch_points > 1:
            self.config.batch_points = max(1, self.config.batch_points // 2)
            self.ctx.log.warning("HTTP 413 request too large: reducing batch_points to %d",
                                 self.config.batch_points)
            return False
        self._set_error(f"HTTP {status} from {self.url}: {msg} (will retry; data is kept in the spool)")
        return False

    async def _post(self, body: bytes) -> tuple[int, str]:
        r = await self._client.post(self.url, params=self.params, headers=self.headers, content=body)
        return r.status_code, r.text

    def _set_error(self, text: str, loud: bool = False) -> None:
        h = self.ctx.health
        h.last_error = text
        if text != self._error_state:
            log = self.ctx.log.error if loud or self._last_ok else self.ctx.log.warning
            log("influx sink %s: %s", self.ctx.name, text)
            self._error_state = text
            h.error_since = time.time()
        self._last_ok = False
        self._update_gauges()

    def _set_ok(self) -> None:
        if not self._last_ok:
            self.ctx.log.warning("influx sink %s: delivering again (%d point(s) still spooled)", self.ctx.name,
                                 self.spool.points if self.spool else 0)
            self._error_state = ""
            self.ctx.health.last_error = ""
            self.ctx.health.error_since = None
        self._last_ok = True


def _server_message(text: str) -> str:
    """InfluxDB replies ``{"code": ..., "message": ...}``; others reply plain text."""
    text = (text or "").strip()
    if text.startswith("{"):
        import json

        with contextlib.suppress(ValueError):
            d = json.loads(text)
            if isinstance(d, dict) and d.get("message"):
                return str(d["message"])[:500]
    return text[:500] or "(empty reply)"
