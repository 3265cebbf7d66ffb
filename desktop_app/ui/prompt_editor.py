"""Prompt editor: A1111 syntax highlighting, live token counter, Ctrl+↑/↓ weight editing."""

from __future__ import annotations

import logging
from collections.abc import Callable

from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtGui import (
    QColor,
    QFont,
    QKeyEvent,
    QPalette,
    QSyntaxHighlighter,
    QTextCharFormat,
    QTextCursor,
    QTextDocument,
)
from PySide6.QtWidgets import QHBoxLayout, QLabel, QPlainTextEdit, QVBoxLayout, QWidget

from desktop_app.pipeline.api import TokenCount
from desktop_app.state.prompt_syntax import (
    WEIGHT_STEP,
    Span,
    SpanKind,
    adjust_weight,
    highlight_spans,
)

log = logging.getLogger(__name__)

TokenCounter = Callable[[str], TokenCount]


def engine_token_counter(prompt: str) -> TokenCount:
    """The engine's own count (A1111 chunks); imported on first use, after the window shows."""
    from desktop_app.pipeline.tokens import count_tokens

    return count_tokens(prompt)


def _formats(palette: QPalette) -> dict[SpanKind, QTextCharFormat]:
    dark = palette.color(QPalette.ColorRole.Base).lightness() < 128
    colors = {
        SpanKind.paren: "#7fb0ff" if dark else "#1f5fbf",
        SpanKind.bracket: "#c79bff" if dark else "#7a3db8",
        SpanKind.weight: "#ffb86b" if dark else "#b35900",
        SpanKind.keyword: "#ff7a90" if dark else "#c0213f",
        SpanKind.unbalanced: "#ff5555" if dark else "#d00000",
    }
    formats = {}
    for kind, color in colors.items():
        fmt = QTextCharFormat()
        fmt.setForeground(QColor(color))
        if kind in (SpanKind.paren, SpanKind.bracket, SpanKind.keyword):
            fmt.setFontWeight(QFont.Weight.Bold)
        if kind is SpanKind.unbalanced:
            fmt.setUnderlineStyle(QTextCharFormat.UnderlineStyle.WaveUnderline)
            fmt.setUnderlineColor(QColor(color))
            fmt.setToolTip("This bracket has no partner: the emphasis runs to the end.")
        formats[kind] = fmt
    emphasis = QTextCharFormat()
    emphasis.setBackground(QColor(127, 176, 255, 40))
    formats[SpanKind.emphasis] = emphasis
    deemphasis = QTextCharFormat()
    deemphasis.setFontItalic(True)
    formats[SpanKind.deemphasis] = deemphasis
    return formats


class PromptHighlighter(QSyntaxHighlighter):
    """Colours brackets, weights and BREAK; spans are computed on the whole prompt."""

    def __init__(self, document: QTextDocument, palette: QPalette) -> None:
        super().__init__(document)
        self._formats = _formats(palette)
        self._cache: tuple[str | None, list[Span]] = (None, [])

    def set_palette(self, palette: QPalette) -> None:
        self._formats = _formats(palette)
        self.rehighlight()

    def _spans(self) -> list[Span]:
        # Keyed by text: setPlainText() can leave the document revision unchanged.
        text = self.document().toPlainText()
        if self._cache[0] != text:
            self._cache = (text, highlight_spans(text))
        return self._cache[1]

    def highlightBlock(self, text: str) -> None:
        block_start = self.currentBlock().position()
        block_end = block_start + len(text)
        # Background spans first so that bracket colours draw on top of them.
        order = (SpanKind.emphasis, SpanKind.deemphasis)
        spans = sorted(self._spans(), key=lambda s: s.kind not in order)
        for span in spans:
            start, end = max(span.start, block_start), min(span.start + span.length, block_end)
            if start < end:
                self.setFormat(start - block_start, end - start, self._formats[span.kind])
        # Changing the state makes Qt re-highlight the following lines (groups span lines).
        self.setCurrentBlockState(hash(tuple(self._spans())) & 0x7FFFFFFF)


