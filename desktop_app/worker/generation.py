"""GenerationWorker: runs jobs on the one long-lived generation thread.

The worker is a plain QObject moved to a QThread by the GenerationController; its slots run in
that thread, one job at a time. It owns the backend (created on first use, inside the thread,
which is where torch gets imported), so weights stay loaded between jobs.

Previews go through a one-slot mailbox: the worker overwrites the slot with the newest frame and
emits `preview_available` only when no notification is in flight; the GUI thread takes the
frame with `take_preview()`. The event loop therefore never holds more than one preview, and the
last frame written (the final step) is always the one left to take.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from PySide6.QtCore import QObject, Signal, Slot
from PySide6.QtGui import QImage

from desktop_app.errors import friendly_error
from desktop_app.pipeline.api import (
    Backend,
    CancelToken,
    GenerationCancelled,
    GenerationRequest,
    LoadUpdate,
    PreviewImage,
    StepUpdate,
    SupportsFastMode,
    SupportsPreload,
)

log = logging.getLogger(__name__)

BackendFactory = Callable[[], Backend]


def default_backend_factory() -> Backend:
    """The real engine; imports torch and diffusers, so call it only in the worker thread."""
    from desktop_app.pipeline.engine import create_backend

    backend: Backend = create_backend()
    return backend


@dataclass(frozen=True)
class PreviewFrame:
    """A preview ready for the GUI: the QImage is an independent copy, safe to hand over."""

    job_id: str
    step: int
    total: int
    batch_index: int
    batch_total: int
    image: QImage


def preview_to_qimage(preview: PreviewImage) -> QImage:
    """An independent QImage (the copy detaches it from the bytes it was built on)."""
    image = QImage(preview.rgb, preview.width, preview.height, 3 * preview.width,
                   QImage.Format.Format_RGB888)
    return image.copy()


class GenerationWorker(QObject):
    """Runs generation jobs in the worker thread; never dies on a failing job.

    Signals:
        backend_ready(object): the backend exists; DeviceInfo of its device.
        job_started(str): the job with this id began (its backend may still be loading).
        load_progressed(str, object): LoadUpdate while a model loads for the job.
        step_progressed(str, object): StepUpdate (without preview) after each step.
        preview_available(): the mailbox went from empty to full; call take_preview().
        job_finished(str, object): GenerationResult of a job.
        job_failed(str, object): UserError of a job that failed.
        job_cancelled(str): a job stopped because its cancel token was set.
        model_preloading(object): LoadUpdate while `warm_up` loads a model ahead of its job.
        model_preloaded(str): that model's name; "" when it could not be loaded (logged: the
            job that needs it reports why).
    """

    backend_ready = Signal(object)
    job_started = Signal(str)
    load_progressed = Signal(str, object)
    step_progressed = Signal(str, object)
    preview_available = Signal()
    job_finished = Signal(str, object)
    job_failed = Signal(str, object)
    job_cancelled = Signal(str)
    model_preloading = Signal(object)
    model_preloaded = Signal(str)

    def __init__(self, backend_factory: BackendFactory, min_preview_interval: float = 0.05,
                 parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._backend_factory = backend_factory
        self._backend: Backend | None = None
        self._min_preview_interval = min_preview_interval
        self._last_preview_at = 0.0
        self._mail_lock = threading.Lock()
        self._mail: PreviewFrame | None = None
        self._notified = False
        self._fast_mode = False

    def take_preview(self) -> PreviewFrame | None:
        """Take the newest preview frame (any thread); frees the slot for the next notice."""
        with self._mail_lock:
            frame, self._mail, self._notified = self._mail, None, False
        return frame

    def _post_preview(self, frame: PreviewFrame) -> None:
        with self._mail_lock:
            self._mail = frame
            notify, self._notified = not self._notified, True
        if notify:
            self.preview_available.emit()

    def _ensure_backend(self) -> Backend:
        """The backend (created on first use), given the current fast-mode setting."""
        if self._backend is None:
            started = time.perf_counter()
            self._backend = self._backend_factory()
            log.info("Backend created in %.2f s", time.perf_counter() - started)
            self.backend_ready.emit(self._backend.device_info())
        if isinstance(self._backend, SupportsFastMode):  # the setting as of this job or load
            self._backend.fast_mode = self._fast_mode
        return self._backend

    @Slot(object)
    def warm_up(self, request: GenerationRequest | None = None) -> None:
        """Create the backend ahead of the first job (imports torch in this thread) and, given
        the request the next job will most likely make, load its model too."""
        try:
            backend = self._ensure_backend()
        except Exception:
            # The first job reports the error inline; here it is only logged.
            log.exception("Warm-up failed")
            return
        if request is None or not isinstance(backend, SupportsPreload):
            return
        try:
            name = backend.preload(request, self.model_preloading.emit)
        except Exception:
            log.warning("Could not load the model ahead of the first job", exc_info=True)
            name = ""
        self.model_preloaded.emit(name)

    @Slot(bool)
    def set_fast_mode(self, enabled: bool) -> None:
        """Remember the fast-mode setting; the next job applies or removes it."""
        self._fast_mode = enabled

    @Slot(str, object, object)
    def run_job(self, job_id: str, request: GenerationRequest, token: CancelToken) -> None:
        """Run one job; emits exactly one of job_finished, job_failed, job_cancelled."""
        if token.cancelled:
            self.job_cancelled.emit(job_id)
            return
        self.job_started.emit(job_id)
        self._last_preview_at = 0.0

        def on_step(update: StepUpdate) -> None:
            self._on_step(job_id, update)

        def on_load(update: LoadUpdate) -> None:
            self.load_progressed.emit(job_id, update)

        try:
            backend = self._ensure_backend()
            token.raise_if_cancelled()
            result = backend.generate(request, token, on_step, on_load)
        except GenerationCancelled:
            log.info("Job %s cancelled", job_id)
            self.job_cancelled.emit(job_id)
        except Exception as exc:  # the boundary: every failure becomes a signal
            log.exception("Job %s failed", job_id)
            self.job_failed.emit(job_id, friendly_error(exc))
        else:
            self.job_finished.emit(job_id, result)

    def _on_step(self, job_id: str, update: StepUpdate) -> None:
        preview = update.preview
        if preview is not None:
            update = StepUpdate(update.step, update.total, update.batch_index, update.batch_total)
        self.step_progressed.emit(job_id, update)
        if preview is None:
            return
        now = time.monotonic()
        last = update.step >= update.total
        # Building a QImage costs time: skip frames that would be overwritten anyway.
        if not last and now - self._last_preview_at < self._min_preview_interval:
            return
        self._last_preview_at = now
        self._post_preview(PreviewFrame(job_id, update.step, update.total, update.batch_index,
                                        update.batch_total, preview_to_qimage(preview)))
