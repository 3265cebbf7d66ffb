"""The engine's step callback (`_StepReporter`): progress, and previews paced by their cost.

Time is a fake clock: steps happen at the times a test names, and a stand-in previewer's
decode takes the time it is told to (on the CPU path by moving the clock, on the CUDA path
through stand-in events that report GPU time).
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
import torch

from desktop_app.pipeline.api import CancelToken, StepUpdate
from desktop_app.pipeline.backend import diffusers_backend
from desktop_app.pipeline.backend.diffusers_backend import _StepReporter
from desktop_app.pipeline.backend.previews import (
    PREVIEW_BUDGET,
    LinearPreviewer,
    PreviewCosts,
    StepCapture,
)


class Clock:
    now = 0.0

    def perf_counter(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    """The step reporter's time.perf_counter, set by the test."""
    fake = Clock()
    monkeypatch.setattr(diffusers_backend, "time", fake)
    return fake


def report(previewer: Any, clock: Clock, step_times: list[float], *, interval: float = 0.0,
           final_preview: bool = True, costs: PreviewCosts | None = None) -> list[StepUpdate]:
    """One batch starting at time 0, one step callback at each of `step_times`; the updates."""
    from diffusers import EulerDiscreteScheduler

    clock.now = 0.0
    updates: list[StepUpdate] = []
    reporter = _StepReporter(CancelToken(), updates.append, StepCapture(EulerDiscreteScheduler()),
                             previewer, 0, 1, preview_interval_s=interval,
                             final_preview=final_preview, costs=costs)
    pipe = SimpleNamespace(num_timesteps=len(step_times))
    for index, at in enumerate(step_times):
        clock.now = at
        reporter(pipe, index, 0, {"latents": torch.zeros(1, 4, 8, 8)})
    return updates


def previewed(updates: list[StepUpdate]) -> list[bool]:
    return [u.preview is not None for u in updates]


class Costly(LinearPreviewer):
    """A CPU previewer whose decode takes `cost` seconds of the fake clock."""

    def __init__(self, clock: Clock, cost: float) -> None:
        super().__init__(is_xl=False)
        self.clock, self.cost, self.made = clock, cost, 0

    def rgb(self, latent: torch.Tensor) -> torch.Tensor:
        self.made += 1
        self.clock.now += self.cost
        return super().rgb(latent)


STEPS = [0.2 * n for n in range(1, 11)]  # ten steps of 0.2 s


def test_a_free_preview_comes_every_step(clock: Clock) -> None:
    updates = report(Costly(clock, 0.0), clock, STEPS)
    assert [u.step for u in updates] == list(range(1, 11))
    assert all(previewed(updates))


def test_a_costly_preview_waits_until_its_cost_fits_the_budget(clock: Clock) -> None:
    cost = 0.05  # a quarter of a step: every step it would cost 25 % of the batch
    previewer = Costly(clock, cost)
    updates = report(previewer, clock, STEPS)
    gap = cost / PREVIEW_BUDGET  # 1 s with a 5 % budget
    assert gap == pytest.approx(1.0)
    # Step 1 (0.2 s: cost not known yet), then one gap after it (1.2 s: step 6); the last step
    # always has one.
    assert previewed(updates) == [True, False, False, False, False, True, False, False, False,
                                  True]
    assert previewer.made * cost <= PREVIEW_BUDGET * STEPS[-1] + cost  # the last one on top


def test_a_known_cost_also_spaces_the_next_batch_from_its_start(clock: Clock) -> None:
    costs = PreviewCosts()
    previewer = Costly(clock, 0.05)
    report(previewer, clock, STEPS, costs=costs)
    updates = report(previewer, clock, STEPS, costs=costs)
    # No preview of pure noise at step 1: the first comes one gap (1 s) into the batch.
    assert previewed(updates) == [False, False, False, False, True, False, False, False, False,
                                  True]


