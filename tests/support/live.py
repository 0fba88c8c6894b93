"""A real daemon (Supervisor + web service) on an ephemeral loopback port, run in a background thread."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from solarbridge.config import build
from solarbridge.model import Reading
from solarbridge.runtime import Supervisor


class LiveDaemon:
    """``with LiveDaemon(tmp, sources=[...]) as d: d.url ...``; ``d.publish(reading)`` injects a reading."""

    def __init__(self, state_dir: Path, *, sources: list[dict[str, Any]] | None = None,
                 api: dict[str, Any] | None = None, history: bool = True,
                 demo_parts: list[Callable[[Path], Awaitable[Any]]] | None = None,
                 extra: dict[str, Any] | None = None) -> None:
        self.state_dir = Path(state_dir)
        self.raw = {"daemon": {"state_dir": str(state_dir), "history": history, "shutdown_timeout": 3},
                    "api": {"enabled": True, "listen": "127.0.0.1:0", **(api or {})},
                    "sources": list(sources or []), **(extra or {})}
        self.demo_parts = demo_parts or []
        self.cfg: Any = None
        self.url = ""
        self.urls: list[str] = []
        self.sup: Supervisor | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._main, name="live-daemon", daemon=True)

    def __enter__(self) -> LiveDaemon:
        self._thread.start()
        if not self._ready.wait(20):
            raise TimeoutError("daemon did not start within 20 s")
        if self._error is not None:
            raise self._error
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def stop(self) -> None:
        if self.loop is not None and self._stop is not None and self._thread.is_alive():
            self.loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(20)

    def call(self, fn: Callable[..., Any], *args: Any) -> None:
        assert self.loop is not None
        self.loop.call_soon_threadsafe(fn, *args)

    def publish(self, reading: Reading) -> None:
        assert self.sup is not None
        # the way a source's emit goes: counter hygiene and sites, then the bus
        self.call(self.sup.pipeline, reading)

    def run_coro(self, coro: Any, timeout: float = 10) -> Any:
        assert self.loop is not None
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def _main(self) -> None:
        try:
            asyncio.run(self._amain())
        except BaseException as e:  # noqa: BLE001 - reported to the test thread
            self._error = e
            self._ready.set()

    async def _amain(self) -> None:
        from solarbridge.api.server import serve

        self.loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        parts = []
        for start in self.demo_parts:  # simulators run in this loop, their sources read them
            parts.append(await start(self.state_dir))
            self.raw["sources"] += parts[-1].sources
        self.cfg = build(self.raw)
        sup = self.sup = Supervisor(self.cfg)
        sup.build()
        await sup.start()

        def ready(urls: list[str]) -> None:
            self.urls = [u.rstrip("/") for u in urls]
            self.url = self.urls[0]
            self._ready.set()

        api = asyncio.create_task(serve(sup, self.cfg.api, on_ready=ready))
        stop = asyncio.create_task(self._stop.wait())
        await asyncio.wait([api, stop], return_when=asyncio.FIRST_COMPLETED)
        if api.done() and api.exception() is not None:
            self._error = api.exception()
            self._ready.set()
        api.cancel()
        await asyncio.gather(api, return_exceptions=True)
        stop.cancel()
        await sup.stop()
        for p in parts:
            if p.stop is not None:
                res = p.stop()
                if asyncio.iscoroutine(res):
                    await res
