"""Run the CPU-runnable benchmarks one after another and collect their final JSON lines.

Each benchmark runs in its own process under `nice -n 10` (the machine is shared), with the
arguments below; a missing script is reported as missing, a failing one with its exit code and
the end of its output. Prints a summary and a final JSON line: {"benchmark": "run_all",
"results": {name: <that benchmark's JSON> | {"error": ...}}, "commands": {name: command}}.

    .venv/bin/python -m benchmarks.run_all [--only startup,model_switch] [--timeout 1800]

`gpu_suite` is included: without CUDA it only says so (its numbers need a GPU session).
"""

from __future__ import annotations

import argparse
import json
import platform
import shlex
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]

# name → arguments (module benchmarks.<name>); sized to finish in minutes on 2 shared cores.
BENCHMARKS: dict[str, list[str]] = {
    "startup": ["--runs", "5"],
    "gui_stall": ["--jobs", "3"],
    "engine_overhead": [],
    "model_switch": ["--rounds", "3"],
    "demo_speed": [],
    "png_save": [],
    "first_image": ["--runs", "4"],
    "preview_cost": ["--families", "sd15", "--sizes", "256", "--repeats", "3"],
    "pipeline_attrs": [],
    "gallery_scale": ["--count", "20000"],
    "library_scan": [],
    "compile_cache": [],
    "compile_stall": [],
    "gpu_suite": ["--quick"],
}


def command(name: str) -> list[str]:
    return ["nice", "-n", "10", sys.executable, "-m", f"benchmarks.{name}", *BENCHMARKS[name]]


def last_json(text: str) -> dict[str, Any] | None:
    """The last line of `text` that parses as a JSON object."""
    for line in reversed(text.strip().splitlines()):
        line = line.strip()
        if line.startswith("{"):
            try:
                value = json.loads(line)
            except ValueError:
                continue
            if isinstance(value, dict):
                return value
    return None


def run_one(name: str, timeout: float) -> dict[str, Any]:
    if not (ROOT / "benchmarks" / f"{name}.py").exists():
        return {"error": "missing (not written yet)"}
    started = time.perf_counter()
    try:
        out = subprocess.run(command(name), cwd=ROOT, capture_output=True, text=True,
                             timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout:.0f} s"}
    seconds = round(time.perf_counter() - started, 1)
    result = last_json(out.stdout)
    if out.returncode != 0 or result is None:
        tail = (out.stdout + out.stderr).strip().splitlines()[-5:]
        return {"error": f"exit {out.returncode}", "tail": tail, "wall_s": seconds}
    return {**result, "wall_s": seconds}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--only", default="", help="comma-separated names")
    parser.add_argument("--timeout", type=float, default=1800.0)
    args = parser.parse_args(argv)
    names = [n for n in args.only.split(",") if n] or list(BENCHMARKS)
    unknown = [n for n in names if n not in BENCHMARKS]
    if unknown:
        parser.error(f"unknown benchmark(s): {', '.join(unknown)}")
    results: dict[str, Any] = {}
    for name in names:
        print(f"== {name}: {shlex.join(command(name))}", flush=True)
        results[name] = run_one(name, args.timeout)
        summary = {k: v for k, v in results[name].items() if not isinstance(v, (list, dict))}
        print(f"   {summary}", flush=True)
    print(json.dumps({"benchmark": "run_all", "machine": platform.node(),
                      "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                      "results": results,
                      "commands": {n: shlex.join(command(n)) for n in names}}))
    return 0 if all("error" not in r or "missing" in r["error"] for r in results.values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
