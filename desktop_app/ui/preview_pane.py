"""Preview pane (image scaled to fit, with an empty state) and the inline error bar."""

from __future__ import annotations

from PySide6.QtCore import QRect, QSize, Qt, Signal
from PySide6.QtGui import QImage, QPainter, QPalette, QPixmap
from PySide6.QtWidgets import (
    QFrame,
    QHBoxLayout,
    QLabel,
    QSizePolicy,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from desktop_app.errors import ErrorKind, UserError

SMALL_IMAGE = 256  # below this many pixels a side, enlarge pixel-exact: crisp, not blurred
EMPTY_TEXT = ("Write a prompt and press Ctrl+Enter.\n"
              "Each step's preview and the final image appear here.")


class PreviewPane(QWidget):
    """Shows a QImage scaled to fit (aspect kept, centred); a calm hint when empty."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._pixmap: QPixmap | None = None
        self._caption = ""
        self.setMinimumSize(240, 240)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        self.setAccessibleName("Image preview")
        self.setBackgroundRole(QPalette.ColorRole.Base)
        self.setAutoFillBackground(True)

    def sizeHint(self) -> QSize:
        return QSize(640, 640)

    def set_image(self, image: QImage | None, caption: str = "") -> None:
        """Show `image` (converted to a QPixmap here, in the GUI thread); None clears it."""
        self._pixmap = None if image is None or image.isNull() else QPixmap.fromImage(image)
        self._caption = caption
        self.update()

    def has_image(self) -> bool:
        return self._pixmap is not None

    def caption(self) -> str:
        return self._caption

    def image_rect(self) -> QRect:
        """Where the image is drawn (empty when there is none)."""
        if self._pixmap is None:
            return QRect()
        area = self.rect().adjusted(12, 12, -12, -12)
        size = self._pixmap.size().scaled(area.size(), Qt.AspectRatioMode.KeepAspectRatio)
        rect = QRect(0, 0, size.width(), size.height())
        rect.moveCenter(area.center())
        return rect

    def paintEvent(self, event) -> None:
        painter = QPainter(self)
        if self._pixmap is None:
            color = self.palette().color(QPalette.ColorRole.PlaceholderText)
            painter.setPen(color)
            painter.drawText(self.rect(), Qt.AlignmentFlag.AlignCenter, EMPTY_TEXT)
            return
        small = max(self._pixmap.width(), self._pixmap.height()) < SMALL_IMAGE
        painter.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform, not small)
        painter.drawPixmap(self.image_rect(), self._pixmap)
        if self._caption:
            metrics = painter.fontMetrics()
            box = metrics.boundingRect(self._caption).adjusted(-8, -4, 8, 4)
            box.moveBottomLeft(self.image_rect().bottomLeft() + self.rect().topLeft())
            box.translate(8, -8)
            painter.fillRect(box, Qt.GlobalColor.black)
            painter.setOpacity(1.0)
            painter.setPen(Qt.GlobalColor.white)
            painter.drawText(box, Qt.AlignmentFlag.AlignCenter, self._caption)


_ICONS = {ErrorKind.out_of_memory: "⚠", ErrorKind.missing_file: "⚠",
          ErrorKind.corrupt_file: "⚠", ErrorKind.cancelled: "ℹ"}


class ErrorBar(QFrame):
    """An inline message with a hint, shown where the action failed; dismissible.

    Signals:
        dismissed(): the person closed the message.
    """

    dismissed = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("errorBar")
        self.setFrameShape(QFrame.Shape.StyledPanel)
        self.icon = QLabel("⚠")
        self.icon.setObjectName("errorIcon")
        self.message = QLabel()
        self.message.setObjectName("errorMessage")
        self.message.setWordWrap(True)
        self.message.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.hint = QLabel()
        self.hint.setObjectName("errorHint")
        self.hint.setWordWrap(True)
        self.hint.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        close = QToolButton()
        close.setText("✕")
        close.setToolTip("Dismiss this message")
        close.setAutoRaise(True)
        close.clicked.connect(self.dismiss)
        texts = QVBoxLayout()
        texts.setSpacing(2)
        texts.addWidget(self.message)
        texts.addWidget(self.hint)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(10, 8, 6, 8)
        layout.addWidget(self.icon, 0, Qt.AlignmentFlag.AlignTop)
        layout.addLayout(texts, 1)
        layout.addWidget(close, 0, Qt.AlignmentFlag.AlignTop)
        self.hide()

    def show_error(self, error: UserError) -> None:
        self.icon.setText(_ICONS.get(error.kind, "⚠"))
        self.message.setText(error.message)
        self.hint.setText(error.hint)
        self.hint.setVisible(bool(error.hint))
        self.setAccessibleDescription(str(error))
        self.show()

    def dismiss(self) -> None:
        if self.isVisible():
            self.hide()
            self.dismissed.emit()

    def text(self) -> str:
        """Message and hint as shown (for tests and accessibility)."""
        return f"{self.message.text()}\n{self.hint.text()}".strip()
