"""The asyncio supervisor: starts sources and sinks, fans readings out, restarts, shuts down.

Each sink has its own bounded :class:`SinkQueue`; ``Bus.publish`` never awaits,
so a slow or dead sink cannot hold up a source or another sink. When a queue is
full the oldest reading is dropped and counted (``dropped``); sinks that must
not lose data (InfluxDB, Graphite) keep their own durable spool behind the queue.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import registry
from .model import ControlError, ControlRequest, ControlResult, DeviceInfo, Reading
from .plugin import Context, DeliveryPending, Health, Sink, Source
from .stages import Stage, chain
from .util.aiorun import cancel_and_wait
from .util.backoff import Backoff

log = logging.getLogger("solarbridge.runtime")


class SinkQueue:
    """A bounded FIFO with drop-oldest and batch get; cheaper than asyncio.Queue on the hot path."""

    __slots__ = ("_items", "_event", "maxsize", "dropped")

    def __init__(self, maxsize: int) -> None:
        self._items: deque[Reading] = deque()
        self._event = asyncio.Event()
        self.maxsize = maxsize
        self.dropped = 0

    def __len__(self) -> int:
        return len(self._items)

    def put(self, item: Reading) -> None:
        items = self._items
        if len(items) >= self.maxsize:
            items.popleft()
            self.dropped += 1
        items.append(item)
        if not self._event.is_set():
            self._event.set()

    def requeue(self, batch: list[Reading]) -> None:
        """Put a batch that failed back at the front, in order (oldest beyond capacity dropped)."""
        self._items.extendleft(reversed(batch))
        while len(self._items) > self.maxsize:
            self._items.popleft()
            self.dropped += 1
        self._event.set()

    async def get_batch(self, limit: int) -> list[Reading]:
        while not self._items:
            self._event.clear()
            await self._event.wait()
        items = self._items
        n = min(limit, len(items))
        if n == len(items):
            batch = list(items)
            items.clear()
        else:
            batch = [items.popleft() for _ in range(n)]
        return batch


@dataclass
class DeviceState:
    info: DeviceInfo
    source: str
    last_seen: float = 0.0
    online: bool = True
    latest: dict[str, Any] = field(default_factory=dict)
    timestamp: Any = None


class Bus:
    """Fan-out of every reading to every subscriber queue, plus the live device registry."""

    def __init__(self) -> None:
        self.queues: list[SinkQueue] = []
        self.devices: dict[str, DeviceState] = {}
        self.published = 0
        self.listeners: list[Any] = []  # callables fed every reading (SSE, /metrics)

    def subscribe(self, maxsize: int) -> SinkQueue:
        q = SinkQueue(maxsize)
        self.queues.append(q)
        return q

    def publish(self, reading: Reading) -> None:
        self.published += 1
        dev = self.devices.get(reading.device_id)
        if dev is None:
            info = reading.info or DeviceInfo(reading.device_id, reading.device_type, source=reading.source)
            dev = self.devices[reading.device_id] = DeviceState(info=info, source=reading.source)
        elif reading.info is not None:
            dev.info = reading.info
        dev.last_seen = time.time()
        dev.online = reading.online
        if reading.metrics:
            dev.latest.update(reading.metrics)
            dev.timestamp = reading.timestamp
        for q in self.queues:
            q.put(reading)
        for fn in self.listeners:
            fn(reading)

    def publish_many(self, readings: Iterable[Reading]) -> None:
        for r in readings:
            self.publish(r)


class Supervisor:
    """Runs every configured source and sink as its own task with restart on failure."""

    def __init__(self, config: Any) -> None:
        self.config = config
        self.bus = Bus()
        self.health: dict[str, Health] = {}
        self.sources: dict[str, Source] = {}
        self.sinks: dict[str, Sink] = {}
        self._sink_queues: dict[str, SinkQueue] = {}
        self._source_tasks: list[asyncio.Task[None]] = []
        self._sink_tasks: list[asyncio.Task[None]] = []
        self._stopping = asyncio.Event()
        #: after :meth:`stop`: per sink, what was not delivered
        self.undelivered: dict[str, str] = {}
        self.state_dir = Path(config.daemon.state_dir)
        self.started_at = time.time()
        self.stages = self._stages()
        #: what a source's emit calls: every stage in order, then the bus
        self.pipeline = chain(self.stages, self.bus.publish)
        self._save_task: asyncio.Task[None] | None = None

    def _stages(self) -> list[Stage]:
        """sources -> counter hygiene -> sites -> bus (see solarbridge.stages)."""
        from .stages.counters import CounterStage
        from .stages.sites import SiteStage

        opts = getattr(self.config, "source_counters", {})
        counters = CounterStage(opts, self.state_dir / "counters.json", self._stage_health("counters"))
        defaults = getattr(self.config, "counters", None)
        if defaults is not None:
            counters.default = defaults
        sites = SiteStage(list(getattr(self.config, "sites", [])), self.state_dir / "sites.json",
                          self._stage_health("sites"),
                          # a sharded fleet worker sees only its share of the devices: sites must be configured
                          auto=getattr(self.config.daemon, "auto_sites", True)
                          and getattr(self.config, "shard", None) is None)
        return [counters, sites]

    def _stage_health(self, name: str) -> Health:
        h = self.health[name] = Health(name, "stage", name)
        h.state = "running"
        return h

    def stage(self, name: str) -> Any:
        """The runtime stage called ``name`` (counters, sites), or None."""
        return next((s for s in self.stages if s.name == name), None)

    def save_stages(self) -> None:
        for st in self.stages:
            st.save()

    async def _save_periodically(self, every: float = 60.0) -> None:
        while not self._stopping.is_set():
            await self._sleep(every)
            await asyncio.to_thread(self.save_stages)

    # ---------------------------------------------------------------- construction
    def _context(self, name: str, kind: str, type_: str) -> Context:
        h = self.health[name] = Health(name, kind, type_)
        return Context(name=name, state_dir=self.state_dir, health=h,
                       log=logging.getLogger(f"solarbridge.{kind}.{name}"), runtime=self)

    def build(self) -> None:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        sink_cfgs = list(self.config.sinks)
        if self.config.daemon.history and not any(c.type == "history" for c in sink_cfgs):
            from .sinks.history.sink import HistorySink

            sink_cfgs.append(HistorySink.Config(type="history", name="history"))
        for cfg in sink_cfgs:
            cls = registry.load(registry.SINKS[cfg.type])
            sink = cls(cfg, self._context(cfg.name, "sink", cfg.type))
            self.sinks[cfg.name] = sink
            self._sink_queues[cfg.name] = self.bus.subscribe(cfg.queue_size)
        for cfg in self.config.sources:
            cls = registry.load(registry.SOURCES[cfg.type])
            self.sources[cfg.name] = cls(cfg, self._context(cfg.name, "source", cfg.type))

    def add_source(self, source: Source) -> None:
        """Register an already built source (tests, demo) before :meth:`run`."""
        self.health[source.ctx.name] = source.ctx.health
        source.ctx.runtime = self
        self.sources[source.ctx.name] = source

    def add_sink(self, sink: Sink) -> None:
        self.health[sink.ctx.name] = sink.ctx.health
        sink.ctx.runtime = self
        self.sinks[sink.ctx.name] = sink
        self._sink_queues[sink.ctx.name] = self.bus.subscribe(sink.config.queue_size)

    # ---------------------------------------------------------------- status
    def queue_depth(self, name: str) -> int:
        q = self._sink_queues.get(name)
        return len(q) if q is not None else 0

    def health_report(self) -> list[dict[str, Any]]:
        out = []
        for name, h in self.health.items():
            d = h.to_dict()
            if name in self.sinks:
                q = self._sink_queues[name]
                d["queue_depth"] = len(q)
                d["dropped"] = q.dropped
                d["pending"] = self.sinks[name].pending()
            out.append(d)
        return out

    async def control(self, request: ControlRequest) -> ControlResult:
        """Route a control request to the source that owns the device."""
        dev = self.bus.devices.get(request.device_id)
        owner = self.sources.get(dev.source) if dev else None
        if owner is None:
            for src in self.sources.values():
                if any(d.device_id == request.device_id for d in src.devices()):
                    owner = src
                    break
        if owner is None:
            raise ControlError(f"unknown device {request.device_id!r}", field_name="device_id", status=404)
        return await owner.control(request)

    # ---------------------------------------------------------------- tasks
    def _backoff(self) -> Backoff:
        d = self.config.daemon
        return Backoff(initial=d.backoff_initial, cap=d.backoff_cap)

    def _failed(self, h: Health, exc: BaseException) -> None:
        text = f"{type(exc).__name__}: {exc}"
        h.restarts += 1
        if h.state != "failed" or h.last_error != text:
            # log once per state change, not once per retry
            log.error("%s %s failed: %s (will retry with backoff)", h.kind, h.name, text,
                      exc_info=log.isEnabledFor(logging.DEBUG))
            h.error_since = time.time()
        h.state = "failed"
        h.last_error = text

    def _recovered(self, h: Health) -> None:
        if h.state == "failed":
            log.warning("%s %s recovered after %d restart(s)", h.kind, h.name, h.restarts)
        h.state = "running"

    async def _run_source(self, src: Source) -> None:
        h = src.ctx.health
        backoff = self._backoff()
        publish = self.pipeline

        def emit(reading: Reading) -> None:
            if h.state != "running":
                self._recovered(h)
                backoff.reset()
            h.last_success = time.time()
            publish(reading)

        # inventory devices start at their own phase of the poll interval: thousands of devices polled
        # in one burst every interval would queue behind each other (docs/fleet.md)
        offset = getattr(self.config, "start_offset", lambda _name: 0.0)(src.ctx.name)
        if offset > 0:
            await self._sleep(offset)
        while not self._stopping.is_set():
            try:
                if h.state == "starting":
                    h.state = "running"
                await src.run(emit)
                h.state = "stopped"
                return
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - any failure restarts the source
                self._failed(h, exc)
            await self._sleep(backoff.next_delay())

    async def _run_sink(self, sink: Sink, q: SinkQueue) -> None:
        h = sink.ctx.health
        backoff = self._backoff()
        limit = sink.config.batch_size
        while True:
            try:
                await sink.start()
                if h.state == "starting":
                    h.state = "running"
                while True:
                    batch = await q.get_batch(limit)
                    try:
                        await sink.write(batch)
                    except DeliveryPending:
                        raise  # the sink took the batch and holds it (pending()); nothing to hand back
                    except BaseException:
                        q.requeue(batch)
                        raise
                    h.last_success = time.time()
                    if h.state != "running":
                        # recovered means data flows again, not merely that start() returned
                        self._recovered(h)
                        backoff.reset()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - any failure restarts the sink
                self._failed(h, exc)
                with contextlib.suppress(Exception):
                    await sink.stop()
            await asyncio.sleep(backoff.next_delay())

    async def _sleep(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), seconds)

    async def start(self) -> None:
        for name, sink in self.sinks.items():
            self._sink_tasks.append(asyncio.create_task(self._run_sink(sink, self._sink_queues[name]),
                                                        name=f"sink:{name}"))
        for name, src in self.sources.items():
            self._source_tasks.append(asyncio.create_task(self._run_source(src), name=f"source:{name}"))
        self._save_task = asyncio.create_task(self._save_periodically(), name="stages:save")

    async def wait_sources(self) -> None:
        """Wait until every source has finished by itself (file replay, one-shot modes)."""
        if self._source_tasks:
            await asyncio.gather(*self._source_tasks, return_exceptions=True)

    async def stop(self, *, deliver: bool = False, timeout: float | None = None,
                   interrupt: asyncio.Event | None = None) -> dict[str, str]:
        """Stop sources, let sinks drain their queues, flush and stop them.

        Daemon shutdown (``deliver=False``) is bounded by ``shutdown_timeout``: a sink with a durable spool
        only needs to have spooled. The end of a finite run (``deliver=True``) waits until every sink has
        *delivered*, for at most ``timeout`` seconds (None: until ``interrupt`` is set). Returns, per sink,
        what was not delivered (an empty dict when everything was); also kept as :attr:`undelivered`.
        """
        shutdown = self.config.daemon.shutdown_timeout
        self._stopping.set()
        await cancel_and_wait(self._source_tasks, shutdown * 0.3)
        if self._save_task is not None:
            await cancel_and_wait([self._save_task], 1.0)
        for h in self.health.values():
            if h.kind in ("source", "stage"):
                h.state = "stopped"
        self.save_stages()  # counter baselines and site totals survive the restart
        limit = timeout if deliver else shutdown
        deadline = None if limit is None else time.monotonic() + limit

        def left(share: float = 1.0) -> float | None:
            return None if deadline is None else max(0.1, (deadline - time.monotonic()) * share)

        drain_for = left(0.6)
        with contextlib.suppress(TimeoutError):
            await _within(self._drain_all(), drain_for, interrupt)
        await cancel_and_wait(self._sink_tasks, max(0.1, left(0.3) or 1.0))
        results = await asyncio.gather(*(self._finish_sink(name, sink, deliver, left, interrupt)
                                         for name, sink in self.sinks.items()))
        self.undelivered = {name: text for name, text in zip(self.sinks, results, strict=True) if text}
        if not deliver:  # a finite run's caller reports (and sets its exit code) itself
            for name, text in self.undelivered.items():
                log.error("sink %s: not delivered: %s", name, text)
        return self.undelivered

    async def drain(self, timeout: float) -> bool:
        """Wait until every sink queue is empty (or timeout). True if drained."""
        try:
            await _within(self._drain_all(), timeout, None)
        except TimeoutError:
            return False
        return True

    async def _drain_all(self) -> None:
        while not all(len(q) == 0 for q in self._sink_queues.values()):
            await asyncio.sleep(0.02)

    async def _finish_sink(self, name: str, sink: Sink, deliver: bool, left: Any,
                           interrupt: asyncio.Event | None) -> str:
        """Write what is still queued, flush (or deliver), say what was not delivered, stop the sink."""
        q = self._sink_queues[name]
        lost = ""
        if len(q):
            # what is still queued goes to the sink directly before its final flush
            batch = await q.get_batch(len(q))
            try:
                await _within(sink.write(batch), left(), interrupt)
            except DeliveryPending:
                pass  # taken and held by the sink: deliver()/flush() retries it, undelivered() names it
            except Exception as exc:  # noqa: BLE001 - reported below, the batch is lost
                lost = f"{len(batch)} queued reading(s) not taken ({_why(exc)})"
        what = "deliver" if deliver else "flush"
        try:
            await _within(sink.deliver() if deliver else sink.flush(), left(), interrupt)
        except Exception as exc:  # noqa: BLE001
            log.warning("sink %s: could not %s before the deadline: %s", name, what, _why(exc))
        try:
            text = sink.undelivered()
        except Exception as exc:  # noqa: BLE001 - a broken report must not stop the shutdown
            text = f"unknown ({_why(exc)})"
        with contextlib.suppress(Exception):
            await asyncio.wait_for(sink.stop(), left() or 5.0)
        self.health[name].state = "stopped"
        return "; ".join(x for x in (lost, text) if x)

    async def run_until_stopped(self, stop_event: asyncio.Event) -> None:
        """Build from the config unless parts were added by hand, run until ``stop_event``, then stop."""
        if not (self.sources or self.sinks):
            self.build()
        await self.start()
        await stop_event.wait()
        await self.stop()


def _why(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return "timed out"
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


async def _within(aw: Any, timeout: float | None, interrupt: asyncio.Event | None) -> Any:
    """Await ``aw`` for at most ``timeout`` seconds (None: no limit) or until ``interrupt`` is set.

    Raises TimeoutError in either case, after cancelling ``aw`` (bounded, so shutdown cannot hang on it).
    """
    task = asyncio.ensure_future(aw)
    waits: set[asyncio.Future[Any]] = {task}
    stopper = asyncio.ensure_future(interrupt.wait()) if interrupt is not None else None
    if stopper is not None:
        waits.add(stopper)
    try:
        await asyncio.wait(waits, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        if stopper is not None:
            stopper.cancel()
    if task.done():
        return task.result()
    await cancel_and_wait([task], 1.0)
    raise TimeoutError
