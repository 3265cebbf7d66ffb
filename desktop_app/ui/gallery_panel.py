"""`GalleryPanel`: the gallery tab — search, filters, virtualised grid, detail, actions."""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Callable
from pathlib import Path

from PySide6.QtCore import Qt, QThreadPool, QTimer, QUrl, Signal, Slot
from PySide6.QtGui import (
    QAction,
    QDesktopServices,
    QGuiApplication,
    QImage,
    QKeySequence,
    QShortcut,
)
from PySide6.QtWidgets import (
    QHBoxLayout,
    QLabel,
    QPushButton,
    QSplitter,
    QVBoxLayout,
    QWidget,
)

from desktop_app import paths
from desktop_app.errors import UserError
from desktop_app.gallery import storage, trash
from desktop_app.gallery.index import GalleryEntry, GalleryIndex, GalleryQuery
from desktop_app.gallery.metadata import read_image_metadata
from desktop_app.gallery.restore import ModelLookup, restore_parameters
from desktop_app.state.gallery_list_model import EntryRole, GalleryListModel
from desktop_app.state.gallery_thumbnails import GalleryScanner, ThumbnailLoader
from desktop_app.ui.empty_state import EmptyHint
from desktop_app.ui.gallery_detail import CELL, GalleryDetailView, GalleryGrid
from desktop_app.ui.gallery_filters import GalleryFilterBar

log = logging.getLogger(__name__)

SEARCH_DEBOUNCE_MS = 250
UNDO_WINDOW_MS = 30_000
WIDE_LAYOUT = 760  # px of panel width from which the detail sits beside the grid

