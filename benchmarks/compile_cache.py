"""Fast mode's compile cache across app starts: first-call compile time, cold vs warm, on the CPU.

Two fresh processes share one DESKTOP_APP_HOME. Each builds a small random SD1-layout pipeline
(the fast-mode test model: 2-block UNet), applies fast mode with inductor's CPU backend
(`FastModeConfig(require_cuda=False, compile_vae=False)`) and times the first generation,
which compiles the UNet. The first process starts from an empty cache (cold); the second finds
the kernels under `paths.cache_dir()/torch_compile` (warm). The same mechanism serves CUDA, where
the cold compile is the ~1–2 min the app announces (see gpu_suite's warm-cache case).

    nice -n 10 .venv/bin/python -m benchmarks.compile_cache

Prints the figures and a final JSON line.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def fast_tiny_pipeline(on_stage: Any = None) -> tuple[Any, Any]:
    """The fast-mode test pipeline (2-block UNet) with fast mode applied on the CPU (inductor's
    C++ backend, UNet only); its first call compiles. Returns (pipe, FastModeState)."""
    from desktop_app.pipeline.backend import fast_mode
    from desktop_app.pipeline.backend.tiny import make_tiny_sd15_pipeline_small_unet

    pipe = make_tiny_sd15_pipeline_small_unet()

    class Loaded:
        pass

    loaded = Loaded()
    loaded.pipe = pipe  # type: ignore[attr-defined]
    config = fast_mode.FastModeConfig(require_cuda=False, compile_vae=False)
    state = fast_mode.apply_fast_mode(loaded, 64, 64, 1,  # type: ignore[arg-type]
                                      on_stage or (lambda _update: None), config)
    return pipe, state


def tiny_job(pipe: Any, steps: int = 3) -> float:
    """One 64×64 job on `pipe`; returns its seconds."""
    import torch

    started = time.perf_counter()
    pipe("a cat", num_inference_steps=steps, height=64, width=64, output_type="np",
         generator=torch.Generator().manual_seed(0))
    return time.perf_counter() - started


def child() -> None:
    notices: list[str] = []
    pipe, state = fast_tiny_pipeline(lambda update: notices.append(update.stage))
    first = tiny_job(pipe)
    again = tiny_job(pipe)
    print(json.dumps({"first_job_s": round(first, 2), "second_job_s": round(again, 3),
                      "compile_s": state.compile_seconds, "notices": notices}))


def main() -> int:
    if "--child" in sys.argv:
        child()
        return 0
    runs = []
    with tempfile.TemporaryDirectory(prefix="compile-cache-") as home:
        env = {**os.environ, "DESKTOP_APP_HOME": home}
        for label in ("cold", "warm"):
            out = subprocess.run([sys.executable, "-m", "benchmarks.compile_cache", "--child"],
                                 cwd=ROOT, env=env, capture_output=True, text=True, check=True)
            data = json.loads(out.stdout.strip().splitlines()[-1])
            runs.append({"start": label, **data})
            print(f"{label} start: first job {data['first_job_s']} s (compile "
                  f"{list(data['compile_s'].values())}), next job {data['second_job_s']} s; "
                  f"{data['notices'][:1]}", flush=True)
    cold, warm = (next(iter(r["compile_s"].values())) for r in runs)
    print(json.dumps({"benchmark": "compile_cache", "device": "cpu",
                      "cold_compile_s": round(cold, 1),
                      "warm_compile_s": round(warm, 1), "speedup": round(cold / warm, 2),
                      "load_average_1min": round(os.getloadavg()[0], 1), "runs": runs}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
