"""The main window driven like a person would, with the scripted backend."""

from __future__ import annotations

import threading

from PySide6.QtCore import Qt
from pytestqt.qtbot import QtBot

from desktop_app.ui.main_window import MainWindow
from tests.qt.fake_backend import FakeBackend


def _type_prompt(qtbot: QtBot, window: MainWindow, text: str) -> None:
    editor = window.prompt_editor.edit
    editor.setFocus()
    qtbot.keyClicks(editor, text)


def _press_generate(qtbot: QtBot, window: MainWindow) -> None:
    qtbot.keyClick(window.prompt_editor.edit, Qt.Key.Key_Return,
                   Qt.KeyboardModifier.ControlModifier)


def test_ctrl_enter_generates_with_previews_in_order_and_shows_the_image(
        qtbot: QtBot, window: MainWindow, fake_backend: FakeBackend) -> None:
    fake_backend.step_seconds = 0.005
    window.parameters.set_value("steps", 12)
    window.parameters.set_value("width", 64)
    window.parameters.set_value("height", 64)
    captions: list[str] = []
    window.controller.preview_changed.connect(lambda _j, f: captions.append(
        window.preview.caption()))
    steps: list[int] = []
    window.controller.preview_changed.connect(lambda _j, frame: steps.append(frame.step))
    _type_prompt(qtbot, window, "a red fox")
    with qtbot.waitSignal(window.controller.job_finished, timeout=10_000) as blocker:
        _press_generate(qtbot, window)
    assert fake_backend.requests[-1].prompt == "a red fox"
    assert steps == sorted(set(steps)) and steps[-1] == 12
    assert captions[-1] == "Step 12/12"
    result = blocker.args[1]
    assert window.preview.has_image()
    assert window.preview.caption() == f"Seed {result.images[0].seed}"
    assert window.recent.paths() == [result.images[0].path]
    assert window.progress_bar.text().startswith("Done")


def test_esc_cancels_a_running_job_shows_cancelled_and_the_next_run_works(
        qtbot: QtBot, window: MainWindow, fake_backend: FakeBackend) -> None:
    fake_backend.step_seconds = 0.05
    window.parameters.set_value("steps", 100)
    _type_prompt(qtbot, window, "slow")
    with qtbot.waitSignal(window.controller.progress_changed, timeout=10_000):
        _press_generate(qtbot, window)
    assert window.cancel_action.isEnabled()
    with qtbot.waitSignal(window.controller.job_cancelled, timeout=5_000):
        qtbot.keyClick(window.prompt_editor.edit, Qt.Key.Key_Escape)
    assert window.status_label.text() == "Cancelled"
    assert window.progress_bar.text() == "Cancelled"
    assert not window.cancel_action.isEnabled()
    fake_backend.step_seconds = 0.0
    window.parameters.set_value("steps", 3)
    with qtbot.waitSignal(window.controller.job_finished, timeout=10_000):
        _press_generate(qtbot, window)
    assert window.preview.has_image()


def test_cancel_during_a_compile_says_it_waits_for_the_compile(
        qtbot: QtBot, window: MainWindow, fake_backend: FakeBackend) -> None:
    """Fast mode's compile cannot be interrupted: the window says the cancel comes after it;
    once steps run again, a cancel is the ordinary one."""
    from desktop_app.pipeline.api import LoadUpdate

    compiling = "Compiling UNet for 64×64 (first time ~1–2 min)"
    fake_backend.load_updates = [LoadUpdate(compiling, 0.0, holds_cancel=True),
                                 LoadUpdate(f"{compiling}: 1 s", 0.01, holds_cancel=True)]
    fake_backend.gate = threading.Event()  # the "compile" holds the job at its first step
    window.parameters.set_value("steps", 3)
    _type_prompt(qtbot, window, "compiles")
    with qtbot.waitSignal(window.controller.load_progressed, timeout=10_000,
                          check_params_cb=lambda _job, update: update.stage.endswith("1 s")):
        _press_generate(qtbot, window)
    assert window.progress_bar.text() == f"{compiling}: 1 s…"
    with qtbot.waitSignal(window.controller.job_cancelled, timeout=5_000):
        window.cancel()
        assert window.status_label.text().startswith("Cancelling once the compile ends")
        fake_backend.gate.set()
    fake_backend.gate = None
    fake_backend.load_updates = [LoadUpdate("Compiled UNet for 64×64 in 60 s", 1.0)]
    fake_backend.step_seconds = 0.05
    window.parameters.set_value("steps", 100)
    with qtbot.waitSignal(window.controller.progress_changed, timeout=10_000):
        _press_generate(qtbot, window)
    with qtbot.waitSignal(window.controller.job_cancelled, timeout=5_000):
        window.cancel()
        assert window.status_label.text() == "Cancelling…"

