"""The job queue: pending jobs in order, the running one, persisted so a crash loses nothing.

Only pending and running jobs are written (`paths.config_dir()/queue.json`, atomically, after
every change). A job that was running when the process died is restored first. A queue restored
from disk starts paused: the person decides when the machine gets busy again.
"""

from __future__ import annotations

import enum
import json
import logging
import secrets
from dataclasses import dataclass, field
from pathlib import Path

from PySide6.QtCore import QObject, Signal

from desktop_app import paths
from desktop_app.errors import ErrorKind, UserError
from desktop_app.fileio import atomic_write_text, keep_aside_if_possible
from desktop_app.pipeline.api import GenerationRequest, GenerationResult

log = logging.getLogger(__name__)

QUEUE_VERSION = 1
FILE_NAME = "queue.json"


class JobState(enum.Enum):
    pending = "pending"
    running = "running"
    finished = "finished"
    failed = "failed"
    cancelled = "cancelled"


@dataclass
class Job:
    """One queued generation. `request` is resolved (concrete seed) only when it starts."""

    request: GenerationRequest
    id: str = field(default_factory=lambda: secrets.token_hex(4))
    state: JobState = JobState.pending
    error: UserError | None = None
    result: GenerationResult | None = None


def queue_path() -> Path:
    """Where the queue is persisted."""
    return paths.config_dir() / FILE_NAME


class JobQueue(QObject):
    """Pending jobs (reorderable, removable), the running job and the paused flag.

    Signals:
        jobs_changed(): the pending list or the running job changed.
        paused_changed(bool): the queue was paused or resumed.
        job_added(str): a job with this id was added.
    """

    jobs_changed = Signal()
    paused_changed = Signal(bool)
    job_added = Signal(str)

    def __init__(self, path: Path | None = None, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._path = path or queue_path()
        self._pending: list[Job] = []
        self._running: Job | None = None
        self._paused = False

    # -- reading ---------------------------------------------------------------------------
    @property
    def pending(self) -> list[Job]:
        return list(self._pending)

    @property
    def running(self) -> Job | None:
        return self._running

    @property
    def paused(self) -> bool:
        return self._paused

    def find(self, job_id: str) -> Job | None:
        """The pending or running job with this id."""
        if self._running is not None and self._running.id == job_id:
            return self._running
        return next((job for job in self._pending if job.id == job_id), None)

    # -- changing --------------------------------------------------------------------------
    def add(self, request: GenerationRequest) -> Job:
        """Append a job; it runs when it reaches the front and the queue is not paused."""
        job = Job(request)
        self._pending.append(job)
        self._changed()
        self.job_added.emit(job.id)
        return job

    def remove(self, job_id: str) -> bool:
        """Drop a pending job; False if it is not pending (running jobs are cancelled instead)."""
        before = len(self._pending)
        self._pending = [job for job in self._pending if job.id != job_id]
        if len(self._pending) == before:
            return False
        self._changed()
        return True

    def move(self, job_id: str, index: int) -> bool:
        """Move a pending job to position `index` (clamped) of the pending list."""
        job = next((j for j in self._pending if j.id == job_id), None)
        if job is None:
            return False
        self._pending.remove(job)
        index = max(0, min(index, len(self._pending)))
        self._pending.insert(index, job)
        self._changed()
        return True

    def set_paused(self, paused: bool) -> None:
        """Pause or resume starting new jobs (a running job is not affected)."""
        if paused != self._paused:
            self._paused = paused
            self.paused_changed.emit(paused)

    def take_next(self) -> Job | None:
        """Start the first pending job, unless paused or one is already running."""
        if self._paused or self._running is not None or not self._pending:
            return None
        job = self._pending.pop(0)
        job.request = job.request.resolved()
        job.state = JobState.running
        self._running = job
        self._changed()
        return job

    def finish(self, job_id: str, state: JobState, *, error: UserError | None = None,
               result: GenerationResult | None = None) -> Job | None:
        """Mark the running job done (finished, failed or cancelled) and forget it on disk."""
        job = self._running
        if job is None or job.id != job_id:
            return None
        job.state, job.error, job.result = state, error, result
        self._running = None
        self._changed()
        return job

    # -- persistence -----------------------------------------------------------------------
    def save(self) -> None:
        """Write running + pending jobs atomically (also called after every change)."""
        jobs = ([self._running] if self._running else []) + self._pending
        data = {"version": QUEUE_VERSION,
                "jobs": [{"id": job.id, "request": job.request.to_dict()} for job in jobs]}
        try:
            atomic_write_text(self._path, json.dumps(data, indent=1))
        except OSError:
            log.exception("Could not save the job queue to %s", self._path)

    def restore(self) -> list[UserError]:
        """Load jobs saved by an earlier run; pauses the queue when any were restored.

        Returns one error per job that could not be read back (the rest are still restored);
        a file that is not valid JSON is kept aside as `queue.json.bad`.
        """
        try:
            data = json.loads(self._path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return []
        except (OSError, ValueError) as exc:
            bad = keep_aside_if_possible(self._path, "bad")
            log.warning("Job queue %s is unreadable (%s); kept as %s", self._path, exc, bad)
            return [UserError(ErrorKind.corrupt_file, "The saved job queue could not be read.",
                              f"It was kept as {bad}.")]
        errors: list[UserError] = []
        restored = []
        for entry in data.get("jobs", []) if isinstance(data, dict) else []:
            try:
                request = GenerationRequest.from_dict(dict(entry["request"]))
                restored.append(Job(request, id=str(entry.get("id") or secrets.token_hex(4))))
            except (UserError, KeyError, TypeError, ValueError) as exc:
                errors.append(UserError(ErrorKind.corrupt_file,
                                        f"A saved job could not be restored: {exc}",
                                        "The other jobs were restored."))
        if restored:
            self._pending = restored + self._pending
            self.set_paused(True)
            self._changed()
        return errors

    def _changed(self) -> None:
        self.save()
        self.jobs_changed.emit()
