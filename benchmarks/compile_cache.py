"""Fast mode's compile cache across app starts: first-call compile time, cold vs warm, on the CPU.

Two fresh processes share one DESKTOP_APP_HOME. Each builds a small random SD1-layout pipeline
(the fast-mode test model: 2-block UNet), applies fast mode with inductor's CPU backend
(`FastModeConfig(require_cuda=False, compile_vae=False)`) and times the first generation,
which compiles the UNet. The first process starts from an empty cache (cold); the second finds
the kernels under `paths.cache_dir()/torch_compile` (warm). The same mechanism serves CUDA, where
the cold compile is the ~1–2 min the app announces (see gpu_suite's warm-cache case).

Then three starts through the engine (`DiffusersBackend`, the same model saved as a diffusers
folder, fast mode with the same CPU config): a cold one and a warm one whose first job compiles,
and a warm one whose preload (the app's warm-up: the model loaded while the user types)
compiles ahead, so that its first job does not — the figures are the preload's seconds and
each first job's.

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


def notices_into(notices: list[str]) -> Any:
    """An `on_load` callback that keeps each notice's text, leaving out the progress ticks a
    running compile sends every second (fractions strictly between 0 and 1)."""
    def keep(update: Any) -> None:
        if not 0.0 < update.fraction < 1.0:
            notices.append(update.stage)
    return keep


def cpu_config() -> Any:
    """Fast mode on the CPU: inductor's C++ backend, UNet only."""
    from desktop_app.pipeline.backend import fast_mode

    return fast_mode.FastModeConfig(require_cuda=False, compile_vae=False)


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
    state = fast_mode.apply_fast_mode(loaded, 64, 64, 1,  # type: ignore[arg-type]
                                      on_stage or (lambda _update: None), cpu_config())
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
    pipe, state = fast_tiny_pipeline(notices_into(notices))
    first = tiny_job(pipe)
    again = tiny_job(pipe)
    print(json.dumps({"first_job_s": round(first, 2), "second_job_s": round(again, 3),
                      "compile_s": state.compile_seconds, "notices": notices}))


def engine_child(folder: Path, ahead: bool) -> None:
    """A warm start through the engine: load (as the app's warm-up does), put fast mode on with
    the CPU config, then — with `ahead` — preload again (which compiles ahead), then the first
    job; times the preload and the job."""
    from desktop_app.pipeline.api import CancelToken, GenerationRequest
    from desktop_app.pipeline.backend import fast_mode
    from desktop_app.pipeline.backend.diffusers_backend import DiffusersBackend

    notices: list[str] = []
    request = GenerationRequest(prompt="a cat", model=str(folder), steps=3, width=64, height=64,
                                seed=0, sampler="Euler", device="cpu")
    backend = DiffusersBackend(folder.parent / "images")
    backend.preload(request)
    assert backend.loaded is not None
    state = fast_mode.apply_fast_mode(backend.loaded, 64, 64, 1, None, cpu_config())
    backend.fast_mode = True
    started = time.perf_counter()
    if ahead:
        backend.preload(request, notices_into(notices))
    preload = time.perf_counter() - started
    started = time.perf_counter()
    backend.generate(request, CancelToken(), lambda _update: None, notices_into(notices))
    first = time.perf_counter() - started
    print(json.dumps({"preload_s": round(preload, 2), "first_job_s": round(first, 2),
                      "compile_s": state.compile_seconds, "notices": notices}))


def run_child(env: dict[str, str], *args: str) -> dict[str, Any]:
    out = subprocess.run([sys.executable, "-m", "benchmarks.compile_cache", *args],
                         cwd=ROOT, env=env, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def main() -> int:
    if "--child" in sys.argv:
        child()
        return 0
    if "--engine-child" in sys.argv:
        engine_child(Path(sys.argv[2]), "--ahead" in sys.argv)
        return 0
    runs = []
    with tempfile.TemporaryDirectory(prefix="compile-cache-") as home:
        env = {**os.environ, "DESKTOP_APP_HOME": home}
        for label in ("cold", "warm"):
            data = run_child(env, "--child")
            runs.append({"start": label, **data})
            print(f"{label} start: first job {data['first_job_s']} s (compile "
                  f"{list(data['compile_s'].values())}), next job {data['second_job_s']} s; "
                  f"{data['notices'][:1]}", flush=True)
        from desktop_app.pipeline.backend.tiny import make_tiny_sd15_pipeline_small_unet

        folder = Path(home) / "tiny-small-unet"
        make_tiny_sd15_pipeline_small_unet().save_pretrained(str(folder))
        engine = {}
        # The engine's UNet graph is not the bare pipeline's (other inputs): its own cold
        # start first, so that both warm starts find its kernels.
        for label, extra in (("engine cold, the job compiles", ()),
                             ("engine warm, the job compiles", ()),
                             ("engine warm, the preload compiles ahead", ("--ahead",))):
            data = run_child(env, "--engine-child", str(folder), *extra)
            engine[label] = data
            print(f"{label}: preload {data['preload_s']} s, first job {data['first_job_s']} s "
                  f"(compile {list(data['compile_s'].values())}); {data['notices'][:1]}",
                  flush=True)
    cold, warm = (next(iter(r["compile_s"].values())) for r in runs)
    _, on_job, ahead = engine.values()
    print(json.dumps({"benchmark": "compile_cache", "device": "cpu",
                      "cold_compile_s": round(cold, 1),
                      "warm_compile_s": round(warm, 1), "speedup": round(cold / warm, 2),
                      "engine_first_job_s": on_job["first_job_s"],
                      "engine_first_job_after_compile_ahead_s": ahead["first_job_s"],
                      "engine_compile_ahead_preload_s": ahead["preload_s"],
                      "load_average_1min": round(os.getloadavg()[0], 1), "runs": runs,
                      "engine_runs": engine}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
