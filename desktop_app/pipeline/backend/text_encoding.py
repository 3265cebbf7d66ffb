"""Prompt → CLIP embeddings the way A1111 makes them (chunks, emphasis, clip skip).

- The prompt is parsed for emphasis and cut into 75-token chunks by `tokens.chunk_prompt`
  (the same routine the GUI's token counter uses). Each chunk becomes
  `[BOS] + tokens + [EOS] + [PAD]…` (77 ids; SD2 / SDXL tokenizer 2 pad with "!"), is encoded
  on its own, and the results are concatenated along the sequence (77·n).
- Emphasis, A1111's "Original" mode: hidden states are multiplied by each token's weight,
  then rescaled so the chunk's mean is what it was before weighting.
- Positive and negative are padded to the same number of chunks with the encoding of the
  empty prompt (A1111's `pad_cond`).
- Clip skip N (A1111 semantics) for SD1/SD2: hidden_states[-N] through the final LayerNorm.
  Computed here because diffusers' `clip_skip=` crashes with transformers ≥ 5.6 (CLIPTextModel
  lost its `.text_model`; we use `getattr(te, "text_model", te)`).
- SDXL: both encoders, hidden_states[-(N+1)] without the final norm (N=1: the penultimate layer
  SDXL was trained on; N=2 one layer earlier, like diffusers' and ComfyUI's clip skip), the two
  concatenated along features; the pooled embedding is encoder 2's projection of the first
  chunk. An empty negative prompt gives zero embeddings (and zero pooled) when the model
  config asks for it (`force_zeros_for_empty_prompt`, SDXL base), as A1111 does for SDXL and
  diffusers does when no negative prompt is given; longer positives are then padded with the
  (non-zero) encoding of "" like any other short side.
"""

from __future__ import annotations

import weakref
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from desktop_app.errors import bad_input
from desktop_app.pipeline.backend.memory import execution_device
from desktop_app.pipeline.tokens import CHUNK_LENGTH, COMMA_TOKEN, PromptChunk, chunk_prompt

# Below this fraction of the mean magnitude, a chunk mean counts as zero (see _apply_emphasis).
MEAN_EPSILON = 1e-4


@dataclass
class Conditioning:
    """Text conditioning for one prompt pair, batch dimension 1."""

    prompt_embeds: torch.Tensor  # (1, 77·n, C)
    negative_prompt_embeds: torch.Tensor
    pooled_prompt_embeds: torch.Tensor | None = None  # SDXL only: (1, P)
    negative_pooled_prompt_embeds: torch.Tensor | None = None

    @property
    def chunks(self) -> int:
        return int(self.prompt_embeds.shape[1]) // (CHUNK_LENGTH + 2)

    def pipeline_kwargs(self, batch_size: int) -> dict[str, torch.Tensor]:
        """The embeddings repeated for `batch_size` images, as pipeline keyword arguments."""
        values = {
            "prompt_embeds": self.prompt_embeds,
            "negative_prompt_embeds": self.negative_prompt_embeds,
            "pooled_prompt_embeds": self.pooled_prompt_embeds,
            "negative_pooled_prompt_embeds": self.negative_pooled_prompt_embeds,
        }
        return {
            name: value.repeat(batch_size, *([1] * (value.dim() - 1)))
            for name, value in values.items()
            if value is not None
        }


@dataclass
class _Encoded:
    """Per-chunk hidden states (n, 77, C) and, for encoder 2 of SDXL, pooled (n, P)."""

    hidden: torch.Tensor
    pooled: torch.Tensor | None


def _tokenizer_chunks(tokenizer: Any, prompt: str) -> list[PromptChunk]:
    def tokenize(texts: list[str]) -> list[list[int]]:
        return list(tokenizer(texts, add_special_tokens=False, verbose=False)["input_ids"])

    comma = tokenizer.convert_tokens_to_ids(COMMA_TOKEN)
    comma_id = None if comma is None or comma == tokenizer.unk_token_id else int(comma)
    chunks, _count = chunk_prompt(prompt, tokenize, comma_id)
    return chunks


