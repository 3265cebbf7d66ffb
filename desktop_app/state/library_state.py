"""View-model of the model library: items, filtering, background scans, per-model choices.

No widgets and no torch. Slow work (scanning folders, copying files, converting a `.ckpt`)
runs on one background thread; results come back to the GUI thread through queued signals.
The background hasher reports each new hash the same way. The panel (`ui/library_panel.py`) and
the parameter sidebar (through `LibraryModelProvider`) read from here.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from PySide6.QtCore import QObject, Signal, Slot

from desktop_app.errors import ErrorKind, UserError, bad_input, friendly_error
from desktop_app.library.manager import Library
from desktop_app.library.store import VAE_AUTO, VAE_BAKED, LibraryItem
from desktop_app.pipeline.api import CancelToken, ModelFamily
from desktop_app.state.models import (
    BUILTIN_VAE,
    ModelChoice,
    VaeChoice,
    demo_choice,
)

log = logging.getLogger(__name__)

PICKLE_SUFFIXES = (".ckpt", ".pt", ".pth", ".bin")
KIND_FILTERS = {"all": None, "checkpoint": ("checkpoint",), "vae": ("vae",),
                "taesd": ("taesd",), "problems": ()}
_VAE_SIDECARS = (".vae.safetensors", ".vae.pt", ".vae.ckpt")


def needs_conversion(item: LibraryItem) -> bool:
    """A pickle checkpoint: offered "Convert to .safetensors" instead of being loaded."""
    return Path(item.path).suffix.lower() in PICKLE_SUFFIXES


def automatic_vae(item: LibraryItem) -> str | None:
    """A1111's "Automatic": `<model>.vae.safetensors` (or .pt/.ckpt) next to the checkpoint."""
    path = Path(item.path)
    stem = path.name[: -len(path.suffix)] if path.suffix else path.name
    for suffix in _VAE_SIDECARS:
        candidate = path.with_name(stem + suffix)
        if candidate.is_file():
            return str(candidate)
    return None


def resolve_vae(item: LibraryItem) -> str | None:
    """The VAE path a generation with `item` should use (None: the model's own)."""
    if item.vae == VAE_BAKED:
        return None
    if item.vae == VAE_AUTO:
        return automatic_vae(item)
    return item.vae


def matches(item: LibraryItem, text: str, kind: str = "all") -> bool:
    """Search + kind filter used by the panel ("problems" shows what cannot be used)."""
    if kind == "problems":
        if item.status == "ok":
            return False
    else:
        kinds = KIND_FILTERS.get(kind)
        if kinds is not None and item.kind not in kinds:
            return False
    words = text.lower().split()
    haystack = " ".join((item.name, Path(item.path).name, item.family or "", item.kind,
                         item.description, item.short_hash or "")).lower()
    return all(word in haystack for word in words)


