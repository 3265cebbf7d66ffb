"""The generation controller and worker with the scripted backend (no widgets)."""

from __future__ import annotations

import threading

from pytestqt.qtbot import QtBot

from desktop_app.errors import ErrorKind
from desktop_app.pipeline.api import GenerationRequest
from desktop_app.state.jobs import JobState
from desktop_app.worker.controller import GenerationController
from tests.qt.fake_backend import FakeBackend


def _record_previews(controller: GenerationController) -> list[tuple[int, int]]:
    frames: list[tuple[int, int]] = []
    controller.preview_changed.connect(
        lambda _job, frame: frames.append((frame.batch_index, frame.step)))
    return frames


def test_previews_arrive_in_order_and_end_with_the_final_step(
        qtbot: QtBot, controller: GenerationController, fake_backend: FakeBackend) -> None:
    fake_backend.step_seconds = 0.005
    frames = _record_previews(controller)
    with qtbot.waitSignal(controller.job_finished, timeout=10_000) as blocker:
        controller.submit(GenerationRequest("a cat", steps=30, width=64, height=64))
    assert frames == sorted(frames) and len(set(frames)) == len(frames)
    assert frames[-1] == (0, 30)
    result = blocker.args[1]
    assert len(result.images) == 1 and result.request.seed >= 0


def test_fast_steps_are_coalesced_into_few_previews(
        qtbot: QtBot, controller: GenerationController) -> None:
    frames = _record_previews(controller)
    steps: list[int] = []
    controller.progress_changed.connect(lambda _job, update: steps.append(update.step))
    with qtbot.waitSignal(controller.job_finished, timeout=10_000):
        controller.submit(GenerationRequest("a cat", steps=150, width=64, height=64))
    assert steps == list(range(1, 151))
    assert len(frames) < 50 and frames[-1] == (0, 150)


def test_the_backend_runs_in_the_worker_thread(
        qtbot: QtBot, controller: GenerationController, fake_backend: FakeBackend) -> None:
    with qtbot.waitSignal(controller.job_finished, timeout=10_000):
        controller.submit(GenerationRequest("a cat", steps=2, width=64, height=64))
    assert fake_backend.threads and threading.get_ident() not in fake_backend.threads


def test_cancel_stops_a_running_job_and_the_next_job_runs(
        qtbot: QtBot, controller: GenerationController, fake_backend: FakeBackend) -> None:
    fake_backend.step_seconds = 0.05
    with qtbot.waitSignal(controller.progress_changed, timeout=10_000):
        job = controller.submit(GenerationRequest("slow", steps=100, width=64, height=64))
    with qtbot.waitSignal(controller.job_cancelled, timeout=5_000) as blocker:
        assert controller.cancel()
    assert blocker.args == [job.id] and job.state is JobState.cancelled
    fake_backend.step_seconds = 0.0
    with qtbot.waitSignal(controller.job_finished, timeout=10_000):
        controller.submit(GenerationRequest("fast", steps=3, width=64, height=64))


def test_failure_at_step_3_is_reported_and_the_worker_lives_on(
        qtbot: QtBot, controller: GenerationController, fake_backend: FakeBackend) -> None:
    fake_backend.fail_at_step = 3
    with qtbot.waitSignal(controller.job_failed, timeout=10_000) as blocker:
        controller.submit(GenerationRequest("fails", steps=10, width=64, height=64))
    error = blocker.args[1]
    assert error.kind is ErrorKind.runtime and "step 3" in error.message and error.hint
    fake_backend.fail_at_step = None
    with qtbot.waitSignal(controller.job_finished, timeout=10_000):
        controller.submit(GenerationRequest("works", steps=3, width=64, height=64))


def test_out_of_memory_becomes_a_hint_about_size(
        qtbot: QtBot, controller: GenerationController, fake_backend: FakeBackend) -> None:
    fake_backend.oom_at_step = 1
    with qtbot.waitSignal(controller.job_failed, timeout=10_000) as blocker:
        controller.submit(GenerationRequest("big", steps=5, width=64, height=64))
    error = blocker.args[1]
    assert error.kind is ErrorKind.out_of_memory and "smaller size" in error.hint


def test_a_failing_backend_factory_fails_the_job_and_a_later_job_retries(
        qtbot: QtBot, job_queue, fake_backend: FakeBackend) -> None:
    attempts = []

    def factory() -> FakeBackend:
        attempts.append(1)
        if len(attempts) == 1:
            raise FileNotFoundError(2, "No such file", "/models/missing.safetensors")
        return fake_backend

    controller = GenerationController(job_queue, factory)
    try:
        with qtbot.waitSignal(controller.job_failed, timeout=10_000) as blocker:
            controller.submit(GenerationRequest("x", steps=2, width=64, height=64))
        assert blocker.args[1].kind is ErrorKind.missing_file
        assert "missing.safetensors" in blocker.args[1].message
        with qtbot.waitSignal(controller.job_finished, timeout=10_000):
            controller.submit(GenerationRequest("x", steps=2, width=64, height=64))
    finally:
        controller.shutdown()


