"""The gallery and library panels inside the main window (app.attach_panels)."""

from __future__ import annotations

from pytestqt.qtbot import QtBot

from desktop_app.app import attach_panels
from desktop_app.ui.main_window import MainWindow


def _panel(window: MainWindow, name: str):
    names = [window.side_tabs.tabText(i) for i in range(window.side_tabs.count())]
    assert name in names
    return window.side_panel(name)


def test_finished_images_appear_in_the_gallery_and_its_parameters_come_back(
        qtbot: QtBot, window: MainWindow) -> None:
    attach_panels(window, window.controller)
    gallery = _panel(window, "Gallery")
    assert _panel(window, "Library") is not None
    window.restore_parameters({"prompt": "into the gallery", "steps": 3})
    with qtbot.waitSignal(window.controller.job_finished, timeout=10_000) as blocker:
        window.generate()
    path = blocker.args[1].images[0].path
    qtbot.waitUntil(lambda: gallery.model.rowCount() >= 1, timeout=5_000)
    gallery.parameters_restored.emit({"prompt": "from an old image", "steps": 42, "seed": 5})
    assert window.prompt_editor.text() == "from an old image"
    assert window.panel.steps_spin.value() == 42 and path
    window.close()
    assert gallery._closed  # the close hook stopped the gallery's background work


def test_library_use_selects_the_model_in_the_sidebar(qtbot: QtBot, window: MainWindow) -> None:
    attach_panels(window, window.controller)
    library = _panel(window, "Library")
    library.model_used.emit("/models/elsewhere/dream_xl.safetensors", "")
    request = window.parameters.build_request()
    assert request.model == "/models/elsewhere/dream_xl.safetensors" and request.vae is None
    assert window.panel.current_model().path == request.model
    window.close()


def test_gallery_and_library_fit_the_side_column_of_the_default_window(
        qtbot: QtBot, window: MainWindow) -> None:
    attach_panels(window, window.controller)
    window.resize(1360, 860)
    for name in ("Gallery", "Library"):
        window.show_panel(name)
        holder = window.side_tabs.currentWidget()
        qtbot.waitUntil(lambda h=holder: h.widget().width() <= h.viewport().width())
        assert holder.horizontalScrollBar().maximum() == 0
        assert window.side_tabs.width() < 450  # the centre keeps its room
    window.close()


def test_switching_to_dark_while_open_turns_the_preview_and_panels_dark(
        qtbot: QtBot, window: MainWindow) -> None:
    from PySide6.QtGui import QPalette
    from PySide6.QtWidgets import QApplication

    from desktop_app.ui.theme import ThemeController

    app = QApplication.instance()
    original = app.palette()
    attach_panels(window, window.controller)
    window.theme = ThemeController(app, "light")
    try:
        window.set_theme("dark")
        gallery = window.side_panel("Gallery")
        for widget in (window.preview, gallery.grid, gallery.detail.parameters):
            assert widget.palette().color(QPalette.ColorRole.Base).lightness() < 80, widget
    finally:
        app.setPalette(original)
        app.setStyleSheet("")
        window.close()


def test_a_library_from_a_newer_version_is_reported_and_the_gallery_still_works(
        qtbot: QtBot, window: MainWindow) -> None:
    import sqlite3

    from desktop_app import paths
    from desktop_app.library.store import DB_NAME

    paths.data_dir().mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(paths.data_dir() / DB_NAME)
    conn.execute("PRAGMA user_version=99")
    conn.close()
    attach_panels(window, window.controller)
    assert "newer version" in window.error_bar.message.text()
    assert _panel(window, "Gallery") is not None
    names = [window.side_tabs.tabText(i) for i in range(window.side_tabs.count())]
    assert "Library" not in names
    window.close()
