"""What survives a restart or a crash: the job queue, parameters, window layout."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from pytestqt.qtbot import QtBot

from desktop_app.errors import ErrorKind
from desktop_app.pipeline.api import GenerationRequest
from desktop_app.settings import Settings, load_settings, save_settings, settings_path
from desktop_app.state.jobs import JobQueue, queue_path
from desktop_app.state.parameters import ParametersState
from desktop_app.ui.main_window import MainWindow
from desktop_app.worker.controller import GenerationController
from tests.qt.fake_backend import FakeBackend

ROOT = Path(__file__).resolve().parents[2]

# A real app process: three jobs queued through the window, the first one stuck mid-run.
CHILD = textwrap.dedent("""
    import sys, threading
    from PySide6.QtCore import QTimer
    from PySide6.QtWidgets import QApplication
    app = QApplication([])
    from desktop_app.pipeline.api import TokenCount
    from desktop_app.state.jobs import JobQueue
    from desktop_app.state.parameters import ParametersState
    from desktop_app.ui.main_window import MainWindow
    from desktop_app.worker.controller import GenerationController
    from tests.qt.fake_backend import FakeBackend

    backend = FakeBackend(gate=threading.Event())
    controller = GenerationController(JobQueue(), lambda: backend)
    window = MainWindow(controller, ParametersState(),
                        token_counter=lambda p: TokenCount(len(p.split()), 1))
    window.show()
    for prompt in ("one", "two", "three"):
        window.parameters.set_value("prompt", prompt)
        window.parameters.set_value("steps", 5)
        window.generate()

    def report():
        if backend.requests:  # the first job is inside the backend now
            print("ready", flush=True)
        else:
            QTimer.singleShot(20, report)

    report()
    app.exec()
