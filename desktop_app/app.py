"""GUI start-up: logging, crash reporting, QApplication, wiring, show() — then the engine.

Order matters for the first impression: the window is shown before torch, diffusers or
transformers are imported. They load in the generation thread afterwards (the controller's
warm-up, queued right after `show()`), so the window is usable while the engine loads.
Importing this module imports none of them (a test checks that in a fresh interpreter).
"""

from __future__ import annotations

import argparse
import json
import logging
import logging.handlers
import os
import sys
import threading
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING

from desktop_app import APP_NAME, __version__, paths

if TYPE_CHECKING:  # the real imports happen inside build_studio, after logging is set up
    from PySide6.QtWidgets import QApplication

    from desktop_app.ui.main_window import MainWindow
    from desktop_app.worker.controller import GenerationController

log = logging.getLogger("desktop_app")
_IMPORTED_AT = time.monotonic()
LOG_FILE_NAME = "desktop-app.log"
HEAVY_MODULES = ("torch", "diffusers", "transformers")


def process_uptime_ms() -> float:
    """Milliseconds since this process started (OS clock where available)."""
    if sys.platform.startswith("linux"):
        # /proc gives 10 ms resolution; psutil's create_time() rounds boot time to whole seconds.
        try:
            with open("/proc/self/stat", encoding="ascii") as stat:
                start_ticks = int(stat.read().rsplit(")", 1)[1].split()[19])
            with open("/proc/uptime", encoding="ascii") as uptime:
                now = float(uptime.read().split()[0])
            return (now - start_ticks / os.sysconf("SC_CLK_TCK")) * 1000
        except (OSError, ValueError, IndexError):
            pass
    try:
        import psutil

        created = float(psutil.Process(os.getpid()).create_time())
        return (time.time() - created) * 1000
    except (ImportError, OSError):
        return (time.monotonic() - _IMPORTED_AT) * 1000


