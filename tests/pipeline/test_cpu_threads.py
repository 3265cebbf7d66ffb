"""CPU threads per model and size (cpu_threads.py): small models are timed on every thread and
on one before their first job; the choice holds for the session."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import torch

from desktop_app.pipeline.api import CancelToken, GenerationCancelled
from desktop_app.pipeline.backend.cpu_threads import SMALL_WORK, CpuThreads


@pytest.fixture(autouse=True)
def no_user_thread_count(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)  # the test suite sets it


class Machine:
    """Four threads; a throwaway step takes `step_s[threads in use]`."""

    def __init__(self, step_s: dict[int, float], threads: int = 4) -> None:
        self.step_s, self.calls, self.probes = step_s, [], 0
        self.owner = CpuThreads(threads, self.calls.append)

    def settle(self, key: str = "model", work: float = SMALL_WORK / 10) -> None:
        self.owner.settle(key, lambda: work, self.probe)

    def probe(self) -> float:
        self.probes += 1
        return self.step_s[self.owner.current]


def test_a_small_model_runs_on_one_thread_when_that_is_clearly_faster() -> None:
    machine = Machine({4: 0.08, 1: 0.05})
    machine.settle()
    assert machine.owner.current == 1 and machine.calls == [1] and machine.probes == 2
    machine.settle()  # chosen for the session: no second timing
    assert machine.probes == 2 and machine.calls == [1]


def test_every_thread_stays_when_one_is_not_clearly_faster() -> None:
    machine = Machine({4: 0.08, 1: 0.075})  # within 10 %
    machine.settle()
    assert machine.owner.current == 4 and machine.calls == [1, 4]


def test_a_large_model_is_never_timed() -> None:
    machine = Machine({})  # a throwaway step would fail: there is no timing for it
    machine.settle(work=SMALL_WORK)
    assert machine.probes == 0 and machine.calls == []


def test_each_model_and_size_has_its_own_choice() -> None:
    machine = Machine({4: 0.08, 1: 0.05})
    machine.settle("small")
    machine.settle("large", work=SMALL_WORK * 100)
    machine.settle("small")
    assert machine.calls == [1, 4, 1] and machine.probes == 2


def test_a_failed_timing_leaves_every_thread_on(caplog: pytest.LogCaptureFixture) -> None:
    machine = Machine({4: 0.08})  # the one-thread step "fails" (no timing for it)
    with caplog.at_level(logging.WARNING):
        machine.settle()
    assert machine.owner.current == 4 and machine.calls == [1, 4]
    assert "every thread stays on" in caplog.text


def test_a_cancel_during_the_timing_passes_through_and_chooses_nothing() -> None:
    machine = Machine({4: 0.08, 1: 0.05})
    probe = machine.probe

    def cancelled_on_one_thread() -> float:
        if machine.owner.current == 1:
            raise GenerationCancelled()
        return probe()

    with pytest.raises(GenerationCancelled):
        machine.owner.settle("model", lambda: SMALL_WORK / 10, cancelled_on_one_thread)
    assert machine.owner.current == 4 and machine.owner._chosen == {}
    machine.settle()  # the next job times again
    assert machine.owner.current == 1 and machine.probes == 3


def test_nothing_is_timed_with_one_core_or_a_thread_count_set_by_the_user(
        monkeypatch: pytest.MonkeyPatch) -> None:
    one_core = Machine({1: 0.05}, threads=1)
    one_core.settle()
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    user_set = Machine({4: 0.08, 1: 0.05})
    user_set.settle()
    assert one_core.probes == user_set.probes == 0 and user_set.calls == []


def test_the_engine_chooses_before_the_first_job_and_keeps_the_image(
        tmp_path: Path, tiny_sd15_file: Path, tiny_sd15_config: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Every job of a model and size, the first included, runs on the chosen thread count, so
    the same request gives the same image; the throwaway steps change nothing in it."""
    from desktop_app.pipeline.backend.diffusers_backend import DiffusersBackend
    from tests.pipeline.engine_helpers import images_of, request, run

    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        backend = DiffusersBackend(tmp_path / "img")
        req = request(tiny_sd15_file, tiny_sd15_config, steps=4)
        first, _ = run(backend, req)
        threads = backend._cpu_threads
        assert threads is not None and len(threads._chosen) == 1
        [chosen] = threads._chosen.values()
        assert torch.get_num_threads() == chosen
        again, _ = run(backend, req)
        assert len(threads._chosen) == 1
        monkeypatch.setenv("OMP_NUM_THREADS", str(chosen))  # the same count, never timed
        reference, _ = run(DiffusersBackend(tmp_path / "ref"), req)
        assert np.array_equal(images_of(first)[0], images_of(again)[0])
        assert np.array_equal(images_of(first)[0], images_of(reference)[0])
    finally:
        torch.set_num_threads(before)