""")


def test_pending_jobs_survive_sigkill_and_come_back_paused(qtbot: QtBot, app_home: Path) -> None:
    with subprocess.Popen([sys.executable, "-c", CHILD], cwd=ROOT, env=dict(os.environ),
                          stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True) as child:
        try:
            assert child.stdout is not None
            assert child.stdout.readline().strip() == "ready"
        finally:
            child.send_signal(signal.SIGKILL)
            child.wait(timeout=30)
    assert child.returncode == -signal.SIGKILL

    backend = FakeBackend()
    queue = JobQueue()
    assert queue.restore() == []
    controller = GenerationController(queue, lambda: backend)
    window = MainWindow(controller, ParametersState())
    qtbot.addWidget(window)
    try:
        assert [job.request.prompt for job in queue.pending] == ["one", "two", "three"]
        assert queue.paused and window.queue_view.pause_button.text() == "Resume"
        assert window.queue_view.list.count() == 3 and backend.requests == []
        finished: list[str] = []
        controller.job_finished.connect(lambda _j, result: finished.append(result.request.prompt))
        queue.set_paused(False)
        qtbot.waitUntil(lambda: len(finished) == 3, timeout=10_000)
        assert finished == ["one", "two", "three"]
        assert json.loads(queue_path().read_text())["jobs"] == []
    finally:
        window.close()


def test_a_corrupt_queue_file_is_kept_aside_and_reported(qtbot: QtBot) -> None:
    queue_path().write_text("{not json", encoding="utf-8")
    errors = JobQueue().restore()
    assert len(errors) == 1 and errors[0].kind is ErrorKind.corrupt_file
    assert queue_path().with_name("queue.json.bad").read_text() == "{not json"


def test_a_corrupt_queue_file_that_cannot_be_moved_is_reported_where_it_is(
        qtbot: QtBot, monkeypatch: pytest.MonkeyPatch) -> None:
    import desktop_app.fileio as fileio_module

    def refuse(path: Path, tag: str) -> Path:
        raise PermissionError(13, "Read-only file system", str(path))

    monkeypatch.setattr(fileio_module, "keep_aside", refuse)
    queue_path().write_text("{not json", encoding="utf-8")
    errors = JobQueue().restore()
    assert len(errors) == 1 and errors[0].kind is ErrorKind.corrupt_file
    assert str(queue_path()) in errors[0].hint
    assert queue_path().read_text() == "{not json"


def test_one_bad_job_does_not_lose_the_others(qtbot: QtBot) -> None:
    good = GenerationRequest("kept", steps=3).to_dict()
    queue_path().write_text(json.dumps({"version": 1, "jobs": [
        {"id": "a", "request": good}, {"id": "b", "request": {**good, "width": 13}}]}))
    queue = JobQueue()
    errors = queue.restore()
    assert [j.request.prompt for j in queue.pending] == ["kept"] and len(errors) == 1


def test_parameters_layout_and_geometry_are_restored(qtbot: QtBot, controller, job_queue,
                                                     fake_token_counter) -> None:
    first = MainWindow(controller, ParametersState(), load_settings(),
                       token_counter=fake_token_counter)
    qtbot.addWidget(first)
    first.show()
    first.restore_parameters({"prompt": "remember me", "steps": 31, "cfg_scale": 6.5,
                              "width": 640, "seed": 9})
    first.resize(first.minimumSizeHint().width(), 580)  # fits the 800 px offscreen screen best
    first.main_splitter.setSizes([300, 100, 290])
    sizes = first.main_splitter.sizes()
    first.save_settings()

    settings = load_settings()
    parameters = ParametersState()
    parameters.restore_parameters(settings.parameters)
    second = MainWindow(GenerationController(JobQueue(), lambda: FakeBackend()), parameters,
                        settings, token_counter=fake_token_counter)
    qtbot.addWidget(second)
    second.show()
    try:
        assert second.prompt_editor.text() == "remember me"
        assert second.panel.steps_spin.value() == 31 and second.panel.seed_edit.text() == "9"
        assert second.parameters.build_request().width == 640
        # The offscreen screen is 800 px wide, narrower than the window's minimum width, so
        # only the height can show that the geometry came back.
        assert second.size().height() == 580 and settings.window_geometry
        # The restored window may be clamped to the small offscreen screen; the centre column
        # takes the slack, the right column keeps its restored width (the default is 330).
        assert second.main_splitter.sizes()[2] == sizes[2] != 330
    finally:
        second.close()


def test_settings_are_written_atomically_and_a_corrupt_file_is_kept(tmp_path: Path) -> None:
    save_settings(Settings(parameters={"steps": 5}, theme="dark"))
    assert load_settings().parameters == {"steps": 5} and load_settings().theme == "dark"
    assert [p.name for p in settings_path().parent.iterdir()] == ["settings.json"]
    settings_path().write_text("{half", encoding="utf-8")
    assert load_settings() == Settings()
    assert settings_path().with_name("settings.json.bad").read_text() == "{half"


def test_a_corrupt_settings_file_that_cannot_be_moved_still_gives_defaults(
        monkeypatch: pytest.MonkeyPatch) -> None:
    import desktop_app.fileio as fileio_module

    def refuse(path: Path, tag: str) -> Path:
        raise PermissionError(13, "Read-only file system", str(path))

    monkeypatch.setattr(fileio_module, "keep_aside", refuse)
    settings_path().write_text("{half", encoding="utf-8")
    assert load_settings() == Settings()
    assert settings_path().read_text() == "{half"


def test_settings_values_of_the_wrong_type_fall_back_to_defaults() -> None:
    settings_path().write_text(json.dumps({"version": 1, "theme": 3, "parameters": [],
                                           "side_tab": "Gallery", "future_key": 1}))
    settings = load_settings()
    assert settings.theme == "system" and settings.parameters == {}
    assert settings.side_tab == "Gallery"


@pytest.mark.parametrize("module", ["torch", "diffusers", "transformers"])
def test_importing_the_app_imports_no_heavy_module(module: str) -> None:
    code = f"import sys, desktop_app.app; sys.exit({module!r} in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], cwd=ROOT).returncode == 0


def test_the_window_is_shown_before_the_engine_is_imported(app_home: Path) -> None:
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen")
    out = subprocess.run([sys.executable, "-m", "desktop_app", "--quit-after-show"], cwd=ROOT,
                         env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout.strip().splitlines()[-1])
    assert report["ok"] and report["heavy_modules_at_show"] == []
    assert report["window_shown_ms"] > 0
    assert (app_home / "logs" / "desktop-app.log").read_text().count("Window shown") == 1


def test_unexpected_exceptions_are_logged_and_point_to_the_log(
        app_home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import logging

    from desktop_app import app

    log_file = app.setup_logging()
    previous = sys.excepthook
    try:
        app.install_excepthook(log_file)
        try:
            raise ValueError("boom in a slot")
        except ValueError as exc:
            sys.excepthook(type(exc), exc, exc.__traceback__)
    finally:
        sys.excepthook = previous
        for handler in list(logging.getLogger().handlers):
            if getattr(handler, "baseFilename", None) == str(log_file):
                logging.getLogger().removeHandler(handler)
                handler.close()
    assert str(log_file) in capsys.readouterr().err
    text = log_file.read_text()
    assert "Unhandled exception" in text and "boom in a slot" in text
