"""Demo model speed: seconds per image at its native size, 25 steps, through our engine.

Goal: ≤ 2 s per image on the 2-core development CPU. The demo model is the bundled diffusers
folder (`resources/models/demo`, or `--model`); its native size is read from its own configs
(UNet sample_size × VAE scale factor). One warm-up job (load + first image), then `--images`
timed jobs with previews on, as the app runs them.

    nice -n 10 .venv/bin/python -m benchmarks.demo_speed [--images 5] [--steps 25] [--model DIR]

Prints the figures and a final JSON line; without a demo model it says so and exits 0.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

GOAL_S = 2.0


def native_size(folder: Path) -> int:
    """UNet sample_size × 2^(VAE levels − 1), from the folder's own configs."""
    unet = json.loads((folder / "unet" / "config.json").read_text(encoding="utf-8"))
    vae = json.loads((folder / "vae" / "config.json").read_text(encoding="utf-8"))
    return int(unet["sample_size"]) * 2 ** (len(vae["block_out_channels"]) - 1)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=5)
    parser.add_argument("--steps", type=int, default=25)
    parser.add_argument("--model", type=Path, default=None)
    args = parser.parse_args(argv)
    from desktop_app.pipeline.backend.loading import default_model_path

    folder = args.model or default_model_path()
    if not (folder / "model_index.json").is_file():
        print(f"demo_speed: no demo model at {folder}; nothing measured.")
        print(json.dumps({"benchmark": "demo_speed", "skipped": f"no model at {folder}"}))
        return 0
    size = native_size(folder)
    from desktop_app.pipeline.api import CancelToken, GenerationRequest
    from desktop_app.pipeline.backend.diffusers_backend import DiffusersBackend

    with tempfile.TemporaryDirectory(prefix="demo-speed-") as tmp:
        os.environ["DESKTOP_APP_HOME"] = tmp
        backend = DiffusersBackend(Path(tmp) / "out", previews=True)
        previews = 0

        def on_step(update: object) -> None:
            nonlocal previews
            previews += getattr(update, "preview", None) is not None

        def job(seed: int) -> float:
            request = GenerationRequest(prompt="a red fox in the snow, photo", model=str(folder),
                                        steps=args.steps, width=size, height=size, seed=seed)
            started = time.perf_counter()
            backend.generate(request, CancelToken(), on_step)
            return time.perf_counter() - started

        first = job(0)
        times = [job(seed) for seed in range(1, args.images + 1)]
    median = statistics.median(times)
    print(f"demo model {folder.name}: {size}×{size}, {args.steps} steps, previews on")
    print(f"  load + first image {first:.2f} s; median {median:.3f} s/image "
          f"({args.steps / median:.1f} it/s) over {len(times)}; goal ≤ {GOAL_S} s: "
          f"{'met' if median <= GOAL_S else 'NOT met'}; {previews} previews")
    print(json.dumps({"benchmark": "demo_speed", "model": str(folder), "size": size,
                      "steps": args.steps, "first_s": round(first, 3),
                      "median_s": round(median, 3), "times_s": [round(t, 3) for t in times],
                      "its": round(args.steps / median, 2), "goal_s": GOAL_S,
                      "goal_met": median <= GOAL_S}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
