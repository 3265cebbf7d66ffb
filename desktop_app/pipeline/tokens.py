"""CLIP token counting and A1111-style 75-token chunking. Torch-free and cheap.

The GUI calls `count_tokens` on every keystroke, so this module uses the `tokenizers` package
directly (no transformers, no torch) with the shipped CLIP BPE files, built once and cached.
`chunk_prompt` is the one chunking routine: the text encoder in the backend calls it with the
model's own tokenizer, so the counter the user sees ("82/150") is what the engine encodes.

Chunking follows A1111's documented behaviour: each emphasis segment is tokenized separately,
tokens fill chunks of 75, `BREAK` closes the current chunk early, and when a chunk fills up
while a comma lies within the last 20 tokens, the text after that comma moves to the next chunk.
Token counts are A1111's too: every chunk but the last counts as a full 75.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from desktop_app import paths
from desktop_app.pipeline.api import TokenCount
from desktop_app.pipeline.prompt_parser import parse_prompt

CHUNK_LENGTH = 75
COMMA_BACKTRACK = 20
BOS_TOKEN = "<|startoftext|>"
EOS_TOKEN = "<|endoftext|>"
COMMA_TOKEN = ",</w>"

Tokenize = Callable[[list[str]], list[list[int]]]


@dataclass(frozen=True)
class PromptChunk:
    """Up to 75 token ids (no BOS/EOS, unpadded) and the emphasis weight of each."""

    tokens: tuple[int, ...]
    weights: tuple[float, ...]


@dataclass
class _Builder:
    comma_id: int | None
    chunks: list[PromptChunk] = field(default_factory=list)
    tokens: list[int] = field(default_factory=list)
    weights: list[float] = field(default_factory=list)
    last_comma: int = -1
    count: int = 0

    def close(self, *, last: bool = False) -> None:
        self.count += len(self.tokens) if last else CHUNK_LENGTH
        self.chunks.append(PromptChunk(tuple(self.tokens), tuple(self.weights)))
        self.tokens, self.weights, self.last_comma = [], [], -1

    def add(self, token: int, weight: float) -> None:
        if token == self.comma_id:
            self.last_comma = len(self.tokens)
        elif (
            len(self.tokens) == CHUNK_LENGTH
            and self.last_comma != -1
            and CHUNK_LENGTH - self.last_comma <= COMMA_BACKTRACK
        ):
            # The chunk is full and a comma is near its end: move the words after the comma
            # to the next chunk so a phrase is not split across two encoder passes.
            cut = self.last_comma + 1
            moved_tokens, moved_weights = self.tokens[cut:], self.weights[cut:]
            self.tokens, self.weights = self.tokens[:cut], self.weights[:cut]
            self.close()
            self.tokens, self.weights = moved_tokens, moved_weights
        if len(self.tokens) == CHUNK_LENGTH:
            self.close()
        self.tokens.append(token)
        self.weights.append(weight)


def chunk_prompt(
    prompt: str, tokenize: Tokenize, comma_id: int | None
) -> tuple[list[PromptChunk], int]:
    """Parse `prompt`, tokenize each segment with `tokenize` and cut it into 75-token chunks.

    Returns the chunks (at least one, possibly empty) and A1111's token count.
    """
    segments = parse_prompt(prompt)
    texts = [s.text for s in segments if not s.is_break]
    ids = iter(tokenize(texts) if texts else [])
    builder = _Builder(comma_id)
    for segment in segments:
        if segment.is_break:
            builder.close()
            continue
        for token in next(ids):
            builder.add(token, segment.weight)
    if builder.tokens or not builder.chunks:
        builder.close(last=True)
    return builder.chunks, builder.count


_tokenizer_lock = threading.Lock()


def warm_up() -> None:
    """Build the tokenizer now (call from a background thread so the GUI's first count is free)."""
    _clip_tokenizer()


def _clip_tokenizer() -> object:
    """The CLIP BPE tokenizer, built once; the lock keeps a warm-up and a count from racing."""
    with _tokenizer_lock:
        return _build_clip_tokenizer()


@functools.lru_cache(maxsize=1)
def _build_clip_tokenizer() -> object:
    """The CLIP BPE tokenizer of SD1/SD2/SDXL, built from the shipped vocab and merges."""
    from tokenizers import Regex, Tokenizer, normalizers, pre_tokenizers
    from tokenizers.models import BPE

    folder = paths.resource("tokenizer")
    model = BPE.from_file(
        str(folder / "vocab.json"),
        str(folder / "merges.txt"),
        continuing_subword_prefix="",
        end_of_word_suffix="</w>",
        fuse_unk=False,
        unk_token=EOS_TOKEN,
    )
    tokenizer = Tokenizer(model)
    tokenizer.normalizer = normalizers.Sequence(
        [normalizers.NFC(), normalizers.Replace(Regex(r"\s+"), " "), normalizers.Lowercase()]
    )
    words = (
        r"<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]"
        r"|[^\s\p{L}\p{N}]+"
    )
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(words), behavior="removed", invert=True),
            pre_tokenizers.ByteLevel(add_prefix_space=False),
        ]
    )
    tokenizer.add_special_tokens([BOS_TOKEN, EOS_TOKEN])
    return tokenizer


def clip_tokenize(texts: Sequence[str]) -> list[list[int]]:
    """Token ids of each text, without BOS/EOS, with the shipped CLIP tokenizer."""
    tokenizer = _clip_tokenizer()
    encodings = tokenizer.encode_batch(list(texts), add_special_tokens=False)  # type: ignore[attr-defined]
    return [list(e.ids) for e in encodings]


def clip_comma_id() -> int | None:
    """Id of the comma token in the shipped vocabulary."""
    result = _clip_tokenizer().token_to_id(COMMA_TOKEN)  # type: ignore[attr-defined]
    return None if result is None else int(result)


@functools.lru_cache(maxsize=256)
def count_tokens(prompt: str) -> TokenCount:
    """How many tokens `prompt` uses and how many 75-token chunks the engine will encode."""
    chunks, count = chunk_prompt(prompt, clip_tokenize, clip_comma_id())
    return TokenCount(tokens=count, chunks=len(chunks))
