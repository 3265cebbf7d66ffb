"""Token counting and chunking: the GUI counter must agree with what the encoder uses."""

from __future__ import annotations

import subprocess
import sys

import pytest

from desktop_app import paths
from desktop_app.pipeline.api import TokenCount
from desktop_app.pipeline.tokens import (
    CHUNK_LENGTH,
    chunk_prompt,
    clip_comma_id,
    clip_tokenize,
    count_tokens,
)

A, B, COMMA = 320, 321, 267  # "a", "b", "," in the CLIP vocabulary


def chunks_of(prompt: str) -> list[list[int]]:
    chunks, _ = chunk_prompt(prompt, clip_tokenize, clip_comma_id())
    return [list(c.tokens) for c in chunks]


def test_known_clip_ids() -> None:
    assert clip_tokenize(["a photo of a cat"]) == [[320, 1125, 539, 320, 2368]]


@pytest.mark.parametrize("text", [
    "a photo of a cat", "Ünïcödé  CAFÉ 日本語 🎉", "it's don't 123,456.78!!", "a\tb\n c",
    "masterpiece, best quality, (1girl:1.2)", "<|endoftext|>x", "",
])
def test_ids_match_the_transformers_clip_tokenizer(text: str) -> None:
    from transformers import CLIPTokenizer

    reference = CLIPTokenizer.from_pretrained(str(paths.resource("tokenizer")))
    assert clip_tokenize([text])[0] == reference(text, add_special_tokens=False)["input_ids"]


def test_short_prompt_counts_its_tokens() -> None:
    assert count_tokens("a photo of a cat") == TokenCount(tokens=5, chunks=1)
    assert str(count_tokens("a photo of a cat")) == "5/75"


def test_empty_prompt_is_one_chunk() -> None:
    assert count_tokens("") == TokenCount(0, 1)
    assert chunks_of("") == [[]]


def test_75_tokens_fit_one_chunk_76_need_two() -> None:
    assert count_tokens("a " * 75) == TokenCount(75, 1)
    assert count_tokens("a " * 76) == TokenCount(76, 2)
    assert str(count_tokens("a " * 82)) == "82/150"


def test_emphasis_brackets_are_not_tokens() -> None:
    assert count_tokens("a (photo:1.3) of [a] ((cat))") == count_tokens("a photo of a cat")


def test_break_closes_the_chunk_and_counts_it_full() -> None:
    assert chunks_of("a BREAK b") == [[A], [B]]
    assert count_tokens("a BREAK b") == TokenCount(CHUNK_LENGTH + 1, 2)


def test_chunk_breaks_after_a_nearby_comma() -> None:
    prompt = "a " * 70 + ", " + "b " * 10
    chunks = chunks_of(prompt)
    assert chunks == [[A] * 70 + [COMMA], [B] * 10]
    assert count_tokens(prompt) == TokenCount(CHUNK_LENGTH + 10, 2)


def test_a_comma_too_far_back_does_not_move_words() -> None:
    prompt = "a " * 50 + ", " + "b " * 30
    chunks = chunks_of(prompt)
    assert chunks == [[A] * 50 + [COMMA] + [B] * 24, [B] * 6]


def test_weights_follow_their_tokens() -> None:
    chunks, _ = chunk_prompt("a (b:1.5) [a]", clip_tokenize, clip_comma_id())
    assert chunks[0].tokens == (A, B, A)
    assert chunks[0].weights == pytest.approx((1.0, 1.5, 1 / 1.1))


def test_counting_does_not_import_torch() -> None:
    code = ("import sys; from desktop_app.pipeline.tokens import count_tokens;"
            "count_tokens('a photo of a cat');"
            "print(','.join(m for m in ('torch', 'transformers') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == ""
