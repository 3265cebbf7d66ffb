"""Take the docs' main-window screenshots: the real app generating with the bundled demo model.

    xvfb-run -a -s "-screen 0 1600x1000x24" .venv/bin/python tools/screenshot.py \
        --theme light --out docs/screenshot.png

A fresh DESKTOP_APP_HOME (temporary), the default 1360x860 window, five demo prompts at the
model's native 64x64, 25 steps, CFG 7; the Gallery tab shows them with the first one selected,
and the preview shows the last image. The window grabs itself (no X screenshot tool needed).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

PROMPTS = (
    ("a big red circle on a white background", 1),
    ("a small blue star in the top left, yellow background", 2),
    ("a big green triangle at the bottom on a purple background", 3),
    ("a big yellow square on the right, black background", 4),
    ("a big orange star in the centre on a blue background", 5),
)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--theme", choices=("light", "dark"), default="light")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="desktop-app-shot-") as home:
        os.environ["DESKTOP_APP_HOME"] = home
        return shoot(args.theme, args.out.resolve())


def wait_until(app: Any, condition: Callable[[], bool], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise SystemExit("screenshot: timed out waiting for the app")
        app.processEvents()
        time.sleep(0.02)


def shoot(theme: str, out: Path) -> int:
    from desktop_app import app as app_module

    ns = app_module.parse_args(["--theme", theme, "--no-warm-up"])
    studio = app_module.build_studio(ns, app_module.setup_logging(False))
    window, app = studio.window, studio.app
    app_module.attach_panels(window, studio.controller)
    window.resize(1360, 860)
    finished: list[object] = []
    studio.controller.job_finished.connect(lambda _id, result: finished.append(result))
    for prompt, seed in PROMPTS:
        window.restore_parameters({"prompt": prompt, "seed": seed, "steps": 25, "cfg_scale": 7.0,
                                   "width": 64, "height": 64})
        window.generate()
        count = len(finished)
        wait_until(app, lambda c=count: len(finished) > c, 120)
    window.restore_parameters({"prompt": PROMPTS[-1][0], "seed": PROMPTS[-1][1]})
    window.show_panel("Gallery")
    gallery = window.side_panel("Gallery")
    wait_until(app, lambda: gallery.model.rowCount() >= len(PROMPTS), 30)
    gallery.grid.setCurrentIndex(gallery.model.index(0, 0))
    end = time.monotonic() + 2.0  # thumbnails load off-thread
    wait_until(app, lambda: time.monotonic() > end, 5)
    out.parent.mkdir(parents=True, exist_ok=True)
    if not window.grab().save(str(out)):
        raise SystemExit(f"screenshot: could not write {out}")
    print(out)
    window.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
