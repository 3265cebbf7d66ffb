"""Model switch benchmark: cold and warm switches through the engine's model cache.

Two models (default: two tiny random SD1-layout single files written for the run; or
`--models A B`, e.g. the demo model and another checkpoint) are requested alternately through
`ModelSwitcher.ensure` — the exact call `DiffusersBackend` makes at the start of every job:
* `first` — the very first load of each model (reads and hashes the file, converts/caches);
* `cold` — a fresh cache (as after eviction or an app restart) loads the model again;
* `warm` — the model is in the LRU cache: switching back reuses the loaded pipeline.
Then one 1-step job per model through `DiffusersBackend.generate` shows the end-to-end switch.

    nice -n 10 .venv/bin/python -m benchmarks.model_switch [--rounds 5] [--models A B]

Runs on the CPU (device auto). Prints the figures and a final JSON line.
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


_CONFIGS: dict[str, str] = {}  # tiny single files need their config folder (model_config)


def _request(model: Path, steps: int = 1) -> Any:
    from desktop_app.pipeline.api import GenerationRequest

    return GenerationRequest(prompt="a lighthouse at dusk", model=str(model), steps=steps,
                             width=64, height=64, seed=1, sampler="Euler",
                             model_config=_CONFIGS.get(str(model)))


def _timed_ensure(switcher: Any, model: Path) -> tuple[float, bool]:
    started = time.perf_counter()
    active = switcher.ensure(_request(model))
    return time.perf_counter() - started, bool(active.cache_hit)


def measure(models: list[Path], rounds: int) -> dict[str, Any]:
    from desktop_app.pipeline.backend.model_cache import ModelSwitcher

    switcher = ModelSwitcher(previews=False)
    first = [_timed_ensure(switcher, m)[0] for m in models]
    warm: list[float] = []
    for _ in range(rounds):
        for model in models:
            seconds, hit = _timed_ensure(switcher, model)
            if not hit:
                raise RuntimeError("expected a cache hit: is the cache budget too small?")
            warm.append(seconds)
    cold: list[float] = []
    for _ in range(rounds):
        for model in models:
            seconds, hit = _timed_ensure(ModelSwitcher(previews=False), model)
            assert not hit
            cold.append(seconds)
    return {"first_s": [round(s, 3) for s in first],
            "cold_median_s": round(statistics.median(cold), 3),
            "warm_median_s": round(statistics.median(warm), 4),
            "cold_s": [round(s, 3) for s in cold], "warm_s": [round(s, 4) for s in warm]}


def end_to_end(models: list[Path], out: Path) -> dict[str, float]:
    """1-step 64² jobs through the backend: A, B (cold), A, B (warm)."""
    from desktop_app.pipeline.api import CancelToken
    from desktop_app.pipeline.backend.diffusers_backend import DiffusersBackend

    backend = DiffusersBackend(out, previews=True)
    times: list[float] = []
    for model in models + models:
        started = time.perf_counter()
        backend.generate(_request(model), CancelToken(), lambda _update: None)
        times.append(time.perf_counter() - started)
    half = len(models)
    return {"job_cold_median_s": round(statistics.median(times[:half]), 3),
            "job_warm_median_s": round(statistics.median(times[half:]), 3)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--models", type=Path, nargs=2, default=None)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="model-switch-") as tmp_name:
        tmp = Path(tmp_name)
        os.environ["DESKTOP_APP_HOME"] = str(tmp / "home")
        models = args.models
        if models is None:
            from tests.fixtures.tiny_models import build_tiny_sd15

            tiny = [build_tiny_sd15(tmp / f"m{i}", seed=i) for i in range(2)]
            _CONFIGS.update({str(t.file): str(t.config) for t in tiny})
            models = [t.file for t in tiny]
        import torch  # imported before timing: the switch, not the import, is measured

        torch.set_num_threads(max(1, torch.get_num_threads()))
        figures = measure(list(models), args.rounds)
        figures.update(end_to_end(list(models), tmp / "out"))
    print(f"model switch ({', '.join(Path(m).name for m in models)}):")
    print(f"  first load      {figures['first_s']} s")
    print(f"  cold switch     {figures['cold_median_s']:.3f} s "
          f"(median of {len(figures['cold_s'])})")
    print(f"  warm switch     {figures['warm_median_s'] * 1000:.1f} ms "
          f"(median of {len(figures['warm_s'])})")
    print(f"  1-step job      cold {figures['job_cold_median_s']:.3f} s, "
          f"warm {figures['job_warm_median_s']:.3f} s")
    print(json.dumps({"benchmark": "model_switch", "models": [str(m) for m in models],
                      **figures}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