def test_failure_at_step_3_shows_an_inline_error_and_the_next_run_works(
        qtbot: QtBot, window: MainWindow, fake_backend: FakeBackend) -> None:
    fake_backend.fail_at_step = 3
    window.parameters.set_value("steps", 8)
    _type_prompt(qtbot, window, "fails")
    with qtbot.waitSignal(window.controller.job_failed, timeout=10_000):
        _press_generate(qtbot, window)
    assert window.error_bar.isVisible()
    assert "scripted failure at step 3" in window.error_bar.text()
    assert "log file" in window.error_bar.text()  # the hint
    fake_backend.fail_at_step = None
    with qtbot.waitSignal(window.controller.job_finished, timeout=10_000):
        _press_generate(qtbot, window)
    assert not window.error_bar.isVisible() and window.preview.has_image()


def test_out_of_memory_shows_the_memory_hint_inline(
        qtbot: QtBot, window: MainWindow, fake_backend: FakeBackend) -> None:
    fake_backend.oom_at_step = 2
    _type_prompt(qtbot, window, "huge")
    with qtbot.waitSignal(window.controller.job_failed, timeout=10_000):
        _press_generate(qtbot, window)
    assert "ran out of memory" in window.error_bar.text()
    assert "smaller size" in window.error_bar.text()


def test_bad_parameters_are_shown_inline_and_nothing_is_queued(
        qtbot: QtBot, window: MainWindow) -> None:
    window.parameters.set_value("width", 516)  # not a multiple of 8
    _type_prompt(qtbot, window, "x")
    _press_generate(qtbot, window)
    assert window.error_bar.isVisible() and "512 or 520" in window.error_bar.text()
    assert window.controller.queue.running is None and not window.controller.queue.pending


def test_generating_while_busy_queues_and_the_queue_view_lists_it(
        qtbot: QtBot, window: MainWindow, fake_backend: FakeBackend) -> None:
    gate = threading.Event()
    fake_backend.gate = gate
    window.parameters.set_value("steps", 2)
    _type_prompt(qtbot, window, "first")
    _press_generate(qtbot, window)
    window.parameters.set_value("prompt", "second")
    _press_generate(qtbot, window)
    window.parameters.set_value("prompt", "third")
    _press_generate(qtbot, window)
    view = window.queue_view
    assert view.list.count() == 3  # running + 2 pending
    assert "Running" in view.list.item(0).text() and "first" in view.list.item(0).text()
    view.list.setCurrentRow(2)
    qtbot.keyClick(view.list, Qt.Key.Key_Up, Qt.KeyboardModifier.AltModifier)
    assert [j.request.prompt for j in window.controller.queue.pending] == ["third", "second"]
    view.list.setCurrentRow(2)
    qtbot.keyClick(view.list, Qt.Key.Key_Delete)
    assert [j.request.prompt for j in window.controller.queue.pending] == ["third"]
    finished: list[str] = []
    window.controller.job_finished.connect(lambda _j, r: finished.append(r.request.prompt))
    gate.set()
    qtbot.waitUntil(lambda: finished == ["first", "third"], timeout=10_000)
    qtbot.waitUntil(lambda: window.queue_view.empty_label.isVisible(), timeout=5_000)


def test_pause_button_holds_queued_jobs_until_resumed(
        qtbot: QtBot, window: MainWindow, fake_backend: FakeBackend) -> None:
    qtbot.mouseClick(window.queue_view.pause_button, Qt.MouseButton.LeftButton)
    assert window.controller.queue.paused and window.queue_view.pause_button.text() == "Resume"
    _type_prompt(qtbot, window, "waits")
    _press_generate(qtbot, window)
    assert window.controller.queue.running is None and len(window.controller.queue.pending) == 1
    with qtbot.waitSignal(window.controller.job_finished, timeout=10_000):
        qtbot.mouseClick(window.queue_view.pause_button, Qt.MouseButton.LeftButton)


