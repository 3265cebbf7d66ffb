"""A1111 prompt syntax for the editor: highlight spans and Ctrl+↑/↓ weight editing.

Pure functions on text and cursor positions, so the behaviour is tested without widgets.
Syntax (A1111): `(x)` ×1.1, `[x]` ÷1.1, `(x:1.3)` explicit weight, `\\(` literal, `BREAK` starts
a new 75-token chunk.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass

WEIGHT_STEP = 0.1
# A1111's edit-attention delimiters: a "word" under the cursor stops at these.
WORD_DELIMITERS = set(".,\\/!?%^*;:{}=`~()[]<> \t\n")
_WEIGHT_AFTER = re.compile(r":\s*(-?\d+(?:\.\d+)?)\s*\)")
_BREAK = re.compile(r"\bBREAK\b")


class SpanKind(enum.Enum):
    paren = "paren"  # ( ) that emphasise
    bracket = "bracket"  # [ ] that de-emphasise
    weight = "weight"  # the ":1.2" of (x:1.2)
    emphasis = "emphasis"  # text inside ( )
    deemphasis = "deemphasis"  # text inside [ ]
    keyword = "keyword"  # BREAK
    unbalanced = "unbalanced"  # a bracket without its partner


@dataclass(frozen=True)
class Span:
    start: int
    length: int
    kind: SpanKind


def _scan_brackets(text: str) -> tuple[list[Span], list[tuple[int, int, str]]]:
    """Bracket spans plus matched pairs (open, close, char); escaped brackets are literal."""
    spans: list[Span] = []
    pairs: list[tuple[int, int, str]] = []
    stack: list[tuple[int, str]] = []
    i = 0
    while i < len(text):
        char = text[i]
        if char == "\\":
            i += 2
            continue
        if char in "([":
            stack.append((i, char))
        elif char in ")]":
            want = "(" if char == ")" else "["
            if stack and stack[-1][1] == want:
                start, _ = stack.pop()
                pairs.append((start, i, want))
            else:
                spans.append(Span(i, 1, SpanKind.unbalanced))
        i += 1
    spans += [Span(pos, 1, SpanKind.unbalanced) for pos, _ in stack]
    return spans, pairs


def highlight_spans(text: str) -> list[Span]:
    """Everything the editor colours, in no particular order (spans may nest)."""
    spans, pairs = _scan_brackets(text)
    for start, end, char in pairs:
        bracket = SpanKind.paren if char == "(" else SpanKind.bracket
        spans += [Span(start, 1, bracket), Span(end, 1, bracket)]
        inner_end = end
        if char == "(":
            colon = text.rfind(":", start, end)
            if colon > start and _WEIGHT_AFTER.fullmatch(text, colon, end + 1):
                spans.append(Span(colon, end - colon, SpanKind.weight))
                inner_end = colon
        kind = SpanKind.emphasis if char == "(" else SpanKind.deemphasis
        if inner_end > start + 1:
            spans.append(Span(start + 1, inner_end - start - 1, kind))
    spans += [Span(m.start(), m.end() - m.start(), SpanKind.keyword)
              for m in _BREAK.finditer(text)]
    return spans


@dataclass(frozen=True)
class Edit:
    """Result of a weight edit: the new text and the selection to set (start, end)."""

    text: str
    start: int
    end: int


def _enclosing_weighted_group(text: str, pos: int) -> tuple[int, int] | None:
    """Inner (start, end) of the `(inner:w)` group around `pos`, A1111's first choice."""
    open_at = text.rfind("(", 0, pos)
    if open_at < 0 or text.find(")", open_at, pos) >= 0:
        return None
    close_at = text.find(")", pos)
    if close_at < 0:
        return None
    colon = text.rfind(":", open_at, close_at)
    if colon < 0 or not _WEIGHT_AFTER.fullmatch(text, colon, close_at + 1):
        return None
    return open_at + 1, colon


def _word_at(text: str, pos: int) -> tuple[int, int] | None:
    start = pos
    while start > 0 and text[start - 1] not in WORD_DELIMITERS:
        start -= 1
    end = pos
    while end < len(text) and text[end] not in WORD_DELIMITERS:
        end += 1
    return (start, end) if end > start else None


def _format_weight(weight: float) -> str:
    return f"{weight:.1f}"


def adjust_weight(text: str, start: int, end: int, delta: float) -> Edit | None:
    """A1111 Ctrl+↑/↓: raise/lower the weight of the selection or the word under the cursor.

    Unweighted text is wrapped as `(text:1.1)` / `(text:0.9)`; a weighted group changes by
    `delta` (one decimal); reaching 1.0 unwraps it. Returns None when there is nothing to edit.
    The returned selection covers the edited text (without brackets), so repeated presses
    keep working.
    """
    start, end = min(start, end), max(start, end)
    if start == end:
        found = _enclosing_weighted_group(text, start) or _word_at(text, start)
        if found is None:
            return None
        start, end = found
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    if start == end:
        return None
    match = _WEIGHT_AFTER.match(text, end)
    if start > 0 and text[start - 1] == "(" and match:
        weight = max(0.0, round(float(match.group(1)) + delta, 1))
        inner = text[start:end]
        if weight == 1.0:
            new = text[: start - 1] + inner + text[match.end():]
            return Edit(new, start - 1, end - 1)
        new = text[:end] + ":" + _format_weight(weight) + ")" + text[match.end():]
        return Edit(new, start, end)
    weight = max(0.0, round(1.0 + delta, 1))
    new = f"{text[:start]}({text[start:end]}:{_format_weight(weight)}){text[end:]}"
    return Edit(new, start + 1, end + 1)
