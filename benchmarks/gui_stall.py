"""GUI responsiveness benchmark: the longest GUI-thread stall while the real engine generates.

Opens the real main window with the real worker and engine, then runs a heartbeat QTimer
(5 ms) on the GUI thread and records the largest gap between beats in each phase:
`warm_up` (torch/diffusers import, backend creation and the sidebar's model loaded ahead in
the worker, as the app does at start), `first_job` and `generate` (jobs with per-step previews
on the loaded model). A stall is the gap minus the timer interval.
Goal: the longest stall while generating ≤ 50 ms.

    python benchmarks/gui_stall.py [--jobs 3] [--steps 20] [--model auto|tiny|default]

`auto` uses the bundled demo model when present, else a tiny random model built for the run.
Prints figures and a final JSON line.
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
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("DESKTOP_APP_HOME", tempfile.mkdtemp(prefix="gui-stall-"))

from PySide6.QtCore import QElapsedTimer, QEventLoop, QObject, QTimer, Slot  # noqa: E402
from PySide6.QtWidgets import QApplication  # noqa: E402

GOAL_MS = 50.0
BEAT_MS = 5


class Heartbeat(QObject):
    """Records gaps between timer ticks on the GUI thread, per named phase."""

    def __init__(self, explain_ms: float | None = None) -> None:
        super().__init__()
        self.explain_ms = explain_ms
        self.gaps: dict[str, list[float]] = {}
        self.phase = "idle"
        self._clock = QElapsedTimer()
        self._timer = QTimer(self)
        self._timer.setInterval(BEAT_MS)
        self._timer.timeout.connect(self._on_timer_timeout)

    def start(self) -> None:
        self._clock.start()
        self._timer.start()

    @Slot()
    def _on_timer_timeout(self) -> None:
        gap = self._clock.nsecsElapsed() / 1e6
        self._clock.restart()
        stall = max(0.0, gap - BEAT_MS)
        self.gaps.setdefault(self.phase, []).append(stall)
        if self.explain_ms is not None and stall > self.explain_ms:
            explain(stall, self.phase)


def explain(stall: float, phase: str) -> None:
    """Print where the generation thread is right after a long stall (a likely culprit)."""
    import threading
    import traceback

    names = {t.ident: t.name for t in threading.enumerate()}
    for ident, frame in sys._current_frames().items():
        if ident == threading.get_ident():
            continue
        stack = "".join(traceback.format_stack(frame, limit=6))
        print(f"--- stall {stall:.0f} ms in {phase}; thread {names.get(ident, ident)}"
              f"{importing(frame)}:\n{stack}")


def importing(frame: Any) -> str:
    """", importing NAME" for the innermost module a thread is importing, else ""."""
    while frame is not None:
        if frame.f_code.co_name == "_find_and_load" and "name" in frame.f_locals:
            return f", importing {frame.f_locals['name']}"
        frame = frame.f_back
    return ""


def wait_for(signal: object, timeout_s: float = 900) -> list[object]:
    loop = QEventLoop()
    got: list[object] = []

    def done(*args: object) -> None:
        got.extend(args)
        loop.quit()

    signal.connect(done)  # type: ignore[attr-defined]
    QTimer.singleShot(int(timeout_s * 1000), loop.quit)
    loop.exec()
    signal.disconnect(done)  # type: ignore[attr-defined]
    return got


def choose_model(kind: str) -> tuple[str | None, int]:
    from desktop_app import paths

    def default_model_path() -> Path:  # as pipeline.backend.loading, without importing torch
        return paths.resource("models", "demo")

    if kind in ("auto", "default") and default_model_path().exists():
        return None, 0
    if kind == "default":
        raise SystemExit(f"default model missing: {default_model_path()}")
    folder = Path(tempfile.mkdtemp(prefix="gui-stall-model-")) / "tiny"
    # Built in another process: this one must not import torch before the warm-up is measured.
    code = ("import sys; from pathlib import Path; from desktop_app.pipeline.backend.tiny import "
            "build_tiny_sd15_folder as b; b(Path(sys.argv[1]))")
    subprocess.run([sys.executable, "-c", code, str(folder)], cwd=ROOT, check=True,
                   capture_output=True)
    return str(folder), 64


def summary(gaps: list[float]) -> dict[str, float]:
    ordered = sorted(gaps)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] if ordered else 0.0
    return {"beats": len(gaps), "max_stall_ms": round(max(gaps, default=0.0), 1),
            "p99_stall_ms": round(p99, 1), "stalls_over_goal": sum(g > GOAL_MS for g in gaps),
            "median_stall_ms": round(statistics.median(gaps), 2) if gaps else 0.0}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=4)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--model", choices=("auto", "tiny", "default"), default="auto")
    parser.add_argument("--explain-ms", type=float, default=None,
                        help="print the worker's stack after stalls longer than this")
    ns = parser.parse_args()
    app = QApplication.instance() or QApplication([])
    from desktop_app.state.jobs import JobQueue
    from desktop_app.state.parameters import ParametersState
    from desktop_app.ui.main_window import MainWindow
    from desktop_app.worker.controller import GenerationController

    model, size = choose_model(ns.model)
    controller = GenerationController(JobQueue())
    window = MainWindow(controller, ParametersState())
    window.show()
    params: dict[str, object] = {"prompt": "a lighthouse at dusk, (oil painting:1.2)",
                                 "steps": ns.steps, "model": model}
    if size:
        params.update(width=size, height=size)
    window.restore_parameters(params)
    beat = Heartbeat(ns.explain_ms)
    beat.start()
    beat.phase = "warm_up"
    started = time.perf_counter()
    window.warm_up()  # the engine, then the sidebar's model (what the app does at start)
    if not wait_for(controller.model_preloaded):
        raise SystemExit("the warm-up did not load the model")
    warm_s = time.perf_counter() - started
    shown: list[int] = []
    controller.preview_changed.connect(lambda _job, frame: shown.append(frame.step))
    for index in range(ns.jobs):
        # The model is loaded; the first job still pays first-call costs, if any.
        beat.phase = "first_job" if index == 0 else "generate"
        window.generate()
        if not wait_for(controller.job_finished):
            raise SystemExit("generation did not finish")
    previews = len(shown)
    beat.phase = "done"
    report = {name: summary(gaps) for name, gaps in beat.gaps.items() if name != "done"}
    for name, figures in report.items():
        print(f"{name:>10}: {figures}")
    # The goal is for generating on a loaded model; loading (warm-up, first job) is reported.
    worst = max(beat.gaps.get("generate", []), default=0.0)
    loading = max(beat.gaps.get("first_job", []) + beat.gaps.get("warm_up", []), default=0.0)
    print(f"warm-up {warm_s:.1f} s; previews shown {previews}; longest stall while generating "
          f"{worst:.1f} ms (goal ≤ {GOAL_MS:.0f} ms); while loading {loading:.1f} ms; "
          f"load average {os.getloadavg()[0]:.1f}")
    window.close()
    print(json.dumps({"benchmark": "gui_stall", "model": "default" if model is None else "tiny",
                      "jobs": ns.jobs, "steps": ns.steps, "phases": report,
                      "max_stall_generating_ms": round(worst, 1),
                      "max_stall_loading_ms": round(loading, 1), "goal_ms": GOAL_MS,
                      "meets_goal": worst <= GOAL_MS,
                      "load_average_1min": round(os.getloadavg()[0], 2)}))
    del app
    return 0


if __name__ == "__main__":
    sys.exit(main())
