"""Gallery widgets besides the panel: the thumbnail delegate and the detail view."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QModelIndex, QPersistentModelIndex, QRect, QSize, Qt
from PySide6.QtGui import QColor, QFont, QImage, QPainter, QPixmap
from PySide6.QtWidgets import (
    QHBoxLayout,
    QLabel,
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
THUMB = 160


class GalleryDelegate(QStyledItemDelegate):
    """Paints one grid cell: the thumbnail (or a placeholder while it loads) and a star."""

    def sizeHint(self, option: QStyleOptionViewItem,
                 index: QModelIndex | QPersistentModelIndex) -> QSize:
        return QSize(CELL, CELL)

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
        self.image_label.setMinimumSize(200, 200)
        self.image_label.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Ignored)
        self.parameters = QPlainTextEdit(readOnly=True)
        self.parameters.setObjectName("galleryParameters")
        self.copy_prompt_button = QPushButton("Copy prompt")
        self.use_button = QPushButton("Use these parameters")
        self.favourite_button = QPushButton("☆ Favourite")
        self.favourite_button.setCheckable(True)
        self.delete_button = QPushButton("Delete")
        self.open_folder_button = QPushButton("Open folder")
        self.copy_image_button = QPushButton("Copy image")
        buttons = QHBoxLayout()
        for button in (self.use_button, self.copy_prompt_button, self.copy_image_button,
                       self.favourite_button, self.open_folder_button, self.delete_button):
            buttons.addWidget(button)
        layout = QVBoxLayout(self)
        layout.addWidget(self.image_label, 3)
        layout.addLayout(buttons)
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
            self.image_label.setPixmap(self._pixmap.scaled(
                self.image_label.size(), Qt.AspectRatioMode.KeepAspectRatio,
                Qt.TransformationMode.SmoothTransformation))

    def resizeEvent(self, event) -> None:
        super().resizeEvent(event)
        self._fit()
