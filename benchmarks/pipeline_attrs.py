"""Per-job host costs: diffusers' device/dtype properties and schedulers vs the engine's shortcuts.

`pipe._execution_device`, `model.device` and `model.dtype` walk every submodule looking for
offloading or casting hooks. In a fast-mode SD1.5 image on a GPU (0.27 s) each walk is a few
per cent of the time, so the engine asks `memory.execution_device` / `memory.weights_dtype`,
which only walk when hooks are present, and its loader gives each pipeline the same shortcut
for the `_execution_device` diffusers' `__call__` asks ("_execution_device, loaded"). Built on
the meta device from the shipped configs (no weights, no GPU needed), so the module counts are
the real architectures'.

    nice -n 10 .venv/bin/python -m benchmarks.pipeline_attrs [--family sd15|sdxl]

Prints the figures and a final JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import timeit
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def meta_pipeline(family: str) -> Any:
    import torch
    from diffusers import (
        AutoencoderKL,
        EulerDiscreteScheduler,
        StableDiffusionPipeline,
        StableDiffusionXLPipeline,
        UNet2DConditionModel,
    )
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    root = ROOT / "resources" / "configs" / family
    with torch.device("meta"):
        parts: dict[str, Any] = {
            "unet": UNet2DConditionModel.from_config(
                UNet2DConditionModel.load_config(root / "unet")),
            "vae": AutoencoderKL.from_config(AutoencoderKL.load_config(root / "vae")),
            "text_encoder": CLIPTextModel(CLIPTextConfig.from_pretrained(root / "text_encoder")),
        }
        if family == "sdxl":
            parts["text_encoder_2"] = CLIPTextModelWithProjection(
                CLIPTextConfig.from_pretrained(root / "text_encoder_2"))
    scheduler = EulerDiscreteScheduler()
    if family == "sdxl":
        return StableDiffusionXLPipeline(tokenizer=None, tokenizer_2=None, scheduler=scheduler,
                                         **parts)
    return StableDiffusionPipeline(tokenizer=None, scheduler=scheduler, safety_checker=None,
                                   feature_extractor=None, requires_safety_checker=False, **parts)


def per_call_ms(fn: Any, number: int = 50) -> float:
    return min(timeit.repeat(fn, number=number, repeat=3)) / number * 1e3


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--family", default="sd15", choices=("sd15", "sdxl"))
    args = parser.parse_args(argv)
    from desktop_app.pipeline.backend.memory import (
        execution_device,
        quick_execution_device,
        weights_dtype,
    )

    pipe = meta_pipeline(args.family)
    assert execution_device(pipe) == pipe._execution_device
    assert weights_dtype(pipe.unet) == pipe.unet.dtype
    figures = {
        "pipe._execution_device": per_call_ms(lambda: pipe._execution_device),
        "execution_device(pipe)": per_call_ms(lambda: execution_device(pipe)),
        "unet.dtype": per_call_ms(lambda: pipe.unet.dtype),
        "weights_dtype(unet)": per_call_ms(lambda: weights_dtype(pipe.unet)),
        "vae.dtype": per_call_ms(lambda: pipe.vae.dtype),
        "weights_dtype(vae)": per_call_ms(lambda: weights_dtype(pipe.vae)),
    }
    raw_answer = pipe._execution_device
    quick_execution_device(pipe)  # what the engine's loader does: diffusers' own calls skip it
    assert pipe._execution_device == raw_answer
    figures["_execution_device, loaded"] = per_call_ms(lambda: pipe._execution_device)
    modules = sum(1 for _ in pipe.unet.modules())
    print(f"{args.family}: {modules} UNet modules")
    for name, ms in figures.items():
        print(f"  {name:<24} {ms:8.3f} ms per call")
    schedulers = scheduler_builds(args.family)
    print("scheduler for a batch: built from the config vs the engine's copy")
    for name, (built, copied) in schedulers.items():
        print(f"  {name:<24} {built:8.3f} ms -> {copied:6.3f} ms")
    print(json.dumps({"benchmark": "pipeline_attrs", "family": args.family,
                      "unet_modules": modules,
                      "ms_per_call": {k: round(v, 4) for k, v in figures.items()},
                      "scheduler_ms": {k: [round(b, 3), round(c, 3)]
                                       for k, (b, c) in schedulers.items()}}))
    return 0


def scheduler_builds(family: str) -> dict[str, tuple[float, float]]:
    """Per sampler: ms to build its scheduler from the model's config, and to get one from
    `build_scheduler` (a copy of one built once)."""
    import warnings

    from desktop_app.pipeline.backend import samplers

    path = ROOT / "resources" / "configs" / family / "scheduler" / "scheduler_config.json"
    config = {k: v for k, v in json.loads(path.read_text()).items() if not k.startswith("_")}
    out = {}
    with warnings.catch_warnings():
        samplers.quiet_known_warnings()
        for name, spec in samplers.SAMPLERS.items():
            samplers.build_scheduler(name, config, [1])
            out[name] = (per_call_ms(lambda s=spec: samplers._build(s, config), number=5),
                         per_call_ms(lambda n=name: samplers.build_scheduler(n, config, [1])))
    return out


if __name__ == "__main__":
    raise SystemExit(main())