def test_a_job_cancelled_during_the_timing_stops_there_and_the_next_job_runs(
        tmp_path: Path, tiny_sd15_file: Path, tiny_sd15_config: Path) -> None:
    """Cancel is checked after each throwaway step: the job ends before its own steps, with
    no image and nothing chosen; the next job times and runs."""
    from desktop_app.pipeline.backend.diffusers_backend import DiffusersBackend
    from tests.pipeline.engine_helpers import request, run

    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        backend = DiffusersBackend(tmp_path / "img")
        req = request(tiny_sd15_file, tiny_sd15_config, steps=3)
        backend.preload(request(tiny_sd15_file, tiny_sd15_config, width=128, height=128))
        assert backend.loaded is not None
        cancel, unet_calls = CancelToken(), []

        def cancel_at_first_call(_module: object, _args: object) -> None:
            unet_calls.append(1)
            cancel.cancel()

        hook = backend.loaded.pipe.unet.register_forward_pre_hook(cancel_at_first_call)
        try:
            with pytest.raises(GenerationCancelled):
                run(backend, req, cancel=cancel)
        finally:
            hook.remove()
        assert len(unet_calls) == 1  # one throwaway step, then the cancel was seen
        threads = backend._cpu_threads
        assert threads is not None and len(threads._chosen) == 1  # the preload's size only
        assert torch.get_num_threads() == 2
        assert not list((tmp_path / "img").rglob("*.png"))
        result, updates = run(backend, req)
        assert len(result.images) == 1 and [u.step for u in updates] == [1, 2, 3]
        assert len(threads._chosen) == 2
    finally:
        torch.set_num_threads(before)


def test_loading_ahead_also_chooses_the_threads(
        tmp_path: Path, tiny_sd15_file: Path, tiny_sd15_config: Path) -> None:
    from desktop_app.pipeline.backend.diffusers_backend import DiffusersBackend
    from tests.pipeline.engine_helpers import request, run

    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        backend = DiffusersBackend(tmp_path / "img")
        req = request(tiny_sd15_file, tiny_sd15_config, steps=2)
        backend.preload(req)
        threads = backend._cpu_threads
        assert threads is not None and len(threads._chosen) == 1
        chosen = dict(threads._chosen)
        run(backend, req)
        assert threads._chosen == chosen  # the job timed nothing more
    finally:
        torch.set_num_threads(before)


def test_an_sdxl_model_is_timed_with_its_own_conditioning(
        tmp_path: Path, tiny_sdxl_dir: Path, caplog: pytest.LogCaptureFixture) -> None:
    """SDXL's UNet also takes the pooled embedding and the size ids: the throwaway steps go
    through the pipeline, which makes them as for a job (two images a batch here)."""
    from desktop_app.pipeline.backend.diffusers_backend import DiffusersBackend
    from tests.pipeline.engine_helpers import request, run

    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        backend = DiffusersBackend(tmp_path / "img")
        with caplog.at_level(logging.INFO, logger="desktop_app.pipeline.backend.cpu_threads"):
            result, _ = run(backend, request(tiny_sdxl_dir, steps=2, batch_size=2))
        assert len(result.images) == 2
        assert "CPU threads for" in caplog.text and "failed" not in caplog.text
    finally:
        torch.set_num_threads(before)
