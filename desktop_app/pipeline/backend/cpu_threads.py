"""How many CPU threads a model's steps run on: every core, or one for a model so small that
waking the others costs more than they add.

OpenMP's threads sleep between parallel regions (`OMP_WAIT_POLICY=PASSIVE`, set in this
package's `__init__`, avoids a 50× collapse when anything else wants the CPU), so each of a
UNet call's hundreds of small operations pays a wake-up per thread. For a large model that is
noise; for the bundled demo model (6 M parameters, 8×8 latents) it is most of the step: on
the 2-core development machine a step takes 59 ms on two threads and 20 ms on one, and an image
1.37–1.67 s before this choice and 0.54–0.60 s after (`benchmarks/demo_speed.py`,
docs/performance.md).

So before the first job of a small model at a new size (UNet parameters × latent pixels under
`SMALL_WORK`: the demo model up to 128², never SD1.5 or SDXL) the engine times a few throwaway
steps on every thread and on one, and keeps one thread when it is clearly faster. The choice
is made before the job's own steps and holds for the session, so every image of a model and
size is made on the same thread count (the count can move a pixel by one level). A job
cancelled during the timing stops after the throwaway step under way, chooses nothing and
leaves every thread on; the next job times again. Setting OMP_NUM_THREADS yourself switches
this off.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Hashable

from desktop_app.pipeline.api import GenerationCancelled

log = logging.getLogger(__name__)

SMALL_WORK = 1e10  # UNet parameters × latent pixels below which one thread may be faster
ONE_THREAD_GAIN = 0.9  # one thread is kept when its steps take under 90 % of the others'


class CpuThreads:
    """The thread count per (model, latent size, batch) for this session. Worker thread only."""

    def __init__(self, threads: int, set_threads: Callable[[int], None]) -> None:
        self.threads = threads
        self._set_threads = set_threads
        self.enabled = threads > 1 and not os.environ.get("OMP_NUM_THREADS")
        self._chosen: dict[Hashable, int] = {}
        self.current = threads

    def use(self, threads: int) -> None:
        if threads != self.current:
            self._set_threads(threads)
            self.current = threads

    def settle(self, key: Hashable, work: Callable[[], float],
               step_s: Callable[[], float]) -> None:
        """Use the thread count chosen for `key`; choose it first if there is none: `work()`
        is the UNet's parameters × latent pixels, `step_s()` runs a few throwaway steps on the
        threads in use and returns the shortest (in seconds), or raises GenerationCancelled,
        which passes through with nothing chosen."""
        if not self.enabled:
            return
        if key not in self._chosen:
            self._chosen[key] = self._choose(key, work, step_s)
        self.use(self._chosen[key])

    def _choose(self, key: Hashable, work: Callable[[], float],
                step_s: Callable[[], float]) -> int:
        if work() >= SMALL_WORK:
            return self.threads
        try:
            self.use(self.threads)
            every = step_s()
            self.use(1)
            one = step_s()
        except GenerationCancelled:
            self.use(self.threads)
            raise
        except Exception:  # the choice is an optimisation: the job itself must not fail on it
            log.warning("Timing CPU threads failed; every thread stays on", exc_info=True)
            return self.threads
        chosen = 1 if one < ONE_THREAD_GAIN * every else self.threads
        log.info("CPU threads for %s: %d (a step took %.0f ms on %d threads, %.0f ms on one)",
                 key, chosen, every * 1000, self.threads, one * 1000)
        return chosen
