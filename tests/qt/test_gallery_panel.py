"""The gallery panel as a user drives it: search, detail, restore, drops, favourite, delete."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from PIL import Image, PngImagePlugin
from PySide6.QtCore import QDate, QMimeData, QPoint, Qt, QUrl
from PySide6.QtGui import QDropEvent, QGuiApplication
from pytestqt.qtbot import QtBot

from desktop_app import paths
from desktop_app.gallery import storage
from desktop_app.gallery.metadata import ImageMetadata, save_png
from desktop_app.pipeline.api import GenerationRequest
from desktop_app.state.gallery_list_model import ThumbnailRole
from desktop_app.ui.gallery_filters import CUSTOM_RANGE
from desktop_app.ui.gallery_panel import GalleryPanel

PROMPTS = {11: "a red fox in the snow", 22: "a lighthouse at dawn", 33: "a fox cub sleeping"}


def _save(prompt: str, seed: int, **request: object) -> Path:
    req = GenerationRequest(prompt=prompt, negative_prompt="blurry", seed=seed,
                            model="/models/dreamy.safetensors", sampler="Euler a", steps=30,
                            cfg_scale=6.5, width=640, height=512, **request)  # type: ignore[arg-type]
    path = storage.new_image_path(seed)
    return save_png(Image.new("RGB", (64, 48), (seed, 0, 0)), path,
                    ImageMetadata.from_request(req, model_hash="ab" * 32))


@pytest.fixture
def panel(qtbot: QtBot) -> Iterator[GalleryPanel]:
    for seed, prompt in PROMPTS.items():
        _save(prompt, seed)
    widget = GalleryPanel()
    qtbot.addWidget(widget)
    widget.resize(1000, 700)
    widget.show()
    qtbot.waitUntil(lambda: not widget.scanner.running, timeout=10_000)
    qtbot.waitUntil(lambda: widget.model.rowCount() == 3, timeout=5_000)
    yield widget
    widget.shutdown()


def _visible_prompts(panel: GalleryPanel) -> set[str]:
    return {panel.model.entry_at(r).prompt for r in range(panel.model.rowCount())}  # type: ignore[union-attr]


def _select(panel: GalleryPanel, seed: int) -> None:
    for row in range(panel.model.rowCount()):
        if panel.model.entry_at(row).seed == seed:  # type: ignore[union-attr]
            panel.grid.setCurrentIndex(panel.model.index(row))
            return
    raise AssertionError(f"seed {seed} not in the grid")


def test_grid_lists_existing_images_with_thumbnails(qtbot: QtBot, panel: GalleryPanel) -> None:
    assert _visible_prompts(panel) == set(PROMPTS.values())
    qtbot.waitUntil(lambda: all(panel.model.index(r).data(ThumbnailRole) is not None
                                for r in range(3)), timeout=10_000)
    assert list((paths.cache_dir() / "thumbnails").rglob("*.jpg"))


def test_search_narrows_the_grid(qtbot: QtBot, panel: GalleryPanel) -> None:
    qtbot.keyClicks(panel.search_edit, "fox")
    qtbot.waitUntil(lambda: panel.model.rowCount() == 2, timeout=3_000)
    assert _visible_prompts(panel) == {PROMPTS[11], PROMPTS[33]}
    panel.search_edit.setText("lighthouse dawn")
    qtbot.waitUntil(lambda: panel.model.rowCount() == 1, timeout=3_000)
    panel.search_edit.setText("nothing-like-this")
    qtbot.waitUntil(lambda: panel.model.rowCount() == 0, timeout=3_000)
    assert panel.count_label.text() == "0 images"


def test_detail_shows_all_parameters_and_copies_prompt(qtbot: QtBot, panel: GalleryPanel) -> None:
    _select(panel, 22)
    text = panel.detail.parameters.toPlainText()
    for expected in ("Prompt: a lighthouse at dawn", "Negative prompt: blurry", "Steps: 30",
                     "Sampler: Euler a", "CFG scale: 6.5", "Seed: 22", "Size: 640x512",
                     "Model: dreamy", "Model hash: abababab"):
        assert expected in text
    assert not panel.detail.image_label.pixmap().isNull()
    qtbot.mouseClick(panel.detail.copy_prompt_button, Qt.MouseButton.LeftButton)
    assert QGuiApplication.clipboard().text() == "a lighthouse at dawn"


def test_use_these_parameters_emits_restore_signal(qtbot: QtBot, panel: GalleryPanel) -> None:
    panel.set_model_lookup(lambda name, sha: "/library/dreamy.safetensors"
                           if name == "dreamy" else None)
    _select(panel, 33)
    with qtbot.waitSignal(panel.parameters_restored, timeout=2_000) as blocker:
        qtbot.mouseClick(panel.detail.use_button, Qt.MouseButton.LeftButton)
    values = blocker.args[0]
    assert values["prompt"] == "a fox cub sleeping"
    assert values["negative_prompt"] == "blurry"
    assert (values["seed"], values["steps"], values["cfg_scale"]) == (33, 30, 6.5)
    assert (values["sampler"], values["width"], values["height"]) == ("Euler a", 640, 512)
    assert values["model"] == "/library/dreamy.safetensors"
    GenerationRequest(**values)  # the sidebar can build a valid request from it


def test_unknown_model_warns_and_keeps_current(qtbot: QtBot, panel: GalleryPanel) -> None:
    panel.set_model_lookup(lambda name, sha: None)
    _select(panel, 11)
    restored_list: list[dict[str, object]] = []
    warnings: list[str] = []
    panel.parameters_restored.connect(restored_list.append)
    panel.restore_warning.connect(warnings.append)
    panel.use_parameters()
    restored, warning = restored_list[0], warnings[0]
    assert "model" not in restored and restored["seed"] == 11
    assert "dreamy" in warning and "not in your library" in warning


def _drop(panel: GalleryPanel, path: Path) -> None:
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(path))])
    event = QDropEvent(QPoint(10, 10), Qt.DropAction.CopyAction, mime,
                       Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier)
    panel.dropEvent(event)


def test_dropping_a_foreign_image_restores_its_parameters(qtbot: QtBot, panel: GalleryPanel,
                                                          tmp_path: Path) -> None:
    graph = {"3": {"class_type": "KSampler", "inputs": {
        "seed": 777, "steps": 18, "cfg": 5, "sampler_name": "euler", "scheduler": "normal",
        "positive": ["6", 0], "negative": ["7", 0], "latent_image": ["5", 0]}},
        "5": {"class_type": "EmptyLatentImage", "inputs": {"width": 768, "height": 512}},
        "6": {"class_type": "CLIPTextEncode", "inputs": {"text": "comfy castle"}},
        "7": {"class_type": "CLIPTextEncode", "inputs": {"text": "low quality"}}}
    info = PngImagePlugin.PngInfo()
    info.add_text("prompt", json.dumps(graph))
    dropped = tmp_path / "comfy.png"
    Image.new("RGB", (8, 8)).save(dropped, pnginfo=info)
    with qtbot.waitSignal(panel.parameters_restored, timeout=2_000) as blocker:
        _drop(panel, dropped)
    values = blocker.args[0]
    assert (values["prompt"], values["negative_prompt"]) == ("comfy castle", "low quality")
    assert (values["seed"], values["steps"], values["sampler"]) == (777, 18, "Euler")
    assert (values["width"], values["height"]) == (768, 512)


def test_dropping_an_image_without_metadata_warns(qtbot: QtBot, panel: GalleryPanel,
                                                  tmp_path: Path) -> None:
    plain = tmp_path / "plain.jpg"
    Image.new("RGB", (8, 8)).save(plain)
    with qtbot.waitSignal(panel.restore_warning, timeout=2_000) as blocker:
        _drop(panel, plain)
    assert "no generation parameters" in blocker.args[0]


def test_favourite_persists_and_filters(qtbot: QtBot, panel: GalleryPanel) -> None:
    _select(panel, 22)
    qtbot.mouseClick(panel.detail.favourite_button, Qt.MouseButton.LeftButton)
    assert panel.index.is_favourite(panel.current_entry().path)  # type: ignore[union-attr]
    panel.favourites_check.setChecked(True)
    assert _visible_prompts(panel) == {PROMPTS[22]}


def test_delete_then_undo_brings_the_image_back(qtbot: QtBot, panel: GalleryPanel) -> None:
    _select(panel, 11)
    victim = Path(panel.current_entry().path)  # type: ignore[union-attr]
    qtbot.mouseClick(panel.detail.delete_button, Qt.MouseButton.LeftButton)
    assert not victim.exists() and panel.model.rowCount() == 2
    assert panel.undo_bar.isVisibleTo(panel)
    qtbot.mouseClick(panel.undo_button, Qt.MouseButton.LeftButton)
    assert victim.exists() and panel.model.rowCount() == 3
    assert not panel.undo_bar.isVisibleTo(panel)


def test_delete_goes_to_os_trash_when_undo_window_closes(qtbot: QtBot, panel: GalleryPanel,
                                                         tmp_path: Path) -> None:
    _select(panel, 22)
    victim = Path(panel.current_entry().path)  # type: ignore[union-attr]
    panel.delete_current()
    panel.commit_pending_delete()
    assert not victim.exists()
    trashed = list((tmp_path / "xdg-data" / "Trash" / "files").iterdir())
    assert len(trashed) == 1 and trashed[0].name.endswith(victim.name)
    panel.rescan()
    qtbot.waitUntil(lambda: not panel.scanner.running, timeout=10_000)
    assert panel.model.total == 2


def test_add_image_shows_a_new_generation_at_once(qtbot: QtBot, panel: GalleryPanel) -> None:
    fresh = _save("a brand new owl", 44)
    panel.add_image(fresh)
    assert panel.model.entry_at(0).prompt == "a brand new owl"  # type: ignore[union-attr]
    assert panel.count_label.text() == "4 images"


def test_external_files_appear_after_rescan(qtbot: QtBot, panel: GalleryPanel) -> None:
    _save("made by another process", 55)
    panel.rescan()
    qtbot.waitUntil(lambda: panel.model.total == 4, timeout=10_000)


def test_model_and_custom_date_filters(qtbot: QtBot, panel: GalleryPanel) -> None:
    old_request = GenerationRequest(prompt="an old sketch", seed=5, model="/m/vintage.ckpt")
    old = save_png(Image.new("RGB", (8, 8)), storage.new_image_path(5),
                   ImageMetadata.from_request(old_request,
                                              created=datetime(2020, 6, 1, tzinfo=UTC)))
    panel.add_image(old)
    panel.model_combo.setCurrentIndex(panel.model_combo.findData("vintage"))
    assert _visible_prompts(panel) == {"an old sketch"}
    panel.model_combo.setCurrentIndex(0)
    panel.date_combo.setCurrentIndex(panel.date_combo.findData(CUSTOM_RANGE))
    panel.date_from_edit.setDate(QDate(2020, 1, 1))
    panel.date_to_edit.setDate(QDate(2020, 12, 31))
    assert panel.date_from_edit.isVisibleTo(panel)
    assert _visible_prompts(panel) == {"an old sketch"}
    panel.date_combo.setCurrentIndex(panel.date_combo.findData(7))
    assert _visible_prompts(panel) == set(PROMPTS.values())


def test_delete_key_and_undo_shortcut(qtbot: QtBot, panel: GalleryPanel) -> None:
    _select(panel, 33)
    victim = Path(panel.current_entry().path)  # type: ignore[union-attr]
    panel.grid.setFocus()
    qtbot.keyClick(panel.grid, Qt.Key.Key_Delete)
    assert not victim.exists()
    qtbot.keyClick(panel.grid, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)
    assert victim.exists()


def test_copy_image_and_favourite_from_the_grid_menu(qtbot: QtBot, panel: GalleryPanel) -> None:
    _select(panel, 22)
    panel.grid.setFocus()
    qtbot.keyClick(panel.grid, Qt.Key.Key_C, Qt.KeyboardModifier.ControlModifier)
    copied = QGuiApplication.clipboard().image()
    assert (copied.width(), copied.height()) == (64, 48)
    favourite = next(a for a in panel.grid.actions() if a.text() == "Favourite")
    favourite.trigger()
    assert panel.current_entry().favourite  # type: ignore[union-attr]
    favourite.trigger()
    assert not panel.index.is_favourite(panel.current_entry().path)  # type: ignore[union-attr]


def test_finished_job_result_lands_in_the_grid(qtbot: QtBot, panel: GalleryPanel) -> None:
    from desktop_app.pipeline.api import GeneratedImage, GenerationResult

    paths_ = [_save("batch one", 61), _save("batch two", 62)]
    result = GenerationResult(GenerationRequest(prompt="batch"),
                              tuple(GeneratedImage(str(p), 0, 8, 8) for p in paths_), "cpu", 1.0)
    panel.add_result("job-1", result)
    assert {panel.model.entry_at(r).prompt for r in (0, 1)} == {"batch one", "batch two"}  # type: ignore[union-attr]


def test_unusable_index_folder_still_gives_a_working_gallery(qtbot: QtBot,
                                                             tmp_path: Path) -> None:
    _save("survivor", 70)
    broken = tmp_path / "broken-data"
    (broken / "gallery.sqlite3").mkdir(parents=True)
    messages: list[str] = []
    widget = GalleryPanel(index_folder=broken)
    widget.message_posted.connect(messages.append)
    qtbot.addWidget(widget)
    try:
        qtbot.waitUntil(lambda: widget.model.total == 1 and bool(messages), timeout=10_000)
        assert "Cannot open the gallery index" in messages[0]
    finally:
        widget.shutdown()


def test_shutdown_during_a_scan_is_clean(qtbot: QtBot) -> None:
    for seed in range(30):
        _save(f"many {seed}", seed)
    widget = GalleryPanel(scan_on_start=False)
    qtbot.addWidget(widget)
    widget.rebuild()  # finds 30 images: its result would refresh the grid
    widget.shutdown()  # waits for the rebuild; its result is now queued
    QGuiApplication.processEvents()  # deliver the queued result: ignored, no crash


def test_gallery_fits_a_narrow_side_panel_with_two_columns_and_the_detail_below(
        panel: GalleryPanel, qtbot: QtBot) -> None:
    panel.resize(400, 700)  # below WIDE_LAYOUT: the detail moves below, the minimum shrinks
    assert panel.splitter.orientation() == Qt.Orientation.Vertical
    qtbot.waitUntil(lambda: panel.minimumSize().width() <= 300)  # the layout re-activated
    panel.resize(310, 700)
    qtbot.waitUntil(lambda: panel.width() == 310 and panel.grid.width() < 310)
    first, second = (panel.grid.visualRect(panel.model.index(row)) for row in (0, 1))
    assert second.left() > first.right() and second.top() == first.top()  # side by side
    assert second.right() <= panel.grid.viewport().width()  # no horizontal scrolling
    assert panel.grid.horizontalScrollBar().maximum() == 0


def test_gallery_puts_the_detail_beside_the_grid_when_wide(panel: GalleryPanel) -> None:
    assert panel.splitter.orientation() == Qt.Orientation.Horizontal  # fixture: 1000 px
    panel.resize(400, 700)
    assert panel.splitter.orientation() == Qt.Orientation.Vertical


def test_small_images_are_enlarged_pixel_exact_in_the_detail(panel: GalleryPanel) -> None:
    _select(panel, 22)  # 64x48 red image: a blur would mix in other colours at the edges
    image = panel.detail.image_label.pixmap().toImage()
    assert image.width() > 64
    colours = {image.pixelColor(x, image.height() // 2).name() for x in range(image.width())}
    assert colours == {"#160000"}


def test_empty_gallery_says_how_images_get_there_and_a_failed_search_says_so(
        panel: GalleryPanel, qtbot: QtBot, tmp_path: Path) -> None:
    assert not panel.empty_hint.isVisible()
    panel.search_edit.setText("zebra")
    qtbot.waitUntil(lambda: panel.model.rowCount() == 0, timeout=3_000)
    assert panel.empty_hint.isVisible() and "match" in panel.empty_hint.text()
    panel.search_edit.clear()
    qtbot.waitUntil(lambda: panel.model.rowCount() == 3, timeout=3_000)
    assert not panel.empty_hint.isVisible()
    (tmp_path / "other").mkdir()
    empty = GalleryPanel(index_folder=tmp_path / "other", outputs=tmp_path / "other")
    qtbot.addWidget(empty)
    empty.show()
    assert empty.empty_hint.isVisible() and "No images yet" in empty.empty_hint.text()
    empty.shutdown()