def test_one_slow_preview_does_not_thin_out_the_rest(clock: Clock) -> None:
    costs = PreviewCosts()
    previewer = Costly(clock, 0.0)
    report(previewer, clock, STEPS, costs=costs)  # measured: free
    previewer.cost = 0.5  # a collector pause, say
    report(previewer, clock, STEPS[:1] + STEPS[:1], costs=costs)
    previewer.cost = 0.0
    assert all(previewed(report(previewer, clock, STEPS, costs=costs)))


def test_the_cost_is_kept_per_preview_size(clock: Clock) -> None:
    costs = PreviewCosts()
    previewer = Costly(clock, 0.05)
    report(previewer, clock, STEPS, costs=costs)
    assert costs.gap(previewer, (4, 8, 8)) == pytest.approx(1.0)
    assert costs.gap(previewer, (4, 16, 16)) == 0.0  # not measured at that size yet


def test_fast_mode_previews_are_throttled_but_the_last_step_has_one(clock: Clock) -> None:
    updates = report(Costly(clock, 0.0), clock, [0.1, 0.2, 0.3, 0.4, 0.5], interval=3600.0)
    # Step 1 (still noise) gets none: the first preview comes one interval into the batch.
    assert previewed(updates) == [False, False, False, False, True]


def test_fast_mode_previews_come_once_per_interval(clock: Clock) -> None:
    updates = report(Costly(clock, 0.0), clock, [0.1, 0.3, 0.4, 0.6, 0.7], interval=0.25)
    assert previewed(updates) == [False, True, False, True, True]


class CudaStandIns:
    """A previewer whose preview n is an 8×8 image of value n "on the GPU", taking `gpu_ms`
    of GPU time, and CUDA events whose copies are done when `copied`."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, copied: bool,
                 gpu_ms: float | None = 0.0) -> None:
        """`gpu_ms` None: the events cannot tell the time (elapsed_time raises)."""
        self.made, self.waits = 0, 0
        stand_ins = self

        class Event:
            def __init__(self, enable_timing: bool = False) -> None:
                assert enable_timing

            def record(self) -> None:
                pass

            def query(self) -> bool:
                return copied

            def synchronize(self) -> None:
                stand_ins.waits += 1

            def elapsed_time(self, _end: Event) -> float:
                if gpu_ms is None:
                    raise RuntimeError("Both events must be recorded before calculating "
                                       "elapsed time.")
                return gpu_ms

        monkeypatch.setattr(torch.cuda, "Event", Event)

    def rgb(self, _latents: torch.Tensor) -> Any:
        self.made += 1
        host = torch.full((8, 8, 3), self.made, dtype=torch.uint8)

        class OnGpu:  # what a previewer returns on CUDA: copied to the host without waiting
            def to(self, *_args: object, **_kwargs: object) -> torch.Tensor:
                return host

        return OnGpu()


@pytest.fixture
def latents_on_cuda(monkeypatch: pytest.MonkeyPatch) -> None:
    """The image-0 latents the reporter previews claim to be on a CUDA device."""
    def on_cuda(_capture: StepCapture, latents: torch.Tensor) -> Any:
        return SimpleNamespace(device=SimpleNamespace(type="cuda"), shape=latents.shape[1:])

    monkeypatch.setattr(StepCapture, "preview_latents", on_cuda)


def shown_values(updates: list[StepUpdate]) -> list[int | None]:
    """The value of each update's preview (None: no preview)."""
    return [None if u.preview is None else u.preview.rgb[0] for u in updates]


@pytest.mark.usefixtures("latents_on_cuda")
@pytest.mark.parametrize("copied", [True, False])
def test_cuda_previews_are_published_as_soon_as_their_copy_is_done(
        monkeypatch: pytest.MonkeyPatch, clock: Clock, copied: bool) -> None:
    gpu = CudaStandIns(monkeypatch, copied)
    updates = report(gpu, clock, [0.1, 0.3, 0.4, 0.45, 0.5], interval=0.25)
    # Preview 1 is made at step 2 (0.3 s) and shown at step 3 once copied, not an interval
    # later; the last step makes and shows preview 2, waiting for its copy (the one wait).
    assert shown_values(updates) == [None, None, 1 if copied else None, None, 2]
    assert gpu.waits == 1


