"""Energy from power where no counter exists: trapezoid integration that does not bridge gaps.

Pure arithmetic, no clock: the caller passes each sample's time. A gap longer than ``max_gap_factor`` times
the usual interval between samples (or ``max_gap_s`` before an interval is known) is not bridged: nothing is
counted for it, rather than a guess. Results are marked *derived* by the caller.
"""

from __future__ import annotations

from dataclasses import dataclass, field


def positive_area(p0: float, p1: float, dt_h: float) -> float:
    """∫ max(0, p(t)) dt for p linear from ``p0`` to ``p1`` over ``dt_h`` hours (Wh)."""
    if p0 >= 0 and p1 >= 0:
        return (p0 + p1) / 2 * dt_h
    if p0 <= 0 and p1 <= 0:
        return 0.0
    # the line crosses zero: only the positive triangle counts
    hi, lo = (p0, p1) if p0 > 0 else (p1, p0)
    return hi * hi / (hi - lo) / 2 * dt_h


@dataclass(slots=True)
class Integrator:
    """Integrates one power flow into Wh (``+`` part and ``-`` part kept apart, e.g. import and export)."""

    max_gap_factor: float = 4.0
    max_gap_s: float = 120.0
    last_t: float | None = None
    last_p: float = 0.0
    intervals: list[float] = field(default_factory=list)
    skipped_s: float = 0.0  # time not bridged (gaps), for health

    def add(self, t: float, p: float) -> tuple[float, float]:
        """Feed one sample; returns (positive Wh, negative Wh as a positive number) since the previous one."""
        if self.last_t is None or t <= self.last_t:
            if self.last_t is None:
                self.last_t, self.last_p = t, p
            return 0.0, 0.0
        dt = t - self.last_t
        usual = sorted(self.intervals)[len(self.intervals) // 2] if self.intervals else None
        limit = self.max_gap_factor * usual if usual else self.max_gap_s
        p0 = self.last_p
        self.last_t, self.last_p = t, p
        if usual is None or dt <= 2 * usual:
            self.intervals.append(dt)
            del self.intervals[:-9]
        if dt > limit:
            self.skipped_s += dt
            return 0.0, 0.0
        h = dt / 3600
        return positive_area(p0, p, h), positive_area(-p0, -p, h)
