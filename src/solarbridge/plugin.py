"""The two small interfaces everything plugs into: ``Source`` and ``Sink``.

A source produces :class:`~solarbridge.model.Reading` objects by calling
``emit``; it knows nothing of sinks. A sink consumes batches of readings; it
knows nothing of devices. The runtime supervises both (restart with backoff,
health, shutdown). Each plugin declares its pydantic ``Config`` model, which
the daemon config validates a ``[[sources]]``/``[[sinks]]`` table against.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field

from .model import ControlError, ControlRequest, ControlResult, DeviceInfo, Reading

Emit = Callable[[Reading], None]


class DeliveryPending(RuntimeError):  # noqa: N818 - a state, not a programming error
    """Raised by :meth:`Sink.write` that *took* the batch (it is held in the sink and counted by
    :meth:`Sink.pending`) but could not deliver it yet. The runtime marks the sink failed and retries with
    backoff, but does not hand the batch back again; the sink's :meth:`~Sink.flush`/:meth:`~Sink.deliver`
    retries it and :meth:`~Sink.undelivered` names what is still held at the end."""


class PluginConfig(BaseModel):
    """Keys every ``[[sources]]`` and ``[[sinks]]`` table accepts."""

    model_config = ConfigDict(extra="forbid")

    type: str
    name: str = ""


class SinkConfig(PluginConfig):
    queue_size: int = Field(100_000, ge=1, le=10_000_000, description="readings buffered for this sink")
    batch_size: int = Field(1000, ge=1, le=1_000_000, description="readings handed to the sink at once")


@dataclass
class Health:
    """What the supervisor knows about one running component; the API and /metrics read it."""

    name: str
    kind: str  # "source" or "sink"
    type: str
    state: str = "starting"  # starting, running, failed, stopped
    last_success: float | None = None
    last_error: str = ""
    error_since: float | None = None
    restarts: int = 0
    counters: dict[str, int] = field(default_factory=dict)
    gauges: dict[str, float] = field(default_factory=dict)

    def count(self, key: str, n: int = 1) -> None:
        self.counters[key] = self.counters.get(key, 0) + n

    def ok(self) -> None:
        self.last_success = time.time()

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name, "kind": self.kind, "type": self.type, "state": self.state,
            "last_success": self.last_success, "last_error": self.last_error,
            "error_since": self.error_since, "restarts": self.restarts,
            "counters": dict(self.counters), "gauges": dict(self.gauges),
        }


@dataclass
class Context:
    """Handed to every plugin: where it may keep state, how to log, and its health record."""

    name: str
    state_dir: Path
    health: Health
    log: logging.Logger
    #: the runtime, for plugins that need the device registry or control routing (API, MQTT)
    runtime: Any = None

    @classmethod
    def standalone(cls, name: str, kind: str, type_: str, state_dir: Path | str = ".") -> Context:
        """A context for use outside the daemon (seed-compatible commands, tests)."""
        return cls(name=name, state_dir=Path(state_dir), health=Health(name, kind, type_),
                   log=logging.getLogger(f"solarbridge.{kind}.{name}"))


class Source:
    Config: ClassVar[type[PluginConfig]] = PluginConfig

    def __init__(self, config: Any, ctx: Context) -> None:
        self.config = config
        self.ctx = ctx

    async def run(self, emit: Emit) -> None:
        """Produce readings until cancelled. Raise to be restarted with backoff; return to finish."""
        raise NotImplementedError

    def devices(self) -> list[DeviceInfo]:
        """Devices this source currently knows (with their controls)."""
        return []

    async def control(self, request: ControlRequest) -> ControlResult:
        """Execute a control request; validate first and raise ControlError (nothing sent) if invalid."""
        raise ControlError(f"device {request.device_id!r} accepts no commands", status=404)


class Sink:
    Config: ClassVar[type[SinkConfig]] = SinkConfig

    def __init__(self, config: Any, ctx: Context) -> None:
        self.config = config
        self.ctx = ctx

    async def start(self) -> None:
        """Open files or connections. Raise to be retried with backoff."""

    async def write(self, batch: list[Reading]) -> None:
        """Handle a batch. Raise on failure: the runtime keeps the batch and retries it (unless the
        exception is :class:`DeliveryPending`: the sink holds the batch itself)."""
        raise NotImplementedError

    async def flush(self) -> None:
        """Make everything written so far delivered or durably spooled (called on shutdown).

        A sink without a durable spool (MQTT) waits here until the server has confirmed it, connecting
        first if need be. The caller bounds the wait (cancellation at the shutdown deadline).
        """

    async def deliver(self) -> None:
        """End of a finite run (file mode, ``--duration``): wait until everything is delivered, not only
        spooled. The caller bounds the wait. Default: :meth:`flush`."""
        await self.flush()

    async def stop(self) -> None:
        """Release resources. Must not raise."""

    def pending(self) -> int:
        """Items held inside the sink (spool, buffers) not yet delivered; for health."""
        return 0

    def undelivered(self) -> str:
        """After flush/deliver, before stop: what was taken but not delivered, in words ("" if nothing)."""
        n = self.pending()
        return f"{n} item(s) not delivered" if n else ""


@dataclass
class DemoPart:
    """What one device family adds to `solarbridge demo`: running simulators plus the sources that read them.

    A family's ``demo.py`` has ``async def start(workdir: Path) -> DemoPart``; the demo starts the
    simulators in-process (asyncio servers) or as child processes, adds ``sources``/``sinks`` (raw TOML-like
    tables, validated like the daemon config) and prints ``notes`` to the user. ``stop`` is awaited on exit.
    """

    title: str
    sources: list[dict[str, Any]] = field(default_factory=list)
    sinks: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    #: ``[[sites]]`` tables for the devices this part's sources read (docs/sites-energy.md)
    sites: list[dict[str, Any]] = field(default_factory=list)
    stop: Callable[[], Any] | None = None
