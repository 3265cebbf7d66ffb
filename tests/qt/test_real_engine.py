"""The window with the real worker and the real diffusers engine on a tiny random model."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from PySide6.QtCore import Qt
from pytestqt.qtbot import QtBot

from desktop_app.state.jobs import JobQueue
from desktop_app.state.parameters import ParametersState
from desktop_app.ui.main_window import MainWindow
from desktop_app.worker.controller import GenerationController

pytest.importorskip("torch")
TIMEOUT_MS = 240_000  # the first job imports torch/diffusers and loads the model on 2 cores


@pytest.fixture
def real_window(qtbot: QtBot, tiny_sd15_dir: Path) -> Iterator[MainWindow]:
    controller = GenerationController(JobQueue())  # the default factory: the real engine
    window = MainWindow(controller, ParametersState())
    qtbot.addWidget(window)
    window.show()
    window.restore_parameters({"model": str(tiny_sd15_dir), "width": 64, "height": 64,
                               "steps": 6, "seed": 321})
    yield window
    window.close()


def test_real_engine_previews_in_order_then_the_image_with_metadata(
        qtbot: QtBot, real_window: MainWindow) -> None:
    from desktop_app.gallery.metadata import read_image_metadata

    controller = real_window.controller
    steps: list[int] = []
    controller.preview_changed.connect(lambda _job, frame: steps.append(frame.step))
    real_window.prompt_editor.edit.setFocus()
    qtbot.keyClicks(real_window.prompt_editor.edit, "a tiny (red:1.2) house")
    with qtbot.waitSignal(controller.job_finished, timeout=TIMEOUT_MS) as blocker:
        qtbot.keyClick(real_window.prompt_editor.edit, Qt.Key.Key_Return,
                       Qt.KeyboardModifier.ControlModifier)
    assert steps and steps == sorted(set(steps)) and steps[-1] == 6
    result = blocker.args[1]
    assert real_window.preview.has_image()
    assert real_window.preview.caption() == "Seed 321"
    meta = read_image_metadata(Path(result.images[0].path))
    assert meta is not None and meta.prompt == "a tiny (red:1.2) house" and meta.seed == 321
    assert real_window.device_label.text() != "Device: loading engine…"


def test_real_engine_cancel_then_failure_then_success(qtbot: QtBot, real_window: MainWindow,
                                                      tmp_path: Path) -> None:
    controller = real_window.controller
    real_window.restore_parameters({"prompt": "slow", "steps": 150})
    with qtbot.waitSignal(controller.progress_changed, timeout=TIMEOUT_MS):
        real_window.generate()
    with qtbot.waitSignal(controller.job_cancelled, timeout=30_000):
        real_window.cancel()
    assert real_window.status_label.text() == "Cancelled"

    corrupt = tmp_path / "broken.safetensors"
    corrupt.write_bytes(b"\x00\x01not a safetensors file")
    model = real_window.parameters.value("model")
    real_window.restore_parameters({"model": str(corrupt), "steps": 2})
    with qtbot.waitSignal(controller.job_failed, timeout=60_000) as failed:
        real_window.generate()
    assert real_window.error_bar.isVisible() and failed.args[1].hint

    real_window.restore_parameters({"model": model, "steps": 2})
    with qtbot.waitSignal(controller.job_finished, timeout=60_000):
        real_window.generate()
    assert not real_window.error_bar.isVisible()
