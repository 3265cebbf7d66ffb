"""`LibraryListModel`: the library's filtered rows as a Qt item model (no widgets).

Rows follow `LibraryState`: a search text and a kind filter select them; a changed item
(e.g. its hash arrived) updates only its row. Thumbnails (ModelSpec data URIs, stored as bytes)
are decoded to QImage lazily and cached; QPixmaps are made by the view in the GUI thread.
"""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import QAbstractListModel, QModelIndex, QPersistentModelIndex, Qt, Slot
from PySide6.QtGui import QImage

from desktop_app.library.store import LibraryItem
from desktop_app.state.library_state import LibraryState

ItemRole = Qt.ItemDataRole.UserRole + 1
FamilyRole = Qt.ItemDataRole.UserRole + 2
StatusRole = Qt.ItemDataRole.UserRole + 3
PathRole = Qt.ItemDataRole.UserRole + 4

STATUS_TEXT = {"ok": "Ready", "unsupported": "Not supported", "corrupt": "Damaged",
               "missing": "Missing"}
KIND_TEXT = {"checkpoint": "Checkpoint", "vae": "VAE", "taesd": "Preview decoder",
             "lora": "LoRA", "unknown": "Unknown"}


def family_label(family: str | None) -> str:
    """Short badge text for a family id ("SD 1.x", "SDXL", …)."""
    from desktop_app.pipeline.api import ModelFamily

    if not family:
        return "?"
    try:
        return ModelFamily(family).label
    except ValueError:
        return family


class LibraryListModel(QAbstractListModel):
    """Filtered library rows for a QListView (grid or list)."""

    def __init__(self, state: LibraryState, parent: Any = None) -> None:
        super().__init__(parent)
        self.state = state
        self._text = ""
        self._kind = "all"
        self._rows: list[LibraryItem] = state.filtered()
        self._thumbs: dict[str, QImage | None] = {}
        state.items_changed.connect(self._on_state_items_changed)
        state.item_changed.connect(self._on_state_item_changed)

    def set_filter(self, text: str | None = None, kind: str | None = None) -> None:
        """Change the search text and/or kind filter ("all", "checkpoint", "vae", "taesd",
        "problems")."""
        if text is not None:
            self._text = text
        if kind is not None:
            self._kind = kind
        self._refill()

    def item_at(self, row: int) -> LibraryItem | None:
        return self._rows[row] if 0 <= row < len(self._rows) else None

    def row_of(self, path: str) -> int:
        return next((n for n, i in enumerate(self._rows) if i.path == path), -1)

    def rowCount(self, parent: QModelIndex | QPersistentModelIndex = QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else len(self._rows)

    def data(self, index: QModelIndex | QPersistentModelIndex,
             role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        item = self.item_at(index.row()) if index.isValid() else None
        if item is None:
            return None
        if role == Qt.ItemDataRole.DisplayRole:
            return item.name
        if role == Qt.ItemDataRole.ToolTipRole:
            status = STATUS_TEXT.get(item.status, item.status)
            reason = f"\n{item.reason}" if item.reason else ""
            return f"{item.path}\n{KIND_TEXT.get(item.kind, item.kind)} · " \
                   f"{family_label(item.family)} · {status}{reason}"
        if role == Qt.ItemDataRole.DecorationRole:
            return self._thumbnail(item)
        if role == ItemRole:
            return item
        if role == FamilyRole:
            return item.family
        if role == StatusRole:
            return item.status
        if role == PathRole:
            return item.path
        return None

    def _thumbnail(self, item: LibraryItem) -> QImage | None:
        if not item.has_thumbnail:
            return None
        if item.path not in self._thumbs:
            data = self.state.thumbnail(item.path)
            image = QImage.fromData(data) if data else QImage()
            self._thumbs[item.path] = None if image.isNull() else image
        return self._thumbs[item.path]

    def _refill(self) -> None:
        self.beginResetModel()
        self._rows = self.state.filtered(self._text, self._kind)
        self.endResetModel()

    @Slot()
    def _on_state_items_changed(self) -> None:
        self._thumbs.clear()
        self._refill()

    @Slot(str)
    def _on_state_item_changed(self, path: str) -> None:
        row = self.row_of(path)
        fresh = self.state.item(path)
        if row < 0 or fresh is None:
            self._refill()
            return
        self._rows[row] = fresh
        self._thumbs.pop(path, None)
        index = self.index(row)
        self.dataChanged.emit(index, index)