def setup_logging(verbose: bool = False) -> Path:
    """Log to a rotating file in paths.log_dir(); returns the file. Guards a missing stderr."""
    # Windowed builds have no console: stdout/stderr are None and libraries that print crash.
    log_file = paths.log_dir() / LOG_FILE_NAME
    if sys.stdout is None or sys.stderr is None:
        sink = open(log_file.with_suffix(".console.log"), "a", encoding="utf-8")  # noqa: SIM115
        sys.stdout = sys.stdout or sink
        sys.stderr = sys.stderr or sink
    handler = logging.handlers.RotatingFileHandler(log_file, maxBytes=2_000_000, backupCount=3,
                                                   encoding="utf-8")
    handler.setFormatter(logging.Formatter(
        "%(asctime)s %(levelname)s %(threadName)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
    log.info("desktop-app %s starting (Python %s)", __version__, sys.version.split()[0])
    return log_file


def install_excepthook(log_file: Path) -> None:
    """Unexpected exceptions: log the traceback and tell the person where the log is."""

    def hook(kind: type[BaseException], value: BaseException, tb: TracebackType | None) -> None:
        if issubclass(kind, KeyboardInterrupt):
            sys.__excepthook__(kind, value, tb)
            return
        log.critical("Unhandled exception", exc_info=(kind, value, tb))
        _show_crash_dialog(value, log_file)

    sys.excepthook = hook


def _show_crash_dialog(error: BaseException, log_file: Path) -> None:
    from PySide6.QtWidgets import QApplication, QMessageBox

    if QApplication.instance() is None or os.environ.get("QT_QPA_PLATFORM") == "offscreen":
        print(f"Unexpected error: {error}. Details are in {log_file}", file=sys.stderr)
        return
    box = QMessageBox(QMessageBox.Icon.Critical, "Something went wrong",
                      f"An unexpected error happened: {error}\n\nThe app keeps running. "
                      f"Details were written to the log file:\n{log_file}")
    box.setDetailedText("".join(traceback.format_exception(error)))
    box.exec()


def parse_args(args: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog=APP_NAME, description="Local Stable Diffusion studio.")
    parser.add_argument("--self-test", action="store_true",
                        help="open the window, make one image, print a JSON line, exit 0/1")
    parser.add_argument("--quit-after-show", action="store_true",
                        help="print start-up timing as JSON once the window is shown and exit")
    parser.add_argument("--no-warm-up", action="store_true",
                        help="load the engine and the model on the first generation instead of "
                             "at start")
    parser.add_argument("--theme", choices=("system", "light", "dark"),
                        help="override the colour scheme for this run")
    parser.add_argument("--verbose", action="store_true", help="debug logging")
    return parser.parse_args(args)


@dataclass
class Studio:
    """Everything start-up wires together (kept for the self-test and benchmarks)."""

    app: QApplication
    window: MainWindow
    controller: GenerationController
    log_file: Path
    window_shown_ms: float


def build_studio(ns: argparse.Namespace, log_file: Path) -> Studio:
    """Create QApplication, state, controller and window, and show the window."""
    from PySide6.QtWidgets import QApplication

    from desktop_app.settings import load_settings
    from desktop_app.state.jobs import JobQueue
    from desktop_app.state.parameters import ParametersState
    from desktop_app.ui.main_window import MainWindow
    from desktop_app.ui.theme import ThemeController
    from desktop_app.worker.controller import GenerationController

    existing = QApplication.instance()
    app = existing if isinstance(existing, QApplication) else QApplication([sys.argv[0]])
    app.setApplicationName(APP_NAME)
    app.setApplicationVersion(__version__)
    settings = load_settings()
    if ns.theme:
        settings.theme = ns.theme
    theme = ThemeController(app, settings.theme)
    parameters = ParametersState()
    parameters.restore_parameters(settings.parameters)
    queue = JobQueue()
    restore_errors = queue.restore()
    controller = GenerationController(queue)
    window = MainWindow(controller, parameters, settings, theme=theme)
    window.show()
    app.processEvents()  # the first paint happens here
    shown_ms = process_uptime_ms()
    log.info("Window shown %.0f ms after process start", shown_ms)
    for error in restore_errors:
        window.error_bar.show_error(error)
    if queue.paused and queue.pending:
        window.statusBar().showMessage(
            f"{len(queue.pending)} unfinished job(s) restored — the queue is paused; "
            "press Resume to continue.")
    return Studio(app, window, controller, log_file, shown_ms)


def attach_panels(window: MainWindow, controller: GenerationController) -> None:
    """Add the gallery and library tabs and wire them to the window (after it is shown).

    Gallery: finished jobs appear in it; "Use these parameters" fills the sidebar. Library:
    its models fill the pickers; "Use" selects a model (and its VAE).
    """
    from desktop_app.errors import UserError
    from desktop_app.state.library_state import LibraryModelProvider, LibraryState
    from desktop_app.ui.gallery_panel import GalleryPanel
    from desktop_app.ui.library_panel import LibraryPanel

    status = window.statusBar()
    gallery = GalleryPanel()
    window.add_panel("Gallery", gallery)
    controller.job_finished.connect(gallery.add_result)
    gallery.parameters_restored.connect(window.restore_parameters)
    gallery.restore_warning.connect(lambda text: status.showMessage(text, 10_000))
    gallery.message_posted.connect(lambda text: status.showMessage(text, 5000))
    window.add_close_hook(gallery.shutdown)
    try:
        library = LibraryState()
    except UserError as error:  # e.g. a library written by a newer version: say so, go on
        window.error_bar.show_error(error)
        return
    library_panel = LibraryPanel(library)
    window.add_panel("Library", library_panel)
    window.set_model_provider(LibraryModelProvider(library))
    library_panel.library_changed.connect(window.panel.reload_models)
    library_panel.model_used.connect(lambda model, vae: window.restore_parameters(
        {"model": model or None, "vae": vae or None}))
    window.add_close_hook(library.close)


def main(args: list[str] | None = None) -> int:
    """Start the GUI (or the self-test); returns the process exit code."""
    ns = parse_args(list(sys.argv[1:] if args is None else args))
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    log_file = setup_logging(ns.verbose)
    install_excepthook(log_file)
    if ns.self_test:
        from desktop_app.ui.self_test import run_self_test

        return run_self_test(lambda: build_studio(ns, log_file))
    studio = build_studio(ns, log_file)
    if ns.quit_after_show:
        heavy = sorted(m for m in HEAVY_MODULES if m in sys.modules)
        print(json.dumps({"ok": True, "window_shown_ms": round(studio.window_shown_ms, 1),
                          "heavy_modules_at_show": heavy}))
        studio.window.close()
        return 0
    from PySide6.QtCore import QTimer

    if not ns.no_warm_up:
        QTimer.singleShot(0, studio.window.warm_up)  # the engine, then the sidebar's model
        # The prompt counter's tokenizer takes ~0.4 s to build: do it off the GUI thread.
        from desktop_app.pipeline import tokens

        threading.Thread(target=tokens.warm_up, name="tokenizer-warm-up", daemon=True).start()
    QTimer.singleShot(0, lambda: attach_panels(studio.window, studio.controller))
    return int(studio.app.exec())
