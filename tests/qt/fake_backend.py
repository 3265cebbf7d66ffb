"""A scriptable Backend for GUI tests: real files, real previews, scripted timing and failures.

It implements the same protocol as the diffusers engine (desktop_app.pipeline.api.Backend):
reports every step with a small RGB preview whose colour encodes the step, honours the cancel
token at each step, writes real PNG files, and can be told to fail at step N or run out of memory.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from PySide6.QtGui import QColor, QImage

from desktop_app import paths
from desktop_app.pipeline.api import (
    CancelToken,
    DeviceInfo,
    GeneratedImage,
    GenerationRequest,
    GenerationResult,
    LoadCallback,
    LoadUpdate,
    PreviewImage,
    StepCallback,
    StepUpdate,
)

PREVIEW_SIZE = 16


class FakeOutOfMemoryError(RuntimeError):
    """Shaped like torch.cuda.OutOfMemoryError (friendly_error matches the name and text)."""


FakeOutOfMemoryError.__name__ = "OutOfMemoryError"


@dataclass
class FakeBackend:
    """Scripted engine. Change the attributes between jobs to script the next one.

    step_seconds: time spent in each step (a busy wait the GIL can switch away from).
    fail_at_step: raise `failure` (default a RuntimeError) when this step starts.
    oom_at_step: raise an out-of-memory error when this step starts.
    gate: when set, each step waits for it (lets tests hold a job mid-run).
    preload_failure: raised by `preload` (api.SupportsPreload) instead of "loading".
    load_updates: what each job reports while "loading" (default: one "Loading fake model").
    calls: "preload" / "generate" in the order they happened.
    """

    step_seconds: float = 0.0
    fail_at_step: int | None = None
    failure: BaseException | None = None
    oom_at_step: int | None = None
    gate: threading.Event | None = None
    requests: list[GenerationRequest] = field(default_factory=list)
    threads: set[int] = field(default_factory=set)
    fast_mode: bool = False  # set by the worker before each job (api.SupportsFastMode)
    fast_mode_per_job: list[bool] = field(default_factory=list)
    preload_failure: BaseException | None = None
    preloaded: list[tuple[GenerationRequest, bool]] = field(default_factory=list)  # + fast mode
    calls: list[str] = field(default_factory=list)
    load_updates: list[LoadUpdate] = field(
        default_factory=lambda: [LoadUpdate("Loading fake model", 1.0)])

    def device_info(self) -> DeviceInfo:
        return DeviceInfo("cpu", "Fake CPU device", "float32", 8 * 2**30)

    def generate(self, request: GenerationRequest, cancel: CancelToken, on_step: StepCallback,
                 on_load: LoadCallback | None = None) -> GenerationResult:
        self.requests.append(request)
        self.calls.append("generate")
        self.fast_mode_per_job.append(self.fast_mode)
        self.threads.add(threading.get_ident())
        started = time.perf_counter()
        if on_load is not None:
            for update in self.load_updates:
                on_load(update)
        images = []
        for batch in range(request.batch_count):
            for step in range(1, request.steps + 1):
                self._run_step(step, cancel)
                on_step(StepUpdate(step, request.steps, batch, request.batch_count,
                                   _preview(step)))
            for item in range(request.batch_size):
                index = batch * request.batch_size + item
                images.append(self._save(request, index))
        return GenerationResult(request, tuple(images), "cpu", time.perf_counter() - started,
                                model_name="fake")

    def preload(self, request: GenerationRequest, on_load: LoadCallback | None = None) -> str:
        self.calls.append("preload")
        self.threads.add(threading.get_ident())
        if self.gate is not None:  # a slow load, held until the test lets it go
            self.gate.wait(10)
        if self.preload_failure is not None:
            raise self.preload_failure
        if on_load is not None:
            on_load(LoadUpdate("Loading fake model", 0.5))
        self.preloaded.append((request, self.fast_mode))
        return "fake"

    def _run_step(self, step: int, cancel: CancelToken) -> None:
        cancel.raise_if_cancelled()
        if self.fail_at_step == step:
            raise self.failure or RuntimeError(f"scripted failure at step {step}")
        if self.oom_at_step == step:
            raise FakeOutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        if self.gate is not None:
            while not self.gate.wait(0.01):
                cancel.raise_if_cancelled()
        deadline = time.perf_counter() + self.step_seconds
        while time.perf_counter() < deadline:
            cancel.raise_if_cancelled()
            time.sleep(0.001)
        cancel.raise_if_cancelled()

    def _save(self, request: GenerationRequest, index: int) -> GeneratedImage:
        seed = request.seed_for(index)
        image = QImage(request.width // 8, request.height // 8, QImage.Format.Format_RGB888)
        image.fill(QColor.fromHsv(seed % 360, 200, 220))
        path = Path(paths.outputs_dir()) / f"fake-{seed}-{index}.png"
        if not image.save(str(path)):
            raise OSError(f"could not write {path}")
        return GeneratedImage(str(path), seed, image.width(), image.height())


def _preview(step: int) -> PreviewImage:
    """A flat colour whose red channel is the step number (tests read it back)."""
    pixel = bytes((step % 256, 64, 128))
    return PreviewImage(PREVIEW_SIZE, PREVIEW_SIZE, pixel * (PREVIEW_SIZE * PREVIEW_SIZE))