def test_reuse_last_seed_puts_the_finished_images_seed_in_the_field(
        qtbot: QtBot, window: MainWindow) -> None:
    assert not window.panel.reuse_seed_button.isEnabled()
    _type_prompt(qtbot, window, "seeded")
    with qtbot.waitSignal(window.controller.job_finished, timeout=10_000) as blocker:
        _press_generate(qtbot, window)
    seed = blocker.args[1].images[0].seed
    qtbot.mouseClick(window.panel.reuse_seed_button, Qt.MouseButton.LeftButton)
    assert window.panel.seed_edit.text() == str(seed)
    assert window.parameters.build_request().seed == seed
    qtbot.mouseClick(window.panel.random_seed_button, Qt.MouseButton.LeftButton)
    assert window.panel.seed_edit.text() == "" and window.parameters.build_request().seed == -1


def test_restore_parameters_fills_prompts_and_sidebar(window: MainWindow) -> None:
    applied = window.restore_parameters({"prompt": "from the gallery", "steps": 33,
                                         "cfg_scale": 5.5, "seed": 42, "sampler": "Euler a",
                                         "unknown": 1, "width": "not a number"})
    assert set(applied) == {"prompt", "steps", "cfg_scale", "seed", "sampler"}
    assert window.prompt_editor.text() == "from the gallery"
    assert window.panel.steps_spin.value() == 33 and window.panel.cfg_spin.value() == 5.5
    assert window.panel.seed_edit.text() == "42"
    assert window.panel.sampler_combo.currentText() == "Euler a"


def test_add_panel_adds_a_side_tab(window: MainWindow) -> None:
    from PySide6.QtWidgets import QLabel

    index = window.add_panel("Gallery", QLabel("gallery"))
    assert window.side_tabs.tabText(index) == "Gallery"
    window.show_panel("Gallery")
    assert window.side_tabs.currentIndex() == index


def test_every_control_has_a_tooltip(window: MainWindow) -> None:
    panel = window.panel
    controls = [panel.model_combo, panel.vae_combo, panel.sampler_combo, panel.steps_slider,
                panel.steps_spin, panel.cfg_slider, panel.cfg_spin, panel.seed_edit,
                panel.random_seed_button, panel.reuse_seed_button, panel.width_spin,
                panel.height_spin, panel.size_preset_combo, panel.swap_button,
                panel.aspect_lock_button, panel.batch_count_spin, panel.batch_size_spin,
                panel.clip_skip_spin, window.prompt_editor.edit, window.negative_editor.edit,
                window.queue_view.pause_button, window.prompt_editor.counter]
    missing = [type(c).__name__ for c in controls if len(c.toolTip()) < 20]
    assert missing == []
    assert "oversaturate" in panel.cfg_spin.toolTip() and "6–9" in panel.cfg_spin.toolTip()
    assert window.generate_action.toolTip() and window.cancel_action.toolTip()


def test_tab_moves_from_prompt_to_negative_prompt_to_generate(qtbot: QtBot,
                                                              window: MainWindow) -> None:
    window.activateWindow()
    window.prompt_editor.edit.setFocus()
    qtbot.waitUntil(lambda: window.prompt_editor.edit.hasFocus(), timeout=2000)
    qtbot.keyClick(window.prompt_editor.edit, Qt.Key.Key_Tab)
    assert window.negative_editor.edit.hasFocus()
    qtbot.keyClick(window.negative_editor.edit, Qt.Key.Key_Tab)
    assert window.center.generate_button.hasFocus()
    assert window.prompt_editor.text() == ""  # Tab moved focus instead of typing a tab


def test_explicit_theme_choice_switches_the_palette(qtbot: QtBot, window: MainWindow) -> None:
    from PySide6.QtGui import QPalette
    from PySide6.QtWidgets import QApplication

    from desktop_app.ui.theme import ThemeController

    app = QApplication.instance()
    original = app.palette()
    theme = ThemeController(app, "dark")
    try:
        assert theme.is_dark()
        assert app.palette().color(QPalette.ColorRole.Window).lightness() < 100
        theme.set_preference("light")
        assert app.palette().color(QPalette.ColorRole.Window).lightness() > 150
    finally:
        app.setPalette(original)
        app.setStyleSheet("")


