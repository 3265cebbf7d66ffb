"""Preview cost: each previewer's decode against one UNet step, and the cadence the engine's
preview budget gives it.

For each family (SD1.5 512², SDXL 1024²: the real architectures from our shipped configs,
random weights; fp16 on CUDA, fp32 on the CPU) it times one eager UNet step at batch 2 (CFG),
a TAESD decode of the default architecture (random weights) and the linear latent→RGB map,
each with its copy to the host as the engine makes it, and prints how often a preview comes
under `previews.PREVIEW_BUDGET` (every step for a cost under budget × step time).

    .venv/bin/python -m benchmarks.preview_cost --families sd15 --sizes 256   # CPU: ~1 min
    python3 -m benchmarks.preview_cost                                       # a GPU: ~30 s

Medians of `--repeats` after one warm-up; on CUDA timed with synchronisation around each
call. Prints a table and a final JSON line.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

SIZES = {"sd15": 512, "sdxl": 1024}
CONTEXT = {"sd15": 768, "sdxl": 2048}


def _median_s(call: Any, repeats: int, device: Any) -> float:
    import torch

    def synced() -> None:
        call()
        if device.type == "cuda":
            torch.cuda.synchronize()

    synced()  # warm-up: allocations, cuDNN's choice of kernels
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        synced()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def _unet_step(family: str, size: int, device: Any, dtype: Any) -> Any:
    """One eager UNet call at batch 2, as a CFG step makes it."""
    import diffusers
    import torch

    from desktop_app import paths

    config = diffusers.UNet2DConditionModel.load_config(
        str(paths.resource("configs", family, "unet")))
    with torch.device(device):
        torch.manual_seed(0)
        unet: Any = diffusers.UNet2DConditionModel.from_config(config)  # type: ignore[no-untyped-call]
    unet = (unet if dtype == torch.float32 else unet.to(dtype)).eval()
    latents = torch.randn(2, 4, size // 8, size // 8, device=device, dtype=dtype)
    context = torch.randn(2, 77, CONTEXT[family], device=device, dtype=dtype)
    timestep = torch.tensor(500.0, device=device)
    extra: dict[str, Any] = {}
    if family == "sdxl":
        extra["added_cond_kwargs"] = {
            "text_embeds": torch.randn(2, 1280, device=device, dtype=dtype),
            "time_ids": torch.tensor([[size, size, 0, 0, size, size]] * 2, device=device,
                                     dtype=dtype)}

    @torch.no_grad()
    def step() -> None:
        unet(latents, timestep, context, **extra)

    return step, unet


def measure(family: str, size: int, device: Any, repeats: int) -> dict[str, Any]:
    import diffusers
    import torch

    from desktop_app.pipeline.backend.previews import (
        PREVIEW_BUDGET,
        LinearPreviewer,
        TaesdPreviewer,
        to_preview,
    )

    dtype = torch.float16 if device.type == "cuda" else torch.float32
    step, unet = _unet_step(family, size, device, dtype)
    step_s = _median_s(step, repeats, device)
    del unet, step
    with torch.device(device):
        torch.manual_seed(0)
        tiny_class: Any = diffusers.AutoencoderTiny  # untyped library class
        decoder = tiny_class()
        taesd = TaesdPreviewer((decoder if dtype == torch.float32 else decoder.to(dtype)).eval())
    linear = LinearPreviewer(is_xl=family == "sdxl")
    latent = torch.randn(4, size // 8, size // 8, device=device, dtype=dtype)
    row: dict[str, Any] = {"family": family, "size": size, "device": str(device),
                           "dtype": str(dtype).removeprefix("torch."),
                           "unet_step_b2_ms": round(step_s * 1000, 3)}
    for name, previewer in (("taesd", taesd), ("linear", linear)):
        cost = _median_s(lambda p=previewer: to_preview(p.rgb(latent)), repeats, device)
        gap_steps = max(1, math.ceil(cost / PREVIEW_BUDGET / step_s))
        row[f"{name}_ms"] = round(cost * 1000, 3)
        row[f"{name}_every_step_pct"] = round(100 * cost / step_s, 2)
        row[f"{name}_preview_every_n_steps"] = gap_steps
        row[f"{name}_paced_pct"] = round(100 * cost / (gap_steps * step_s), 2)
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return row


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--families", default="sd15,sdxl")
    parser.add_argument("--sizes", default="", help="one size per family (default 512,1024)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--device", default="auto")
    args = parser.parse_args(argv)
    import torch

    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available()
                          else "cpu" if args.device == "auto" else args.device)
    families = [f for f in args.families.split(",") if f]
    sizes = [int(s) for s in args.sizes.split(",") if s] or [SIZES[f] for f in families]
    rows = []
    from desktop_app.pipeline.backend.previews import PREVIEW_BUDGET

    print(f"preview budget {PREVIEW_BUDGET:.0%}; {device}")
    print("| family | size | UNet step (b2) | TAESD | every step | paced: every | linear |")
    print("|---|---|---|---|---|---|---|")
    for family, size in zip(families, sizes, strict=False):
        row = measure(family, size, device, args.repeats)
        rows.append(row)
        print(f"| {family} | {size}² | {row['unet_step_b2_ms']:.1f} ms | {row['taesd_ms']:.2f} ms "
              f"| +{row['taesd_every_step_pct']:.1f} % | {row['taesd_preview_every_n_steps']} "
              f"steps, +{row['taesd_paced_pct']:.1f} % | {row['linear_ms']:.3f} ms, every "
              f"{row['linear_preview_every_n_steps']} |", flush=True)
    print(json.dumps({"benchmark": "preview_cost", "budget": PREVIEW_BUDGET, "rows": rows}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