class LibraryState(QObject):
    """The library for the GUI (see the module docstring).

    Signals:
        items_changed(): the list of items changed (scan, add, remove).
        item_changed(str): one item (by path) changed: hash computed, renamed, VAE chosen.
        busy_changed(bool): background library work started or finished.
        error_raised(object): a UserError from a library action, to show inline.
        message_posted(str): a short success note ("Added 12 files").
        download_progressed(object, object): bytes done and total (None if unknown).
        download_finished(str): a download was verified and added; its path.
    """

    items_changed = Signal()
    download_progressed = Signal(object, object)  # (bytes done, bytes total or None)
    download_finished = Signal(str)  # the downloaded file's path
    item_changed = Signal(str)
    busy_changed = Signal(bool)
    error_raised = Signal(object)
    message_posted = Signal(str)
    _job_done = Signal(object, object)  # (callback, result-or-error), queued to the GUI thread
    _hashed = Signal(str)

    def __init__(self, library: Library | None = None, parent: QObject | None = None,
                 hashing: bool = True) -> None:
        super().__init__(parent)
        self.library = library or Library()
        self._items: list[LibraryItem] = self.library.items()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="library")
        # Downloads get their own thread so a long one never blocks scans or adds.
        self._downloads = ThreadPoolExecutor(max_workers=1, thread_name_prefix="download")
        self._download_token: CancelToken | None = None
        self._pending = 0
        self._closed = False
        self._job_done.connect(self._on_job_done)
        self._hashed.connect(self._on_hashed)
        if hashing:
            self.library.start_hashing(on_hashed=lambda path, _digest: self._hashed.emit(path))

    def close(self) -> None:
        """Stop background work and close the index (call on application exit)."""
        if self._closed:
            return
        self._closed = True
        self.cancel_download()
        self._downloads.shutdown(wait=True, cancel_futures=True)
        self._executor.shutdown(wait=True, cancel_futures=True)
        self.library.close()

    # -- reading ---------------------------------------------------------------------------
    def items(self) -> list[LibraryItem]:
        return list(self._items)

    def item(self, path: str) -> LibraryItem | None:
        return next((i for i in self._items if i.path == path), None)

    def filtered(self, text: str = "", kind: str = "all") -> list[LibraryItem]:
        return [i for i in self._items if matches(i, text, kind)]

    def thumbnail(self, path: str) -> bytes | None:
        return self.library.store.thumbnail(path)

    def vae_files(self) -> list[LibraryItem]:
        return [i for i in self._items if i.kind == "vae" and i.status == "ok"]

    @property
    def busy(self) -> bool:
        return self._pending > 0

    # -- actions (background) --------------------------------------------------------------
    def refresh(self) -> None:
        """Re-stat all folders in the background; listing stays available meanwhile."""
        self._submit(self.library.refresh, self._after_scan)

    def add_paths(self, paths: list[Path], copy: bool = False) -> None:
        """Add files (in place, or copied) and adopt folders, in the background."""
        def work() -> int:
            for path in paths:
                self.library.add(path, copy=copy)
            return len(paths)
        self._submit(work, lambda n: self.message_posted.emit(f"Added {n} item(s)."))

    def convert(self, path: str) -> None:
        """Convert a pickle checkpoint to .safetensors next to it (safe loader), then add it."""
        def work() -> str:
            from desktop_app.pipeline.backend.ckpt import convert_ckpt_to_safetensors

            src = Path(path)
            dst = src.with_suffix(".safetensors")
            if dst.exists():
                raise bad_input(f"{dst.name} already exists.",
                                "Rename it first; nothing was overwritten.")
            convert_ckpt_to_safetensors(src, dst)
            self.library.add(dst)
            return dst.name
        self._submit(work, lambda name: self.message_posted.emit(f"Converted to {name}."))

    def download(self, id_or_url: str, sha256: str | None = None) -> None:
        """Download a catalog entry or URL in the background (only ever when asked).

        Progress arrives through `download_progressed`; `cancel_download()` stops it and keeps
        the partial file so asking again resumes.
        """
        from desktop_app.library.downloads import resolve_source

        try:
            source = resolve_source(id_or_url, self.library.catalog, sha256=sha256 or None)
        except UserError as exc:
            self.error_raised.emit(exc)
            return
        token = self._download_token = CancelToken()
        last = [0.0]

        def progress(done: int, total: int | None) -> None:
            now = time.monotonic()
            if now - last[0] >= 0.1 or done == total:  # at most ~10 updates a second
                last[0] = now
                self.download_progressed.emit(done, total)

        def work() -> str:
            return str(self.library.download(source, on_progress=progress, cancel=token))

        self._submit(work, self.download_finished.emit, self._downloads)

    def cancel_download(self) -> None:
        """Stop the running download (its .part file stays for a later resume)."""
        if self._download_token is not None:
            self._download_token.cancel()

    # -- actions (instant) -----------------------------------------------------------------
    def remove(self, path: str) -> None:
        """Remove from the library only; the file stays on disk."""
        self.library.remove(path)
        self._reload()

    def delete_file(self, path: str) -> None:
        """Move the file to the trash. The panel asks for explicit confirmation first."""
        try:
            self.library.delete_file(path)
        except UserError as exc:
            self.error_raised.emit(exc)
        except OSError as exc:
            self.error_raised.emit(friendly_error(exc))
        self._reload()

    def set_display_name(self, path: str, name: str) -> None:
        self.library.store.set_display_name(path, name)
        self._reload_one(path)

    def set_vae(self, path: str, choice: str) -> None:
        """"baked", "auto" or a VAE file path for the model at `path`."""
        self.library.store.set_vae(path, choice)
        self._reload_one(path)

    # -- plumbing --------------------------------------------------------------------------
    def _submit(self, work: Callable[[], Any], done: Callable[[Any], None],
                executor: ThreadPoolExecutor | None = None) -> None:
        self._pending += 1
        if self._pending == 1:
            self.busy_changed.emit(True)

        def run() -> None:
            try:
                result: Any = work()
            except Exception as exc:  # reported inline; the panel keeps working
                log.exception("library action failed")
                result = friendly_error(exc)
            self._job_done.emit(done, result)

        (executor or self._executor).submit(run)

    @Slot(object, object)
    def _on_job_done(self, done: Callable[[Any], None], result: Any) -> None:
        self._pending -= 1
        if self._closed:
            return
        self._reload()
        if isinstance(result, UserError):
            self.error_raised.emit(result)
        else:
            done(result)
        if self._pending == 0:
            self.busy_changed.emit(False)

    def _after_scan(self, report: Any) -> None:
        for problem in getattr(report, "problems", ()):
            self.error_raised.emit(UserError(ErrorKind.missing_file, problem,
                                             "Reconnect the drive, or remove the folder."))

    @Slot(str)
    def _on_hashed(self, path: str) -> None:
        if not self._closed:  # late deliveries after close() are dropped
            self._reload_one(path)

    def _reload(self) -> None:
        self._items = self.library.items()
        self.items_changed.emit()

    def _reload_one(self, path: str) -> None:
        fresh = self.library.store.get(path)
        self._items = [fresh if (i.path == path and fresh is not None) else i
                       for i in self._items if i.path != path or fresh is not None]
        self.item_changed.emit(path)


class LibraryModelProvider:
    """The parameter sidebar's `ModelProvider`, fed by the library (demo model first)."""

    def __init__(self, state: LibraryState, include_demo: bool = True) -> None:
        self.state = state
        self.include_demo = include_demo

    def models(self) -> list[ModelChoice]:
        """Usable checkpoints with a known family, by name."""
        choices = [demo_choice()] if self.include_demo \
            else []
        for item in self.state.items():
            if item.kind == "checkpoint" and item.status == "ok" and item.family:
                choices.append(ModelChoice(item.name, item.path, ModelFamily(item.family)))
        return choices

    def vaes(self) -> list[VaeChoice]:
        """The model's own VAE, then the library's VAE files."""
        return [BUILTIN_VAE, *(VaeChoice(i.name, i.path) for i in self.state.vae_files())]
