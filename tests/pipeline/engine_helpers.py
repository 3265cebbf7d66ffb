"""Shared helpers for the engine tests: one backend per module, small requests, pixel access."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from desktop_app.pipeline.api import (
    CancelToken,
    GenerationRequest,
    GenerationResult,
    StepUpdate,
)

SIZE = 64
STEPS = 2


def request(model: Path, config: Path | None = None, **changes: Any) -> GenerationRequest:
    """A tiny, fast request (64×64, 2 steps, fixed seed, Euler) for `model`."""
    values: dict[str, Any] = {
        "prompt": "a photo of a cat", "model": str(model),
        "model_config": str(config) if config else None, "steps": STEPS, "width": SIZE,
        "height": SIZE, "seed": 1234, "sampler": "Euler", "device": "cpu",
    }
    values.update(changes)
    return GenerationRequest(**values)


def run(backend: Any, req: GenerationRequest,
        on_step: Callable[[StepUpdate], None] | None = None,
        cancel: CancelToken | None = None) -> tuple[GenerationResult, list[StepUpdate]]:
    updates: list[StepUpdate] = []

    def record(update: StepUpdate) -> None:
        updates.append(update)
        if on_step is not None:
            on_step(update)

    result: GenerationResult = backend.generate(req, cancel or CancelToken(), record)
    return result, updates


def pixels(path: str | Path) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"), dtype=np.int16)


def images_of(result: GenerationResult) -> list[np.ndarray]:
    return [pixels(image.path) for image in result.images]
