"""First image after start: Generate pressed a few seconds after launch, when the warm-up has
loaded the engine and (by default) the sidebar's model, against a warm-up of the engine only.

Each run is a fresh process (offscreen window, temporary DESKTOP_APP_HOME, the bundled demo
model, 25 steps): it starts the app's warm-up, waits `--wait-s` (a person typing a prompt),
presses Generate and times until the job's image is saved. The two kinds alternate.

    .venv/bin/python -m benchmarks.first_image [--runs 3] [--wait-s 6]

Prints each run and a final JSON line with the medians.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

KINDS = ("model", "engine")  # what the warm-up loads


def child(kind: str, wait_s: float) -> None:
    """One app start: warm up, wait, Generate; prints one JSON line."""
    os.environ["DESKTOP_APP_HOME"] = tempfile.mkdtemp(prefix="first-image-")
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from PySide6.QtCore import QEventLoop, QTimer

    from desktop_app import app

    studio = app.build_studio(app.parse_args([]), app.setup_logging(False))
    if kind == "model":
        studio.window.warm_up()  # what the app does at start
    else:
        studio.controller.warm_up()  # the engine only
    loop = QEventLoop()
    QTimer.singleShot(int(wait_s * 1000), loop.quit)
    loop.exec()
    studio.window.restore_parameters({"prompt": "a lighthouse on a cliff", "steps": 25,
                                      "seed": 1})
    ended: list[float] = []

    def finished(*_args: object) -> None:
        ended.append(time.perf_counter())
        loop.quit()

    studio.controller.job_finished.connect(finished)
    studio.controller.job_failed.connect(lambda *_args: loop.quit())
    pressed = time.perf_counter()
    studio.window.generate()
    loop.exec()
    studio.controller.shutdown()
    print(json.dumps({"kind": kind,
                      "image_ms": round((ended[0] - pressed) * 1000, 1) if ended else None}))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--wait-s", type=float, default=6.0)
    parser.add_argument("--child", choices=KINDS, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        child(args.child, args.wait_s)
        return 0
    times: dict[str, list[float]] = {kind: [] for kind in KINDS}
    for run in range(args.runs):
        for kind in KINDS if run % 2 == 0 else KINDS[::-1]:
            out = subprocess.run([sys.executable, "-m", "benchmarks.first_image", "--child", kind,
                                  "--wait-s", str(args.wait_s)], cwd=ROOT, capture_output=True,
                                 text=True, timeout=300)
            line = (out.stdout.strip().splitlines() or ["{}"])[-1]
            image_ms = json.loads(line).get("image_ms") if line.startswith("{") else None
            if image_ms is None:
                print(f"run {run} {kind}: failed\n{out.stderr[-2000:]}")
                return 1
            times[kind].append(image_ms)
            print(f"run {run}: warm-up loads the {kind}: image {image_ms:.0f} ms after Generate",
                  flush=True)
    medians = {kind: round(statistics.median(values), 1) for kind, values in times.items()}
    print(f"median: model loaded ahead {medians['model']:.0f} ms, engine only "
          f"{medians['engine']:.0f} ms")
    print(json.dumps({"benchmark": "first_image", "wait_s": args.wait_s, "runs": times,
                      "median_ms": medians}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
