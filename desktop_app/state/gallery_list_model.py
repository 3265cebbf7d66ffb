"""`GalleryListModel`: the gallery index as a lazily paged Qt item model (no widgets).

Rows are fetched a page at a time (`canFetchMore`/`fetchMore`), so a 100 000-image gallery
shows its first screen after one small query. Thumbnails are requested only for rows the view
actually paints (DecorationRole) and arrive asynchronously from `ThumbnailLoader`.
"""

from __future__ import annotations

import dataclasses
from collections import OrderedDict
from typing import Any

from PySide6.QtCore import (
    QAbstractListModel,
    QModelIndex,
    QObject,
    QPersistentModelIndex,
    Qt,
    Signal,
    Slot,
)
from PySide6.QtGui import QImage

from desktop_app.gallery.index import GalleryEntry, GalleryIndex, GalleryQuery
from desktop_app.state.gallery_thumbnails import ThumbnailLoader

EntryRole = Qt.ItemDataRole.UserRole + 1
PathRole = Qt.ItemDataRole.UserRole + 2
ThumbnailRole = Qt.ItemDataRole.UserRole + 3
FavouriteRole = Qt.ItemDataRole.UserRole + 4

PAGE_SIZE = 256
THUMB_CACHE = 600  # QImages kept in memory (≤ 144 KB each at 192², ≤ 86 MB)

_Index = QModelIndex | QPersistentModelIndex


class GalleryListModel(QAbstractListModel):
    """Rows of `index` matching `query`, newest first by default.

    Signals:
        count_changed(int): how many images match the current query.
    """

    count_changed = Signal(int)

    def __init__(self, index: GalleryIndex, loader: ThumbnailLoader,
                 parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.index_db = index
        self.loader = loader
        self.query = GalleryQuery()
        self._entries: list[GalleryEntry] = []
        self._rows: dict[str, int] = {}
        self._total = 0
        self._thumbs: OrderedDict[str, QImage] = OrderedDict()
        loader.thumbnail_loaded.connect(self._on_loader_thumbnail_loaded)

    # -- query ------------------------------------------------------------------------------
    def set_query(self, query: GalleryQuery) -> None:
        """Show the images matching `query` (search text, filters, sort)."""
        self.query = query
        self.refresh()

    def refresh(self) -> None:
        """Re-run the current query (after a scan, an undo, …)."""
        self.beginResetModel()
        self._entries, self._rows = [], {}
        self._total = self.index_db.count(self.query)
        self.endResetModel()
        if self._total:
            self.fetchMore()  # the first page at once; the view asks for the rest on scroll
        self.count_changed.emit(self._total)

    @property
    def total(self) -> int:
        return self._total

    # -- Qt model API -----------------------------------------------------------------------
    def rowCount(self, parent: _Index = QModelIndex()) -> int:  # noqa: B008 (Qt signature)
        return 0 if parent.isValid() else len(self._entries)

    def canFetchMore(self, parent: _Index = QModelIndex()) -> bool:  # noqa: B008
        return not parent.isValid() and len(self._entries) < self._total

    def fetchMore(self, parent: _Index = QModelIndex()) -> None:  # noqa: B008
        if parent.isValid():
            return
        last = self._entries[-1] if self._entries else None
        page = self.index_db.query(self.query, limit=PAGE_SIZE, offset=len(self._entries),
                                   after=last)
        page = [e for e in page if e.path not in self._rows]  # rows inserted by add_entry
        if not page:
            self._total = len(self._entries)
            return
        first = len(self._entries)
        self.beginInsertRows(QModelIndex(), first, first + len(page) - 1)
        for offset, entry in enumerate(page):
            self._rows[entry.path] = first + offset
        self._entries.extend(page)
        self.endInsertRows()

    def data(self, index: _Index, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if not index.isValid() or not 0 <= index.row() < len(self._entries):
            return None
        entry = self._entries[index.row()]
        if role == Qt.ItemDataRole.DisplayRole:
            return " ".join(entry.prompt.split())[:80] or entry.path.rsplit("/", 1)[-1]
        if role == Qt.ItemDataRole.ToolTipRole:
            return entry.prompt or entry.path
        if role == EntryRole:
            return entry
        if role == PathRole:
            return entry.path
        if role == FavouriteRole:
            return entry.favourite
        if role == ThumbnailRole:
            return self._thumbnail(entry)
        return None

    def _thumbnail(self, entry: GalleryEntry) -> QImage | None:
        image = self._thumbs.get(entry.path)
        if image is not None:
            self._thumbs.move_to_end(entry.path)
            return image
        self.loader.request(entry.path, entry.mtime_ns)
        return None

    @Slot(str, QImage)
    def _on_loader_thumbnail_loaded(self, path: str, image: QImage) -> None:
        self._thumbs[path] = image
        while len(self._thumbs) > THUMB_CACHE:
            self._thumbs.popitem(last=False)
        row = self._rows.get(path)
        if row is not None:
            cell = self.index(row)
            self.dataChanged.emit(cell, cell, [ThumbnailRole])

    # -- edits ------------------------------------------------------------------------------
    def entry_at(self, row: int) -> GalleryEntry | None:
        return self._entries[row] if 0 <= row < len(self._entries) else None

    def row_of(self, path: str) -> int:
        """Row of `path` among the loaded rows, -1 if not loaded."""
        return self._rows.get(path, -1)

    def add_entry(self, entry: GalleryEntry) -> None:
        """Show a new image at the top when the view is the plain newest-first list;
        otherwise re-run the query so it lands where filters and sort put it."""
        if entry.path in self._rows:
            self.update_entry(entry)
            return
        if self.query != GalleryQuery():
            self.refresh()
            return
        self.beginInsertRows(QModelIndex(), 0, 0)
        self._entries.insert(0, entry)
        self._rows = {e.path: i for i, e in enumerate(self._entries)}
        self._total += 1
        self.endInsertRows()
        self.count_changed.emit(self._total)

    def remove_path(self, path: str) -> None:
        """Drop a row (the image was deleted)."""
        row = self._rows.get(path)
        if row is None:
            return
        self.beginRemoveRows(QModelIndex(), row, row)
        del self._entries[row]
        self._rows = {e.path: i for i, e in enumerate(self._entries)}
        self._total -= 1
        self.endRemoveRows()
        self._thumbs.pop(path, None)
        self.count_changed.emit(self._total)

    def update_entry(self, entry: GalleryEntry) -> None:
        row = self._rows.get(entry.path)
        if row is not None:
            self._entries[row] = entry
            cell = self.index(row)
            self.dataChanged.emit(cell, cell)

    def set_favourite(self, path: str, favourite: bool) -> None:
        """Persist a star and update its row (drops the row in a favourites-only view)."""
        self.index_db.set_favourite(path, favourite)
        row = self._rows.get(path)
        if row is None:
            return
        if self.query.favourites_only and not favourite:
            self.remove_path(path)
        else:
            self.update_entry(dataclasses.replace(self._entries[row], favourite=favourite))
