"""The library panel's details pane: what a model is, where it lives, and the actions on it."""

from __future__ import annotations

import html

from PySide6.QtCore import Qt
from PySide6.QtGui import QPixmap
from PySide6.QtWidgets import (
    QComboBox,
    QFormLayout,
    QGridLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from desktop_app.library.store import LibraryItem
from desktop_app.state.library_list import KIND_TEXT, STATUS_TEXT, family_label


class LibraryDetails(QWidget):
    """Labels and buttons for one library item; the panel connects and enables the buttons.

    Narrow by design (fits a ~300 px side panel): long paths wrap anywhere, buttons sit two
    to a row, and a hint replaces the form while nothing is selected.
    """

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.hint = QLabel("Select a model to see its details and actions.", wordWrap=True)
        self.hint.setObjectName("emptyHint")
        self.box = QWidget()
        self.thumb_label = QLabel(alignment=Qt.AlignmentFlag.AlignCenter)
        self.name_edit = QLineEdit()
        self.name_edit.setToolTip("Display name (the file is not renamed)")
        self.info_label = QLabel(wordWrap=True)
        self.reason_label = QLabel(wordWrap=True)
        self.path_label = QLabel(wordWrap=True)
        # Rich text wraps a long path anywhere; plain text would only break at spaces.
        self.path_label.setTextFormat(Qt.TextFormat.RichText)
        self.path_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.hash_label = QLabel()
        self.description_label = QLabel(wordWrap=True)
        self.vae_combo = QComboBox()
        self.use_button = QPushButton("Use")
        self.reveal_button = QPushButton("Reveal in folder")
        self.remove_button = QPushButton("Remove from library")
        self.delete_button = QPushButton("Delete file…")
        self.convert_button = QPushButton("Convert to .safetensors")
        self._lay_out()

    def _lay_out(self) -> None:
        form = QFormLayout(self.box)
        form.setContentsMargins(0, 6, 0, 0)
        form.setRowWrapPolicy(QFormLayout.RowWrapPolicy.WrapLongRows)
        form.addRow(self.thumb_label)
        form.addRow("Name", self.name_edit)
        form.addRow("Kind", self.info_label)
        form.addRow(self.reason_label)
        form.addRow("File", self.path_label)
        form.addRow("Hash", self.hash_label)
        form.addRow(self.description_label)
        form.addRow("VAE", self.vae_combo)
        buttons = QGridLayout()
        buttons.setSpacing(4)
        buttons.addWidget(self.use_button, 0, 0)
        buttons.addWidget(self.reveal_button, 0, 1)
        buttons.addWidget(self.convert_button, 1, 0, 1, 2)
        buttons.addWidget(self.remove_button, 2, 0)
        buttons.addWidget(self.delete_button, 2, 1)
        form.addRow(buttons)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.hint, 0, Qt.AlignmentFlag.AlignTop)
        layout.addWidget(self.box)

    def show_item(self, item: LibraryItem | None, thumbnail: bytes | None) -> None:
        """Fill the labels for `item` (None: clear them and show the hint)."""
        self.box.setVisible(item is not None)
        self.hint.setVisible(item is None)
        if item is None:
            for label in (self.info_label, self.reason_label, self.path_label, self.hash_label,
                          self.description_label, self.thumb_label):
                label.clear()
            self.name_edit.clear()
            return
        self.name_edit.setText(item.name)
        kind = KIND_TEXT.get(item.kind, item.kind)
        self.info_label.setText(f"{kind} · {family_label(item.family)} · "
                                f"{STATUS_TEXT.get(item.status, item.status)} · "
                                f"{item.size / 1e9:.2f} GB")
        self.reason_label.setText(item.reason)
        self.reason_label.setStyleSheet("" if item.status == "ok" else "color: #c0392b;")
        self.path_label.setText(html.escape(item.path))
        self.path_label.setToolTip(item.path)
        self.hash_label.setText(item.short_hash or "computing…")
        self.description_label.setText(item.description)
        pixmap = QPixmap()
        if thumbnail:
            pixmap.loadFromData(thumbnail)
        self.thumb_label.setPixmap(pixmap.scaled(160, 160, Qt.AspectRatioMode.KeepAspectRatio)
                                   if not pixmap.isNull() else QPixmap())
