"""The model library panel: browse, search, inspect and manage checkpoints, VAEs and decoders."""

from __future__ import annotations

from functools import partial
from pathlib import Path

from PySide6.QtCore import QModelIndex, QSize, Qt, QUrl, Signal, Slot
from PySide6.QtGui import QDesktopServices
from PySide6.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListView,
    QProgressBar,
    QPushButton,
    QScrollArea,
    QSplitter,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from desktop_app.library.store import VAE_AUTO, VAE_BAKED, LibraryItem
from desktop_app.state.library_list import (
    ItemRole,
    LibraryListModel,
)
from desktop_app.state.library_state import LibraryState, needs_conversion, resolve_vae
from desktop_app.ui import library_dialogs as dialogs
from desktop_app.ui.empty_state import EmptyHint
from desktop_app.ui.library_details import LibraryDetails
from desktop_app.ui.library_dialogs import FamilyBadgeDelegate

KIND_FILTER_ITEMS = (("All", "all"), ("Checkpoints", "checkpoint"), ("VAEs", "vae"),
                     ("Preview decoders", "taesd"), ("Problems", "problems"))
WIDE_LAYOUT = 760  # px of panel width from which the details sit beside the list


class LibraryPanel(QWidget):
    """Grid/list of library items with search, details and per-model actions.

    Signals:
        model_used(str, str): "Use" was pressed: the model path and the VAE path to use with it
            ("" for the model's own VAE). The main window selects them in the sidebar.
        library_changed(): items were added, removed or renamed (refresh pickers).

    Dialogs go through replaceable callables (`confirm`, `ask_copy`, `choose_files`,
    `choose_folder`, `ask_download`, `open_url`) so tests can answer them.
    """

    model_used = Signal(str, str)
    library_changed = Signal()

    def __init__(self, state: LibraryState, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.state = state
        self.model = LibraryListModel(state, self)
        self.confirm = partial(dialogs.confirm, self)
        self.ask_copy = partial(dialogs.ask_copy, self)
        self.choose_files = partial(dialogs.choose_files, self)
        self.choose_folder = partial(dialogs.choose_folder, self)
        self.ask_download = partial(dialogs.ask_download, self, state.library.catalog)
        self.open_url = QDesktopServices.openUrl
        self._current: LibraryItem | None = None
        self.setAcceptDrops(True)
        self._build()
        self._connect()
        self._show_details(None)
        problems = state.library.catalog.problems  # a broken user models.toml: say so once
        if problems:
            self.status_label.setText("⚠ " + "\n⚠ ".join(problems))

    # -- construction ----------------------------------------------------------------------
    def _build(self) -> None:
        self.search_edit = QLineEdit(placeholderText="Search models…", clearButtonEnabled=True)
        self.kind_combo = QComboBox()
        for label, kind in KIND_FILTER_ITEMS:
            self.kind_combo.addItem(label, kind)
        self.grid_button = QToolButton()
        self.grid_button.setText("Grid")
        self.grid_button.setCheckable(True)
        self.add_file_button = QPushButton("Add file…")
        self.add_folder_button = QPushButton("Add folder…")
        self.rescan_button = QToolButton()  # sized to its text, unlike a push button
        self.rescan_button.setText("Rescan")
        self.download_button = QPushButton("Download…")
        self.download_button.setToolTip("Download a known model or a URL (verified by sha256)")
        self.kind_combo.setSizeAdjustPolicy(
            QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self.kind_combo.setMinimumContentsLength(6)
        self.search_edit.setMinimumWidth(80)
        # Two short rows (filters; actions) so the panel fits a ~300 px side panel.
        top = QVBoxLayout()
        top.setSpacing(4)
        for widgets in ((self.search_edit, self.kind_combo, self.grid_button, self.rescan_button),
                        (self.add_file_button, self.add_folder_button, self.download_button)):
            row = QHBoxLayout()
            row.setSpacing(4)
            for widget in widgets:
                row.addWidget(widget)
            top.addLayout(row)

        self.view = QListView()
        self.view.setModel(self.model)
        self.view.setItemDelegate(FamilyBadgeDelegate(self.view))
        self.view.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.view.setUniformItemSizes(True)
        self.view.setIconSize(QSize(48, 48))
        self.empty_hint = EmptyHint(self.view, self._empty_text)

        # Details below the list in a side panel; beside it once the panel is dragged wide.
        self.splitter = QSplitter(Qt.Orientation.Vertical)
        self.splitter.setObjectName("librarySplitter")
        self.splitter.addWidget(self.view)
        self.details = d = LibraryDetails()
        self.name_edit, self.hash_label, self.vae_combo = d.name_edit, d.hash_label, d.vae_combo
        self.use_button, self.reveal_button, self.convert_button = (
            d.use_button, d.reveal_button, d.convert_button)
        self.remove_button, self.delete_button = d.remove_button, d.delete_button
        self.info_label, self.reason_label = d.info_label, d.reason_label
        details = QScrollArea()
        details.setWidget(self.details)
        details.setWidgetResizable(True)
        details.setFrameShape(QScrollArea.Shape.NoFrame)
        details.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.splitter.addWidget(details)
        self.splitter.setStretchFactor(0, 1)
        self.splitter.setStretchFactor(1, 1)
        self.status_label = QLabel(wordWrap=True)
        self.download_bar = QProgressBar()
        self.cancel_download_button = QPushButton("Cancel download")
        downloads = QHBoxLayout()
        downloads.addWidget(self.download_bar, 1)
        downloads.addWidget(self.cancel_download_button)
        self._set_downloading(False)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(6, 6, 6, 6)
        layout.addLayout(top)
        layout.addWidget(self.splitter, 1)
        layout.addLayout(downloads)
        layout.addWidget(self.status_label)

    def _connect(self) -> None:
        self.search_edit.textChanged.connect(lambda text: self.model.set_filter(text=text))
        self.kind_combo.currentIndexChanged.connect(
            lambda _i: self.model.set_filter(kind=self.kind_combo.currentData()))
        self.grid_button.toggled.connect(self.set_grid_mode)
        self.add_file_button.clicked.connect(self._on_add_file_clicked)
        self.add_folder_button.clicked.connect(self._on_add_folder_clicked)
        self.rescan_button.clicked.connect(self.state.refresh)
        self.download_button.clicked.connect(self._on_download_clicked)
        self.cancel_download_button.clicked.connect(self.state.cancel_download)
        self.state.download_progressed.connect(self._on_state_download_progressed)
        self.state.download_finished.connect(self._on_state_download_finished)
        self.view.selectionModel().currentChanged.connect(self._on_view_current_changed)
        self.model.modelReset.connect(self._on_model_reset)
        self.model.dataChanged.connect(self._on_model_data_changed)
        self.name_edit.editingFinished.connect(self._on_name_edit_finished)
        self.vae_combo.activated.connect(self._on_vae_combo_activated)
        self.use_button.clicked.connect(self._on_use_clicked)
        self.reveal_button.clicked.connect(self._on_reveal_clicked)
        self.remove_button.clicked.connect(self._on_remove_clicked)
        self.delete_button.clicked.connect(self._on_delete_clicked)
        self.convert_button.clicked.connect(self._on_convert_clicked)
        self.state.error_raised.connect(self._on_state_error_raised)
        self.state.message_posted.connect(self.status_label.setText)
        self.state.items_changed.connect(self.library_changed)
        self.state.busy_changed.connect(self._on_state_busy_changed)

    def resizeEvent(self, event) -> None:
        wide = event.size().width() >= WIDE_LAYOUT
        self.splitter.setOrientation(Qt.Orientation.Horizontal if wide
                                     else Qt.Orientation.Vertical)
        super().resizeEvent(event)

    # -- public ----------------------------------------------------------------------------
    def set_grid_mode(self, grid: bool) -> None:
        """Icon grid (thumbnails) or a compact list."""
        mode = QListView.ViewMode.IconMode if grid else QListView.ViewMode.ListMode
        self.view.setViewMode(mode)
        self.view.setIconSize(QSize(128, 128) if grid else QSize(48, 48))
        self.view.setGridSize(QSize(180, 180) if grid else QSize())
        self.view.setResizeMode(QListView.ResizeMode.Adjust)

    def select_path(self, path: str) -> bool:
        """Select the row of `path` (False if it is not shown)."""
        row = self.model.row_of(path)
        if row < 0:
            return False
        self.view.setCurrentIndex(self.model.index(row))
        return True

    @property
    def current_item(self) -> LibraryItem | None:
        return self._current

    def add_paths(self, paths: list[Path]) -> None:
        """Add dropped/picked paths: folders in place; files in place or copied (asks)."""
        if not paths:
            return
        copy = False
        if any(p.is_file() for p in paths):
            answer = self.ask_copy(paths)
            if answer is None:
                return
            copy = answer
        self.state.add_paths(paths, copy=copy)

    def _empty_text(self) -> str:
        if self.search_edit.text() or self.kind_combo.currentData() != "all":
            return "No models match."
        return ("No models added yet.\nAdd a checkpoint file or a whole folder (A1111 and "
                "ComfyUI model folders work), or drop files here.")

    # -- details ---------------------------------------------------------------------------
    def _show_details(self, item: LibraryItem | None) -> None:
        self._current = item
        for widget in (self.name_edit, self.vae_combo, self.use_button, self.reveal_button,
                       self.remove_button, self.delete_button):
            widget.setEnabled(item is not None)
        self.convert_button.setVisible(item is not None and needs_conversion(item))
        thumb = item is not None and item.has_thumbnail and self.state.thumbnail(item.path)
        self.details.show_item(item, thumb or None)
        if item is None:  # an empty list has its own hint; "select a model" would be noise
            self.details.hint.setVisible(self.model.rowCount() > 0)
            return
        usable = item.kind == "checkpoint" and item.status == "ok" and not needs_conversion(item)
        self.use_button.setEnabled(usable)
        self.vae_combo.setEnabled(item.kind == "checkpoint")
        self._fill_vae_combo(item)

    def _fill_vae_combo(self, item: LibraryItem) -> None:
        self.vae_combo.clear()
        self.vae_combo.addItem("The model's own (baked in)", VAE_BAKED)
        self.vae_combo.addItem("Automatic (<model>.vae.* next to it, else baked)", VAE_AUTO)
        for vae in self.state.vae_files():
            self.vae_combo.addItem(vae.name, vae.path)
        index = self.vae_combo.findData(item.vae)
        if index < 0:  # a VAE file that is no longer in the library
            self.vae_combo.addItem(f"{Path(item.vae).name} (not in the library)", item.vae)
            index = self.vae_combo.count() - 1
        self.vae_combo.setCurrentIndex(index)

    # -- slots -----------------------------------------------------------------------------
    @Slot(QModelIndex, QModelIndex)
    def _on_view_current_changed(self, current: QModelIndex, _previous: QModelIndex) -> None:
        self._show_details(current.data(ItemRole) if current.isValid() else None)

    @Slot()
    def _on_model_reset(self) -> None:
        path = self._current.path if self._current else None
        if path is None or not self.select_path(path):
            self._show_details(None)

    @Slot(QModelIndex, QModelIndex)
    def _on_model_data_changed(self, top: QModelIndex, _bottom: QModelIndex) -> None:
        item = top.data(ItemRole)
        if self._current is not None and isinstance(item, LibraryItem) \
                and item.path == self._current.path:
            self._show_details(item)

    @Slot()
    def _on_name_edit_finished(self) -> None:
        item = self._current
        if item is not None and self.name_edit.text().strip() != item.name:
            self.state.set_display_name(item.path, self.name_edit.text())
            self.library_changed.emit()

    @Slot(int)
    def _on_vae_combo_activated(self, index: int) -> None:
        if self._current is not None:
            self.state.set_vae(self._current.path, str(self.vae_combo.itemData(index)))

    @Slot()
    def _on_use_clicked(self) -> None:
        item = self._current
        if item is not None:
            self.model_used.emit(item.path, resolve_vae(item) or "")

    @Slot()
    def _on_reveal_clicked(self) -> None:
        if self._current is not None:
            self.open_url(QUrl.fromLocalFile(str(Path(self._current.path).parent)))

    @Slot()
    def _on_remove_clicked(self) -> None:
        if self._current is not None:
            self.state.remove(self._current.path)
            self.status_label.setText("Removed from the library; the file was not touched.")

    @Slot()
    def _on_delete_clicked(self) -> None:
        item = self._current
        if item is None:
            return
        if self.confirm("Delete model file?",
                        f"Move {Path(item.path).name} to the trash?\n\n{item.path}\n\n"
                        "This deletes your file, not just the library entry."):
            self.state.delete_file(item.path)

    @Slot()
    def _on_convert_clicked(self) -> None:
        if self._current is not None:
            self.status_label.setText("Converting… (only known-safe pickle contents are read)")
            self.state.convert(self._current.path)

    @Slot()
    def _on_add_file_clicked(self) -> None:
        self.add_paths(self.choose_files())

    @Slot()
    def _on_add_folder_clicked(self) -> None:
        folder = self.choose_folder()
        if folder is not None:
            self.add_paths([folder])

    @Slot()
    def _on_download_clicked(self) -> None:
        answer = self.ask_download()
        if answer is not None:
            self._set_downloading(True)
            self.download_bar.setRange(0, 0)  # busy until the first progress report
            self.state.download(*answer)

    @Slot(object, object)
    def _on_state_download_progressed(self, done: object, total: object) -> None:
        if isinstance(total, int) and isinstance(done, int) and total > 0:
            self.download_bar.setRange(0, 1000)
            self.download_bar.setValue(int(1000 * done / total))
            self.download_bar.setFormat(f"{done / 1e6:,.0f} / {total / 1e6:,.0f} MB")

    @Slot(str)
    def _on_state_download_finished(self, path: str) -> None:
        self._set_downloading(False)
        self.status_label.setText(f"Downloaded and verified: {Path(path).name}")
        self.select_path(path)

    def _set_downloading(self, active: bool) -> None:
        self.download_bar.setVisible(active)
        self.cancel_download_button.setVisible(active)
        self.download_button.setEnabled(not active)

    @Slot(object)
    def _on_state_error_raised(self, error: object) -> None:
        if self.download_bar.isVisibleTo(self):
            self._set_downloading(False)
        self.status_label.setText(f"⚠ {error}")

    @Slot(bool)
    def _on_state_busy_changed(self, busy: bool) -> None:
        self.rescan_button.setEnabled(not busy)
        if busy:
            self.status_label.setText("Working…")

    # -- drag and drop ---------------------------------------------------------------------
    def dragEnterEvent(self, event):
        if event.mimeData().hasUrls() and any(u.isLocalFile() for u in event.mimeData().urls()):
            event.acceptProposedAction()

    def dropEvent(self, event):
        paths = [Path(u.toLocalFile()) for u in event.mimeData().urls() if u.isLocalFile()]
        event.acceptProposedAction()
        self.add_paths(paths)
