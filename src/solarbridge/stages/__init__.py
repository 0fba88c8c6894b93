"""Runtime stages: steps every reading passes between its source and the bus.

``source -> CounterStage (counter hygiene) -> SiteStage (site power balance and energy) -> bus -> sinks``

A stage is plain code with no I/O on the hot path: ``process(reading, out)`` calls ``out`` for each reading it
passes on (the reading itself, possibly corrected, and any derived readings such as ``site:<name>``).
State that must survive a restart is saved atomically to the daemon's state directory by ``save()``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..model import Reading

Out = Callable[[Reading], None]


class Stage:
    """One step of the pipeline. ``save``/``close`` are called by the runtime (periodically and on stop)."""

    name = "stage"

    def process(self, reading: Reading, out: Out) -> None:
        out(reading)

    def save(self) -> None:
        """Persist state (atomic write); must not raise."""

    def close(self) -> None:
        self.save()


def chain(stages: list[Stage], sink: Out) -> Out:
    """One callable that runs ``reading`` through every stage in order, then into ``sink``."""
    out = sink
    for stage in reversed(stages):
        out = _bind(stage, out)
    return out


def _bind(stage: Stage, nxt: Out) -> Out:
    process = stage.process

    def run(reading: Reading) -> None:
        process(reading, nxt)

    return run


def number(m: dict[str, Any], key: str) -> float | None:
    """A finite number from ``m[key]`` (bools, strings and NaN/inf are not numbers here)."""
    v = m.get(key)
    t = type(v)
    if t is float:
        return v if v - v == 0.0 else None  # type: ignore[operator]  # inf - inf and nan - nan are nan
    if t is int:
        return float(v)  # type: ignore[arg-type]
    return None
