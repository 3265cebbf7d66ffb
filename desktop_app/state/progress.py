"""Turns step updates into what the progress bar says: step i/N, it/s and time left."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class ProgressInfo:
    """One progress bar state. `fraction` covers all batches of the job."""

    fraction: float
    text: str
    iterations_per_second: float | None
    eta_seconds: float | None


def format_duration(seconds: float) -> str:
    """"42 s", "3 min 05 s", "1 h 02 min"."""
    seconds = max(0, round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min {seconds:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


class ProgressTracker:
    """Measures speed from the step updates of one job (steps of all batches count)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._start: float | None = None
        self._start_done = 0

    def reset(self) -> None:
        """Forget the speed measurement (a new job starts)."""
        self._start = None
        self._start_done = 0

    def update(self, step: int, total: int, batch_index: int = 0,
               batch_total: int = 1) -> ProgressInfo:
        """The bar state after `step` of `total` in batch `batch_index` of `batch_total`."""
        now = self._clock()
        total = max(1, total)
        done = batch_index * total + step
        overall = total * max(1, batch_total)
        if self._start is None:
            # Speed is measured from the first update on: model loading is not a step.
            self._start, self._start_done = now, done
        text = f"Step {step}/{total}"
        if batch_total > 1:
            text += f" · batch {batch_index + 1}/{batch_total}"
        rate = eta = None
        elapsed = now - self._start
        if done > self._start_done and elapsed > 0:
            rate = (done - self._start_done) / elapsed
            eta = (overall - done) / rate
            text += f" · {rate:.2f} it/s · {format_duration(eta)} left"
        return ProgressInfo(min(1.0, done / overall), text, rate, eta)
