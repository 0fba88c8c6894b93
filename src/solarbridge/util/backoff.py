"""Capped exponential backoff with jitter, shared by every reconnecting component."""

from __future__ import annotations

import random
from dataclasses import dataclass, field


@dataclass
class Backoff:
    initial: float = 1.0
    factor: float = 2.0
    cap: float = 60.0
    jitter: float = 0.1
    attempts: int = 0
    _rng: random.Random = field(default_factory=random.Random, repr=False)

    def next_delay(self) -> float:
        """Delay before the next attempt; grows with each call until :meth:`reset`.

        Jitter only shortens the delay (by up to ``jitter`` of it), so the cap is a true upper bound and
        clients at the cap stay spread out instead of all waiting exactly ``cap``.
        """
        delay = min(self.cap, self.initial * (self.factor ** min(self.attempts, 64)))
        self.attempts += 1
        if self.jitter:
            delay *= 1 - self._rng.uniform(0, self.jitter)
        return delay

    def reset(self) -> None:
        self.attempts = 0
