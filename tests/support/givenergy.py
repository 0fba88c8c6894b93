"""Helpers for GivEnergy tests: run a simulator in-process on an ephemeral loopback port."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable
from typing import Any, TypeVar

from solarbridge.sources.givenergy.simulator import DongleSimulator, Realism, SimInverter

T = TypeVar("T")


def run(coro: Awaitable[T], timeout: float = 30.0) -> T:
    async def wrapped() -> T:
        return await asyncio.wait_for(coro, timeout)
    return asyncio.run(wrapped())


@contextlib.asynccontextmanager
async def simulator(batteries: int = 2, model: str = "hybrid", realism: Realism | None = None,
                    **kw: Any) -> AsyncIterator[DongleSimulator]:
    sim = DongleSimulator(SimInverter(model, batteries), "127.0.0.1", 0, realism=realism, **kw)
    await sim.start()
    try:
        yield sim
    finally:
        await sim.stop()


