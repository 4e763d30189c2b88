"""Wall seconds of each phase of a run or an evaluation, reported in result.json and report.json, so the time
outside the optimizer steps and the generation (loading, tokenizing, merging, scoring) is visible. Standard library
only: the evaluation imports it without pulling in the training stack."""

from __future__ import annotations

import time


class PhaseClock:
    def __init__(self):
        self.seconds: dict[str, float] = {}
        self._last = time.perf_counter()

    def mark(self, phase: str) -> None:
        """Record the time since the previous mark (or the start) as `phase`."""
        now = time.perf_counter()
        self.seconds[phase] = round(now - self._last, 2)
        self._last = now
