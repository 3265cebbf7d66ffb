"""A1111 prompt emphasis syntax, parsed into (text, weight) segments. Torch-free.

Semantics follow the behaviour documented by AUTOMATIC1111's web UI (an independent
implementation; no code was copied):

- `(text)` multiplies the attention to `text` by 1.1; `((text))` by 1.1² = 1.21;
- `(text:1.3)` multiplies by 1.3 instead of 1.1;
- `[text]` divides by 1.1;
- nested brackets multiply;
- `\\(`, `\\)`, `\\[`, `\\]` (and `\\\\`) are literal characters;
- a bracket left open applies to the rest of the prompt; a stray closing bracket is text;
- the word `BREAK` (upper case, on its own) ends the current 75-token chunk.

Adjacent segments with equal weights are merged, as A1111 does, so
`'(unnecessary)(parens)'` gives one segment `('unnecessaryparens', 1.1)`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

ROUND_FACTOR = 1.1
SQUARE_FACTOR = 1 / 1.1
BREAK_WORD = "BREAK"

# One lexical token per match: escapes, brackets, an explicit weight closing a round
# bracket (":1.3)"), plain text runs, or a lone colon.
_TOKEN = re.compile(
    r"""
      (?P<escape>\\[()\[\]\\])
    | (?P<weight>:\s*(?P<number>[+-]?(?:\d+(?:\.\d*)?|\.\d+))\s*\))
    | (?P<open>[(\[])
    | (?P<close>[)\]])
    | (?P<text>[^\\()\[\]:]+|[:\\])
    """,
    re.VERBOSE,
)
_BREAK = re.compile(r"\s*\bBREAK\b\s*")


@dataclass(frozen=True)
class Segment:
    """A piece of prompt text with its attention weight, or a chunk break (`is_break`)."""

    text: str
    weight: float = 1.0
    is_break: bool = False


def _append_text(parts: list[list[object]], text: str) -> None:
    """Add text, turning each BREAK keyword into a break marker (weight None)."""
    pieces = _BREAK.split(text)
    for i, piece in enumerate(pieces):
        if i > 0:
            parts.append([BREAK_WORD, None])
        if piece:
            parts.append([piece, 1.0])


def _multiply_from(parts: list[list[object]], start: int, factor: float) -> None:
    for part in parts[start:]:
        if part[1] is not None:
            part[1] = float(part[1]) * factor  # type: ignore[arg-type]


def _scan(prompt: str) -> list[list[object]]:
    """Apply brackets to the text runs; returns [text, weight-or-None-for-BREAK] lists."""
    parts: list[list[object]] = []
    round_open: list[int] = []
    square_open: list[int] = []
    for match in _TOKEN.finditer(prompt):
        kind = match.lastgroup if match.lastgroup != "number" else "weight"
        token = match.group(0)
        if kind == "escape":
            parts.append([token[1], 1.0])
        elif kind == "open":
            (round_open if token == "(" else square_open).append(len(parts))
        elif kind == "weight" and round_open:
            _multiply_from(parts, round_open.pop(), float(match.group("number")))
        elif kind == "close" and token == ")" and round_open:
            _multiply_from(parts, round_open.pop(), ROUND_FACTOR)
        elif kind == "close" and token == "]" and square_open:
            _multiply_from(parts, square_open.pop(), SQUARE_FACTOR)
        else:  # text, or a weight / closing bracket with nothing open: literal text
            _append_text(parts, token)
    for start in round_open:
        _multiply_from(parts, start, ROUND_FACTOR)
    for start in square_open:
        _multiply_from(parts, start, SQUARE_FACTOR)
    return parts


def parse_prompt(prompt: str) -> list[Segment]:
    """Split an A1111-syntax prompt into weighted segments and BREAK markers.

    An empty prompt gives one empty segment of weight 1.0 (it still encodes as one chunk).
    """
    merged: list[Segment] = []
    for text, weight in _scan(prompt):
        if weight is None:
            merged.append(Segment(BREAK_WORD, 1.0, is_break=True))
            continue
        value = float(weight)  # type: ignore[arg-type]
        last = merged[-1] if merged else None
        if last is not None and not last.is_break and last.weight == value:
            merged[-1] = Segment(last.text + str(text), value)
        else:
            merged.append(Segment(str(text), value))
    return merged or [Segment("", 1.0)]