class PromptTextEdit(QPlainTextEdit):
    """Plain-text prompt box. Ctrl+↑/↓ edits weights; Ctrl+Enter asks to generate.

    Signals:
        submit_requested(): Ctrl+Enter was pressed in the box.
    """

    submit_requested = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setTabChangesFocus(True)
        self._highlighter = PromptHighlighter(self.document(), self.palette())

    def changeEvent(self, event) -> None:
        super().changeEvent(event)
        if event.type() == event.Type.PaletteChange:
            self._highlighter.set_palette(self.palette())

    def keyPressEvent(self, event: QKeyEvent) -> None:
        ctrl = event.modifiers() & Qt.KeyboardModifier.ControlModifier
        if ctrl and event.key() in (Qt.Key.Key_Up, Qt.Key.Key_Down):
            self.change_weight(WEIGHT_STEP if event.key() == Qt.Key.Key_Up else -WEIGHT_STEP)
            event.accept()
            return
        if ctrl and event.key() in (Qt.Key.Key_Return, Qt.Key.Key_Enter):
            self.submit_requested.emit()
            event.accept()
            return
        super().keyPressEvent(event)

    def change_weight(self, delta: float) -> bool:
        """Apply A1111's weight edit at the cursor; one undo step. False if nothing changed."""
        cursor = self.textCursor()
        edit = adjust_weight(self.toPlainText(), cursor.selectionStart(),
                             cursor.selectionEnd(), delta)
        if edit is None:
            return False
        cursor.beginEditBlock()
        cursor.select(QTextCursor.SelectionType.Document)
        cursor.insertText(edit.text)
        cursor.endEditBlock()
        cursor.setPosition(edit.start)
        cursor.setPosition(edit.end, QTextCursor.MoveMode.KeepAnchor)
        self.setTextCursor(cursor)
        return True


class PromptEditor(QWidget):
    """A titled prompt box with its token counter ("82/150", A1111 chunks of 75).

    Signals:
        text_changed(str): the prompt text changed.
        submit_requested(): Ctrl+Enter inside the box.
    """

    text_changed = Signal(str)
    submit_requested = Signal()

    def __init__(self, title: str, placeholder: str, tooltip: str,
                 token_counter: TokenCounter | None = None,
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._token_counter = token_counter or engine_token_counter
        self._counter_failed = False
        self.title = QLabel(title)
        self.title.setObjectName("sectionTitle")
        self.counter = QLabel("0/75")
        self.counter.setObjectName("tokenCounter")
        self.counter.setAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        self.counter.setToolTip(
            "Tokens used / room in the current 75-token chunks. The text encoder reads 75 tokens "
            "at a time; past 75 the prompt continues in a new chunk, which weakens the link "
            "between words across the boundary. BREAK starts a new chunk on purpose.")
        self.edit = PromptTextEdit()
        self.edit.setPlaceholderText(placeholder)
        self.edit.setToolTip(tooltip)
        self.edit.setAccessibleName(title)
        self.title.setBuddy(self.edit)
        header = QHBoxLayout()
        header.setContentsMargins(0, 0, 0, 0)
        header.addWidget(self.title)
        header.addStretch(1)
        header.addWidget(self.counter)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(4)
        layout.addLayout(header)
        layout.addWidget(self.edit)
        self._count_timer = QTimer(self)
        self._count_timer.setSingleShot(True)
        self._count_timer.setInterval(120)
        self._count_timer.timeout.connect(self.update_token_count)
        self.edit.textChanged.connect(self._on_edit_text_changed)
        self.edit.submit_requested.connect(self.submit_requested)

    def text(self) -> str:
        return self.edit.toPlainText()

    def set_text(self, text: str) -> None:
        if text != self.text():
            self.edit.setPlainText(text)

    def _on_edit_text_changed(self) -> None:
        self.text_changed.emit(self.text())
        self._count_timer.start()

    def update_token_count(self) -> TokenCount | None:
        """Recount now (normally debounced while typing); returns the count shown."""
        self._count_timer.stop()
        if self._counter_failed:
            return None
        try:
            count = self._token_counter(self.text())
        except Exception:
            log.exception("Token counting failed; the counter is hidden")
            self._counter_failed = True
            self.counter.setText("")
            return None
        self.counter.setText(str(count))
        self.counter.setProperty("overflow", count.chunks > 1)
        self.counter.style().unpolish(self.counter)
        self.counter.style().polish(self.counter)
        return count
