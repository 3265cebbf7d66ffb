"""Turn an image's metadata into parameters the sidebar can take ("Use these parameters").

The result is a dict with GenerationRequest field names, holding only values that are known
AND valid for our engine; everything else is reported as a warning a person can read, never
applied half-way.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from desktop_app.gallery.metadata import ImageMetadata
from desktop_app.pipeline.api import (
    CFG_RANGE,
    CLIP_SKIP_RANGE,
    MAX_SEED,
    SAMPLER_NAMES,
    SIZE_MULTIPLE,
    SIZE_RANGE,
    STEPS_RANGE,
)

# (model name, model hash) → path or id of that model in the library, or None if unknown.
ModelLookup = Callable[[str, str], str | None]


@dataclass(frozen=True)
class RestoredParameters:
    """GenerationRequest-like `values` plus `warnings` about what could not be restored."""

    values: dict[str, Any]
    warnings: tuple[str, ...] = field(default=())


def _default_lookup(meta: ImageMetadata) -> str | None:
    """Without a library: our own images name the model file; keep it if it still exists."""
    model = (meta.request or {}).get("model")
    if isinstance(model, str) and Path(model).exists():
        return model
    return None


def _in_range(value: float | None, bounds: tuple[float, float]) -> bool:
    return value is not None and bounds[0] <= value <= bounds[1]


def _size_ok(value: int | None) -> bool:
    return _in_range(value, SIZE_RANGE) and value is not None and value % SIZE_MULTIPLE == 0


def restore_parameters(meta: ImageMetadata,
                       model_lookup: ModelLookup | None = None) -> RestoredParameters:
    """What "Use these parameters" applies for `meta`, and what it has to warn about."""
    values: dict[str, Any] = {"prompt": meta.prompt, "negative_prompt": meta.negative_prompt}
    warnings: list[str] = []
    if meta.sampler in SAMPLER_NAMES:
        values["sampler"] = meta.sampler
    elif meta.sampler:
        warnings.append(f"Sampler “{meta.sampler}” is not available here; kept the current one.")
    if _in_range(meta.steps, STEPS_RANGE):
        values["steps"] = meta.steps
    if _in_range(meta.cfg_scale, CFG_RANGE):
        values["cfg_scale"] = meta.cfg_scale
    if meta.seed is not None:
        if 0 <= meta.seed <= MAX_SEED:
            values["seed"] = meta.seed
        else:
            warnings.append(f"Seed {meta.seed} is outside 0–{MAX_SEED}; kept the current seed.")
    if _size_ok(meta.width) and _size_ok(meta.height):
        values["width"], values["height"] = meta.width, meta.height
    elif meta.width or meta.height:
        warnings.append(f"Size {meta.size} is not a multiple of 8 between 64 and 2048.")
    if _in_range(meta.clip_skip, CLIP_SKIP_RANGE):
        values["clip_skip"] = meta.clip_skip
    if meta.variation_seed is not None and 0 <= meta.variation_seed <= MAX_SEED:
        values["variation_seed"] = meta.variation_seed
        values["variation_strength"] = min(max(meta.variation_strength, 0.0), 1.0)
    if meta.model_name or meta.model_hash:
        found = (model_lookup(meta.model_name, meta.model_hash) if model_lookup is not None
                 else _default_lookup(meta))
        if found is not None:
            values["model"] = found
        else:
            label = meta.model_name or meta.model_hash
            warnings.append(f"Model “{label}” is not in your library; kept the current model.")
    vae = (meta.request or {}).get("vae")
    if isinstance(vae, str) and Path(vae).exists():
        values["vae"] = vae
    elif meta.vae_name:
        warnings.append(f"VAE “{meta.vae_name}” was used; pick it in the VAE list if you have it.")
    return RestoredParameters(values, tuple(warnings))
