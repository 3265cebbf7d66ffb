"""GUI-thread stalls while fast mode compiles: a heartbeat thread vs a compiling worker (CPU).

Fast mode compiles the UNet on the worker thread; the window must keep responding. Here the
main thread ticks every 5 ms (as the GUI's event loop would) while a worker thread imports
the engine as the app does (`create_backend`), compiles the fast-mode test UNet with
inductor's CPU backend (`FastModeConfig(require_cuda=False, compile_vae=False)`) and runs
`--jobs` more jobs. Reports the longest gaps between ticks, i.e. how long the worker held the
GIL at a stretch. The CUDA path (Triton, CUDA graphs) differs; this is the CPU stand-in.

    .venv/bin/python -m benchmarks.compile_stall [--jobs 20] [--home DIR]

`--home DIR` keeps the compile cache there (DESKTOP_APP_HOME): a second run with the same DIR
measures a compile from the cache — the re-trace a later app start does, now during the
warm-up's preload, while the user types.

Prints the figures and a final JSON line.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

TICK_S = 0.005
GOAL_MS = 50.0


def compile_and_run(jobs: int, phase: list[str], figures: dict[str, float]) -> None:
    """On the worker thread: import, compile (first job), then `jobs` more jobs; then time one
    full collection (what every later one costs, whichever thread triggers it)."""
    from benchmarks.compile_cache import fast_tiny_pipeline, tiny_job
    from desktop_app.pipeline.engine import create_backend

    create_backend(None)  # the app's first import (collector paused, then frozen)
    pipe, _state = fast_tiny_pipeline()
    phase[0] = "compile"
    tiny_job(pipe, steps=2)
    phase[0] = "after"
    for _ in range(jobs):
        tiny_job(pipe, steps=2)
    started = time.perf_counter()
    gc.collect()
    figures["full_collection_after_ms"] = round((time.perf_counter() - started) * 1000, 1)
    figures["unfrozen_objects_after"] = len(gc.get_objects())
    from desktop_app.pipeline import collector

    phase[0] = "switch-off"
    started = time.perf_counter()
    collector.collect_all()  # what switching fast mode off costs on top of dynamo's reset
    figures["collect_all_ms"] = round((time.perf_counter() - started) * 1000, 1)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=20, help="jobs after the compiling one")
    parser.add_argument("--home", type=Path, help="DESKTOP_APP_HOME to keep the compile cache "
                        "in (default: a new temporary folder, so the compile starts cold)")
    args = parser.parse_args(argv)
    home = args.home or Path(tempfile.mkdtemp(prefix="compile-stall-"))
    home.mkdir(parents=True, exist_ok=True)
    os.environ["DESKTOP_APP_HOME"] = str(home)
    phase = ["import"]
    gaps: dict[str, list[float]] = {}
    after: dict[str, float] = {}
    worker = threading.Thread(target=compile_and_run, args=(args.jobs, phase, after),
                              daemon=True)
    worker.start()
    last = time.perf_counter()
    while worker.is_alive():
        time.sleep(TICK_S)
        now = time.perf_counter()
        gaps.setdefault(phase[0], []).append(max(0.0, (now - last - TICK_S) * 1000))
        last = now
    figures = {}
    for name, values in gaps.items():
        ordered = sorted(values)
        figures[name] = {"ticks": len(values), "max_stall_ms": round(ordered[-1], 1),
                         "stalls_over_goal": sum(v > GOAL_MS for v in values),
                         "top5_ms": [round(v) for v in ordered[-5:]]}
        print(f"{name:>8}: {len(values)} ticks, longest stall {ordered[-1]:.0f} ms, "
              f"{figures[name]['stalls_over_goal']} over {GOAL_MS:.0f} ms")
    print(f"a full collection afterwards: {after.get('full_collection_after_ms')} ms "
          f"({after.get('unfrozen_objects_after')} objects not frozen); one reaching the frozen "
          f"ones too (collector.collect_all): {after.get('collect_all_ms')} ms")
    print(json.dumps({"benchmark": "compile_stall", "device": "cpu", "phases": figures, **after,
                      "load_average_1min": round(os.getloadavg()[0], 1)}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
