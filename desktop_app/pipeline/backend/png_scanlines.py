"""PNG filtering on the GPU, next to the decoded image.

Every PNG row is stored filtered: one of five predictors (None, Sub, Up, Average, Paeth)
subtracted from its bytes, chosen per row by libpng's heuristic (the least sum of absolute
signed bytes), and only then deflated. On the CPU that filtering is most of the encoder's
work: on the H100 machine's host (16 slow cores) the whole 512² fast-mode PNG took 15–16 ms to
encode, about 6 % of a 0.24 s SD1.5 image, while the deflate alone takes 3–4 ms. On the GPU
the same filtering is a few dozen small kernels (1–1.5 ms there with the copy back; the job's
PNG write went 19.7 → 6.0 ms and SD1.5 in fast mode 122.7 → 131.0 it/s, docs/performance.md).
This module computes exactly the
rows `gallery.png_encode.filter_rows` computes (same filters, same choice, ties to the first
in that order: tests compare every byte), so the file is the same byte for byte; the encoder
then only deflates them (`png_encode.encode(..., scanlines=...)`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


@torch.no_grad()
def filtered_scanlines(pixels: torch.Tensor, bpp: int) -> torch.Tensor:
    """The PNG scanlines of one 8-bit image, `pixels` (H, W·bpp) uint8 on any device: (H, 1 +
    W·bpp) uint8, each row its filter type byte then its filtered bytes."""
    x = pixels.to(torch.int16)
    up = F.pad(x, (0, 0, 1, 0))[:-1]  # the row above; zeros above the first
    left = F.pad(x, (bpp, 0))[:, :-bpp]  # the byte bpp to the left; zeros before the first
    up_left = F.pad(up, (bpp, 0))[:, :-bpp]
    average = (left + up) >> 1
    guess = left + up - up_left  # Paeth: the neighbour nearest to this, ties a, b, c
    to_left, to_up, to_up_left = ((guess - n).abs() for n in (left, up, up_left))
    paeth = torch.where((to_left <= to_up) & (to_left <= to_up_left), left,
                        torch.where(to_up <= to_up_left, up, up_left))
    # (5, H, S): x minus each predictor, mod 256 as PNG's byte arithmetic (None: x itself).
    candidates = (x - torch.stack([torch.zeros_like(x), left, up, average, paeth])) & 0xFF
    # |the byte as signed| = min(v, 256 - v); the first of equal sums wins (argmin: the first).
    scores = torch.minimum(candidates, 256 - candidates).sum(dim=2, dtype=torch.int32)
    best = scores.argmin(dim=0)  # (H,)
    chosen = candidates.gather(0, best.view(1, -1, 1).expand(1, *x.shape))[0]
    return torch.cat([best.view(-1, 1), chosen], dim=1).to(torch.uint8)
