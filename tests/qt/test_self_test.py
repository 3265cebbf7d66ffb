"""`desktop-app --self-test`, the packaged build's smoke test, run as a real process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_self_test_makes_an_image_and_prints_one_ok_json_line(app_home: Path) -> None:
    pytest.importorskip("torch")
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen")
    out = subprocess.run([sys.executable, "-m", "desktop_app", "--self-test"], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=900)
    lines = [line for line in out.stdout.splitlines() if line.strip()]
    assert out.returncode == 0, out.stdout + out.stderr[-3000:]
    assert len(lines) == 1
    report = json.loads(lines[0])
    assert report["ok"] is True
    for key in ("window_shown_ms", "first_preview_ms", "image_ms"):
        assert report[key] > 0
    assert report["first_preview_ms"] < report["image_ms"]
    assert list((app_home / "outputs").rglob("*.png"))  # the image was really saved


def test_self_test_fails_with_exit_1_and_says_why(app_home: Path, tmp_path: Path) -> None:
    # A desktop_app.pipeline.engine that cannot start: the self-test must report, not hang.
    shim = tmp_path / "shim"
    (shim / "sitecustomize.py").parent.mkdir()
    (shim / "sitecustomize.py").write_text(
        "import desktop_app.pipeline.engine as e\n"
        "def create_backend(*a, **k):\n    raise RuntimeError('engine exploded')\n"
        "e.create_backend = create_backend\n")
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen",
               PYTHONPATH=os.pathsep.join([str(shim), str(ROOT)]))
    out = subprocess.run([sys.executable, "-m", "desktop_app", "--self-test"], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=900)
    assert out.returncode == 1
    report = json.loads(out.stdout.strip().splitlines()[-1])
    assert report["ok"] is False and "engine exploded" in report["error"]
