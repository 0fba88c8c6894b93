"""Small sources and sinks used to exercise the runtime."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from solarbridge.config import build
from solarbridge.model import Reading
from solarbridge.plugin import Context, Sink, SinkConfig, Source


def reading(i: int, device: str = "dev1") -> Reading:
    return Reading(device, "test", datetime.fromtimestamp(1_700_000_000 + i, UTC), {"n": i, "p_w": i * 1.5},
                   source="t")


def ctx(name: str, kind: str, tmp: Path) -> Context:
    return Context.standalone(name, kind, "test", tmp)


class ListSource(Source):
    """Emits `count` readings, `per_tick` at a time, then returns."""

    def __init__(self, name: str, tmp: Path, count: int, per_tick: int = 100, pause: float = 0.0) -> None:
        super().__init__(None, ctx(name, "source", tmp))
        self.count, self.per_tick, self.pause = count, per_tick, pause

    async def run(self, emit) -> None:
        for i in range(self.count):
            emit(reading(i))
            if i % self.per_tick == self.per_tick - 1:
                await asyncio.sleep(self.pause)


class FailingSource(Source):
    """Fails `failures` times, then emits one reading and waits forever."""

    def __init__(self, tmp: Path, failures: int) -> None:
        super().__init__(None, ctx("flaky", "source", tmp))
        self.failures = failures
        self.starts: list[float] = []

    async def run(self, emit) -> None:
        self.starts.append(asyncio.get_running_loop().time())
        if len(self.starts) <= self.failures:
            raise ConnectionError("device unreachable")
        emit(reading(0))
        await asyncio.Event().wait()


class CollectSink(Sink):
    def __init__(self, name: str, tmp: Path, queue_size: int = 100_000, delay: float = 0.0,
                 fail_first: int = 0) -> None:
        super().__init__(SinkConfig(type="collect", name=name, queue_size=queue_size), ctx(name, "sink", tmp))
        self.got: list[Reading] = []
        self.delay = delay
        self.fail_first = fail_first
        self.flushed = False
        self.stopped = False

    async def write(self, batch: list[Reading]) -> None:
        if self.fail_first:
            self.fail_first -= 1
            raise OSError("disk full")
        if self.delay:
            await asyncio.sleep(self.delay)
        self.got.extend(batch)

    async def flush(self) -> None:
        self.flushed = True

    async def stop(self) -> None:
        self.stopped = True


class RaisingSink(CollectSink):
    async def write(self, batch: list[Reading]) -> None:
        raise RuntimeError("this sink is broken")


def config(tmp: Path, **daemon: Any):
    return build({"daemon": {"state_dir": str(tmp), "history": False, "backoff_initial": 0.01,
                             "backoff_cap": 0.05, **daemon}})


class StubbornSource(Source):
    """Swallows cancellation (as a buggy device client might) and keeps running."""

    def __init__(self, tmp: Path) -> None:
        super().__init__(None, ctx("stubborn", "source", tmp))

    async def run(self, emit) -> None:
        emit(reading(0))
        while True:
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                pass