@pytest.mark.usefixtures("latents_on_cuda")
def test_cuda_previews_are_paced_by_their_gpu_time(monkeypatch: pytest.MonkeyPatch,
                                                   clock: Clock) -> None:
    gpu = CudaStandIns(monkeypatch, copied=True, gpu_ms=50.0)  # gap 1 s
    updates = report(gpu, clock, STEPS)
    # Made at step 1, shown at step 2 (copied); the GPU time then holds the next until 1.2 s.
    assert shown_values(updates) == [None, 1, None, None, None, None, 2, None, None, 3]


@pytest.mark.usefixtures("latents_on_cuda")
def test_a_preview_whose_gpu_time_cannot_be_read_is_still_shown(
        monkeypatch: pytest.MonkeyPatch, clock: Clock) -> None:
    gpu = CudaStandIns(monkeypatch, copied=True, gpu_ms=None)
    updates = report(gpu, clock, STEPS[:4])
    assert shown_values(updates) == [None, 1, 2, 4]  # made every step, as with no known cost


def test_on_an_apple_gpu_the_preview_is_timed_after_the_queued_step(
        monkeypatch: pytest.MonkeyPatch, clock: Clock) -> None:
    """MPS runs asynchronously too: the step queued before the preview is waited for first,
    so that its time is not counted as the preview's."""
    events: list[str] = []

    def synchronize() -> None:
        events.append("sync")
        clock.now += 1.0  # the step still running on the GPU

    class OnMps:
        def rgb(self, _latent: Any) -> torch.Tensor:
            events.append("decode")
            clock.now += 0.05
            return torch.zeros((1, 1, 3), dtype=torch.uint8)

    def on_mps(_capture: StepCapture, latents: torch.Tensor) -> Any:
        return SimpleNamespace(device=SimpleNamespace(type="mps"), shape=latents.shape[1:])

    monkeypatch.setattr(torch.mps, "synchronize", synchronize)
    monkeypatch.setattr(StepCapture, "preview_latents", on_mps)
    costs = PreviewCosts()
    previewer = OnMps()
    report(previewer, clock, [0.2], costs=costs)
    assert events == ["sync", "decode"]
    assert costs.gap(previewer, (4, 8, 8)) == pytest.approx(0.05 / PREVIEW_BUDGET)


@pytest.mark.usefixtures("latents_on_cuda")
@pytest.mark.parametrize("copied", [True, False])
def test_without_a_final_preview_the_last_step_neither_decodes_nor_waits(
        monkeypatch: pytest.MonkeyPatch, clock: Clock, copied: bool) -> None:
    """Fast mode on CUDA: the last step makes no preview and never waits for the GPU; a
    preview whose copy finished meanwhile is still shown."""
    gpu = CudaStandIns(monkeypatch, copied)
    updates = report(gpu, clock, [0.1, 0.3, 0.35, 0.4, 0.45], interval=0.25,
                     final_preview=False)
    assert gpu.made == 1  # at step 2 (0.3 s); none at step 5
    assert shown_values(updates) == [None, None, 1 if copied else None, None, None]
    assert gpu.waits == 0


@pytest.mark.parametrize("error", [torch.OutOfMemoryError("CUDA out of memory. Tried to allocate"),
                                   ValueError("a previewer bug")])
def test_a_failing_preview_switches_previews_off_but_the_steps_go_on(
        clock: Clock, error: Exception) -> None:
    class FailsSecondTime(LinearPreviewer):
        calls = 0

        def rgb(self, latent: torch.Tensor) -> torch.Tensor:
            self.calls += 1
            if self.calls == 2:
                raise error
            return super().rgb(latent)

    previewer = FailsSecondTime(is_xl=False)
    updates = report(previewer, clock, [0.1, 0.2, 0.3, 0.4, 0.5])
    assert [u.step for u in updates] == [1, 2, 3, 4, 5]
    assert previewed(updates) == [True, False, False, False, False]
    assert previewer.calls == 2
