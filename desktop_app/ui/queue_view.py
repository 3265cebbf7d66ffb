"""The visible job queue: running job, pending jobs (reorder, remove), pause/resume."""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtGui import QFont, QKeySequence, QShortcut
from PySide6.QtWidgets import (
    QHBoxLayout,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from desktop_app.state.jobs import Job, JobQueue


def describe(job: Job) -> str:
    """One line per job: prompt start and the main settings."""
    request = job.request
    prompt = " ".join(request.prompt.split()) or "(empty prompt)"
    if len(prompt) > 60:
        prompt = prompt[:57] + "…"
    count = f" ×{request.image_count}" if request.image_count > 1 else ""
    return f"{prompt}\n{request.width}×{request.height} · {request.steps} steps{count}"


class QueueView(QWidget):
    """Lists the running and pending jobs of a JobQueue and edits it."""

    def __init__(self, queue: JobQueue, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.queue = queue
        self.title = QLabel("Queue")
        self.title.setObjectName("sectionTitle")
        self.pause_button = QPushButton("Pause")
        self.pause_button.setCheckable(True)
        self.pause_button.setToolTip(
            "Pause: the running image finishes, queued ones wait until you resume.")
        self.list = QListWidget()
        self.list.setObjectName("queueList")
        self.list.setAccessibleName("Queued jobs")
        self.list.setToolTip("Jobs waiting to run. Delete removes the selected job; "
                             "Alt+↑/↓ moves it.")
        self.list.setWordWrap(True)
        self.list.setAlternatingRowColors(True)
        self.up_button = self._tool("▲", "Run the selected job earlier (Alt+↑)")
        self.down_button = self._tool("▼", "Run the selected job later (Alt+↓)")
        self.remove_button = self._tool("✕", "Remove the selected job from the queue (Delete)")
        self.empty_label = QLabel("Nothing queued. Press Ctrl+Enter again while an image is "
                                  "generating to queue more.")
        self.empty_label.setObjectName("emptyHint")
        self.empty_label.setWordWrap(True)
        self._layout()
        self.pause_button.toggled.connect(queue.set_paused)
        self.up_button.clicked.connect(lambda: self._move_selected(-1))
        self.down_button.clicked.connect(lambda: self._move_selected(+1))
        self.remove_button.clicked.connect(self.remove_selected)
        self.list.currentRowChanged.connect(self._update_buttons)
        QShortcut(QKeySequence(Qt.Key.Key_Delete), self.list, self.remove_selected,
                  context=Qt.ShortcutContext.WidgetShortcut)
        QShortcut(QKeySequence("Alt+Up"), self.list, lambda: self._move_selected(-1),
                  context=Qt.ShortcutContext.WidgetShortcut)
        QShortcut(QKeySequence("Alt+Down"), self.list, lambda: self._move_selected(+1),
                  context=Qt.ShortcutContext.WidgetShortcut)
        queue.jobs_changed.connect(self.refresh)
        queue.paused_changed.connect(self._on_queue_paused_changed)
        self._on_queue_paused_changed(queue.paused)
        self.refresh()

    @staticmethod
    def _tool(text: str, tip: str) -> QToolButton:
        button = QToolButton()
        button.setText(text)
        button.setToolTip(tip)
        button.setAccessibleName(tip)
        return button

    def _layout(self) -> None:
        header = QHBoxLayout()
        header.addWidget(self.title)
        header.addStretch(1)
        for button in (self.up_button, self.down_button, self.remove_button):
            header.addWidget(button)
        header.addWidget(self.pause_button)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(12, 12, 12, 6)
        layout.setSpacing(6)
        layout.addLayout(header)
        layout.addWidget(self.list, 1)
        layout.addWidget(self.empty_label)

    def selected_job_id(self) -> str | None:
        item = self.list.currentItem()
        if item is None or item.data(Qt.ItemDataRole.UserRole + 1):
            return None  # nothing, or the running job (cancel it instead)
        return str(item.data(Qt.ItemDataRole.UserRole))

    def refresh(self) -> None:
        """Rebuild the list from the queue, keeping the selection."""
        selected = self.list.currentItem()
        keep = selected.data(Qt.ItemDataRole.UserRole) if selected else None
        self.list.clear()
        running = self.queue.running
        if running is not None:
            item = QListWidgetItem(f"▶ Running — {describe(running)}")
            font = QFont(item.font())
            font.setBold(True)
            item.setFont(font)
            item.setData(Qt.ItemDataRole.UserRole, running.id)
            item.setData(Qt.ItemDataRole.UserRole + 1, True)
            self.list.addItem(item)
        for position, job in enumerate(self.queue.pending, start=1):
            item = QListWidgetItem(f"{position}. {describe(job)}")
            item.setData(Qt.ItemDataRole.UserRole, job.id)
            self.list.addItem(item)
            if job.id == keep:
                self.list.setCurrentItem(item)
        pending = len(self.queue.pending)
        self.title.setText(f"Queue · {pending} waiting" if pending else "Queue")
        self.empty_label.setVisible(running is None and pending == 0)
        self.list.setVisible(not self.empty_label.isVisible())
        self._update_buttons()

    def remove_selected(self) -> None:
        job_id = self.selected_job_id()
        if job_id is not None:
            row = self.list.currentRow()
            self.queue.remove(job_id)
            self.list.setCurrentRow(min(row, self.list.count() - 1))

    def _move_selected(self, delta: int) -> None:
        job_id = self.selected_job_id()
        if job_id is None:
            return
        index = [j.id for j in self.queue.pending].index(job_id)
        self.queue.move(job_id, index + delta)

    def _update_buttons(self, *_args: object) -> None:
        selectable = self.selected_job_id() is not None
        for button in (self.up_button, self.down_button, self.remove_button):
            button.setEnabled(selectable)

    def _on_queue_paused_changed(self, paused: bool) -> None:
        self.pause_button.setChecked(paused)
        self.pause_button.setText("Resume" if paused else "Pause")
