"""PNG encoding: our banded multi-core encoder (gallery.png_encode) vs Pillow's, same zlib level.

    .venv/bin/python -m benchmarks.png_save                  # 512² and 1024², 5 repeats
    .venv/bin/python -m benchmarks.png_save --sizes 1024 --repeats 9
    .venv/bin/python -m benchmarks.png_save --images a.png,b.jpg   # also these files
    .venv/bin/python -m benchmarks.png_save --gap-s 0.1   # a pause before each encode

Two kinds of image per size: "smooth" (gradients plus a little noise) and "noise" (uniform
random bytes, what random-weight models make in the GPU suite), plus any `--images` (photos
give the honest file sizes). Pillow and our encoder write the same pixels at level 4
(metadata.PNG_LEVEL); "fast" is our encoder as fast mode saves (ISA-L deflate, `fast=True`).
The figures are the median encode time in memory (no disk) and the file size. "given" is the
fast encode of scanlines already filtered, as the engine hands them over when the GPU decoded
the image (png_scanlines): the deflate alone. On a CUDA machine "GPU ms" is that filtering there,
the copy to the host included, and each case checks the GPU's scanlines are the CPU's byte for
byte. Prints a table and a final JSON line with `speedup` = Pillow / ours and `fast_speedup` =
ours / fast per case.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def _images(size: int) -> dict[str, Any]:
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:size, 0:size]
    base = np.stack([(x * (c + 1) // 3 + y * (3 - c) // 2) % 256 for c in range(3)], axis=-1)
    smooth = (base + rng.integers(0, 12, base.shape)).clip(0, 255).astype(np.uint8)
    noise = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
    return {"smooth": Image.fromarray(smooth), "noise": Image.fromarray(noise)}


def _files(names: str) -> list[tuple[str, Any]]:
    from PIL import Image

    out = []
    for name in filter(None, names.split(",")):
        with Image.open(name) as image:
            out.append((name, image.convert("RGBA" if "A" in image.getbands() else "RGB")))
    return out


def _median_s(encode: Any, repeats: int, gap_s: float = 0.0) -> tuple[float, int]:
    times, size = [], 0
    for _ in range(repeats):
        time.sleep(gap_s)
        started = time.perf_counter()
        size = len(encode())
        times.append(time.perf_counter() - started)
    return statistics.median(times), size


def _on_the_gpu(pixels: Any, bpp: int, scanlines: Any, repeats: int
                ) -> tuple[float | None, bool | None]:
    """(median ms of filtering `pixels` on CUDA and copying the scanlines back, whether they
    equal `scanlines` byte for byte), or (None, None) without CUDA."""
    import numpy as np
    import torch

    if not torch.cuda.is_available():
        return None, None
    from desktop_app.pipeline.backend.png_scanlines import filtered_scanlines

    on_gpu = torch.from_numpy(pixels).cuda()
    times, rows = [], None
    for _ in range(repeats + 1):  # the first call warms the kernels up
        torch.cuda.synchronize()
        started = time.perf_counter()
        rows = filtered_scanlines(on_gpu, bpp).cpu().numpy()
        times.append(time.perf_counter() - started)
    return round(statistics.median(times[1:]) * 1000, 2), bool(np.array_equal(rows, scanlines))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="512,1024", help="comma-separated square sizes")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--images", default="", help="comma-separated image files to add")
    parser.add_argument("--gap-s", type=float, default=0.0,
                        help="pause before each encode (0.1: as the app writes images, caches "
                             "cold; 0: back to back)")
    args = parser.parse_args(argv)

    import numpy as np

    from desktop_app.gallery import png_encode
    from desktop_app.gallery.metadata import PNG_LEVEL

    def pillow(image: Any) -> bytes:
        buffer = io.BytesIO()
        image.save(buffer, format="PNG", compress_level=PNG_LEVEL)
        return buffer.getvalue()

    cases: list[dict[str, Any]] = []
    print(f"cores {os.cpu_count()}, encoder threads {png_encode._threads()}, level {PNG_LEVEL}, "
          f"ISA-L {'yes' if png_encode._isal() is not None else 'NOT INSTALLED'}")
    images = [(f"{kind} {size}²", image) for size in (int(s) for s in args.sizes.split(","))
              for kind, image in _images(size).items()]
    images += [(f"{Path(name).name} {image.width}×{image.height}", image)
               for name, image in _files(args.images)]
    width = max(len(name) for name, _ in images)
    print(f"{'case':<{width}} {'Pillow ms':>10} {'ours ms':>8} {'×':>5} {'fast ms':>8} {'×':>5} "
          f"{'given ms':>9} {'GPU ms':>7} {'Pillow KiB':>11} {'ours KiB':>9} {'fast KiB':>9}")
    for name, image in images:
        png_encode.encode(image)  # warm the thread pool
        bpp = png_encode.COLOUR_TYPES[image.mode][1]
        pixels = np.asarray(image).reshape(image.height, image.width * bpp)
        scanlines = png_encode.filter_rows(pixels, 0, image.height, bpp)
        gpu_ms, gpu_same = _on_the_gpu(pixels, bpp, scanlines, args.repeats)
        theirs_s, theirs_b = _median_s(lambda image=image: pillow(image), args.repeats,
                                       args.gap_s)
        ours_s, ours_b = _median_s(
            lambda image=image: png_encode.encode(image, level=PNG_LEVEL), args.repeats,
            args.gap_s)
        fast_s, fast_b = _median_s(
            lambda image=image: png_encode.encode(image, level=PNG_LEVEL, fast=True),
            args.repeats, args.gap_s)
        given_s, given_b = _median_s(
            lambda image=image, rows=scanlines: png_encode.encode(
                image, level=PNG_LEVEL, fast=True, scanlines=rows), args.repeats, args.gap_s)
        assert given_b == fast_b  # the same file: only the filtering moved
        case = {"case": name, "pillow_ms": round(theirs_s * 1000, 1),
                "ours_ms": round(ours_s * 1000, 1), "speedup": round(theirs_s / ours_s, 2),
                "fast_ms": round(fast_s * 1000, 1), "fast_speedup": round(ours_s / fast_s, 2),
                "given_ms": round(given_s * 1000, 1), "gpu_filter_ms": gpu_ms,
                "gpu_same_bytes": gpu_same,
                "pillow_kib": theirs_b // 1024, "ours_kib": ours_b // 1024,
                "fast_kib": fast_b // 1024, "fast_size": round(fast_b / ours_b, 3)}
        cases.append(case)
        print(f"{name:<{width}} {case['pillow_ms']:>10} {case['ours_ms']:>8} {case['speedup']:>5} "
              f"{case['fast_ms']:>8} {case['fast_speedup']:>5} {case['given_ms']:>9} "
              f"{'-' if gpu_ms is None else gpu_ms:>7} {case['pillow_kib']:>11} "
              f"{case['ours_kib']:>9} {case['fast_kib']:>9}")
    print(json.dumps({"benchmark": "png_save", "cores": os.cpu_count(), "gap_s": args.gap_s,
                      "threads": png_encode._threads(), "level": PNG_LEVEL, "cases": cases}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
