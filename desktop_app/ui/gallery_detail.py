"""Gallery widgets besides the panel: the thumbnail delegate and the detail view."""

from __future__ import annotations

import math
from pathlib import Path

from PySide6.QtCore import QModelIndex, QPersistentModelIndex, QRect, QSize, Qt
from PySide6.QtGui import QColor, QFont, QImage, QPainter, QPixmap
from PySide6.QtWidgets import (
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QListView,
    QPlainTextEdit,
    QPushButton,
    QSizePolicy,
    QStyle,
    QStyledItemDelegate,
    QStyleOptionViewItem,
    QVBoxLayout,
    QWidget,
)

from desktop_app.gallery.index import GalleryEntry
from desktop_app.gallery.metadata import ImageMetadata, a1111_pairs
from desktop_app.state.gallery_list_model import FavouriteRole, ThumbnailRole

CELL = 172
MIN_CELL = 96
THUMB = 160
SMALL_IMAGE = 256  # images smaller than this are enlarged pixel-exact (no blur)


class GalleryDelegate(QStyledItemDelegate):
    """Paints one grid cell: the thumbnail (or a placeholder while it loads) and a star."""

    cell = CELL

    def sizeHint(self, option: QStyleOptionViewItem,
                 index: QModelIndex | QPersistentModelIndex) -> QSize:
        return QSize(self.cell, self.cell)

    def paint(self, painter: QPainter, option: QStyleOptionViewItem,
              index: QModelIndex | QPersistentModelIndex) -> None:
        painter.save()
        rect = option.rect.adjusted(4, 4, -4, -4)
        if option.state & QStyle.StateFlag.State_Selected:
            painter.fillRect(option.rect, option.palette.highlight())
        image = index.data(ThumbnailRole)
        if isinstance(image, QImage) and not image.isNull():
            size = image.size().scaled(rect.size(), Qt.AspectRatioMode.KeepAspectRatio)
            target = QRect(0, 0, size.width(), size.height())
            target.moveCenter(rect.center())
            painter.drawImage(target, image)
        else:
            painter.fillRect(rect, QColor(60, 60, 60))
        if index.data(FavouriteRole):
            painter.setPen(QColor(255, 200, 0))
            font = QFont(painter.font())
            font.setPointSize(16)
            painter.setFont(font)
            painter.drawText(rect.adjusted(4, 2, -4, -2),
                             Qt.AlignmentFlag.AlignTop | Qt.AlignmentFlag.AlignRight, "★")
        painter.restore()


