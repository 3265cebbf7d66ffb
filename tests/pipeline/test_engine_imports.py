"""The engine's first import: done in the warm-up, without the collector's long pauses.

Each check runs in a fresh interpreter: in the test process torch is imported long before.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]

# Warm-up as the worker does it, then first jobs on a tiny diffusers folder and a tiny single
# file (the two ways models load), then the backend dropped; prints the outcome as JSON.
SCRIPT = r"""
import gc, json, sys, weakref
from desktop_app.pipeline.api import CancelToken, GenerationRequest
from desktop_app.pipeline.engine import create_backend

folder, model, config, out = sys.argv[1:5]
torch_before = "torch" in sys.modules
backend = create_backend(out)
state = {"torch_before": torch_before, "enabled_after_warm_up": gc.isenabled(),
         "frozen": gc.get_freeze_count()}
before = set(sys.modules)
for kind in ({"model": folder}, {"model": model, "model_config": config}):
    request = GenerationRequest(prompt="a cat", steps=2, width=64, height=64, seed=5,
                                sampler="DPM++ 2M Karras", device="cpu", **kind)
    result = backend.generate(request, CancelToken(), lambda update: None)
heavy = ("torch", "diffusers", "transformers", "scipy", "sympy", "safetensors")
state["first_job_imports"] = sorted(m for m in set(sys.modules) - before
                                    if m.split(".")[0] in heavy)
state["image"] = str(result.images[0].path)
pipe = weakref.ref(backend.loaded.pipe)
del backend, result
gc.collect()
state["model_freed"] = pipe() is None
state["frozen_after_job"] = gc.get_freeze_count()
print("RESULT " + json.dumps(state))
"""


@pytest.fixture(scope="module")
def fresh_process(tiny_sd15_dir: Path, tiny_sd15_file: Path, tiny_sd15_config: Path,
                  tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    out = tmp_path_factory.mktemp("engine-imports")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT),
           "DESKTOP_APP_HOME": str(out / "home")}
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(tiny_sd15_dir), str(tiny_sd15_file),
         str(tiny_sd15_config), str(out)],
        capture_output=True, text=True, env=env, timeout=600, cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stderr
    line = next(x for x in proc.stdout.splitlines() if x.startswith("RESULT "))
    state: dict[str, Any] = json.loads(line.removeprefix("RESULT "))
    assert not state["torch_before"]  # otherwise the check below would measure nothing
    return state


def test_first_jobs_only_load_their_models_the_imports_are_done_in_the_warm_up(
        fresh_process: dict[str, Any]) -> None:
    assert fresh_process["first_job_imports"] == [], fresh_process["first_job_imports"]
    assert Path(fresh_process["image"]).is_file()


def test_the_collector_runs_again_after_the_warm_up_without_the_libraries_objects(
        fresh_process: dict[str, Any]) -> None:
    assert fresh_process["enabled_after_warm_up"]
    assert fresh_process["frozen"] > 100_000  # torch, diffusers, transformers: ~700 000


def test_a_model_loaded_after_the_warm_up_is_freed_when_the_engine_lets_go(
        fresh_process: dict[str, Any]) -> None:
    assert fresh_process["model_freed"]
    # Frozen once only (some frozen objects were since freed by their reference counts).
    assert fresh_process["frozen_after_job"] <= fresh_process["frozen"]


def _printed_by_fresh_python(code: str) -> list[str]:
    """The words `code` prints in a fresh interpreter (which must exit cleanly)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=env, timeout=600, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.split()


def test_the_collector_stays_off_when_the_caller_had_turned_it_off() -> None:
    code = ("import gc; gc.disable()\n"
            "from desktop_app.pipeline.engine import create_backend\n"
            "create_backend(None)\nprint(gc.isenabled())")
    assert _printed_by_fresh_python(code)[-1] == "False"


def test_a_failed_first_import_turns_the_collector_back_on_and_reports_the_error() -> None:
    code = ("import gc, sys\n"
            "sys.modules['torch'] = None  # a broken install: `import torch` fails\n"
            "from desktop_app.pipeline.engine import create_backend\n"
            "try:\n    create_backend(None)\nexcept ImportError as exc:\n    print('raised')\n"
            "print(gc.isenabled())")
    assert _printed_by_fresh_python(code) == ["raised", "True"]
