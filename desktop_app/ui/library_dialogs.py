"""The library panel's dialogs and its item delegate (replaceable in tests)."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QModelIndex, QPersistentModelIndex, QRect, Qt
from PySide6.QtGui import QColor, QPainter
from PySide6.QtWidgets import (
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QFormLayout,
    QLabel,
    QLineEdit,
    QMessageBox,
    QStyledItemDelegate,
    QStyleOptionViewItem,
    QWidget,
)

from desktop_app.library.catalog import Catalog
from desktop_app.library.store import LibraryItem
from desktop_app.state.library_list import STATUS_TEXT, ItemRole, family_label

BADGE_COLOURS = {"sd15": "#3b7dd8", "sd2-512": "#8a5cd6", "sd2-768-v": "#b04fc4",
                 "sdxl": "#d9822b"}


class FamilyBadgeDelegate(QStyledItemDelegate):
    """Draws the item as usual plus a coloured family badge (and a red one for problems)."""

    def paint(self, painter: QPainter, option: QStyleOptionViewItem,
              index: QModelIndex | QPersistentModelIndex) -> None:
        super().paint(painter, option, index)
        item = index.data(ItemRole)
        if not isinstance(item, LibraryItem):
            return
        text = family_label(item.family) if item.status == "ok" else \
            STATUS_TEXT.get(item.status, item.status)
        colour = BADGE_COLOURS.get(item.family or "", "#777777") if item.status == "ok" \
            else "#c0392b"
        painter.save()
        metrics = painter.fontMetrics()
        width = metrics.horizontalAdvance(text) + 10
        rect = QRect(option.rect.right() - width - 4, option.rect.top() + 4, width,
                     metrics.height() + 2)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        painter.setBrush(QColor(colour))
        painter.setPen(Qt.PenStyle.NoPen)
        painter.drawRoundedRect(rect, 4, 4)
        painter.setPen(QColor("white"))
        painter.drawText(rect, Qt.AlignmentFlag.AlignCenter, text)
        painter.restore()


def confirm(parent: QWidget, title: str, text: str) -> bool:
    """Yes/Cancel question; Cancel is the default."""
    answer = QMessageBox.question(parent, title, text, QMessageBox.StandardButton.Yes
                                  | QMessageBox.StandardButton.Cancel,
                                  QMessageBox.StandardButton.Cancel)
    return answer == QMessageBox.StandardButton.Yes


def ask_copy(parent: QWidget, paths: list[Path]) -> bool | None:
    """True: copy into the library, False: use in place, None: cancelled."""
    box = QMessageBox(QMessageBox.Icon.Question, "Add model files",
                      "Use the file where it is, or copy it into the app's library?",
                      parent=parent)
    in_place = box.addButton("Use in place", QMessageBox.ButtonRole.AcceptRole)
    copy = box.addButton("Copy into library", QMessageBox.ButtonRole.ActionRole)
    box.addButton(QMessageBox.StandardButton.Cancel)
    box.exec()
    clicked = box.clickedButton()
    return False if clicked is in_place else True if clicked is copy else None


def choose_files(parent: QWidget) -> list[Path]:
    files, _ = QFileDialog.getOpenFileNames(
        parent, "Add model files", "", "Models (*.safetensors *.ckpt *.pt *.pth);;All (*)")
    return [Path(f) for f in files]


def ask_download(parent: QWidget, catalog: Catalog) -> tuple[str, str | None] | None:
    """(catalog id or URL, sha256 or None), or None when cancelled."""
    dialog = QDialog(parent)
    dialog.setWindowTitle("Download a model")
    source = QComboBox()
    source.setEditable(True)
    for entry in catalog.entries.values():
        size = f"{entry.size / 1e9:.2f} GB" if entry.size else "size unknown"
        source.addItem(f"{entry.title} — {size}, {entry.license}", entry.id)
    sha = QLineEdit(placeholderText="sha256 (needed for URLs without a known hash)")
    buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok
                               | QDialogButtonBox.StandardButton.Cancel)
    buttons.accepted.connect(dialog.accept)
    buttons.rejected.connect(dialog.reject)
    form = QFormLayout(dialog)
    form.addRow(QLabel("Pick a known model, or paste a URL (https://… or owner/repo/file)."))
    form.addRow("Model or URL", source)
    form.addRow("sha256", sha)
    form.addRow(buttons)
    if dialog.exec() != QDialog.DialogCode.Accepted:
        return None
    index = source.findText(source.currentText())
    chosen = source.itemData(index) if index >= 0 else source.currentText().strip()
    return (str(chosen), sha.text().strip() or None) if chosen else None


def choose_folder(parent: QWidget) -> Path | None:
    folder = QFileDialog.getExistingDirectory(
        parent, "Adopt a model folder (A1111, ComfyUI, InvokeAI or any folder)")
    return Path(folder) if folder else None
