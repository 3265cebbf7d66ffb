"""Background work for the gallery: thumbnails and index scans, off the GUI thread.

Both run as QRunnables on a small private QThreadPool (disk-bound, independent jobs; unlike
generation they need no long-lived worker). Results come back as signals of GUI-thread
QObjects, so slots run in the GUI thread. Workers hand back QImages (built and copied in the
worker); QPixmaps are made by the GUI thread only.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path

from PySide6.QtCore import QObject, QRunnable, QThreadPool, Signal, Slot
from PySide6.QtGui import QImage

from desktop_app.gallery import storage
from desktop_app.gallery.index import GalleryIndex, ScanStats
from desktop_app.gallery.thumbnails import THUMB_SIZE, ensure_thumbnail

log = logging.getLogger(__name__)


class _JobSignals(QObject):
    """Carries a finished thumbnail from a pool thread to the GUI thread.

    Signals:
        done(str, QImage): path and thumbnail (null when unreadable).
    """

    done = Signal(str, QImage)


class _ThumbnailJob(QRunnable):
    def __init__(self, path: str, mtime_ns: int, signals: _JobSignals) -> None:
        super().__init__()
        self.path, self.mtime_ns, self.signals = path, mtime_ns, signals

    def run(self) -> None:
        image = QImage()
        thumb = ensure_thumbnail(self.path, self.mtime_ns, THUMB_SIZE)
        if thumb is not None:
            loaded = QImage(str(thumb))
            if not loaded.isNull():
                image = loaded.copy()
        self.signals.done.emit(self.path, image)


class ThumbnailLoader(QObject):
    """Makes/loads cached thumbnails in a thread pool, each path at most once at a time.

    Signals:
        thumbnail_loaded(str, QImage): the thumbnail of a path (a null QImage when the image
            cannot be read).
    """

    thumbnail_loaded = Signal(str, QImage)

    def __init__(self, pool: QThreadPool, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.pool = pool
        self._pending: set[str] = set()
        self._order = 0
        self._signals = _JobSignals(self)
        self._signals.done.connect(self._on_job_done)

    def request(self, path: str, mtime_ns: int) -> None:
        """Queue a thumbnail unless it is already on its way."""
        if path in self._pending:
            return
        self._pending.add(path)
        # Newest request first: after a fast scroll, the rows now on screen come before
        # the ones that flew past.
        self._order = (self._order + 1) % 2**30
        self.pool.start(_ThumbnailJob(path, mtime_ns, self._signals), self._order)

    @Slot(str, QImage)
    def _on_job_done(self, path: str, image: QImage) -> None:
        self._pending.discard(path)
        self.thumbnail_loaded.emit(path, image)


class _ScanSignals(QObject):
    """Carries a scan's outcome from a pool thread to the GUI thread.

    Signals:
        done(ScanStats): finished.
        failed(str): stopped with an error.
    """

    done = Signal(object)
    failed = Signal(str)


class _ScanJob(QRunnable):
    def __init__(self, folder: Path, root: Path, rebuild: bool, signals: _ScanSignals,
                 stop: threading.Event) -> None:
        super().__init__()
        self.folder, self.root, self.rebuild = folder, root, rebuild
        self.signals, self.stop = signals, stop

    def run(self) -> None:
        try:
            storage.clean_stale(self.root)  # crash litter older than an hour
            index = GalleryIndex(self.folder, self.root)  # this thread's own connection
            try:
                stats = index.rebuild() if self.rebuild else index.scan(
                    cancelled=self.stop.is_set)
            finally:
                index.close()
        except Exception as exc:  # reported to the user by the panel
            log.exception("gallery scan failed")
            self.signals.failed.emit(str(exc))
            return
        self.signals.done.emit(stats)


class GalleryScanner(QObject):
    """Runs index scans (start-up, "Rescan", "Rebuild") in the pool, one at a time.

    Signals:
        scan_finished(ScanStats): the index now matches the files.
        scan_failed(str): the scan stopped with an error (message for the user).
    """

    scan_finished = Signal(object)
    scan_failed = Signal(str)

    def __init__(self, pool: QThreadPool, folder: Path, root: Path,
                 parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.pool, self.folder, self.root = pool, folder, root
        self.running = False
        self._stop = threading.Event()
        self._signals = _ScanSignals(self)
        self._signals.done.connect(self._on_done)
        self._signals.failed.connect(self._on_failed)

    def start(self, rebuild: bool = False) -> bool:
        """Start a scan unless one is running; returns whether it started."""
        if self.running:
            return False
        self.running = True
        self._stop.clear()
        self.pool.start(_ScanJob(self.folder, self.root, rebuild, self._signals, self._stop))
        return True

    def stop(self) -> None:
        """Ask a running scan to stop early (the next scan picks up where it left off)."""
        self._stop.set()

    @Slot(object)
    def _on_done(self, stats: ScanStats) -> None:
        self.running = False
        self.scan_finished.emit(stats)

    @Slot(str)
    def _on_failed(self, message: str) -> None:
        self.running = False
        self.scan_failed.emit(message)
