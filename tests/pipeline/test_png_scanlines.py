"""PNG filtering on the GPU's side: the same scanlines as the CPU encoder's, byte for byte."""

from __future__ import annotations

import numpy as np
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from desktop_app.gallery import png_encode
from desktop_app.pipeline.backend.png_scanlines import filtered_scanlines


@settings(max_examples=150, deadline=None)
@given(st.sampled_from([1, 3, 4]), st.integers(1, 40), st.integers(1, 40),
       st.integers(0, 2**32 - 1), st.sampled_from([(0, 256), (120, 137), (0, 3), (7, 8)]))
def test_the_same_scanlines_as_the_cpu_encoder(bpp: int, height: int, width: int, seed: int,
                                              bounds: tuple[int, int]) -> None:
    # Narrow value ranges make ties between filters (the first wins) and the ±128 wrap common;
    # a flat image (7, 8) ties all five on every row.
    pixels = np.random.default_rng(seed).integers(*bounds, (height, width * bpp), dtype=np.uint8)
    ours = filtered_scanlines(torch.from_numpy(pixels), bpp)
    assert ours.dtype == torch.uint8
    assert np.array_equal(ours.numpy(), png_encode.filter_rows(pixels, 0, height, bpp))


def test_a_large_image_chooses_among_all_filters_as_the_cpu_does() -> None:
    rng = np.random.default_rng(3)
    y, x = np.mgrid[0:300, 0:257]
    smooth = np.stack([(x * (c + 1) + y * (3 - c)) % 256 for c in range(3)], axis=-1)
    pixels = (smooth + rng.integers(0, 12, smooth.shape)).clip(0, 255).astype(np.uint8)
    pixels[:40] = rng.integers(0, 256, (40, 257, 3))  # noise rows prefer None or Sub
    flat = pixels.reshape(300, -1)
    ours = filtered_scanlines(torch.from_numpy(flat), 3).numpy()
    assert np.array_equal(ours, png_encode.filter_rows(flat, 0, 300, 3))
    assert len(set(ours[:, 0].tolist())) >= 3
