"""A calm hint drawn over an empty item view ("No images yet…"), so it never looks broken."""

from __future__ import annotations

from collections.abc import Callable

from PySide6.QtCore import QEvent, QObject, Qt
from PySide6.QtWidgets import QAbstractItemView, QLabel


class EmptyHint(QLabel):
    """Covers `view`'s viewport with a hint while its model has no rows.

    `text_for()` returns the hint to show (it may depend on filters: "nothing matches").
    """

    def __init__(self, view: QAbstractItemView, text_for: Callable[[], str]) -> None:
        super().__init__(view.viewport())
        self.setObjectName("emptyHint")
        self.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.setWordWrap(True)
        self.setAttribute(Qt.WidgetAttribute.WA_TransparentForMouseEvents)
        self._view = view
        self._text_for = text_for
        view.viewport().installEventFilter(self)
        model = view.model()
        for signal in (model.modelReset, model.rowsInserted, model.rowsRemoved,
                       model.layoutChanged):
            signal.connect(self.refresh)
        self.refresh()

    def refresh(self, *_args: object) -> None:
        """Show or hide the hint for the model's current row count."""
        empty = self._view.model().rowCount() == 0
        if empty:
            self.setText(self._text_for())
            self.setGeometry(self._view.viewport().rect())
        self.setVisible(empty)

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:
        if event.type() == QEvent.Type.Resize:
            self.setGeometry(self._view.viewport().rect())
        return False
