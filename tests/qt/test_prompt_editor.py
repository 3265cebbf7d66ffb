"""Prompt editor: A1111 weight editing, highlighting, token counter."""

from __future__ import annotations

import pytest
from PySide6.QtCore import Qt
from PySide6.QtGui import QTextCursor
from pytestqt.qtbot import QtBot

from desktop_app.state.prompt_syntax import SpanKind, adjust_weight, highlight_spans
from desktop_app.ui.prompt_editor import PromptEditor


@pytest.mark.parametrize(("text", "start", "end", "delta", "expected", "selected"), [
    ("a cat", 2, 2, 0.1, "a (cat:1.1)", "cat"),  # word under the cursor
    ("a cat", 3, 3, -0.1, "a (cat:0.9)", "cat"),
    ("a red cat", 2, 9, 0.1, "a (red cat:1.1)", "red cat"),  # selection
    ("a (cat:1.1)", 4, 4, 0.1, "a (cat:1.2)", "cat"),  # inside a weighted group
    ("a (cat:1.1)", 3, 6, -0.1, "a cat", "cat"),  # back to 1.0 unwraps
    ("a (red cat:0.5) x", 8, 8, -0.1, "a (red cat:0.4) x", "red cat"),
    ("a  cat ", 1, 7, 0.1, "a  (cat:1.1) ", "cat"),  # surrounding spaces stay outside
])
def test_weight_edit_follows_a1111(text: str, start: int, end: int, delta: float,
                                   expected: str, selected: str) -> None:
    edit = adjust_weight(text, start, end, delta)
    assert edit is not None
    assert edit.text == expected
    assert edit.text[edit.start:edit.end] == selected


def test_weight_edit_on_nothing_changes_nothing() -> None:
    assert adjust_weight("a ,, b", 3, 3, 0.1) is None
    assert adjust_weight("", 0, 0, 0.1) is None


def test_weight_never_goes_below_zero() -> None:
    edit = adjust_weight("(cat:0.0)", 2, 2, -0.1)
    assert edit is not None and edit.text == "(cat:0.0)"


def test_highlight_finds_brackets_weights_break_and_unbalanced() -> None:
    text = r"a (b:1.2) [c] \(d\) BREAK (e"
    spans = {(s.kind, text[s.start:s.start + s.length]) for s in highlight_spans(text)}
    assert (SpanKind.weight, ":1.2") in spans
    assert (SpanKind.emphasis, "b") in spans
    assert (SpanKind.deemphasis, "c") in spans
    assert (SpanKind.keyword, "BREAK") in spans
    assert (SpanKind.unbalanced, "(") in spans
    escaped = {s.start for s in highlight_spans(text) if s.kind is SpanKind.paren}
    assert text.index(r"\(") + 1 not in escaped  # the escaped bracket is literal


@pytest.fixture
def editor(qtbot: QtBot, fake_token_counter) -> PromptEditor:
    widget = PromptEditor("Prompt", "", "tip", fake_token_counter)
    qtbot.addWidget(widget)
    widget.show()
    return widget


def test_ctrl_up_and_down_edit_the_word_under_the_cursor(qtbot: QtBot,
                                                         editor: PromptEditor) -> None:
    editor.set_text("a lighthouse at dusk")
    cursor = editor.edit.textCursor()
    cursor.setPosition(5)
    editor.edit.setTextCursor(cursor)
    qtbot.keyClick(editor.edit, Qt.Key.Key_Up, Qt.KeyboardModifier.ControlModifier)
    assert editor.text() == "a (lighthouse:1.1) at dusk"
    qtbot.keyClick(editor.edit, Qt.Key.Key_Up, Qt.KeyboardModifier.ControlModifier)
    assert editor.text() == "a (lighthouse:1.2) at dusk"
    for _ in range(2):
        qtbot.keyClick(editor.edit, Qt.Key.Key_Down, Qt.KeyboardModifier.ControlModifier)
    assert editor.text() == "a lighthouse at dusk"
    editor.edit.undo()  # each press is one undo step
    assert editor.text() == "a (lighthouse:1.1) at dusk"


def test_ctrl_up_on_a_selection_wraps_the_selection(qtbot: QtBot, editor: PromptEditor) -> None:
    editor.set_text("a red fox")
    cursor = editor.edit.textCursor()
    cursor.setPosition(2)
    cursor.setPosition(9, QTextCursor.MoveMode.KeepAnchor)
    editor.edit.setTextCursor(cursor)
    qtbot.keyClick(editor.edit, Qt.Key.Key_Down, Qt.KeyboardModifier.ControlModifier)
    assert editor.text() == "a (red fox:0.9)"
    assert editor.edit.textCursor().selectedText() == "red fox"


def test_brackets_are_coloured_in_the_editor(editor: PromptEditor) -> None:
    editor.set_text("a (b:1.2) BREAK")
    formats = editor.edit.document().firstBlock().layout().formats()
    coloured = {(r.start, r.length) for r in formats}
    assert (2, 1) in coloured and (4, 4) in coloured and (10, 5) in coloured


def test_counter_shows_a1111_chunks(qtbot: QtBot, editor: PromptEditor) -> None:
    qtbot.keyClicks(editor.edit, "one two three")
    qtbot.waitUntil(lambda: editor.counter.text() == "3/75", timeout=2000)
    editor.set_text(" ".join(["word"] * 80))
    assert str(editor.update_token_count()) == "80/150"
    assert editor.counter.text() == "80/150" and editor.counter.property("overflow")


def test_counter_matches_the_engine_count(qtbot: QtBot) -> None:
    tokens = pytest.importorskip("desktop_app.pipeline.tokens")
    widget = PromptEditor("Prompt", "", "tip")  # the default counter: the engine's own
    qtbot.addWidget(widget)
    prompts = ["a photo of a cat", "(masterpiece:1.2), [blurry], " + "tree, " * 40,
               "castle BREAK dragon", ""]
    for prompt in prompts:
        widget.set_text(prompt)
        shown = widget.update_token_count()
        expected = tokens.count_tokens(prompt)
        assert shown == expected and widget.counter.text() == str(expected)
    widget.set_text("a photo of a cat")
    assert widget.update_token_count().tokens == 5  # 49406 [320 1125 539 320 2368] 49407


def test_a_broken_counter_hides_itself_instead_of_failing(qtbot: QtBot) -> None:
    def broken(_prompt: str):
        raise RuntimeError("tokenizer files missing")

    widget = PromptEditor("Prompt", "", "tip", broken)
    qtbot.addWidget(widget)
    widget.set_text("x")
    assert widget.update_token_count() is None and widget.counter.text() == ""
