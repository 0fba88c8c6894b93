"""The ``sunsynk_capture`` source: reports captured live or from a file, decoded into Readings.

Daemon config (the same keys as the original tool's ``[pcap]`` table)::

    [[sources]]
    type = "sunsynk_capture"
    device = "br0"
    filter = "src host 192.168.0.201"
    timezone = "Africa/Johannesburg"

Each Reading carries canonical metrics (grid import positive, battery discharge positive, ``pv_power_w`` the
sum of the strings) and, in ``extra["sunsniff"]``, every field under the original tool's id, name, group and
unit, for the ``sunsniff`` InfluxDB schema and MQTT layout.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable
from datetime import datetime, tzinfo
from fractions import Fraction
from typing import Any, Literal
from zoneinfo import ZoneInfo

from pydantic import Field, field_validator

from ... import metricmap
from ...capture.packets import FIN, RST, SYN, Segment, decode_packet
from ...model import DeviceInfo, Reading
from ...plugin import Context, Emit, PluginConfig, Source
from . import codec
from .config import Layout, check_timezone
from .fields import BY_ID, FIELDS, METRIC_MAP, PV_POWER
from .reassembly import Reassembler

DEVICE_TYPE = "sunsynk"
_FLAGS = SYN | FIN | RST

# the order of fields in extra["sunsniff"]: the table, with the computed PV total after the strings
_ORDER: tuple[str, ...] = tuple(
    x for f in FIELDS for x in ((f.id, PV_POWER.id) if f.id == "pv_power_3" else (f.id,))
)
_STATIC: tuple[tuple[str, dict[str, Any]], ...] = tuple(
    (i, {"id": i, "name": BY_ID[i].name, "group": BY_ID[i].group, "unit": BY_ID[i].unit,
         "device_class": BY_ID[i].device_class, "state_class": BY_ID[i].state_class}) for i in _ORDER
)


def _compile_metric_map() -> tuple[tuple[str, str, int], ...]:
    """METRIC_MAP as a fast plan of (field, metric, whole factor), giving what ``metricmap.apply`` gives.

    The codec's values are already exact decimals at each field's resolution, so a metric is either the
    value itself or the value times a whole factor (kWh -> Wh) that makes it a whole number; a test checks
    the plan against ``metricmap.apply``. Reports are decoded at up to 10 k/s in file mode, where the
    general ``apply`` would cost most of the time.
    """
    plan = []
    for d in METRIC_MAP:
        factor = Fraction(str(d.scale))
        f = BY_ID[d.field]
        assert d.sign == 1 and not d.offset and factor.denominator == 1, d
        assert factor == 1 or factor * Fraction(str(f.scale)) >= 1, d  # scaled values are whole numbers
        plan.append((d.field, d.metric, int(factor)))
    return tuple(plan)


_PLAN = _compile_metric_map()


def metrics_by_map(values: dict[str, float]) -> dict[str, Any]:
    """The general path, for tests: the same metrics through :func:`solarbridge.metricmap.apply`."""
    return metricmap.apply(METRIC_MAP, values)


class SunsynkCaptureConfig(PluginConfig):
    type: Literal["sunsynk_capture"] = "sunsynk_capture"
    device: str = Field(description="network interface, or a capture file when file = true")
    file: bool = False
    filter: str | None = Field(None, description="BPF filter, combined as (tcp) and (<filter>)")
    timezone: str | None = Field(None, description="time zone of the dongle's clock; unset: capture time")
    layout: Layout = "auto"
    hold: float = Field(2.0, gt=0, le=60, description="seconds an ambiguous 292-byte message waits for more")

    _tz = field_validator("timezone")(check_timezone)


def report_to_reading(report: codec.Report, ts: float, tz: tzinfo | None, source: str = "") -> tuple[Reading, bool]:
    """A decoded report as a Reading; the flag says the dongle clock was used (else capture time)."""
    when: datetime | None = codec.clock_to_utc(report.clock, tz) if tz is not None else None
    used_clock = when is not None
    if when is None:
        when = codec.pcap_time(ts)
    values = report.values
    metrics: dict[str, Any] = {}
    for fid, name, factor in _PLAN:
        v = values[fid]
        metrics[name] = v if factor == 1 else float(round(v * factor))
    metrics["grid_available"] = values["grid_connected"] == 1
    fields = []
    for fid, static in _STATIC:
        d = static.copy()
        d["value"] = values[fid]
        fields.append(d)
    serial = report.serial
    c = report.clock
    reading = Reading(
        device_id=serial,
        device_type=DEVICE_TYPE,
        timestamp=when,
        metrics=metrics,
        source=source,
        extra={
            "sunsniff": {"serial": serial, "fields": fields},
            "sunsynk": {"layout": report.layout,
                        "dongle_clock": None if c is None else
                        f"{c[0]:04d}-{c[1]:02d}-{c[2]:02d}T{c[3]:02d}:{c[4]:02d}:{c[5]:02d}",
                        "time_source": "dongle" if used_clock else "capture"},
        },
        info=DeviceInfo(device_id=serial, device_type=DEVICE_TYPE, manufacturer="Sunsynk",
                        model="inverter (Inteless dongle)", serial=serial, source=source),
    )
    return reading, used_clock


class Pipeline:
    """Frames in, Readings out: filter, TCP reassembly, decoding, counting. Shared by file and live mode."""

    def __init__(self, *, user_filter: str | None, layout: str = "auto", timezone: str | None = None,
                 hold: float = 2.0, source: str = "", count: Callable[[str, int], None] | None = None,
                 on_unknown: Callable[[int], None] | None = None, match_in_user_space: bool = True) -> None:
        from .bpf import Filter

        self.filter = Filter(user_filter) if (user_filter and match_in_user_space) else None
        self.layout = None if layout == "auto" else int(layout)
        self.tz = ZoneInfo(timezone) if timezone else None
        self.reasm = Reassembler(layout=self.layout, hold=hold)
        self.source = source
        self._count = count or (lambda key, n=1: None)
        self._on_unknown = on_unknown
        self._known_unknown: set[int] = set()
        self.frames = 0
        self.reports = 0
        self.decode_errors = 0
        self.clock_fallbacks = 0

    def frames_in(self, frames: Iterable[tuple[float, bytes]]) -> list[Reading]:
        out: list[Reading] = []
        feed = self.reasm.feed
        decode = decode_packet
        flt = self.filter
        n = 0
        for ts, frame in frames:
            n += 1
            seg = decode(1, frame)  # Ethernet, as the original (live capture refuses other links)
            if type(seg) is not Segment:
                continue
            src, sport, dst, dport, seq, flags, payload, _missing = seg
            if not payload and not flags & _FLAGS:
                continue  # a bare ACK changes nothing
            if flt is not None and not flt.match(frame):
                continue
            done = feed(ts, (src, sport, dst, dport), seq, flags, payload)
            if done:
                self._decode(done, out)
        self.frames += n
        return out

    def poll(self, now: float) -> list[Reading]:
        out: list[Reading] = []
        self._decode(self.reasm.poll(now), out)
        return out

    def close(self) -> list[Reading]:
        out: list[Reading] = []
        self._decode(self.reasm.close(), out)
        self._check_unknown()
        return out

    def _decode(self, done: list[tuple[float, bytes]], out: list[Reading]) -> None:
        for ts, payload in done:
            try:
                report = codec.decode(payload, self.layout)
            except codec.DecodeError:
                self.decode_errors += 1
                self._count("decode_errors", 1)
                continue
            reading, used_clock = report_to_reading(report, ts, self.tz, self.source)
            if self.tz is not None and not used_clock:
                self.clock_fallbacks += 1
                self._count("clock_fallbacks", 1)
            self.reports += 1
            out.append(reading)
        if done:
            self._count("reports", len(out))
        self._check_unknown()

    def _check_unknown(self) -> None:
        lengths = self.reasm.unknown_lengths
        if len(lengths) != len(self._known_unknown):
            for n in lengths:
                if n not in self._known_unknown:
                    self._known_unknown.add(n)
                    if self._on_unknown:
                        self._on_unknown(n)

    def stats(self) -> dict[str, int]:
        s = self.reasm.stats
        return {"frames": self.frames, "reports": self.reports, "decode_errors": self.decode_errors,
                "clock_fallbacks": self.clock_fallbacks, "segments": s.segments,
                "retransmissions": s.retransmissions, "overlap_bytes": s.overlap_bytes,
                "out_of_order": s.out_of_order, "gaps": s.gaps, "unknown_messages": s.unknown_messages}


class SunsynkCaptureSource(Source):
    Config = SunsynkCaptureConfig

    def __init__(self, config: SunsynkCaptureConfig, ctx: Context) -> None:
        super().__init__(config, ctx)
        self.config: SunsynkCaptureConfig = config
        self._devices: dict[str, DeviceInfo] = {}
        #: file mode progress: called with (bytes read, file size)
        self.progress: Callable[[int, int], None] | None = None
        self.pipeline: Pipeline | None = None
        #: file mode: why reading the file stopped early ("" = it did not); a file is never re-read from the
        #: start on error, since that would deliver its readings twice
        self.failed = ""
        #: live mode: the capture socket is open
        self.capturing = False

    def devices(self) -> list[DeviceInfo]:
        return list(self._devices.values())

    def _pipeline(self, *, live: bool) -> Pipeline:
        log = self.ctx.log

        seen = [0]

        def on_unknown(n: int) -> None:
            seen[0] += 1
            if seen[0] <= 5:
                log.info("ignoring a %d-byte message starting with 0xA5: not a 292/302-byte report; "
                         "messages of this length are only counted from now on%s", n,
                         " (and further lengths too)" if seen[0] == 5 else "")

        # live: the kernel already applied the filter
        return Pipeline(user_filter=self.config.filter, layout=self.config.layout, timezone=self.config.timezone,
                        hold=self.config.hold, source=self.ctx.name, count=self.ctx.health.count,
                        on_unknown=on_unknown, match_in_user_space=not live)

    def _emit_all(self, readings: list[Reading], emit: Emit) -> None:
        for r in readings:
            if r.device_id not in self._devices and r.info is not None:
                self._devices[r.device_id] = r.info
                self.ctx.log.info("inverter %s: first report (layout %s)", r.device_id,
                                  r.extra["sunsynk"]["layout"])
            emit(r)

    async def run(self, emit: Emit) -> None:
        if self.config.file:
            from .bpf import FilterError

            try:
                await self._run_file(emit)
            except (FilterError, ValueError, OSError) as e:  # CaptureError is a ValueError
                self.failed = str(e)
                self.ctx.health.last_error = self.failed
                self.ctx.log.error("%s", e)
        else:
            await self._run_live(emit)

    # ------------------------------------------------------------------ file
    def _backlog_limit(self) -> tuple[Any, int]:
        rt = self.ctx.runtime
        sinks = getattr(rt, "sinks", None) or {}
        if not sinks:
            return None, 0
        return rt, max(1, min(s.config.queue_size for s in sinks.values()) // 2)

    async def _run_file(self, emit: Emit) -> None:
        from ...capture.pcap import LINKTYPE_ETHERNET, CaptureFile

        pipe = self.pipeline = self._pipeline(live=False)
        rt, limit = self._backlog_limit()
        h = self.ctx.health
        with CaptureFile(self.config.device) as cap:
            it = iter(cap)
            batch: list[tuple[float, bytes]] = []
            other_links = 0
            while True:
                batch.clear()
                for ts, lt, frame in it:
                    if lt != LINKTYPE_ETHERNET:
                        other_links += 1
                        if other_links == 1 and cap.records == 1:
                            raise ValueError(f"{cap.path}: link type {lt} is not Ethernet (1); "
                                             "capture on an Ethernet interface, not 'any'")
                        continue
                    batch.append((ts, frame))
                    if len(batch) >= 2048:
                        break
                if not batch:
                    break
                self._emit_all(pipe.frames_in(batch), emit)
                h.gauges["file_bytes_read"] = cap.bytes_read
                if self.progress:
                    self.progress(cap.bytes_read, cap.size)
                await asyncio.sleep(0)
                if rt is not None:
                    # file mode must not lose readings: wait while any sink's queue is half full
                    while max(rt.queue_depth(n) for n in rt.sinks) > limit:
                        await asyncio.sleep(0.005)
            self._emit_all(pipe.close(), emit)
            if self.progress:
                self.progress(cap.bytes_read, cap.size)
            if cap.truncated:
                h.count("truncated_files")
                self.ctx.log.warning("%s: the last record is truncated (capture still being written?)", cap.path)
        for k, v in pipe.stats().items():
            h.gauges[k] = v
        self.ctx.log.info("%s: %d frames, %d reports", self.config.device, pipe.frames, pipe.reports)

    # ------------------------------------------------------------------ live
    async def _run_live(self, emit: Emit) -> None:
        from .live import LiveCapture

        pipe = self.pipeline = self._pipeline(live=True)
        cap = LiveCapture(self.config.device, self.config.filter)
        self.capturing = True
        loop = asyncio.get_running_loop()
        ready = asyncio.Event()
        loop.add_reader(cap.fileno(), ready.set)
        h = self.ctx.health
        self.ctx.log.info("capturing on %s with filter %s", self.config.device, cap.filter.expression)
        try:
            next_poll = time.monotonic() + 0.5
            while True:
                try:
                    await asyncio.wait_for(ready.wait(), 0.5)
                except TimeoutError:
                    pass
                ready.clear()
                while True:
                    frames = cap.read_batch()
                    if frames:
                        self._emit_all(pipe.frames_in(frames), emit)
                    if len(frames) < 512:
                        break
                    await asyncio.sleep(0)
                if time.monotonic() >= next_poll:
                    next_poll = time.monotonic() + 0.5
                    self._emit_all(pipe.poll(time.time()), emit)
                    cap.kernel_stats()
                    h.gauges.update(pipe.stats())
                    h.gauges["kernel_drops"] = cap.kernel_drops
        finally:
            self.capturing = False
            loop.remove_reader(cap.fileno())
            cap.close()
