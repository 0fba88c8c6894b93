"""A sink that discards everything (benchmarks, and to measure the bus itself)."""

from __future__ import annotations

from ...model import Reading
from ...plugin import Sink


class NullSink(Sink):
    async def write(self, batch: list[Reading]) -> None:
        self.ctx.health.count("readings", len(batch))
