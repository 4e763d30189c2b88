"""A pilot's time budget, on an injectable clock (tests pass a fake one instead of sleeping)."""

from __future__ import annotations

import time
from collections.abc import Callable

# Defaults when the user names no budget: a pilot should cost minutes, not the hour a full run may take.
DEFAULT_MINUTES = {"cuda": 5.0, "cpu": 15.0}


class Budget:
    def __init__(self, seconds: float, clock: Callable[[], float] = time.monotonic):
        if seconds <= 0:
            raise ValueError(f"budget: {seconds:g} s; a pilot needs a positive budget")
        self.seconds = float(seconds)
        self.clock = clock
        self.started = clock()

    def spent(self) -> float:
        return self.clock() - self.started

    def left(self) -> float:
        return max(0.0, self.seconds - self.spent())

    def affords(self, seconds: float) -> bool:
        return seconds <= self.left()
