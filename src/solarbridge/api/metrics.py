"""Prometheus exposition: every latest device metric plus the daemon's own counters.

Device metrics are gauges named ``solarbridge_<metric>`` with labels ``device_id``
and ``device_type`` (booleans as 0/1; string values are not exported). The
daemon's own numbers are under ``solarbridge_daemon_*`` with labels
``component``, ``kind`` and ``type``. The text is produced by prometheus-client
from a collector built per scrape, so no state is kept between scrapes.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from ..model import metric_spec

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

_BAD = re.compile(r"[^a-zA-Z0-9_]")
#: counters every source reports (0 until something happens) so alerts can rely on them
SOURCE_COUNTERS = ("readings", "decode_errors", "crc_errors", "reconnects")
_COMPONENT_LABELS = ["component", "kind", "type"]


def metric_name(name: str) -> str:
    """A valid Prometheus metric name for a solarbridge metric name."""
    return "solarbridge_" + _BAD.sub("_", name)


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return 1.0 if value else 0.0
    if isinstance(value, int | float):
        f = float(value)
        return f if not math.isnan(f) else None
    return None


class SupervisorCollector:
    def __init__(self, supervisor: Any) -> None:
        self.sup = supervisor

    def collect(self) -> Iterator[Metric]:
        yield from self._devices()
        yield from self._daemon()

    def _devices(self) -> Iterator[Metric]:
        families: dict[str, GaugeMetricFamily] = {}
        online = GaugeMetricFamily("solarbridge_device_online", "1 when the source has comms with the device",
                                   labels=["device_id", "device_type", "source"])
        seen = GaugeMetricFamily("solarbridge_device_last_seen_timestamp_seconds",
                                 "Unix time of the device's last reading", labels=["device_id", "device_type"])
        for dev_id, dev in list(self.sup.bus.devices.items()):
            dtype = dev.info.device_type
            online.add_metric([dev_id, dtype, dev.source], 1.0 if dev.online else 0.0)
            if dev.last_seen:
                seen.add_metric([dev_id, dtype], dev.last_seen)
            for name, value in list(dev.latest.items()):
                v = _number(value)
                if v is None:
                    continue
                fam_name = metric_name(name)
                fam = families.get(fam_name)
                if fam is None:
                    spec = metric_spec(name)
                    help_text = spec.description or name + (f" ({spec.unit})" if spec.unit else "")
                    fam = families[fam_name] = GaugeMetricFamily(fam_name, help_text,
                                                                 labels=["device_id", "device_type"])
                fam.add_metric([dev_id, dtype], v)
        yield online
        yield seen
        # device metric names that would collide with the daemon's own families are skipped
        for name, fam in families.items():
            if not name.startswith(("solarbridge_daemon_", "solarbridge_device_")):
                yield fam

    def _daemon(self) -> Iterator[Metric]:
        sup = self.sup
        readings = CounterMetricFamily("solarbridge_daemon_readings", "readings published on the bus")
        readings.add_metric([], float(sup.bus.published))
        yield readings
        start = GaugeMetricFamily("solarbridge_daemon_start_time_seconds", "Unix time the daemon started")
        start.add_metric([], float(getattr(sup, "started_at", time.time())))
        yield start
        devices = GaugeMetricFamily("solarbridge_daemon_devices", "devices known to the daemon")
        devices.add_metric([], float(len(sup.bus.devices)))
        yield devices
        shard = getattr(getattr(sup, "config", None), "shard", None)
        if shard is not None:
            # one worker of a fleet (docs/fleet.md): which share of the inventory this process runs
            info = GaugeMetricFamily("solarbridge_daemon_shard", "this worker's shard: index k of count n workers",
                                     labels=["shard", "index", "count"])
            info.add_metric([shard.label, str(shard.index), str(shard.count)], 1.0)
            yield info
            srcs = GaugeMetricFamily("solarbridge_daemon_shard_sources", "sources this worker runs")
            srcs.add_metric([], float(len(getattr(sup, "sources", {}))))
            yield srcs

        up = GaugeMetricFamily("solarbridge_daemon_component_up", "1 when a source or sink is running",
                               labels=_COMPONENT_LABELS)
        restarts = CounterMetricFamily("solarbridge_daemon_restarts", "restarts after failures",
                                       labels=_COMPONENT_LABELS)
        last_ok = GaugeMetricFamily("solarbridge_daemon_last_success_timestamp_seconds",
                                    "Unix time of the last successful read or write", labels=_COMPONENT_LABELS)
        queue = GaugeMetricFamily("solarbridge_daemon_queue_depth", "readings queued for a sink",
                                  labels=_COMPONENT_LABELS)
        spool = GaugeMetricFamily("solarbridge_daemon_spool_depth",
                                  "items held inside a sink (spool, buffers) not yet delivered",
                                  labels=_COMPONENT_LABELS)
        dropped = CounterMetricFamily("solarbridge_daemon_dropped",
                                      "readings dropped because a sink queue was full", labels=_COMPONENT_LABELS)
        counters: dict[str, CounterMetricFamily] = {}
        gauges: dict[str, GaugeMetricFamily] = {}
        reserved = {"readings", "restarts", "dropped"}
        for item in sup.health_report():
            labels = [item["name"], item["kind"], item["type"]]
            up.add_metric(labels, 1.0 if item["state"] == "running" else 0.0)
            restarts.add_metric(labels, float(item.get("restarts", 0)))
            if item.get("last_success"):
                last_ok.add_metric(labels, float(item["last_success"]))
            if "queue_depth" in item:
                queue.add_metric(labels, float(item["queue_depth"]))
                spool.add_metric(labels, float(item.get("pending", 0)))
                dropped.add_metric(labels, float(item.get("dropped", 0)))
            values = dict(item.get("counters", {}))
            if item["kind"] == "source":
                for key in SOURCE_COUNTERS:
                    values.setdefault(key, 0)
            for key, n in values.items():
                name = "solarbridge_daemon_" + _BAD.sub("_", key).removesuffix("_total")
                if key in reserved and key != "readings":
                    name += "_counted"
                if key == "readings":
                    name = "solarbridge_daemon_source_readings"
                fam = counters.get(name)
                if fam is None:
                    fam = counters[name] = CounterMetricFamily(name, f"{key} counted by the component",
                                                               labels=_COMPONENT_LABELS)
                fam.add_metric(labels, float(n))
            for key, g in item.get("gauges", {}).items():
                v = _number(g)
                if v is None:
                    continue
                name = "solarbridge_daemon_" + _BAD.sub("_", key)
                fam_g = gauges.get(name)
                if fam_g is None:
                    fam_g = gauges[name] = GaugeMetricFamily(name, f"{key} reported by the component",
                                                             labels=_COMPONENT_LABELS)
                fam_g.add_metric(labels, v)
        yield from (up, restarts, last_ok, queue, spool, dropped)
        taken = {"solarbridge_daemon_" + n for n in (
            "readings", "start_time_seconds", "devices", "shard", "shard_sources", "component_up", "restarts",
            "last_success_timestamp_seconds", "queue_depth", "spool_depth", "dropped")}
        for name, fam in counters.items():
            if name not in taken:
                taken.add(name)
                yield fam
        for name, fam_g in gauges.items():
            # a gauge may not share a name with a counter family (x vs x_total both exist)
            if name not in taken and name.removesuffix("_total") not in taken:
                yield fam_g


def render(supervisor: Any) -> bytes:
    """The Prometheus text exposition for one scrape."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(SupervisorCollector(supervisor))  # type: ignore[arg-type]
    return generate_latest(registry)
