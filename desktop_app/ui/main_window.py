"""The main window: prompts, parameters, preview and progress, queue, recent results.

Layout (a horizontal splitter): parameter sidebar | prompts, actions and preview | queue above a
tab widget of side panels ("Recent" now; the gallery and library panels plug in through
`add_panel`). Widgets talk to ParametersState and the GenerationController only.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from PySide6.QtCore import QByteArray, Qt, QTimer, QUrl
from PySide6.QtGui import (
    QAction,
    QActionGroup,
    QCloseEvent,
    QDesktopServices,
    QImage,
    QKeySequence,
)
from PySide6.QtWidgets import (
    QMainWindow,
    QScrollArea,
    QSplitter,
    QTabWidget,
    QWidget,
)

from desktop_app import paths
from desktop_app.errors import UserError
from desktop_app.pipeline.api import (
    DeviceInfo,
    GenerationRequest,
    GenerationResult,
    LoadUpdate,
    StepUpdate,
)
from desktop_app.settings import Settings, save_settings
from desktop_app.state.models import ModelProvider
from desktop_app.state.parameters import ParametersState
from desktop_app.state.progress import ProgressTracker
from desktop_app.ui.main_layout import CenterColumn, build_status_bar, memory_text
from desktop_app.ui.parameter_panel import ParameterPanel
from desktop_app.ui.prompt_editor import TokenCounter
from desktop_app.ui.queue_view import QueueView
from desktop_app.ui.recent_strip import RecentStrip
from desktop_app.ui.theme import ThemeController
from desktop_app.worker.controller import GenerationController
from desktop_app.worker.generation import PreviewFrame

log = logging.getLogger(__name__)

# A model or VAE picked in the sidebar or the library is loaded this long after the last change
# (after the start-up warm-up), so that Generate starts at once; stepping through the list
# with the arrow keys loads only where it stops.
PRELOAD_DELAY_MS = 800


class MainWindow(QMainWindow):
    """The studio window. Public hooks for other panels: add_panel, restore_parameters."""

    def __init__(self, controller: GenerationController, parameters: ParametersState,
                 settings: Settings | None = None, provider: ModelProvider | None = None,
                 token_counter: TokenCounter | None = None,
                 theme: ThemeController | None = None) -> None:
        super().__init__()
        self.controller = controller
        self.parameters = parameters
        self.settings = settings or Settings()
        self.theme = theme
        self._tracker = ProgressTracker()
        self._current_job: str | None = None
        self._cancel_held = False  # the running job is in a step a cancel cannot interrupt
        self.setWindowTitle("Desktop App — Stable Diffusion studio")
        self.setObjectName("mainWindow")
        self.panel = ParameterPanel(parameters, provider)
        self.center = CenterColumn(token_counter)
        self.queue_view = QueueView(controller.queue)
        self.recent = RecentStrip()
        self.side_tabs = QTabWidget()
        self.side_tabs.setDocumentMode(True)
        self.side_tabs.addTab(self.recent, "Recent")
        self._panels: dict[str, QWidget] = {"Recent": self.recent}
        self._close_hooks: list[Callable[[], object]] = []
        self._build_splitters()
        self._build_actions()
        self.device_label, self.memory_label = build_status_bar(self.statusBar())
        self._connect()
        self._sync_prompts()
        self._save_timer = QTimer(self)
        self._save_timer.setSingleShot(True)
        self._save_timer.setInterval(1000)
        self._save_timer.timeout.connect(self.save_settings)
        self._preload_timer = QTimer(self)
        self._preload_timer.setSingleShot(True)
        self._preload_timer.setInterval(PRELOAD_DELAY_MS)
        self._preload_timer.timeout.connect(self.warm_up)
        self._warmed_up = False  # models load ahead only once the app has warmed up
        self._memory_timer = QTimer(self)
        self._memory_timer.setInterval(2000)
        self._memory_timer.timeout.connect(self._update_memory)
        self._memory_timer.start()
        self._update_memory()
        self._restore_layout()
        self._set_tab_order()

    # -- convenient names for tests and other panels ----------------------------------------
    @property
    def prompt_editor(self):
        return self.center.prompt

    @property
    def negative_editor(self):
        return self.center.negative

    @property
    def preview(self):
        return self.center.preview

    @property
    def error_bar(self):
        return self.center.error_bar

    @property
    def progress_bar(self):
        return self.center.progress

    @property
    def status_label(self):
        return self.center.status

    # -- construction ---------------------------------------------------------------------
    def _build_splitters(self) -> None:
        scroll = QScrollArea()
        scroll.setWidget(self.panel)
        scroll.setWidgetResizable(True)
        scroll.setFrameShape(QScrollArea.Shape.NoFrame)
        scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        scroll.setMinimumWidth(self.panel.minimumSizeHint().width()
                               + scroll.verticalScrollBar().sizeHint().width())
        self.right_splitter = QSplitter(Qt.Orientation.Vertical)
        self.right_splitter.setObjectName("rightSplitter")
        self.right_splitter.addWidget(self.queue_view)
        self.right_splitter.addWidget(self.side_tabs)
        self.right_splitter.setStretchFactor(1, 1)  # extra height goes to the side panels
        self.right_splitter.setSizes([100, 600])
        self.main_splitter = QSplitter(Qt.Orientation.Horizontal)
        self.main_splitter.setObjectName("mainSplitter")
        self.main_splitter.addWidget(scroll)
        self.main_splitter.addWidget(self.center)
        self.main_splitter.addWidget(self.right_splitter)
        self.main_splitter.setStretchFactor(1, 1)
        self.main_splitter.setSizes([320, 700, 330])
        self.main_splitter.setChildrenCollapsible(False)
        self.setCentralWidget(self.main_splitter)
        self.resize(1360, 860)

    def _build_actions(self) -> None:
        self.generate_action = QAction("&Generate", self)
        self.generate_action.setShortcuts([QKeySequence("Ctrl+Return"),
                                           QKeySequence("Ctrl+Enter")])
        self.generate_action.setToolTip("Make an image from the prompt (Ctrl+Enter). While one is "
                                        "running, this queues another.")
        self.cancel_action = QAction("&Cancel", self)
        self.cancel_action.setShortcut(QKeySequence(Qt.Key.Key_Escape))
        self.cancel_action.setToolTip("Stop the running image at the next step (Esc).")
        self.cancel_action.setEnabled(False)
        open_outputs = QAction("Open &outputs folder", self)
        open_outputs.triggered.connect(
            lambda: QDesktopServices.openUrl(QUrl.fromLocalFile(str(paths.outputs_dir()))))
        quit_action = QAction("&Quit", self)
        quit_action.setShortcut(QKeySequence.StandardKey.Quit)
        quit_action.triggered.connect(self.close)
        file_menu = self.menuBar().addMenu("&File")
        file_menu.addAction(open_outputs)
        file_menu.addSeparator()
        file_menu.addAction(quit_action)
        gen_menu = self.menuBar().addMenu("&Generate")
        gen_menu.addAction(self.generate_action)
        gen_menu.addAction(self.cancel_action)
        gen_menu.addSeparator()
        self.fast_mode_action = QAction("&Fast mode (NVIDIA GPUs)", self, checkable=True)
        self.fast_mode_action.setChecked(self.settings.fast_mode)
        self.fast_mode_action.setToolTip(
            "Compiles the model for your GPU: much faster steps after a one-time wait of a "
            "minute or two per image size (kept for later runs), and saves PNGs with a faster "
            "compressor (files about 5 % larger). Compiling needs an NVIDIA GPU; it falls back "
            "to normal speed with a notice when it is not possible.")
        self.fast_mode_action.toggled.connect(self._on_fast_mode_action_toggled)
        self.controller.set_fast_mode(self.settings.fast_mode)
        gen_menu.addAction(self.fast_mode_action)
        gen_menu.setToolTipsVisible(True)
        self._build_view_menu()
        self.center.generate_button.setDefaultAction(self.generate_action)
        self.center.cancel_button.setDefaultAction(self.cancel_action)

    def _build_view_menu(self) -> None:
        view_menu = self.menuBar().addMenu("&View")
        group = QActionGroup(self)
        for key, label in (("system", "Follow &system"), ("light", "&Light"), ("dark", "&Dark")):
            action = QAction(label, self, checkable=True)
            action.setChecked(self.settings.theme == key)
            action.triggered.connect(lambda _on, k=key: self.set_theme(k))
            group.addAction(action)
            view_menu.addAction(action)

    def _connect(self) -> None:
        self.generate_action.triggered.connect(self.generate)
        self.cancel_action.triggered.connect(self.cancel)
        for editor, name in ((self.center.prompt, "prompt"),
                             (self.center.negative, "negative_prompt")):
            editor.text_changed.connect(lambda text, n=name: self.parameters.set_value(n, text))
            editor.submit_requested.connect(self.generate)
        self.parameters.value_changed.connect(self._on_parameters_value_changed)
        self.recent.image_activated.connect(self._on_recent_image_activated)
        ctrl = self.controller
        ctrl.backend_ready.connect(self._on_controller_backend_ready)
        ctrl.job_started.connect(self._on_controller_job_started)
        ctrl.load_progressed.connect(self._on_controller_load_progressed)
        ctrl.progress_changed.connect(self._on_controller_progress_changed)
        ctrl.preview_changed.connect(self._on_controller_preview_changed)
        ctrl.job_finished.connect(self._on_controller_job_finished)
        ctrl.job_failed.connect(self._on_controller_job_failed)
        ctrl.job_cancelled.connect(self._on_controller_job_cancelled)
        ctrl.busy_changed.connect(self.cancel_action.setEnabled)
        ctrl.model_preloading.connect(self._on_controller_model_preloading)
        ctrl.model_preloaded.connect(self._on_controller_model_preloaded)

    def _set_tab_order(self) -> None:
        chain = [self.center.prompt.edit, self.center.negative.edit, self.center.generate_button,
                 self.center.cancel_button, self.panel.model_combo]
        for first, second in itertools.pairwise(chain):
            self.setTabOrder(first, second)
        self.center.prompt.edit.setFocus()

    # -- public hooks ------------------------------------------------------------------------
    def add_panel(self, name: str, widget: QWidget) -> int:
        """Add a side panel tab (e.g. "Gallery", "Library"); returns its tab index."""
        self._panels[name] = widget
        # Panels are laid out for the side column's width (about 300 px and up); the scroll
        # area only scrolls vertically, for short windows.
        holder = QScrollArea()
        holder.setObjectName(f"panel{name}")
        holder.setWidget(widget)
        holder.setWidgetResizable(True)
        holder.setFrameShape(QScrollArea.Shape.NoFrame)
        holder.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        holder.setMinimumWidth(widget.minimumSizeHint().width()
                               + holder.verticalScrollBar().sizeHint().width())
        index = self.side_tabs.addTab(holder, name)
        if self.settings.side_tab == name:
            self.side_tabs.setCurrentIndex(index)
        return index

    def add_close_hook(self, hook: Callable[[], object]) -> None:
        """Run `hook` when the window closes (panels stopping their background work)."""
        self._close_hooks.append(hook)

    def side_panel(self, name: str) -> QWidget | None:
        """The widget added as side panel `name` (None if there is none)."""
        return self._panels.get(name)

    def show_panel(self, name: str) -> None:
        for index in range(self.side_tabs.count()):
            if self.side_tabs.tabText(index) == name:
                self.side_tabs.setCurrentIndex(index)
                return

    def restore_parameters(self, data: dict[str, Any]) -> list[str]:
        """Apply parameters (request field names) e.g. from the gallery's "Use these parameters"."""
        applied = self.parameters.restore_parameters(data)
        self.center.prompt.edit.setFocus()
        return applied

    def set_model_provider(self, provider: ModelProvider) -> None:
        """Fill the model and VAE pickers from another provider (the library)."""
        self.panel.set_provider(provider)

    def _on_fast_mode_action_toggled(self, enabled: bool) -> None:
        self.settings.fast_mode = enabled
        self.controller.set_fast_mode(enabled)
        self.save_settings()
        if self._warmed_up:  # on: compile ahead a size compiled before; off: undo it now
            self._preload_timer.start()

    def set_theme(self, preference: str) -> None:
        self.settings.theme = preference
        if self.theme is not None:
            self.theme.set_preference(preference)
        self._save_timer.start()

    # -- actions -----------------------------------------------------------------------------
    def generate(self) -> str | None:
        """Queue a job for the current parameters; shows bad input inline. Returns the job id."""
        try:
            request: GenerationRequest = self.parameters.build_request()
        except UserError as error:
            self.center.error_bar.show_error(error)
            return None
        self.center.error_bar.hide()
        job = self.controller.submit(request)
        if self.controller.queue.paused:
            self.statusBar().showMessage("Queued — the queue is paused; press Resume to run it.",
                                         5000)
        return job.id

    def warm_up(self) -> None:
        """Start the engine and load the sidebar's model in the worker, ahead of the first
        Generate (call once the window is shown). From then on, a model or VAE picked later
        is loaded ahead too."""
        self._warmed_up = True
        try:
            request: GenerationRequest | None = self.parameters.build_request()
        except UserError:  # values that do not fit yet: the engine only
            request = None
        self.controller.warm_up(request)

    def cancel(self) -> None:
        if self.controller.cancel():
            self.center.status.setText(
                "Cancelling once the compile ends (it cannot be interrupted; it is kept for "
                "later)…" if self._cancel_held else "Cancelling…")

    # -- controller → widgets -------------------------------------------------------------
    def _on_controller_backend_ready(self, device: DeviceInfo) -> None:
        memory = ""
        if device.total_memory_bytes:
            memory = f" · {device.total_memory_bytes / 2**30:.1f} GiB"
        self.device_label.setText(f"{device.description or device.name}{memory}")
        self.device_label.setToolTip(f"Device: {device.name}, precision {device.dtype}")

    def _on_controller_model_preloading(self, update: LoadUpdate) -> None:
        self.statusBar().showMessage(f"{update.stage}… {update.fraction:.0%}")

    def _on_controller_model_preloaded(self, name: str) -> None:
        if name:
            self.statusBar().showMessage(f"Model ready: {name}", 5000)
        else:  # the first job that needs it says why
            self.statusBar().clearMessage()

    def _on_controller_job_started(self, job_id: str, request: GenerationRequest) -> None:
        self._current_job = job_id
        self._cancel_held = False
        self._tracker.reset()
        self.center.set_progress(0.0, "Starting…")
        self.center.status.setText(f"Generating · seed {request.seed}")
        self.center.error_bar.hide()

    def _on_controller_load_progressed(self, _job_id: str, update: LoadUpdate) -> None:
        self._cancel_held = update.holds_cancel
        self.center.set_progress(update.fraction, f"{update.stage}…")

    def _on_controller_progress_changed(self, _job_id: str, update: StepUpdate) -> None:
        self._cancel_held = False  # steps: a cancel takes effect within one
        info = self._tracker.update(update.step, update.total, update.batch_index,
                                    update.batch_total)
        self.center.set_progress(info.fraction, info.text)

    def _on_controller_preview_changed(self, _job_id: str, frame: PreviewFrame) -> None:
        batch = f" · batch {frame.batch_index + 1}" if frame.batch_total > 1 else ""
        self.center.preview.set_image(frame.image, f"Step {frame.step}/{frame.total}{batch}")

    def _on_controller_job_finished(self, _job_id: str, result: GenerationResult) -> None:
        loaded = {image.path: QImage(image.path) for image in result.images}
        if result.images:
            first = result.images[0]
            self.center.preview.set_image(loaded[first.path], f"Seed {first.seed}")
            self.parameters.set_last_seed(first.seed)
        self.recent.add_result(result, loaded)
        count = len(result.images)
        noun = "image" if count == 1 else "images"
        self.center.set_progress(1.0, f"Done · {count} {noun} in {result.seconds:.1f} s")
        self.center.status.setText(f"Saved to {Path(result.images[0].path).parent}"
                                   if result.images else "Done")

    def _on_controller_job_failed(self, _job_id: str, error: UserError) -> None:
        self.center.error_bar.show_error(error)
        self.center.set_progress(0.0, "Failed")
        self.center.status.setText("Failed")

    def _on_controller_job_cancelled(self, _job_id: str) -> None:
        self.center.set_progress(0.0, "Cancelled")
        self.center.status.setText("Cancelled")

    def _on_recent_image_activated(self, path: str) -> None:
        self.center.preview.set_image(QImage(path), Path(path).name)

    # -- parameters and persistence ---------------------------------------------------------
    def _on_parameters_value_changed(self, name: str, _value: object) -> None:
        if name in ("prompt", "negative_prompt"):
            self._sync_prompts()
        if name in ("model", "vae") and self._warmed_up:
            self._preload_timer.start()
        self._save_timer.start()

    def _sync_prompts(self) -> None:
        self.center.prompt.set_text(self.parameters.value("prompt"))
        self.center.negative.set_text(self.parameters.value("negative_prompt"))

    def _update_memory(self) -> None:
        self.memory_label.setText(memory_text())

    def _restore_layout(self) -> None:
        s = self.settings
        if s.window_geometry:
            self.restoreGeometry(QByteArray.fromBase64(s.window_geometry.encode()))
        if s.window_state:
            self.restoreState(QByteArray.fromBase64(s.window_state.encode()))
        for splitter in (self.main_splitter, self.right_splitter, self.center.splitter):
            blob = s.splitters.get(splitter.objectName())
            if blob:
                splitter.restoreState(QByteArray.fromBase64(blob.encode()))
        self.show_panel(s.side_tab)

    def collect_settings(self) -> Settings:
        """The current parameters and layout, as they would be saved."""
        s = self.settings
        s.parameters = self.parameters.to_dict()
        s.window_geometry = bytes(self.saveGeometry().toBase64().data()).decode()
        s.window_state = bytes(self.saveState().toBase64().data()).decode()
        s.splitters = {sp.objectName(): bytes(sp.saveState().toBase64().data()).decode()
                       for sp in (self.main_splitter, self.right_splitter, self.center.splitter)}
        s.side_tab = self.side_tabs.tabText(self.side_tabs.currentIndex())
        return s

    def save_settings(self) -> None:
        try:
            save_settings(self.collect_settings())
        except OSError:
            log.exception("Could not save settings")

    def closeEvent(self, event: QCloseEvent) -> None:
        self._save_timer.stop()
        self._memory_timer.stop()
        self._preload_timer.stop()
        self.save_settings()
        self.controller.shutdown()
        for hook in self._close_hooks:
            try:
                hook()
            except Exception:  # one failing panel must not keep the others from stopping
                log.exception("Close hook %r failed", hook)
        self._close_hooks.clear()
        super().closeEvent(event)

