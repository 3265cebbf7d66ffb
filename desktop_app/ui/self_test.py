"""`desktop-app --self-test`: the packaged build's smoke test, through the real window and worker.

Opens the main window (works with QT_QPA_PLATFORM=offscreen), makes one small image with the
real engine on the default model (a tiny random model built in a temporary folder when the
bundled one is missing), checks that previews arrived in order up to the last step and that the
saved image carries its metadata, then prints ONE JSON line and returns 0 (or 1 on failure).
User data goes to a temporary DESKTOP_APP_HOME unless one is set, so nothing of the person's
queue or settings is touched. Depends on nothing under tests/.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from PySide6.QtCore import QEventLoop, QTimer

log = logging.getLogger(__name__)

PROMPT = "a lighthouse on a cliff at dusk, (oil painting:1.2)"
STEPS = 4
TIMEOUT_S = 600.0


def _default_model(workdir: Path) -> tuple[str | None, int]:
    """The engine's default model, or a tiny random one when it is missing: (model, size)."""
    from desktop_app.pipeline.backend.loading import default_model_path

    path = default_model_path()
    if Path(path).exists():
        return None, 0  # None = the bundled default; 0 = the panel's size
    log.warning("Default model %s is missing; building a tiny random model", path)
    from desktop_app.pipeline.backend.tiny import build_tiny_sd15_folder

    return str(build_tiny_sd15_folder(workdir / "tiny-model")), 64


def _wait(controller: Any, job_id: str, timeout_s: float) -> tuple[str, Any]:
    """Run the event loop until job `job_id` ends; returns (outcome, payload)."""
    loop = QEventLoop()
    outcome: list[tuple[str, Any]] = []

    def done(kind: str, job: str, payload: Any = None) -> None:
        if job == job_id and not outcome:
            outcome.append((kind, payload))
            loop.quit()

    controller.job_finished.connect(lambda job, result: done("finished", job, result))
    controller.job_failed.connect(lambda job, error: done("failed", job, error))
    controller.job_cancelled.connect(lambda job: done("cancelled", job))
    QTimer.singleShot(int(timeout_s * 1000), loop.quit)
    loop.exec()
    return outcome[0] if outcome else ("timeout", None)


def _check(studio: Any, started: float) -> dict[str, Any]:
    window, controller = studio.window, studio.controller
    workdir = Path(tempfile.mkdtemp(prefix="desktop-app-selftest-"))
    model, size = _default_model(workdir)
    frames: list[tuple[int, int, float]] = []
    controller.preview_changed.connect(lambda _job, f: frames.append(
        (f.batch_index, f.step, time.perf_counter())))
    params: dict[str, Any] = {"prompt": PROMPT, "negative_prompt": "blurry", "steps": STEPS,
                              "seed": 1234, "batch_count": 1, "batch_size": 1, "model": model}
    if size:
        params.update(width=size, height=size)
    window.restore_parameters(params)
    submitted = time.perf_counter()
    job_id = window.generate()
    if job_id is None:
        raise RuntimeError(f"the window refused the request: {window.error_bar.text()}")
    kind, payload = _wait(controller, job_id, TIMEOUT_S)
    if kind != "finished":
        raise RuntimeError(f"generation {kind}: {payload}")
    image_ms = (time.perf_counter() - submitted) * 1000
    steps = [(b, s) for b, s, _ in frames]
    if not steps or steps != sorted(set(steps)) or steps[-1] != (0, STEPS):
        raise RuntimeError(f"previews out of order or incomplete: {steps}")
    _check_metadata(payload)
    if not window.preview.has_image():
        raise RuntimeError("the final image is not shown in the preview pane")
    return {"ok": True, "window_shown_ms": round(studio.window_shown_ms, 1),
            "first_preview_ms": round((frames[0][2] - submitted) * 1000, 1),
            "image_ms": round(image_ms, 1), "previews": len(frames),
            "model": "default" if model is None else "tiny-random",
            "device": getattr(controller.device, "description", "")}


def _check_metadata(result: Any) -> None:
    from desktop_app.gallery.metadata import read_image_metadata

    path = Path(result.images[0].path)
    meta = read_image_metadata(path)
    if meta is None:
        raise RuntimeError(f"{path} carries no metadata")
    if meta.prompt != PROMPT or meta.seed != 1234 or meta.steps != STEPS:
        raise RuntimeError(f"metadata does not match the request: {meta}")


def run_self_test(build_studio: Callable[[], Any]) -> int:
    """Run the self-test; prints one JSON line on stdout and returns the exit code."""
    if not os.environ.get("DESKTOP_APP_HOME"):
        os.environ["DESKTOP_APP_HOME"] = tempfile.mkdtemp(prefix="desktop-app-selftest-home-")
    started = time.perf_counter()
    studio = None
    try:
        studio = build_studio()
        report = _check(studio, started)
        code = 0
    except Exception as exc:
        log.exception("Self-test failed")
        report = {"ok": False, "error": f"{type(exc).__name__}: {exc}",
                  "trace": traceback.format_exc(limit=3)}
        code = 1
    finally:
        if studio is not None:
            studio.window.close()
    print(json.dumps(report), flush=True)
    sys.stdout.flush()
    return code
