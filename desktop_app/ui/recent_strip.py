"""Recent results of this session as thumbnails; activating one shows it in the preview."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QSize, Qt, Signal
from PySide6.QtGui import QIcon, QImage, QPixmap
from PySide6.QtWidgets import QLabel, QListView, QListWidget, QListWidgetItem, QVBoxLayout, QWidget

from desktop_app.pipeline.api import GenerationResult

THUMB = 112
MAX_ITEMS = 200


class RecentStrip(QWidget):
    """Newest first. Enter or a click on a thumbnail opens it in the preview.

    Signals:
        image_activated(str): path of the image the person picked.
    """

    image_activated = Signal(str)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.list = QListWidget()
        self.list.setViewMode(QListView.ViewMode.IconMode)
        self.list.setIconSize(QSize(THUMB, THUMB))
        self.list.setGridSize(QSize(THUMB + 16, THUMB + 16))
        self.list.setResizeMode(QListView.ResizeMode.Adjust)
        self.list.setMovement(QListView.Movement.Static)
        self.list.setUniformItemSizes(True)
        self.list.setAccessibleName("Recent images")
        self.list.setToolTip("Images made in this session. Enter or click shows one large.")
        self.empty_label = QLabel("Images you make in this session appear here.")
        self.empty_label.setObjectName("emptyHint")
        self.empty_label.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.empty_label.setWordWrap(True)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(6, 6, 6, 6)
        layout.addWidget(self.list, 1)
        layout.addWidget(self.empty_label, 1)
        self.list.itemActivated.connect(self._on_list_item_activated)
        self.list.itemClicked.connect(self._on_list_item_activated)
        self._update_empty()

    def add_result(self, result: GenerationResult,
                   loaded: dict[str, QImage] | None = None) -> int:
        """Add the images of a finished job (reusing already `loaded` ones); returns the count."""
        added = 0
        for image in result.images:
            qimage = (loaded or {}).get(image.path)
            if qimage is None:
                qimage = QImage(image.path)
            if qimage.isNull():
                continue
            small = max(qimage.width(), qimage.height()) < THUMB  # enlarge pixel-exact
            thumb = qimage.scaled(THUMB, THUMB, Qt.AspectRatioMode.KeepAspectRatio,
                                  Qt.TransformationMode.FastTransformation if small
                                  else Qt.TransformationMode.SmoothTransformation)
            item = QListWidgetItem(QIcon(QPixmap.fromImage(thumb)), "")
            item.setData(Qt.ItemDataRole.UserRole, image.path)
            item.setToolTip(f"{Path(image.path).name}\nseed {image.seed}\n"
                            f"{result.request.prompt[:200]}")
            self.list.insertItem(0, item)
            added += 1
        while self.list.count() > MAX_ITEMS:
            self.list.takeItem(self.list.count() - 1)
        self._update_empty()
        return added

    def paths(self) -> list[str]:
        return [str(self.list.item(i).data(Qt.ItemDataRole.UserRole))
                for i in range(self.list.count())]

    def _update_empty(self) -> None:
        empty = self.list.count() == 0
        self.list.setVisible(not empty)
        self.empty_label.setVisible(empty)

    def _on_list_item_activated(self, item: QListWidgetItem) -> None:
        self.image_activated.emit(str(item.data(Qt.ItemDataRole.UserRole)))