class GalleryPanel(QWidget):
    """Every generated image, searchable; restores parameters from any image.

    Embed it, call `add_image(path)` for each freshly saved image, connect
    `parameters_restored` to the sidebar, and `restore_from_file(path)` for files dropped on
    the main window. Call `shutdown()` before the application quits.

    Signals:
        parameters_restored(dict): GenerationRequest field names → values to apply
            ("Use these parameters" or an image dropped on the gallery).
        restore_warning(str): what could not be restored (unknown model, …), for the user.
        message_posted(str): a status message (scan results, errors of an action).
        image_selected(str): path of the image shown in the detail view.
    """

    parameters_restored = Signal(dict)
    restore_warning = Signal(str)
    message_posted = Signal(str)
    image_selected = Signal(str)

    def __init__(self, parent: QWidget | None = None, *, index_folder: Path | None = None,
                 outputs: Path | None = None, model_lookup: ModelLookup | None = None,
                 scan_on_start: bool = True) -> None:
        super().__init__(parent)
        self.model_lookup = model_lookup
        self.open_url: Callable[[QUrl], object] = QDesktopServices.openUrl
        folder = index_folder if index_folder is not None else paths.data_dir()
        root = outputs if outputs is not None else paths.outputs_dir()
        try:
            self.index = GalleryIndex(folder, root)
        except UserError as exc:  # unusable data folder: a throw-away index still works
            folder = Path(tempfile.mkdtemp(prefix="desktop-app-gallery-"))
            self.index = GalleryIndex(folder, root)
            message = str(exc)
            QTimer.singleShot(0, lambda: self.message_posted.emit(message))
        self.pool = QThreadPool(self)
        self.pool.setMaxThreadCount(2)
        self.loader = ThumbnailLoader(self.pool, self)
        self.scanner = GalleryScanner(self.pool, folder, root, self)
        self.model = GalleryListModel(self.index, self.loader, self)
        self._pending_delete: trash.TrashedImage | None = None
        self._closed = False
        self._build()
        self.setAcceptDrops(True)
        self.scanner.scan_finished.connect(self._on_scanner_scan_finished)
        self.scanner.scan_failed.connect(self._on_scanner_scan_failed)
        self.model.count_changed.connect(self._on_model_count_changed)
        self._reload_models()
        self.model.refresh()
        if scan_on_start:
            trash.purge_leftovers(self.index.roots())
            self.rescan()

    # -- construction -----------------------------------------------------------------------
    def _build(self) -> None:
        self.filters = GalleryFilterBar()
        # Shorter names for the panel's own use and for tests.
        self.search_edit, self.model_combo = self.filters.search_edit, self.filters.model_combo
        self.date_combo, self.sort_combo = self.filters.date_combo, self.filters.sort_combo
        self.date_from_edit, self.date_to_edit = (self.filters.date_from_edit,
                                                  self.filters.date_to_edit)
        self.favourites_check = self.filters.favourites_check
        self.rescan_button, self.count_label = (self.filters.rescan_button,
                                                self.filters.count_label)
        self.grid = GalleryGrid()
        self.grid.setModel(self.model)
        self.empty_hint = EmptyHint(self.grid, self._empty_text)
        self.detail = GalleryDetailView()
        self.undo_label = QLabel()
        self.undo_button = QPushButton("Undo")
        self.undo_bar = QWidget()
        undo_layout = QHBoxLayout(self.undo_bar)
        undo_layout.addWidget(self.undo_label, 1)
        undo_layout.addWidget(self.undo_button)
        self.undo_bar.hide()
        # Detail below the grid in a side panel; beside it once the panel is dragged wide.
        self.splitter = QSplitter(Qt.Orientation.Vertical)
        self.splitter.setObjectName("gallerySplitter")
        self.splitter.addWidget(self.grid)
        self.splitter.addWidget(self.detail)
        self.splitter.setStretchFactor(0, 1)
        self.splitter.setStretchFactor(1, 1)
        self.splitter.setSizes([2 * CELL, 2 * CELL])
        layout = QVBoxLayout(self)
        layout.setContentsMargins(6, 6, 6, 6)
        layout.addWidget(self.filters)
        layout.addWidget(self.splitter, 1)
        layout.addWidget(self.undo_bar)
        self._search_timer = QTimer(self, singleShot=True, interval=SEARCH_DEBOUNCE_MS)
        self._undo_timer = QTimer(self, singleShot=True, interval=UNDO_WINDOW_MS)
        self._connect()

    def _connect(self) -> None:
        self.search_edit.textChanged.connect(self._search_timer.start)
        self._search_timer.timeout.connect(self.apply_filters)
        for combo in (self.model_combo, self.date_combo, self.sort_combo):
            combo.currentIndexChanged.connect(self.apply_filters)
        self.favourites_check.toggled.connect(self.apply_filters)
        self.date_from_edit.dateChanged.connect(self.apply_filters)
        self.date_to_edit.dateChanged.connect(self.apply_filters)
        find = QShortcut(QKeySequence(QKeySequence.StandardKey.Find), self)
        find.setContext(Qt.ShortcutContext.WidgetWithChildrenShortcut)
        find.activated.connect(self.search_edit.setFocus)
        self._add_grid_actions()
        self.rescan_button.clicked.connect(self.rescan)
        self.grid.selectionModel().currentChanged.connect(self._on_grid_current_changed)
        self.grid.doubleClicked.connect(self.use_parameters)
        self.detail.use_button.clicked.connect(self.use_parameters)
        self.detail.copy_prompt_button.clicked.connect(self.copy_prompt)
        self.detail.copy_image_button.clicked.connect(self.copy_image)
        self.detail.favourite_button.toggled.connect(self.set_favourite)
        self.detail.delete_button.clicked.connect(self.delete_current)
        self.detail.open_folder_button.clicked.connect(self.open_folder)
        self.undo_button.clicked.connect(self.undo_delete)
        self._undo_timer.timeout.connect(self.commit_pending_delete)

    def _add_grid_actions(self) -> None:
        """Right-click menu of the grid; the shortcuts work while the grid has focus."""
        self.grid.setContextMenuPolicy(Qt.ContextMenuPolicy.ActionsContextMenu)
        keys = QKeySequence.StandardKey
        for label, slot, shortcut in (
                ("Use these parameters", self.use_parameters, None),
                ("Copy prompt", self.copy_prompt, None),
                ("Copy image", self.copy_image, keys.Copy),
                ("Favourite", self.toggle_favourite, None),
                ("Open containing folder", self.open_folder, None),
                ("Delete", self.delete_current, keys.Delete),
                ("Undo delete", self.undo_delete, keys.Undo),
                ("Rescan folders", self.rescan, keys.Refresh),
                ("Rebuild index", self.rebuild, None)):
            action = QAction(label, self.grid)
            if shortcut is not None:
                action.setShortcut(QKeySequence(shortcut))
                action.setShortcutContext(Qt.ShortcutContext.WidgetWithChildrenShortcut)
            action.triggered.connect(slot)
            self.grid.addAction(action)

    # -- public API -------------------------------------------------------------------------
    def add_image(self, path: str | Path) -> None:
        """Show a freshly generated image at once (indexes it now)."""
        entry = self.index.add_file(path)
        if entry is not None:
            self.model.add_entry(entry)
            if entry.model and self.model_combo.findData(entry.model) < 0:
                self._reload_models()

    @Slot(str, object)
    def add_result(self, _job_id: str, result: object) -> None:
        """Slot for GenerationController.job_finished: show every image of the result."""
        for image in getattr(result, "images", ()):
            self.add_image(image.path)

    def restore_from_file(self, path: str | Path) -> bool:
        """Read any image's metadata and emit `parameters_restored` (drops on the window)."""
        meta = read_image_metadata(Path(path))
        if meta is None:
            self.restore_warning.emit(f"{Path(path).name} has no generation parameters.")
            return False
        restored = restore_parameters(meta, self.model_lookup)
        self.parameters_restored.emit(restored.values)
        if restored.warnings:
            self.restore_warning.emit("\n".join(restored.warnings))
        return True

    def set_model_lookup(self, lookup: ModelLookup | None) -> None:
        """`lookup(name, hash) -> path | None` tells whether a model is in the library."""
        self.model_lookup = lookup

    def current_query(self) -> GalleryQuery:
        """The query the search box and filters describe."""
        return self.filters.query()

    @Slot()
    def apply_filters(self) -> None:
        """Re-query with the current search text and filters (debounced for typing)."""
        self._search_timer.stop()
        self.model.set_query(self.current_query())
        self.detail.show_entry(None, None)

    @Slot()
    def rescan(self) -> None:
        """Look for images added or removed outside the app (in the background)."""
        if self.scanner.start():
            self.rescan_button.setEnabled(False)
            self.count_label.setText("Scanning…")

    def rebuild(self) -> None:
        """Rebuild the index from the files (background)."""
        if self.scanner.start(rebuild=True):
            self.rescan_button.setEnabled(False)

    def shutdown(self) -> None:
        """Finish pending deletes, stop background work, close the index."""
        self.commit_pending_delete()
        self.scanner.stop()
        self.pool.waitForDone()
        self._closed = True  # results still queued from the pool are ignored from now on
        self.index.close()

    # -- selection and actions --------------------------------------------------------------
    def current_entry(self) -> GalleryEntry | None:
        entry = self.grid.currentIndex().data(EntryRole)
        return entry if isinstance(entry, GalleryEntry) else None

    @Slot()
    def _on_grid_current_changed(self) -> None:
        entry = self.current_entry()
        meta = read_image_metadata(Path(entry.path)) if entry is not None else None
        self.detail.show_entry(entry, meta)
        if entry is not None:
            self.image_selected.emit(entry.path)

    @Slot()
    def use_parameters(self) -> None:
        """Restore the selected image's parameters into the sidebar."""
        entry = self.current_entry()
        if entry is not None:
            self.restore_from_file(entry.path)

    @Slot()
    def copy_prompt(self) -> None:
        entry = self.current_entry()
        meta = read_image_metadata(Path(entry.path)) if entry is not None else None
        if meta is not None:
            QGuiApplication.clipboard().setText(meta.prompt)

    @Slot()
    def copy_image(self) -> None:
        entry = self.current_entry()
        if entry is not None:
            image = QImage(entry.path)
            if image.isNull():
                self.message_posted.emit(f"Cannot read {Path(entry.path).name}.")
            else:
                QGuiApplication.clipboard().setImage(image)

    @Slot()
    def open_folder(self) -> None:
        entry = self.current_entry()
        if entry is not None:
            self.open_url(QUrl.fromLocalFile(str(Path(entry.path).parent)))

    @Slot(bool)
    def set_favourite(self, favourite: bool) -> None:
        entry = self.current_entry()
        if entry is None or entry.favourite == favourite:
            return
        self.model.set_favourite(entry.path, favourite)
        self.detail.favourite_button.setText("★ Favourite" if favourite else "☆ Favourite")

    @Slot()
    def toggle_favourite(self) -> None:
        entry = self.current_entry()
        if entry is not None:
            self.detail.favourite_button.setChecked(not entry.favourite)

    @Slot()
    def delete_current(self) -> None:
        """Delete the selected image (to the trash, undoable for UNDO_WINDOW_MS)."""
        entry = self.current_entry()
        if entry is None:
            return
        self.commit_pending_delete()
        root = self.index.entry_root(entry.path)
        try:
            item = trash.move_to_trash(entry.path, root, entry.favourite)
        except (OSError, UserError) as exc:
            self.message_posted.emit(f"Could not delete {Path(entry.path).name}: {exc}")
            return
        self.index.remove_path(entry.path)
        self.index.set_favourite(entry.path, False)
        self.model.remove_path(entry.path)
        self.detail.show_entry(None, None)
        if item.undoable:
            self._pending_delete = item
            self.undo_label.setText(f"Deleted {Path(entry.path).name}.")
            self.undo_bar.show()
            self._undo_timer.start()
        else:
            self.message_posted.emit(f"Moved {Path(entry.path).name} to the trash.")

    @Slot()
    def undo_delete(self) -> None:
        """Bring back the last deleted image."""
        item, self._pending_delete = self._pending_delete, None
        self._undo_timer.stop()
        self.undo_bar.hide()
        if item is None:
            return
        try:
            restored = trash.restore(item)
        except (OSError, UserError) as exc:
            self.message_posted.emit(f"Could not undo: {exc}")
            return
        if item.favourite:
            self.index.set_favourite(restored, True)
        self.index.add_file(restored)
        self.model.refresh()

    @Slot()
    def commit_pending_delete(self) -> None:
        """Close the undo window: the held image goes to the OS trash."""
        item, self._pending_delete = self._pending_delete, None
        self._undo_timer.stop()
        self.undo_bar.hide()
        if item is not None:
            try:
                trash.purge(item)
            except OSError as exc:
                self.message_posted.emit(f"Could not move to the trash: {exc}")

    def resizeEvent(self, event) -> None:
        wide = event.size().width() >= WIDE_LAYOUT
        self.splitter.setOrientation(Qt.Orientation.Horizontal if wide
                                     else Qt.Orientation.Vertical)
        super().resizeEvent(event)

    # -- drops ------------------------------------------------------------------------------
    def dragEnterEvent(self, event) -> None:
        if any(storage.is_image_name(Path(u.toLocalFile()).name)
               for u in event.mimeData().urls() if u.isLocalFile()):
            event.acceptProposedAction()

    def dropEvent(self, event) -> None:
        for url in event.mimeData().urls():
            if url.isLocalFile() and storage.is_image_name(Path(url.toLocalFile()).name):
                self.restore_from_file(url.toLocalFile())
                event.acceptProposedAction()
                return

    # -- background results -----------------------------------------------------------------
    @Slot(object)
    def _on_scanner_scan_finished(self, stats) -> None:
        if self._closed:
            return
        self.rescan_button.setEnabled(True)
        if stats.added or stats.updated or stats.removed:  # else keep the scroll position
            self._reload_models()
            self.model.refresh()
        else:
            self._on_model_count_changed(self.model.total)
        if stats.added or stats.removed:
            self.message_posted.emit(
                f"Gallery: {stats.added} new, {stats.removed} removed images found.")

    @Slot(str)
    def _on_scanner_scan_failed(self, message: str) -> None:
        self.rescan_button.setEnabled(True)
        self.message_posted.emit(f"Gallery scan failed: {message}")

    @Slot(int)
    def _on_model_count_changed(self, count: int) -> None:
        self.count_label.setText(f"{count} images")

    def _empty_text(self) -> str:
        if self.current_query() != GalleryQuery(sort=self.sort_combo.currentData()):
            return "No images match these filters."
        return ("No images yet.\nImages you generate appear here. Drop an image on the "
                "gallery to reuse its parameters.")

    def _reload_models(self) -> None:
        self.filters.set_models(self.index.models())
