"""Every sidebar control changes the request the window builds."""

from __future__ import annotations

from pathlib import Path

import pytest
from PySide6.QtCore import Qt
from pytestqt.qtbot import QtBot

from desktop_app.pipeline.api import ModelFamily
from desktop_app.state.models import SDXL_BUCKETS, BuiltinModelProvider, ModelChoice, VaeChoice
from desktop_app.state.parameters import ParametersState
from desktop_app.ui.parameter_panel import ParameterPanel


class ListProvider:
    """A provider like the library's: two models of different families and one VAE."""

    def models(self) -> list[ModelChoice]:
        return [ModelChoice("Demo", None), ModelChoice("Big XL", "/m/xl.safetensors",
                                                       ModelFamily.sdxl)]

    def vaes(self) -> list[VaeChoice]:
        return [VaeChoice("Built in", None), VaeChoice("Better VAE", "/m/vae.safetensors")]


@pytest.fixture
def panel(qtbot: QtBot) -> ParameterPanel:
    state = ParametersState()
    state.set_value("prompt", "p")
    widget = ParameterPanel(state, ListProvider())
    qtbot.addWidget(widget)
    widget.show()
    return widget


def _request(panel: ParameterPanel):
    return panel.state.build_request()


def test_model_and_vae_pickers_change_the_request(panel: ParameterPanel) -> None:
    panel.model_combo.setCurrentIndex(1)
    panel.vae_combo.setCurrentIndex(1)
    request = _request(panel)
    assert request.model == "/m/xl.safetensors" and request.vae == "/m/vae.safetensors"


def test_sampler_steps_and_cfg_change_the_request(qtbot: QtBot, panel: ParameterPanel) -> None:
    panel.sampler_combo.setCurrentText("Euler a")
    assert _request(panel).sampler == "Euler a"
    panel.steps_slider.setValue(40)
    assert _request(panel).steps == 40 and panel.steps_spin.value() == 40
    panel.steps_spin.setValue(12)
    assert _request(panel).steps == 12 and panel.steps_slider.value() == 12
    panel.cfg_slider.setValue(17)  # half steps: 8.5
    assert _request(panel).cfg_scale == 8.5 and panel.cfg_spin.value() == 8.5
    panel.cfg_spin.setFocus()
    qtbot.keyClick(panel.cfg_spin, Qt.Key.Key_Up)
    assert _request(panel).cfg_scale == 9.0


def test_seed_field_dice_and_reuse(qtbot: QtBot, panel: ParameterPanel) -> None:
    panel.seed_edit.setFocus()
    qtbot.keyClicks(panel.seed_edit, "4000000000")
    assert _request(panel).seed == 4_000_000_000  # beyond a C int: kept exactly
    qtbot.mouseClick(panel.random_seed_button, Qt.MouseButton.LeftButton)
    assert _request(panel).seed == -1 and panel.seed_edit.text() == ""
    panel.state.set_last_seed(77)
    qtbot.mouseClick(panel.reuse_seed_button, Qt.MouseButton.LeftButton)
    assert _request(panel).seed == 77


def test_size_spins_swap_lock_and_presets(qtbot: QtBot, panel: ParameterPanel) -> None:
    panel.width_spin.setValue(768)
    assert (_request(panel).width, _request(panel).height) == (768, 512)
    qtbot.mouseClick(panel.swap_button, Qt.MouseButton.LeftButton)
    assert (_request(panel).width, _request(panel).height) == (512, 768)
    qtbot.mouseClick(panel.aspect_lock_button, Qt.MouseButton.LeftButton)
    panel.width_spin.setValue(640)
    assert (_request(panel).width, _request(panel).height) == (640, 960)
    panel.height_spin.setValue(480)
    assert (_request(panel).width, _request(panel).height) == (320, 480)


def test_presets_follow_the_model_family(panel: ParameterPanel) -> None:
    sd1 = [panel.size_preset_combo.itemData(i) for i in range(panel.size_preset_combo.count())]
    assert (512, 512) in sd1 and (768, 768) in sd1 and (1024, 1024) not in sd1
    panel.model_combo.setCurrentIndex(1)  # SDXL
    xl = [panel.size_preset_combo.itemData(i) for i in range(panel.size_preset_combo.count())]
    assert xl[1:] == list(SDXL_BUCKETS)
    index = xl.index((1216, 832))
    panel.size_preset_combo.setCurrentIndex(index)
    panel.size_preset_combo.activated.emit(index)
    assert (_request(panel).width, _request(panel).height) == (1216, 832)


def test_batch_and_clip_skip_change_the_request(panel: ParameterPanel) -> None:
    panel.batch_count_spin.setValue(3)
    panel.batch_size_spin.setValue(2)
    panel.clip_skip_spin.setValue(2)
    request = _request(panel)
    assert (request.batch_count, request.batch_size, request.clip_skip) == (3, 2, 2)
    assert request.image_count == 6


def test_state_changes_show_in_the_widgets(panel: ParameterPanel) -> None:
    panel.state.restore_parameters({"steps": 50, "cfg_scale": 4.5, "width": 1024,
                                    "height": 576, "model": "/m/xl.safetensors"})
    assert panel.steps_slider.value() == 50 and panel.cfg_slider.value() == 9
    assert (panel.width_spin.value(), panel.height_spin.value()) == (1024, 576)
    assert panel.current_model().family is ModelFamily.sdxl


def test_builtin_provider_lists_the_demo_model_and_files(tmp_path: Path) -> None:
    (tmp_path / "dreamy_xl.safetensors").write_bytes(b"x")
    (tmp_path / "sd15.ckpt").write_bytes(b"x")
    (tmp_path / "clear-vae.safetensors").write_bytes(b"x")
    (tmp_path / "notes.txt").write_text("x")
    provider = BuiltinModelProvider(tmp_path)
    models = provider.models()
    assert [m.name for m in models][1:] == ["dreamy_xl", "sd15"] and models[0].path is None
    assert models[1].family is ModelFamily.sdxl
    assert [v.name for v in provider.vaes()][1:] == ["clear-vae"]
    assert BuiltinModelProvider(tmp_path / "missing").models()[0].path is None


def test_a_restored_model_the_provider_does_not_list_is_offered(panel: ParameterPanel) -> None:
    panel.state.restore_parameters({"model": "/elsewhere/anime_xl.safetensors"})
    choice = panel.current_model()
    assert choice is not None and choice.path == "/elsewhere/anime_xl.safetensors"
    assert choice.family is ModelFamily.sdxl and _request(panel).model == choice.path


def test_a_fresh_sidebar_starts_at_the_demo_models_native_size_and_follows_the_model(
        qtbot: QtBot) -> None:
    state = ParametersState()
    panel = ParameterPanel(state, BuiltinModelProvider(Path("/nonexistent")))
    qtbot.addWidget(panel)
    assert (state.value("width"), state.value("height")) == (64, 64)  # the bundled demo model
    panel = ParameterPanel(state, ListProvider())
    qtbot.addWidget(panel)
    state.set_value("width", 96)  # a size the person chose is kept on a model switch
    panel.model_combo.setCurrentIndex(1)
    assert (state.value("width"), state.value("height")) == (96, 64)
    state.set_value("width", 512)
    state.set_value("height", 512)
    panel.model_combo.setCurrentIndex(0)
    panel.model_combo.setCurrentIndex(1)  # untouched native size → the SDXL model's own
    assert (state.value("width"), state.value("height")) == (1024, 1024)
