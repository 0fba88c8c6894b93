"""Run a coroutine on a fresh event loop and always come back, even if some task refuses to stop.

``asyncio.run`` cancels leftover tasks and then waits for them without a limit, so a single task that
swallows its CancelledError would hang the process at exit. Here leftovers get a bounded grace period.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine, Iterable
from typing import Any, TypeVar

T = TypeVar("T")
log = logging.getLogger("solarbridge.runtime")


async def cancel_and_wait(tasks: Iterable[asyncio.Task[Any]], timeout: float) -> bool:
    """Cancel tasks and wait for them, but never longer than about ``timeout``; True if all ended.

    A task that swallows its CancelledError (a bug, or Python 3.11's ``wait_for`` losing a cancellation
    that arrives as its timeout fires) is cancelled once more, and if it still runs it is abandoned with
    an error line naming it, so shutdown can never hang on it.
    """
    live = [t for t in tasks if not t.done()]
    for t in live:
        t.cancel()
    if not live:
        return True
    _, pending = await asyncio.wait(live, timeout=timeout)
    if pending:
        for t in pending:
            t.cancel()
        _, pending = await asyncio.wait(pending, timeout=min(1.0, timeout))
    for t in pending:
        log.error("%s did not stop within %.1f s of being cancelled; abandoning it", t.get_name(), timeout)
    return not pending


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
