"""Serve until SIGINT or SIGTERM: the one place that installs and removes the stop-signal handlers.

Every long-running command (the daemon, sunsynk-capture, enphase-monitor, the simulators, netservices)
runs until either signal arrives and then shuts down in its own way::

    with StopSignals() as stop:
        ...start things...
        await stop.wait()
        ...stop things (a second Ctrl-C during shutdown is absorbed, not a KeyboardInterrupt)...

The handlers stay installed for the whole ``with`` block and are removed on leaving it. Where the loop
cannot take signal handlers (not the main thread, or Windows) the block still works; only ``set()`` or
the caller's own event then ends the wait.

Synchronous code (seextract following a capture) uses the same block outside an event loop and polls
``is_set()``; there a second signal raises KeyboardInterrupt at once, for a read that blocks.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Callable
from types import TracebackType
from typing import Any

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class StopSignals:
    """An :class:`asyncio.Event` set by SIGINT/SIGTERM while the ``with`` block runs.

    ``event``: use the caller's event (so code outside can also ask for a stop). ``on_signal``: called
    with the signal number as well, e.g. to cancel a task. ``signum`` is the first signal received.
    """

    def __init__(self, event: asyncio.Event | None = None,
                 on_signal: Callable[[int], None] | None = None) -> None:
        self.event = event if event is not None else asyncio.Event()
        self.on_signal = on_signal
        self.signum: int | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._installed: list[int] = []
        self._previous: dict[int, Any] = {}  # synchronous use: the handlers to put back

    def _received(self, signum: int) -> None:
        if self.signum is None:
            self.signum = signum
        self.event.set()
        if self.on_signal is not None:
            self.on_signal(signum)

    def _received_sync(self, signum: int, _frame: object) -> None:
        if self.event.is_set():  # a second signal: give up at once
            raise KeyboardInterrupt
        self._received(signum)

    def __enter__(self) -> StopSignals:
        try:
            self._loop = asyncio.get_running_loop()
        except RuntimeError:  # no event loop: plain handlers
            self._loop = None
            for sig in STOP_SIGNALS:
                with contextlib.suppress(ValueError):  # not the main thread
                    self._previous[sig] = signal.signal(sig, self._received_sync)
            return self
        for sig in STOP_SIGNALS:
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                self._loop.add_signal_handler(sig, self._received, sig)
                self._installed.append(sig)
        return self

    def __exit__(self, et: type[BaseException] | None, e: BaseException | None,
                 tb: TracebackType | None) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()
        if self._loop is None:
            return
        for sig in self._installed:
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                self._loop.remove_signal_handler(sig)
        self._installed.clear()

    @property
    def name(self) -> str:
        """The received signal's name (``SIGTERM``), or ``""`` when stopped otherwise."""
        return signal.Signals(self.signum).name if self.signum is not None else ""

    def set(self) -> None:
        self.event.set()

    def is_set(self) -> bool:
        return self.event.is_set()

    async def wait(self) -> None:
        await self.event.wait()

