"""Run a coroutine on a fresh event loop and always come back, even if some task refuses to stop.

``asyncio.run`` cancels leftover tasks and then waits for them without a limit, so a single task that
swallows its CancelledError would hang the process at exit. Here leftovers get a bounded grace period.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")
log = logging.getLogger("solarbridge.runtime")


def run(coro: Coroutine[Any, Any, T], *, grace: float = 1.0) -> T:
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    try:
        return loop.run_until_complete(coro)
    finally:
        try:
            leftovers = [t for t in asyncio.all_tasks(loop) if not t.done()]
            for t in leftovers:
                t.cancel()
            if leftovers:
                _, pending = loop.run_until_complete(asyncio.wait(leftovers, timeout=grace))
                for t in pending:
                    log.error("task %s ignored cancellation; leaving it behind at exit", t.get_name())
            loop.run_until_complete(asyncio.wait_for(loop.shutdown_asyncgens(), grace))
            loop.run_until_complete(asyncio.wait_for(loop.shutdown_default_executor(), grace * 5))
        except (TimeoutError, RuntimeError) as e:
            log.debug("event loop shutdown: %s", e)
        finally:
            asyncio.set_event_loop(None)
            loop.close()