def test_queued_jobs_run_in_order_one_at_a_time(
        qtbot: QtBot, controller: GenerationController, fake_backend: FakeBackend) -> None:
    gate = threading.Event()
    fake_backend.gate = gate
    first = controller.submit(GenerationRequest("one", steps=2, width=64, height=64))
    second = controller.submit(GenerationRequest("two", steps=2, width=64, height=64))
    third = controller.submit(GenerationRequest("three", steps=2, width=64, height=64))
    assert controller.queue.running is first
    assert controller.queue.move(third.id, 0)
    assert [j.id for j in controller.queue.pending] == [third.id, second.id]
    finished: list[str] = []
    controller.job_finished.connect(lambda job_id, _result: finished.append(job_id))
    gate.set()
    qtbot.waitUntil(lambda: len(finished) == 3, timeout=10_000)
    assert finished == [first.id, third.id, second.id]
    assert [r.prompt for r in fake_backend.requests] == ["one", "three", "two"]


def test_a_paused_queue_starts_nothing_until_resumed(
        qtbot: QtBot, controller: GenerationController) -> None:
    controller.queue.set_paused(True)
    job = controller.submit(GenerationRequest("later", steps=2, width=64, height=64))
    assert controller.queue.running is None and controller.queue.pending == [job]
    with qtbot.waitSignal(controller.job_finished, timeout=10_000):
        controller.queue.set_paused(False)


def test_the_warm_up_loads_the_model_of_the_next_job_ahead_of_it(
        qtbot: QtBot, controller: GenerationController, fake_backend: FakeBackend) -> None:
    request = GenerationRequest("a lighthouse", model="/models/mine.safetensors")
    progress: list[float] = []
    controller.model_preloading.connect(lambda update: progress.append(update.fraction))
    controller.set_fast_mode(True)
    with qtbot.waitSignal(controller.backend_ready, timeout=10_000), \
            qtbot.waitSignal(controller.model_preloaded, timeout=10_000) as preloaded:
        controller.warm_up(request)
    assert preloaded.args == ["fake"] and progress == [0.5]
    assert fake_backend.preloaded == [(request, True)]  # with the fast-mode setting applied
    assert fake_backend.threads and threading.get_ident() not in fake_backend.threads
    with qtbot.waitSignal(controller.job_finished, timeout=10_000):
        controller.submit(GenerationRequest("x", steps=2, width=64, height=64))
    assert fake_backend.calls == ["preload", "generate"]


def test_a_job_submitted_during_the_warm_up_runs_after_the_load(
        qtbot: QtBot, controller: GenerationController, fake_backend: FakeBackend) -> None:
    with qtbot.waitSignal(controller.job_finished, timeout=10_000):
        controller.warm_up(GenerationRequest("a lighthouse"))
        controller.submit(GenerationRequest("x", steps=2, width=64, height=64))
    assert fake_backend.calls == ["preload", "generate"]


def test_a_model_that_fails_to_load_ahead_is_only_logged_and_jobs_still_run(
        qtbot: QtBot, controller: GenerationController, fake_backend: FakeBackend,
        caplog) -> None:
    fake_backend.preload_failure = FileNotFoundError(2, "No such file", "/models/gone.safetensors")
    failed: list[str] = []
    controller.job_failed.connect(lambda job_id, _error: failed.append(job_id))
    with qtbot.waitSignal(controller.model_preloaded, timeout=10_000) as preloaded:
        controller.warm_up(GenerationRequest("x", model="/models/gone.safetensors"))
    assert preloaded.args == [""]
    assert "Could not load the model ahead" in caplog.text
    with qtbot.waitSignal(controller.job_finished, timeout=10_000):
        controller.submit(GenerationRequest("x", steps=2, width=64, height=64))
    assert failed == []


def test_a_warm_up_without_a_request_only_starts_the_engine(
        qtbot: QtBot, controller: GenerationController, fake_backend: FakeBackend) -> None:
    with qtbot.waitSignal(controller.backend_ready, timeout=10_000):
        controller.warm_up()
    with qtbot.waitSignal(controller.job_finished, timeout=10_000):
        controller.submit(GenerationRequest("x", steps=2, width=64, height=64))
    assert fake_backend.calls == ["generate"]


def test_a_job_cancelled_while_the_model_loads_ahead_never_runs(
        qtbot: QtBot, controller: GenerationController, fake_backend: FakeBackend) -> None:
    gate = threading.Event()
    fake_backend.gate = gate
    controller.warm_up(GenerationRequest("a lighthouse"))
    job = controller.submit(GenerationRequest("x", steps=2, width=64, height=64))
    qtbot.waitUntil(lambda: fake_backend.calls == ["preload"], timeout=10_000)
    with qtbot.waitSignal(controller.job_cancelled, timeout=10_000) as blocker:
        assert controller.cancel(job.id)
        gate.set()
    assert blocker.args == [job.id] and job.state is JobState.cancelled
    assert fake_backend.calls == ["preload"]  # the job never started
    fake_backend.gate = None
    with qtbot.waitSignal(controller.job_finished, timeout=10_000):
        controller.submit(GenerationRequest("next", steps=2, width=64, height=64))
