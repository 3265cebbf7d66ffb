"""Pieces of the main window: the centre column (prompts, actions, preview) and the status bar."""

from __future__ import annotations

import os
import sys

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QHBoxLayout,
    QLabel,
    QProgressBar,
    QSizePolicy,
    QSplitter,
    QStatusBar,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from desktop_app.ui.preview_pane import ErrorBar, PreviewPane
from desktop_app.ui.prompt_editor import PromptEditor, TokenCounter

PROMPT_TIP = ("Describe the image: subject, style, light, details. (word) or (word:1.2) "
              "stresses a word, [word] softens it, BREAK starts a new 75-token chunk. "
              "Ctrl+↑/↓ changes the weight of the selection or the word at the cursor.")
NEGATIVE_TIP = ("What the image should avoid, e.g. \"blurry, watermark, extra fingers\". "
                "Same syntax as the prompt.")


class CenterColumn(QWidget):
    """Prompt and negative prompt, Generate/Cancel with progress, the error bar, the preview."""

    def __init__(self, token_counter: TokenCounter | None = None,
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.prompt = PromptEditor("&Prompt", "A lighthouse on a cliff at dusk, oil painting",
                                   PROMPT_TIP, token_counter)
        self.negative = PromptEditor("&Negative prompt", "blurry, low quality, watermark",
                                     NEGATIVE_TIP, token_counter)
        self.prompt.edit.setMinimumHeight(72)
        self.negative.edit.setMinimumHeight(44)
        self.generate_button = QToolButton()
        self.generate_button.setObjectName("generateButton")
        self.cancel_button = QToolButton()
        self.cancel_button.setObjectName("cancelButton")
        for button in (self.generate_button, self.cancel_button):
            button.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextOnly)
            button.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
        self.progress = QProgressBar()
        self.progress.setRange(0, 1000)
        self.progress.setValue(0)
        self.progress.setTextVisible(True)
        self.progress.setFormat("Ready")
        self.progress.setAccessibleName("Progress")
        self.progress.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
        self.progress.setMinimumWidth(240)  # room for "Step 12/25 · 1.84 it/s · 7 s left"
        self.status = QLabel("")
        self.status.setObjectName("statusLabel")
        self.status.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.error_bar = ErrorBar()
        self.preview = PreviewPane()
        self.splitter = QSplitter(Qt.Orientation.Vertical)
        self.splitter.setObjectName("centerSplitter")
        self.splitter.setChildrenCollapsible(False)
        self.splitter.addWidget(self._top())
        self.splitter.addWidget(self.preview)
        self.splitter.setStretchFactor(1, 1)
        self.splitter.setSizes([260, 600])
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.splitter)

    def _top(self) -> QWidget:
        top = QWidget()
        actions = QHBoxLayout()
        actions.setSpacing(8)
        actions.addWidget(self.generate_button)
        actions.addWidget(self.progress, 1)
        actions.addWidget(self.cancel_button)
        layout = QVBoxLayout(top)
        layout.setContentsMargins(12, 12, 12, 6)
        layout.setSpacing(8)
        layout.addWidget(self.prompt, 3)
        layout.addWidget(self.negative, 2)
        layout.addLayout(actions)
        layout.addWidget(self.status)
        layout.addWidget(self.error_bar)
        return top

    def set_progress(self, fraction: float, text: str) -> None:
        self.progress.setValue(round(max(0.0, min(1.0, fraction)) * 1000))
        self.progress.setFormat(text)


def process_memory_bytes() -> int | None:
    """Resident memory of this process, or None when it cannot be read."""
    if sys.platform.startswith("linux"):
        try:
            with open("/proc/self/statm", encoding="ascii") as handle:
                return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
        except (OSError, ValueError, IndexError):
            return None
    try:
        import psutil  # an accelerate dependency, present with the engine

        return int(psutil.Process(os.getpid()).memory_info().rss)
    except (ImportError, OSError):
        return None


def memory_text() -> str:
    used = process_memory_bytes()
    return "Memory: –" if used is None else f"Memory: {used / 2**30:.2f} GiB"


def build_status_bar(bar: QStatusBar) -> tuple[QLabel, QLabel]:
    """Device and memory labels on the right of the status bar."""
    device = QLabel("Device: loading engine…")
    device.setToolTip("The device images are made on; shown once the engine has loaded.")
    memory = QLabel(memory_text())
    memory.setToolTip("Memory used by this app (RAM).")
    for label in (device, memory):
        label.setContentsMargins(8, 0, 8, 0)
        bar.addPermanentWidget(label)
    return device, memory
