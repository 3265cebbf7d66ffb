"""Light/dark appearance that follows the OS (Qt ≥ 6.5 colour scheme) unless the user picks one."""

from __future__ import annotations

from PySide6.QtCore import QObject, Qt
from PySide6.QtGui import QColor, QGuiApplication, QPalette
from PySide6.QtWidgets import QApplication, QStyleFactory

STYLESHEET = """
QLabel#sectionTitle { font-weight: 600; }
QLabel#tokenCounter { color: palette(placeholder-text); }
QLabel#tokenCounter[overflow="true"] { color: #d08a00; font-weight: 600; }
QLabel#emptyHint { color: palette(placeholder-text); padding: 12px; }
QLabel#statusLabel { color: palette(placeholder-text); }
QFrame#errorBar { background: rgba(220, 60, 60, 38); border: 1px solid rgba(220, 60, 60, 140);
                  border-radius: 6px; }
QLabel#errorMessage { font-weight: 600; }
QToolButton#generateButton { font-weight: 600; padding: 5px 18px; }
QToolButton#cancelButton { padding: 5px 12px; }
QProgressBar { min-height: 22px; }
QTabWidget::pane { border: none; }
QListWidget#queueList::item { padding: 4px 2px; }
"""


def dark_palette() -> QPalette:
    """A calm dark palette for the Fusion style."""
    base, window, text = QColor(30, 31, 34), QColor(43, 45, 48), QColor(223, 225, 229)
    palette = QPalette()
    roles = {
        QPalette.ColorRole.Window: window, QPalette.ColorRole.WindowText: text,
        QPalette.ColorRole.Base: base, QPalette.ColorRole.AlternateBase: QColor(37, 38, 41),
        QPalette.ColorRole.ToolTipBase: QColor(55, 57, 61), QPalette.ColorRole.ToolTipText: text,
        QPalette.ColorRole.Text: text, QPalette.ColorRole.Button: QColor(53, 55, 59),
        QPalette.ColorRole.ButtonText: text, QPalette.ColorRole.BrightText: QColor(255, 90, 90),
        QPalette.ColorRole.Highlight: QColor(53, 116, 240),
        QPalette.ColorRole.HighlightedText: QColor(255, 255, 255),
        QPalette.ColorRole.Link: QColor(110, 160, 255),
        QPalette.ColorRole.PlaceholderText: QColor(140, 143, 150),
        QPalette.ColorRole.Mid: QColor(70, 72, 77), QPalette.ColorRole.Dark: QColor(25, 26, 28),
        QPalette.ColorRole.Light: QColor(70, 72, 77), QPalette.ColorRole.Shadow: QColor(0, 0, 0),
    }
    for role, color in roles.items():
        palette.setColor(role, color)
    disabled = QColor(110, 112, 118)
    for role in (QPalette.ColorRole.Text, QPalette.ColorRole.ButtonText,
                 QPalette.ColorRole.WindowText):
        palette.setColor(QPalette.ColorGroup.Disabled, role, disabled)
    return palette


def system_prefers_dark() -> bool:
    """The OS colour scheme (Qt 6.5+); unknown counts as light."""
    return QGuiApplication.styleHints().colorScheme() == Qt.ColorScheme.Dark


class ThemeController(QObject):
    """Applies "system", "light" or "dark" and follows OS changes while on "system"."""

    def __init__(self, app: QApplication, preference: str = "system") -> None:
        super().__init__(app)
        self._app = app
        self._preference = preference
        app.setStyle(QStyleFactory.create("Fusion"))
        app.setStyleSheet(STYLESHEET)
        QGuiApplication.styleHints().colorSchemeChanged.connect(self._on_scheme_changed)
        self.apply()

    @property
    def preference(self) -> str:
        return self._preference

    def set_preference(self, preference: str) -> None:
        self._preference = preference if preference in ("system", "light", "dark") else "system"
        self.apply()

    def is_dark(self) -> bool:
        if self._preference == "system":
            return system_prefers_dark()
        return self._preference == "dark"

    def apply(self) -> None:
        palette = dark_palette() if self.is_dark() else self._app.style().standardPalette()
        self._app.setPalette(palette)
        # Widgets polished by the style sheet keep their old palette until it is set again.
        self._app.setStyleSheet("")
        self._app.setStyleSheet(STYLESHEET)

    def _on_scheme_changed(self, _scheme: Qt.ColorScheme) -> None:
        if self._preference == "system":
            self.apply()