def _chunk_tensors(
    tokenizer: Any, chunks: Sequence[PromptChunk]
) -> tuple[torch.Tensor, torch.Tensor]:
    """Ids (n, 77) and weights (n, 77) for chunks: BOS + tokens + EOS + padding."""
    bos, eos, pad = tokenizer.bos_token_id, tokenizer.eos_token_id, tokenizer.pad_token_id
    ids, weights = [], []
    for chunk in chunks:
        free = CHUNK_LENGTH - len(chunk.tokens)
        ids.append([bos, *chunk.tokens, eos] + [pad] * free)
        weights.append([1.0, *chunk.weights] + [1.0] * (free + 1))
    return torch.tensor(ids, dtype=torch.long), torch.tensor(weights, dtype=torch.float32)


def _apply_emphasis(hidden: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """A1111 "Original" emphasis: weight each token, then restore each chunk's mean."""
    if bool((weights == 1.0).all()):
        return hidden
    z = hidden.float()
    original_mean = z.mean(dim=(1, 2), keepdim=True)
    z = z * weights.to(z.device).unsqueeze(-1)
    new_mean = z.mean(dim=(1, 2), keepdim=True)
    # A chunk whose mean is ~0 relative to its values (an encoder whose final LayerNorm has no
    # bias, e.g. random test weights) has no meaningful mean to restore: dividing would blow up.
    scale = z.abs().mean(dim=(1, 2), keepdim=True)
    defined = new_mean.abs() > MEAN_EPSILON * scale
    ratio = torch.where(defined, original_mean / torch.where(defined, new_mean, 1.0), 1.0)
    return (z * ratio).to(hidden.dtype)


def _run_encoder(
    encoder: Any, ids: torch.Tensor, layer: int, final_norm: bool, pooled: bool
) -> _Encoded:
    out = encoder(ids, output_hidden_states=True)
    states = out.hidden_states
    if layer >= len(states):
        raise bad_input(
            f"Clip skip {layer - (0 if final_norm else 1)} is deeper than this model's text "
            f"encoder ({len(states) - 1} layers).",
            "Use clip skip 1 or 2.",
        )
    if final_norm and layer == 1:
        hidden = out.last_hidden_state
    elif final_norm:
        hidden = getattr(encoder, "text_model", encoder).final_layer_norm(states[-layer])
    else:
        hidden = states[-layer]
    return _Encoded(hidden, out.text_embeds if pooled else None)


def _encode_all(
    tokenizer: Any,
    encoder: Any,
    groups: Sequence[Sequence[PromptChunk]],
    device: torch.device,
    layer: int,
    *,
    final_norm: bool,
    pooled: bool,
) -> list[_Encoded]:
    """Encode several prompts' chunks in one forward pass; split back per prompt."""
    ids, weights = _chunk_tensors(tokenizer, [c for group in groups for c in group])
    encoded = _run_encoder(encoder, ids.to(device), layer, final_norm, pooled)
    hidden = _apply_emphasis(encoded.hidden, weights)
    results, start = [], 0
    for group in groups:
        end = start + len(group)
        pool = encoded.pooled[start:end] if encoded.pooled is not None else None
        results.append(_Encoded(hidden[start:end], pool))
        start = end
    return results


def _flatten(encoded: _Encoded, pad_to: int, empty: _Encoded | None) -> torch.Tensor:
    """(n, 77, C) → (1, 77·pad_to, C), appending empty-prompt chunks as needed."""
    parts = [encoded.hidden]
    missing = pad_to - encoded.hidden.shape[0]
    if missing > 0:
        assert empty is not None
        parts.append(empty.hidden.expand(missing, -1, -1))
    return torch.cat(parts).reshape(1, -1, encoded.hidden.shape[-1])


def _groups(tokenizer: Any, prompt: str, negative: str) -> tuple[list[list[PromptChunk]], int]:
    """Chunks of [positive, negative(, empty prompt)] and where the empty prompt's are.

    The empty prompt's encoding pads the shorter side; it is only encoded separately when
    the two differ in length and neither of them is already empty.
    """
    pos, neg = _tokenizer_chunks(tokenizer, prompt), _tokenizer_chunks(tokenizer, negative)
    groups = [pos, neg]
    if prompt == "":
        return groups, 0
    if negative == "":
        return groups, 1
    if len(pos) != len(neg):
        groups.append(_tokenizer_chunks(tokenizer, ""))
    return groups, 2


def _sd_conditioning(pipe: Any, prompt: str, negative: str, clip_skip: int) -> Conditioning:
    groups, empty_at = _groups(pipe.tokenizer, prompt, negative)
    encoded = _encode_all(pipe.tokenizer, pipe.text_encoder, groups, execution_device(pipe),
                          clip_skip, final_norm=True, pooled=False)
    size = max(len(groups[0]), len(groups[1]))
    empty = encoded[empty_at] if empty_at < len(encoded) else None
    return Conditioning(_flatten(encoded[0], size, empty), _flatten(encoded[1], size, empty))


def _xl_conditioning(pipe: Any, prompt: str, negative: str, clip_skip: int) -> Conditioning:
    groups, empty_at = _groups(pipe.tokenizer, prompt, negative)
    device, layer = execution_device(pipe), clip_skip + 1
    first = _encode_all(pipe.tokenizer, pipe.text_encoder, groups, device, layer,
                        final_norm=False, pooled=False)
    second = _encode_all(pipe.tokenizer_2, pipe.text_encoder_2, groups, device, layer,
                         final_norm=False, pooled=True)
    joined = [
        _Encoded(torch.cat([a.hidden, b.hidden], dim=-1), b.pooled)
        for a, b in zip(first, second, strict=True)
    ]
    size = max(len(groups[0]), len(groups[1]))
    empty = joined[empty_at] if empty_at < len(joined) else None
    positive, negative_encoded = joined[0], joined[1]
    if negative == "" and getattr(pipe.config, "force_zeros_for_empty_prompt", False):
        assert negative_encoded.pooled is not None
        negative_encoded = _Encoded(torch.zeros_like(negative_encoded.hidden),
                                    torch.zeros_like(negative_encoded.pooled))
    assert positive.pooled is not None and negative_encoded.pooled is not None
    return Conditioning(
        _flatten(positive, size, empty),
        _flatten(negative_encoded, size, empty),
        positive.pooled[:1],
        negative_encoded.pooled[:1],
    )


@torch.no_grad()
def encode_prompts(pipe: Any, prompt: str, negative: str, clip_skip: int = 1) -> Conditioning:
    """Embeddings for `prompt` / `negative` with A1111 chunking, emphasis and clip skip."""
    if getattr(pipe, "text_encoder_2", None) is not None:
        return _xl_conditioning(pipe, prompt, negative, clip_skip)
    return _sd_conditioning(pipe, prompt, negative, clip_skip)


class PromptCache:
    """The last job's conditioning, reused when the next job on the same pipeline asks for the
    same prompts (a seed sweep, "generate again", a queue of variations), as A1111 keeps its
    conds. It skips each repeated job's CLIP pass (12 layers, 24 for SDXL): a few hundred ms on
    the CPU; on an H100 in fast mode the two runs measured so far were within noise of each
    other (126.9 it/s with one prompt for all jobs, 127.7 with a new one each, in different
    processes). One entry (well under 1 MB); it dies with
    the pipeline (weak reference), so another model, a reloaded one or a different device always
    encodes afresh.
    """

    def __init__(self) -> None:
        self._pipe: weakref.ref[Any] | None = None
        self._key: tuple[object, ...] = ()
        self._value: Conditioning | None = None

    def encode(self, pipe: Any, prompt: str, negative: str, clip_skip: int = 1) -> Conditioning:
        """`encode_prompts(pipe, prompt, negative, clip_skip)`, from the cache when it has it."""
        key = (prompt, negative, clip_skip, execution_device(pipe))
        if (self._value is not None and self._pipe is not None and self._pipe() is pipe
                and self._key == key):
            return self._value
        self.clear()
        value = encode_prompts(pipe, prompt, negative, clip_skip)
        self._pipe, self._key, self._value = weakref.ref(pipe, self._forget), key, value
        return value

    def clear(self) -> None:
        self._pipe, self._key, self._value = None, (), None

    def _forget(self, _dead: weakref.ref[Any]) -> None:
        if self._pipe is _dead:
            self.clear()