class GalleryGrid(QListView):
    """The thumbnail grid; cells shrink (down to MIN_CELL) so narrow panels get 2+ columns."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setViewMode(QListView.ViewMode.IconMode)
        self.setResizeMode(QListView.ResizeMode.Adjust)
        self.setMovement(QListView.Movement.Static)
        self.setUniformItemSizes(True)
        self.setSpacing(2)
        self.delegate = GalleryDelegate(self)
        self.setItemDelegate(self.delegate)
        self.setMinimumWidth(MIN_CELL + 40)

    def columns_for(self, width: int) -> tuple[int, int]:
        """(columns, cell size) that fill `width` pixels of view."""
        scroll_bar = self.style().pixelMetric(QStyle.PixelMetric.PM_ScrollBarExtent)
        # Counting the scroll bar always keeps the layout from flipping when it appears.
        space = width - 2 * self.frameWidth() - scroll_bar - self.spacing()
        step = self.spacing() * 2
        columns = max(1, min(math.ceil(space / (CELL + step)), space // (MIN_CELL + step)))
        return columns, max(MIN_CELL, min(CELL, space // columns - step))

    def resizeEvent(self, event) -> None:
        _columns, cell = self.columns_for(event.size().width())
        if cell != self.delegate.cell:
            self.delegate.cell = cell
            self.setGridSize(QSize(cell + 2 * self.spacing(), cell + 2 * self.spacing()))
        super().resizeEvent(event)


def scaled_pixmap(pixmap: QPixmap, size: QSize) -> QPixmap:
    """`pixmap` fitted into `size`; small images are enlarged pixel-exact so they stay crisp."""
    small = max(pixmap.width(), pixmap.height()) < SMALL_IMAGE
    mode = (Qt.TransformationMode.FastTransformation if small
            else Qt.TransformationMode.SmoothTransformation)
    return pixmap.scaled(size, Qt.AspectRatioMode.KeepAspectRatio, mode)


def parameters_text(entry: GalleryEntry, meta: ImageMetadata | None) -> str:
    """Every parameter of an image, one per line, for the detail view."""
    lines = [f"File: {entry.path}"]
    if meta is None:
        lines.append("No generation parameters in this image.")
        return "\n".join(lines)
    lines += [f"Prompt: {meta.prompt}", f"Negative prompt: {meta.negative_prompt}"]
    lines += [f"{key}: {value}" for key, value in a1111_pairs(meta)]
    if meta.model_hash:
        lines.append(f"Model SHA-256: {meta.model_hash}")
    lines.append(f"Written by: {meta.source}")
    return "\n".join(lines)


class GalleryDetailView(QWidget):
    """The selected image at full size, all its parameters and the actions on it.

    The panel connects the buttons (public attributes); this widget only displays.
    """

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.image_label = QLabel(alignment=Qt.AlignmentFlag.AlignCenter)
        self.image_label.setMinimumSize(MIN_CELL, MIN_CELL)
        self.image_label.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Ignored)
        self.image_label.setObjectName("galleryDetailImage")
        self.parameters = QPlainTextEdit(readOnly=True)
        self.parameters.setObjectName("galleryParameters")
        self.parameters.setMinimumHeight(48)
        self.copy_prompt_button = QPushButton("Copy prompt")
        self.use_button = QPushButton("Use parameters")
        self.use_button.setToolTip("Put this image's prompt and settings into the sidebar "
                                   "(or double-click the image)")
        self.favourite_button = QPushButton("☆ Favourite")
        self.favourite_button.setCheckable(True)
        self.delete_button = QPushButton("Delete")
        self.open_folder_button = QPushButton("Open folder")
        self.copy_image_button = QPushButton("Copy image")
        # The image beside a compact column of actions, parameters below: fits ~300 px.
        buttons = QGridLayout()
        buttons.setSpacing(4)
        for position, button in enumerate((
                self.use_button, self.favourite_button, self.copy_prompt_button,
                self.copy_image_button, self.open_folder_button, self.delete_button)):
            button.setSizePolicy(QSizePolicy.Policy.Preferred, QSizePolicy.Policy.Fixed)
            buttons.addWidget(button, position, 0)
        top = QHBoxLayout()
        top.addWidget(self.image_label, 1)
        top.addLayout(buttons)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 4, 0, 0)
        layout.addLayout(top, 3)
        layout.addWidget(self.parameters, 2)
        self._pixmap = QPixmap()
        self.show_entry(None, None)

    def show_entry(self, entry: GalleryEntry | None, meta: ImageMetadata | None) -> None:
        """Display one image (None clears the view)."""
        enabled = entry is not None
        for button in (self.copy_prompt_button, self.use_button, self.favourite_button,
                       self.delete_button, self.open_folder_button, self.copy_image_button):
            button.setEnabled(enabled)
        self.use_button.setEnabled(meta is not None)
        self.copy_prompt_button.setEnabled(meta is not None)
        if entry is None:
            self._pixmap = QPixmap()
            self.image_label.setText("Select an image")
            self.parameters.setPlainText("")
            return
        self._pixmap = QPixmap(entry.path) if Path(entry.path).exists() else QPixmap()
        if self._pixmap.isNull():
            self.image_label.setText("Cannot show this image")
        self._fit()
        self.parameters.setPlainText(parameters_text(entry, meta))
        self.favourite_button.setChecked(entry.favourite)
        self.favourite_button.setText("★ Favourite" if entry.favourite else "☆ Favourite")

    def _fit(self) -> None:
        if not self._pixmap.isNull():
            self.image_label.setPixmap(scaled_pixmap(self._pixmap, self.image_label.size()))

    def resizeEvent(self, event) -> None:
        super().resizeEvent(event)
        self._fit()
