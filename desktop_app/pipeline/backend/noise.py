"""Seeded initial noise, drawn on the CPU so a seed means the same image on every device.

One `torch.Generator("cpu")` per image, seeded with that image's seed (seed+i in a batch, see
`GenerationRequest.seed_for`). The same generators are then handed to the pipeline as
`generator=[...]`, so ancestral and SDE samplers draw their per-step noise from each image's
own stream: image i of a batch is identical to a single run with seed+i. This is A1111's
"CPU" random source (its default "GPU" source would need a CUDA generator, which is not
device-independent).

Variation seeds follow A1111: the image's noise is slerp(strength, noise(seed),
noise(variation seed)), with the norms taken along dimension 1 of the (C, H, W) noise as A1111
does, and a plain lerp when the two are almost parallel.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from desktop_app.pipeline.api import GenerationRequest

_PARALLEL_DOT = 0.9995


@dataclass
class BatchNoise:
    """Initial latents for one pipeline call plus the generators to pass as `generator=`."""

    latents: torch.Tensor  # (batch, C, H, W), float32, on the CPU
    generators: list[torch.Generator]
    seeds: list[int]
    variation_seeds: list[int | None]


def cpu_generator(seed: int) -> torch.Generator:
    """A fresh CPU generator seeded with `seed`."""
    return torch.Generator("cpu").manual_seed(int(seed))


def slerp(strength: float, low: torch.Tensor, high: torch.Tensor) -> torch.Tensor:
    """Spherical interpolation from `low` (strength 0) to `high` (strength 1).

    Norms and dot products are taken along dim 1, as A1111's variation seeds do for (C, H, W)
    noise, so variation images match A1111's CPU-noise ones.
    """
    low_unit = low / torch.norm(low, dim=1, keepdim=True)
    high_unit = high / torch.norm(high, dim=1, keepdim=True)
    dot = (low_unit * high_unit).sum(1)
    if dot.mean() > _PARALLEL_DOT:
        return low * (1.0 - strength) + high * strength
    omega = torch.acos(dot)
    sin_omega = torch.sin(omega)
    low_part = (torch.sin((1.0 - strength) * omega) / sin_omega).unsqueeze(1)
    high_part = (torch.sin(strength * omega) / sin_omega).unsqueeze(1)
    return low_part * low + high_part * high


def batch_noise(
    request: GenerationRequest, first_index: int, count: int, shape: tuple[int, int, int]
) -> BatchNoise:
    """Noise for images `first_index … first_index+count-1` of a resolved request.

    `shape` is one image's latent shape (channels, height/8, width/8).
    """
    noises, generators, seeds, variations = [], [], [], []
    for index in range(first_index, first_index + count):
        seed = request.seed_for(index)
        generator = cpu_generator(seed)
        noise = torch.randn(shape, generator=generator, dtype=torch.float32)
        variation_seed = request.variation_seed_for(index)
        if variation_seed is not None:
            other = torch.randn(shape, generator=cpu_generator(variation_seed),
                                dtype=torch.float32)
            noise = slerp(request.variation_strength, noise, other)
        noises.append(noise)
        generators.append(generator)
        seeds.append(seed)
        variations.append(variation_seed)
    return BatchNoise(torch.stack(noises), generators, seeds, variations)
