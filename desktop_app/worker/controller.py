"""GenerationController: the GUI-thread face of the generation worker.

Widgets and tests connect only to the controller. It receives every worker signal in `@Slot`
methods of this GUI-thread object (so handlers run in the GUI thread, in order), keeps the
JobQueue up to date and re-emits its own signals. Jobs are handed to the worker one at a time,
so pending jobs stay removable and reorderable until they start. Cancelling sets the running
job's token directly from the GUI thread; the busy worker never has to process an event for it.
"""

from __future__ import annotations

import logging

from PySide6.QtCore import QObject, QThread, Signal, Slot

from desktop_app.errors import UserError
from desktop_app.pipeline.api import (
    CancelToken,
    DeviceInfo,
    GenerationRequest,
    GenerationResult,
    LoadUpdate,
    StepUpdate,
)
from desktop_app.state.jobs import Job, JobQueue, JobState
from desktop_app.worker.generation import (
    BackendFactory,
    GenerationWorker,
    default_backend_factory,
)

log = logging.getLogger(__name__)


class GenerationController(QObject):
    """Owns the generation thread and drives the job queue.

    Signals:
        backend_ready(object): DeviceInfo once the engine is loaded.
        job_started(str, object): job id and its (resolved) GenerationRequest.
        load_progressed(str, object): LoadUpdate while the model loads.
        progress_changed(str, object): StepUpdate after each step (no preview attached).
        preview_changed(str, object): PreviewFrame to show (coalesced, last step included).
        job_finished(str, object): GenerationResult.
        job_failed(str, object): UserError to show inline.
        job_cancelled(str): the job stopped at a cancel request.
        busy_changed(bool): a job is running (True) or the worker is idle (False).
        model_preloading(object): LoadUpdate while `warm_up` loads the model ahead of a job.
        model_preloaded(str): that model's name, "" when it could not be loaded.
    """

    backend_ready = Signal(object)
    job_started = Signal(str, object)
    load_progressed = Signal(str, object)
    progress_changed = Signal(str, object)
    preview_changed = Signal(str, object)
    job_finished = Signal(str, object)
    job_failed = Signal(str, object)
    job_cancelled = Signal(str)
    busy_changed = Signal(bool)
    model_preloading = Signal(object)
    model_preloaded = Signal(str)

    _run_requested = Signal(str, object, object)
    _warm_up_requested = Signal(object)
    _fast_mode_requested = Signal(bool)

    def __init__(self, queue: JobQueue, backend_factory: BackendFactory | None = None,
                 parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._queue = queue
        self._token: CancelToken | None = None
        self._device: DeviceInfo | None = None
        self._shutting_down = False
        self._thread = QThread()
        self._thread.setObjectName("generation")
        self._worker = GenerationWorker(backend_factory or default_backend_factory)
        self._worker.moveToThread(self._thread)
        self._thread.finished.connect(self._worker.deleteLater)
        self._run_requested.connect(self._worker.run_job)
        self._warm_up_requested.connect(self._worker.warm_up)
        self._fast_mode_requested.connect(self._worker.set_fast_mode)
        self._worker.backend_ready.connect(self._on_worker_backend_ready)
        self._worker.job_started.connect(self._on_worker_job_started)
        self._worker.load_progressed.connect(self._on_worker_load_progressed)
        self._worker.step_progressed.connect(self._on_worker_step_progressed)
        self._worker.preview_available.connect(self._on_worker_preview_available)
        self._worker.job_finished.connect(self._on_worker_job_finished)
        self._worker.job_failed.connect(self._on_worker_job_failed)
        self._worker.job_cancelled.connect(self._on_worker_job_cancelled)
        self._worker.model_preloading.connect(self.model_preloading)
        self._worker.model_preloaded.connect(self.model_preloaded)
        queue.jobs_changed.connect(self._on_queue_jobs_changed)
        queue.paused_changed.connect(self._on_queue_paused_changed)
        self._thread.start()

    @property
    def queue(self) -> JobQueue:
        return self._queue

    @property
    def busy(self) -> bool:
        return self._token is not None

    @property
    def device(self) -> DeviceInfo | None:
        return self._device

    def warm_up(self, request: GenerationRequest | None = None) -> None:
        """Load the engine in the worker now (call after the window is shown) and, given the
        request the first job will most likely make (the sidebar's), its model: that job then
        starts denoising at once. A job submitted meanwhile runs after the load."""
        self._warm_up_requested.emit(request)

    def set_fast_mode(self, enabled: bool) -> None:
        """Turn fast mode on or off from the next job on (queued to the worker thread)."""
        self._fast_mode_requested.emit(enabled)

    def submit(self, request: GenerationRequest) -> Job:
        """Queue a request; it starts at once when the worker is idle and the queue runs."""
        return self._queue.add(request)

    def cancel(self, job_id: str | None = None) -> bool:
        """Stop the running job (or only if it is `job_id`); returns whether one was stopped.

        Thread-safe and immediate: sets the job's token from this (GUI) thread.
        """
        running = self._queue.running
        if self._token is None or running is None:
            return False
        if job_id is not None and running.id != job_id:
            return False
        self._token.cancel()
        return True

    def shutdown(self, timeout_ms: int = 30_000) -> None:
        """Stop the running job and the thread; the queue file keeps unfinished jobs."""
        self._shutting_down = True
        if self._token is not None:
            self._token.cancel()
        self._thread.quit()
        if not self._thread.wait(timeout_ms):
            log.error("Generation thread did not stop within %d ms", timeout_ms)

    @Slot()
    def _on_queue_jobs_changed(self) -> None:
        self._start_next()

    @Slot(bool)
    def _on_queue_paused_changed(self, _paused: bool) -> None:
        self._start_next()

    def _start_next(self) -> None:
        if self._shutting_down or self._token is not None:
            return
        job = self._queue.take_next()
        if job is None:
            return
        self._token = CancelToken()
        self.busy_changed.emit(True)
        self._run_requested.emit(job.id, job.request, self._token)

    def _is_current(self, job_id: str) -> bool:
        running = self._queue.running
        return not self._shutting_down and running is not None and running.id == job_id

    @Slot(object)
    def _on_worker_backend_ready(self, device: DeviceInfo) -> None:
        self._device = device
        self.backend_ready.emit(device)

    @Slot(str)
    def _on_worker_job_started(self, job_id: str) -> None:
        job = self._queue.find(job_id)
        if job is not None and self._is_current(job_id):
            self.job_started.emit(job_id, job.request)

    @Slot(str, object)
    def _on_worker_load_progressed(self, job_id: str, update: LoadUpdate) -> None:
        if self._is_current(job_id):
            self.load_progressed.emit(job_id, update)

    @Slot(str, object)
    def _on_worker_step_progressed(self, job_id: str, update: StepUpdate) -> None:
        if self._is_current(job_id):
            self.progress_changed.emit(job_id, update)

    @Slot()
    def _on_worker_preview_available(self) -> None:
        self._deliver_preview()

    def _deliver_preview(self) -> None:
        frame = self._worker.take_preview()
        if frame is not None and self._is_current(frame.job_id):
            self.preview_changed.emit(frame.job_id, frame)

    def _end_job(self, job_id: str, state: JobState, **details: object) -> bool:
        if not self._is_current(job_id):
            return False
        # A preview notice may still be queued behind this signal: show the last frame first.
        self._deliver_preview()
        self._queue.finish(job_id, state, **details)  # type: ignore[arg-type]
        self._token = None
        self.busy_changed.emit(False)
        return True

    @Slot(str, object)
    def _on_worker_job_finished(self, job_id: str, result: GenerationResult) -> None:
        if self._end_job(job_id, JobState.finished, result=result):
            self.job_finished.emit(job_id, result)
            self._start_next()

    @Slot(str, object)
    def _on_worker_job_failed(self, job_id: str, error: UserError) -> None:
        if self._end_job(job_id, JobState.failed, error=error):
            self.job_failed.emit(job_id, error)
            self._start_next()

    @Slot(str)
    def _on_worker_job_cancelled(self, job_id: str) -> None:
        if self._end_job(job_id, JobState.cancelled):
            self.job_cancelled.emit(job_id)
            self._start_next()
