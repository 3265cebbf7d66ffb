"""Engine overhead: our DiffusersBackend (previews on) vs a bare diffusers pipeline call.

Both sides use the same loaded pipeline object, sampler, steps, size, CFG and seed, and both end
with a PNG on disk, so the difference is what the engine adds: A1111-style prompt encoding, CPU
noise, a fresh scheduler per call, the step callback (progress, latent→RGB preview of image 0,
cancel check), our own VAE decode, metadata and the atomic, fsynced PNG write.

    nice -n 10 .venv/bin/python -m benchmarks.engine_overhead            # tiny model, CPU
    .venv/bin/python -m benchmarks.engine_overhead --taesd               # TAESD previews
    .venv/bin/python -m benchmarks.engine_overhead --model M.safetensors --size 512 --steps 20

Without --model a tiny random SD1-layout model is built in a temp folder (no download).
The runs alternate (ours, raw, ours, raw, …) after one warm-up each. Prints the figures and a
final JSON line with `ratio` = median(ours) / median(raw) of wall time (the goal is ≤ 1.02)
and `cpu_ratio`, the same for process CPU time (steadier on a shared machine; meaningful for
CPU runs with a fixed thread count, e.g. --threads 1).
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
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

PROMPT = "a lighthouse on a cliff at dusk, dramatic sky, (oil painting:1.1)"
NEGATIVE = "blurry, low quality"


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="checkpoint or diffusers folder (default: tiny model)")
    parser.add_argument("--model-config", help="config folder for a single file")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--size", type=int, default=None, help="default 512, tiny model 128")
    parser.add_argument("--sampler", default="Euler a")
    parser.add_argument("--cfg", type=float, default=7.0)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: default)")
    parser.add_argument("--taesd", action="store_true", help="previews by a TAESD decoder of "
                        "the default architecture (random weights) instead of the linear map")
    return parser.parse_args(argv)


def _sync() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.synchronize()


def _ours(backend: Any, request: Any, shown: list[int]) -> tuple[float, float]:
    """One engine job; (wall, process CPU) seconds. Appends the number of previews to `shown`."""
    from desktop_app.pipeline.api import CancelToken

    previews = []
    started, cpu = time.perf_counter(), time.process_time()
    backend.generate(request, CancelToken(), lambda update: previews.append(update.preview))
    _sync()
    elapsed = time.perf_counter() - started, time.process_time() - cpu
    assert previews and previews[-1] is not None, "the last step always has a preview"
    shown.append(sum(p is not None for p in previews))
    return elapsed


def _raw(pipe: Any, args: argparse.Namespace, size: int, config: dict[str, Any],
         out: Path, prompt: str = PROMPT) -> tuple[float, float]:
    import torch

    from desktop_app.pipeline.backend.samplers import build_scheduler

    started, cpu = time.perf_counter(), time.process_time()
    pipe.scheduler = build_scheduler(args.sampler, config, seeds=[1])
    image = pipe(prompt, negative_prompt=NEGATIVE, num_inference_steps=args.steps,
                 guidance_scale=args.cfg, height=size, width=size,
                 generator=torch.Generator("cpu").manual_seed(1)).images[0]
    image.save(out)
    _sync()
    return time.perf_counter() - started, time.process_time() - cpu


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    import torch

    from desktop_app.pipeline.api import GenerationRequest
    from desktop_app.pipeline.backend.diffusers_backend import DiffusersBackend
    from desktop_app.pipeline.backend.samplers import quiet_known_warnings

    if args.threads:
        torch.set_num_threads(args.threads)
    work = Path(tempfile.mkdtemp(prefix="engine_overhead_"))
    os.environ.setdefault("DESKTOP_APP_HOME", str(work / "home"))
    model = args.model
    if model is None:
        from desktop_app.pipeline.backend.tiny import build_tiny_sd15_folder

        model = str(build_tiny_sd15_folder(work / "tiny"))
    size = args.size or (128 if args.model is None else 512)
    request = GenerationRequest(
        prompt=PROMPT, negative_prompt=NEGATIVE, model=model, model_config=args.model_config,
        sampler=args.sampler, steps=args.steps, cfg_scale=args.cfg, seed=1, width=size,
        height=size, device=args.device,
    )
    # Our own decoder folder: a TAESD kept in the app's data folder must not change the figures.
    from desktop_app.pipeline.backend.tiny import save_random_taesd

    taesd = save_random_taesd(work / "taesd") if args.taesd else work / "no-taesd"
    backend = DiffusersBackend(work / "ours", previews=True, taesd_folder=taesd)
    shown: list[int] = []
    import warnings

    with warnings.catch_warnings():
        quiet_known_warnings()
        _ours(backend, request, [])  # loads the model; also the warm-up
        pipe = backend.loaded.pipe
        config = dict(backend._scheduler_config)
        _raw(pipe, args, size, config, work / "raw.png")
        ours, raw = [], []
        for round_ in range(args.rounds):
            # A new prompt each round: the engine reuses the last job's embeddings for the
            # same prompts, which a bare diffusers call cannot; this measures the engine alone.
            prompt = f"{PROMPT}, take {round_}"
            ours.append(_ours(backend, request.replace(prompt=prompt), shown))
            raw.append(_raw(pipe, args, size, config, work / "raw.png", prompt))
    wall_ours, wall_raw = [t for t, _ in ours], [t for t, _ in raw]
    cpu_ours, cpu_raw = [c for _, c in ours], [c for _, c in raw]
    med_ours, med_raw = statistics.median(wall_ours), statistics.median(wall_raw)
    cpu_ratio = statistics.median(cpu_ours) / statistics.median(cpu_raw)
    device = backend.device_info().description
    print(f"model: {model}\ndevice: {device}\n{args.sampler}, {args.steps} steps, "
          f"{size}x{size}, CFG {args.cfg}, {args.rounds} alternating rounds")
    for label, wall, cpu in (("ours", wall_ours, cpu_ours), ("raw ", wall_raw, cpu_raw)):
        print(f"{label} wall (s): " + ", ".join(f"{t:.3f}" for t in wall)
              + f"  median {statistics.median(wall):.3f}")
        print(f"{label} cpu  (s): " + ", ".join(f"{t:.3f}" for t in cpu)
              + f"  median {statistics.median(cpu):.3f}")
    previewer = type(backend._previewer).__name__
    print(f"ratio ours/raw: wall {med_ours / med_raw:.4f}, process CPU {cpu_ratio:.4f} "
          f"(goal <= 1.02); previews per job by {previewer}: {shown}")
    print(json.dumps({
        "benchmark": "engine_overhead", "ratio": round(med_ours / med_raw, 4),
        "cpu_ratio": round(cpu_ratio, 4),
        "ours_median_s": round(med_ours, 4), "raw_median_s": round(med_raw, 4),
        "ours_s": [round(t, 4) for t in wall_ours], "raw_s": [round(t, 4) for t in wall_raw],
        "steps": args.steps, "size": size, "sampler": args.sampler, "device": device,
        "previewer": previewer, "previews_per_job": shown,
        "model": "tiny-random-sd15" if args.model is None else Path(model).name,
    }))
    return 0


if __name__ == "__main__":
    sys.exit(main())