def test_fast_mode_toggle_is_remembered_and_reaches_the_backend_from_the_next_job(
        qtbot: QtBot, window: MainWindow, fake_backend: FakeBackend) -> None:
    from desktop_app.settings import load_settings

    window.parameters.set_value("steps", 2)
    _type_prompt(qtbot, window, "a cat")
    with qtbot.waitSignal(window.controller.job_finished, timeout=10_000):
        _press_generate(qtbot, window)
    window.fast_mode_action.trigger()
    assert load_settings().fast_mode is True
    with qtbot.waitSignal(window.controller.job_finished, timeout=10_000):
        _press_generate(qtbot, window)
    window.fast_mode_action.trigger()
    with qtbot.waitSignal(window.controller.job_finished, timeout=10_000):
        _press_generate(qtbot, window)
    assert fake_backend.fast_mode_per_job == [False, True, False]
    assert load_settings().fast_mode is False


def test_the_warm_up_loads_the_sidebars_model_and_says_when_it_is_ready(
        qtbot: QtBot, window: MainWindow, fake_backend: FakeBackend) -> None:
    window.restore_parameters({"model": "/models/mine.safetensors", "width": 768})
    with qtbot.waitSignal(window.controller.model_preloaded, timeout=10_000):
        window.warm_up()
    [(request, _fast)] = fake_backend.preloaded
    assert request.model == "/models/mine.safetensors" and request.width == 768
    assert window.statusBar().currentMessage() == "Model ready: fake"


def test_sidebar_values_that_do_not_fit_yet_warm_up_only_the_engine(
        qtbot: QtBot, window: MainWindow, fake_backend: FakeBackend) -> None:
    window.parameters.set_value("width", 516)  # not a multiple of 8
    window.warm_up()
    assert not window.error_bar.isVisible()  # nothing to say before Generate is pressed
    window.parameters.set_value("width", 512)
    with qtbot.waitSignal(window.controller.job_finished, timeout=10_000):
        window.controller.submit(window.parameters.build_request().replace(steps=2))
    assert fake_backend.calls == ["generate"]  # a preload would have run before the job


def test_a_model_picked_after_the_warm_up_is_loaded_ahead_once_the_choice_settles(
        qtbot: QtBot, window: MainWindow, fake_backend: FakeBackend) -> None:
    from desktop_app.ui import main_window

    with qtbot.waitSignal(window.controller.model_preloaded, timeout=10_000):
        window.warm_up()
    assert window._preload_timer.interval() == main_window.PRELOAD_DELAY_MS
    window._preload_timer.setInterval(50)
    with qtbot.waitSignal(window.controller.model_preloaded, timeout=10_000):
        for model in ("/models/a.safetensors", "/models/b.safetensors"):  # arrow keys
            window.restore_parameters({"model": model})
    qtbot.wait(100)
    assert [r.model for r, _fast in fake_backend.preloaded] == [None, "/models/b.safetensors"]
    window.restore_parameters({"steps": 12})  # not a model: nothing to load
    assert not window._preload_timer.isActive()


def test_fast_mode_switched_after_the_warm_up_is_applied_ahead_of_the_next_job(
        qtbot: QtBot, window: MainWindow, fake_backend: FakeBackend) -> None:
    """The engine then compiles ahead a size it compiled in an earlier run (switched on) or
    drops the compiled code (off) before Generate is pressed, not inside the job."""
    with qtbot.waitSignal(window.controller.model_preloaded, timeout=10_000):
        window.warm_up()
    window._preload_timer.setInterval(0)
    for expected in (True, False):
        with qtbot.waitSignal(window.controller.model_preloaded, timeout=10_000):
            window.fast_mode_action.trigger()
        assert fake_backend.preloaded[-1][1] is expected
    assert [fast for _request, fast in fake_backend.preloaded] == [False, True, False]

def test_without_the_warm_up_a_picked_model_waits_for_generate(
        qtbot: QtBot, window: MainWindow, fake_backend: FakeBackend) -> None:
    window._preload_timer.setInterval(0)
    window.restore_parameters({"model": "/models/a.safetensors"})  # --no-warm-up
    assert not window._preload_timer.isActive()
    qtbot.wait(50)
    assert fake_backend.calls == []
