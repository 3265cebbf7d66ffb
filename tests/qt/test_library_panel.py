"""The library panel: listing with badges, search and filters, details with the hash arriving
in the background, Use with the VAE choice, rename, remove vs delete, drops, .ckpt rows."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from PySide6.QtCore import QMimeData, QPoint, QPointF, Qt, QUrl
from PySide6.QtGui import QDropEvent
from pytestqt.qtbot import QtBot

from desktop_app.library.manager import Library
from desktop_app.library.store import LibraryStore
from desktop_app.state.library_state import LibraryModelProvider, LibraryState
from desktop_app.ui.library_panel import LibraryPanel
from tests.fixtures.tiny_models import write_header_only_safetensors

_UNET = "model.diffusion_model."
SD15 = {_UNET + "input_blocks.0.0.weight": (320, 4, 3, 3),
        _UNET + "input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight": (320, 768),
        "first_stage_model.decoder.conv_in.weight": (8, 4, 3, 3),
        "cond_stage_model.transformer.text_model.final_layer_norm.weight": (8,)}
SDXL = {_UNET + "input_blocks.0.0.weight": (320, 4, 3, 3),
        _UNET + "label_emb.0.0.weight": (8, 8),
        _UNET + "input_blocks.4.1.transformer_blocks.0.attn2.to_k.weight": (640, 2048),
        "first_stage_model.decoder.conv_in.weight": (8, 4, 3, 3),
        "conditioner.embedders.0.transformer.text_model.final_layer_norm.weight": (8,),
        "conditioner.embedders.1.model.ln_final.weight": (8,)}
VAE = {"decoder.conv_in.weight": (8, 4, 3, 3), "encoder.conv_in.weight": (8, 3, 3, 3)}


@pytest.fixture
def models(tmp_path: Path) -> Path:
    root = tmp_path / "webui"
    ckpts, vaes = root / "models" / "Stable-diffusion", root / "models" / "VAE"
    ckpts.mkdir(parents=True)
    vaes.mkdir(parents=True)
    write_header_only_safetensors(ckpts / "dreamy.safetensors", SD15,
                                  metadata={"modelspec.title": "Dreamy",
                                            "modelspec.description": "Soft pastel looks"})
    write_header_only_safetensors(ckpts / "bigxl.safetensors", SDXL)
    write_header_only_safetensors(vaes / "ft-mse.safetensors", VAE)
    (ckpts / "old.ckpt").write_bytes(b"PK\x03\x04 pickle")
    (ckpts / "broken.safetensors").write_bytes(b"\x00" * 12)
    return root


@pytest.fixture
def panel(qtbot: QtBot, models: Path) -> Iterator[LibraryPanel]:
    library = Library(store=LibraryStore())
    library.add(models)
    state = LibraryState(library)
    widget = LibraryPanel(state)
    qtbot.addWidget(widget)
    widget.show()
    yield widget
    state.close()


def _names(panel: LibraryPanel) -> set[str]:
    return {panel.model.item_at(r).name for r in range(panel.model.rowCount())}


def _select(panel: LibraryPanel, models: Path, relative: str) -> str:
    path = str((models / relative).resolve())
    assert panel.select_path(path)
    return path


def test_lists_everything_and_filters_by_search_and_kind(panel: LibraryPanel) -> None:
    assert _names(panel) == {"Dreamy", "bigxl", "ft-mse", "old", "broken"}
    panel.search_edit.setText("pastel")  # matches the ModelSpec description
    assert _names(panel) == {"Dreamy"}
    panel.search_edit.clear()
    panel.kind_combo.setCurrentIndex(panel.kind_combo.findData("vae"))
    assert _names(panel) == {"ft-mse"}
    panel.kind_combo.setCurrentIndex(panel.kind_combo.findData("problems"))
    assert _names(panel) == {"broken"}


def test_details_show_family_status_and_the_hash_once_computed(qtbot: QtBot, panel: LibraryPanel,
                                                                models: Path) -> None:
    _select(panel, models, "models/Stable-diffusion/bigxl.safetensors")
    assert "SDXL" in panel.info_label.text() and "Ready" in panel.info_label.text()
    qtbot.waitUntil(lambda: panel.hash_label.text() != "computing…", timeout=10_000)
    assert len(panel.hash_label.text()) == 10
    _select(panel, models, "models/Stable-diffusion/broken.safetensors")
    assert "Damaged" in panel.info_label.text() and panel.reason_label.text()
    assert not panel.use_button.isEnabled()


def test_use_emits_the_model_and_its_chosen_vae(qtbot: QtBot, panel: LibraryPanel,
                                                models: Path) -> None:
    model = _select(panel, models, "models/Stable-diffusion/dreamy.safetensors")
    with qtbot.waitSignal(panel.model_used) as baked:
        panel.use_button.click()
    assert baked.args == [model, ""]
    vae = str((models / "models/VAE/ft-mse.safetensors").resolve())
    panel.vae_combo.setCurrentIndex(panel.vae_combo.findData(vae))
    panel.vae_combo.activated.emit(panel.vae_combo.currentIndex())
    with qtbot.waitSignal(panel.model_used) as chosen:
        panel.use_button.click()
    assert chosen.args == [model, vae]
    assert panel.state.library.store.get(model).vae == vae  # remembered per model


def test_automatic_vae_picks_the_sidecar_file(qtbot: QtBot, panel: LibraryPanel,
                                              models: Path) -> None:
    sidecar = models / "models/Stable-diffusion/dreamy.vae.safetensors"
    write_header_only_safetensors(sidecar, VAE)
    _select(panel, models, "models/Stable-diffusion/dreamy.safetensors")
    with qtbot.waitSignal(panel.model_used) as used:
        panel.use_button.click()
    assert used.args[1] == str(sidecar.resolve())


def test_rename_changes_the_display_name_only(panel: LibraryPanel, models: Path) -> None:
    path = _select(panel, models, "models/Stable-diffusion/bigxl.safetensors")
    panel.name_edit.setText("My XL")
    panel.name_edit.editingFinished.emit()
    assert "My XL" in _names(panel) and Path(path).exists()
    provider = LibraryModelProvider(panel.state)
    assert "My XL" in {c.name for c in provider.models()}
    assert {v.name for v in provider.vaes()} >= {"ft-mse"}


def test_remove_keeps_the_file_and_delete_needs_confirmation(panel: LibraryPanel,
                                                             models: Path) -> None:
    path = _select(panel, models, "models/Stable-diffusion/bigxl.safetensors")
    panel.remove_button.click()
    assert "bigxl" not in _names(panel) and Path(path).exists()

    path = _select(panel, models, "models/Stable-diffusion/dreamy.safetensors")
    panel.confirm = lambda title, text: False
    panel.delete_button.click()
    assert Path(path).exists() and "Dreamy" in _names(panel)
    asked: list[str] = []
    panel.confirm = lambda title, text: asked.append(text) or True
    panel.delete_button.click()
    assert not Path(path).exists() and "Dreamy" not in _names(panel)
    assert path in asked[0]


def test_dropping_a_file_can_copy_it_into_the_library(qtbot: QtBot, panel: LibraryPanel,
                                                      tmp_path: Path) -> None:
    loose = tmp_path / "downloads" / "loose.safetensors"
    loose.parent.mkdir()
    write_header_only_safetensors(loose, SD15)
    panel.ask_copy = lambda paths: True
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(loose))])
    event = QDropEvent(QPointF(QPoint(5, 5)), Qt.DropAction.CopyAction, mime,
                       Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier)
    with qtbot.waitSignal(panel.state.busy_changed, check_params_cb=lambda busy: not busy):
        panel.dropEvent(event)
    copied = panel.state.library.catalog.library.folder_for("checkpoint") / "loose.safetensors"
    assert copied.is_file() and loose.is_file()
    assert str(copied.resolve()) in {panel.model.item_at(r).path
                                     for r in range(panel.model.rowCount())}


def test_adding_a_folder_adopts_it_in_place(qtbot: QtBot, panel: LibraryPanel,
                                            tmp_path: Path) -> None:
    comfy = tmp_path / "ComfyUI" / "models" / "checkpoints"
    comfy.mkdir(parents=True)
    write_header_only_safetensors(comfy / "comfy_model.safetensors", SD15)
    panel.choose_folder = lambda: comfy.parent.parent
    with qtbot.waitSignal(panel.library_changed, timeout=10_000):
        panel.add_folder_button.click()
    assert "comfy_model" in _names(panel)


def test_ckpt_rows_offer_conversion_instead_of_use(panel: LibraryPanel, models: Path) -> None:
    _select(panel, models, "models/Stable-diffusion/old.ckpt")
    assert panel.convert_button.isVisibleTo(panel) and not panel.use_button.isEnabled()
    _select(panel, models, "models/Stable-diffusion/dreamy.safetensors")
    assert not panel.convert_button.isVisibleTo(panel)


class _Payload:
    """Pickles to a call of os.system: converting must refuse it, never run it."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str]]:
        import os

        return os.system, (f"touch {self.marker}",)


def test_converting_a_malicious_ckpt_is_refused_inline(qtbot: QtBot, panel: LibraryPanel,
                                                      models: Path, tmp_path: Path) -> None:
    import torch

    marker = tmp_path / "pwned"
    torch.save({"state_dict": {}, "payload": _Payload(marker)},
               models / "models/Stable-diffusion/old.ckpt")
    _select(panel, models, "models/Stable-diffusion/old.ckpt")
    with qtbot.waitSignal(panel.state.error_raised, timeout=30_000) as error:
        panel.convert_button.click()
    assert error.args[0].kind.value == "unsafe_file"
    assert panel.status_label.text().startswith("⚠")
    assert not marker.exists()
    assert not (models / "models/Stable-diffusion/old.safetensors").exists()


def test_reveal_opens_the_containing_folder(panel: LibraryPanel, models: Path) -> None:
    opened: list[QUrl] = []
    panel.open_url = opened.append
    _select(panel, models, "models/VAE/ft-mse.safetensors")
    panel.reveal_button.click()
    assert opened and Path(opened[0].toLocalFile()) == (models / "models/VAE").resolve()


def test_grid_mode_shows_icons(panel: LibraryPanel) -> None:
    panel.grid_button.setChecked(True)
    assert panel.view.viewMode() == panel.view.ViewMode.IconMode
    panel.grid_button.setChecked(False)
    assert panel.view.viewMode() == panel.view.ViewMode.ListMode



def test_a_broken_user_catalog_is_reported_not_fatal(qtbot: QtBot) -> None:
    from desktop_app.library.catalog import user_catalog_path

    user_catalog_path().write_text("[models.x\n", encoding="utf-8")
    state = LibraryState(Library(store=LibraryStore()), hashing=False)
    widget = LibraryPanel(state)
    qtbot.addWidget(widget)
    assert "not valid TOML" in widget.status_label.text()
    state.close()


class _SlowServer:
    """Loopback HTTP server: /vae serves a VAE file; /big sends 1 MiB, then waits for
    `release` (bounded) before sending the rest, so a cancel can land mid-transfer."""

    def __init__(self, vae: bytes) -> None:
        import http.server
        import os
        import threading

        self.big = os.urandom(3 << 20)
        self.release = threading.Event()
        bodies = {"/vae.safetensors": vae, "/big.safetensors": self.big}
        release = self.release

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                body = bodies.get(self.path)
                if body is None:
                    self.send_error(404)
                    return
                start = int(self.headers.get("Range", "bytes=0-")[6:].rstrip("-") or 0)
                self.send_response(206 if start else 200)
                if start:
                    self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
                self.send_header("Content-Length", str(len(body) - start))
                self.end_headers()
                if self.path == "/big.safetensors" and not start:
                    self.wfile.write(body[: 1 << 20])
                    self.wfile.flush()
                    release.wait(10)
                    self.wfile.write(body[1 << 20:])
                    return
                self.wfile.write(body[start:])

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever,
                                       kwargs={"poll_interval": 0.05})
        self.thread.start()
        self.base = f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def close(self) -> None:
        self.release.set()
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(5)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[_SlowServer]:
    vae = write_header_only_safetensors(tmp_path / "served.safetensors", VAE)
    srv = _SlowServer(vae.read_bytes())
    yield srv
    srv.close()


def test_downloading_a_pasted_url_verifies_and_files_it_as_a_vae(
        qtbot: QtBot, panel: LibraryPanel, server: _SlowServer, tmp_path: Path) -> None:
    import hashlib

    data = (tmp_path / "served.safetensors").read_bytes()
    panel.ask_download = lambda: (server.base + "/vae.safetensors",
                                  hashlib.sha256(data).hexdigest())
    with qtbot.waitSignal(panel.state.download_finished, timeout=10_000) as done:
        panel.download_button.click()
    path = Path(done.args[0])
    assert path.parent == panel.state.library.catalog.library.folder_for("vae")
    assert path.read_bytes() == data
    assert panel.current_item is not None and panel.current_item.kind == "vae"
    assert not panel.download_bar.isVisibleTo(panel)


def test_a_wrong_sha256_is_shown_and_nothing_is_kept(qtbot: QtBot, panel: LibraryPanel,
                                                     server: _SlowServer) -> None:
    panel.ask_download = lambda: (server.base + "/vae.safetensors", "0" * 64)
    with qtbot.waitSignal(panel.state.error_raised, timeout=10_000) as error:
        panel.download_button.click()
    assert error.args[0].kind.value == "corrupt_file" and "⚠" in panel.status_label.text()
    folder = panel.state.library.catalog.library.folder_for("checkpoint")
    assert not list(folder.iterdir())


def test_cancelling_a_download_keeps_the_part_for_resuming(qtbot: QtBot, panel: LibraryPanel,
                                                           server: _SlowServer) -> None:
    import hashlib

    sha = hashlib.sha256(server.big).hexdigest()
    panel.ask_download = lambda: (server.base + "/big.safetensors", sha)
    with qtbot.waitSignal(panel.state.download_progressed, timeout=10_000):
        panel.download_button.click()
    assert panel.download_bar.isVisibleTo(panel)
    with qtbot.waitSignal(panel.state.error_raised, timeout=10_000) as error:
        panel.cancel_download_button.click()
        server.release.set()
    assert error.args[0].kind.value == "cancelled"
    folder = panel.state.library.catalog.library.folder_for("checkpoint")
    assert (folder / "big.safetensors.part").is_file()
    assert not (folder / "big.safetensors").exists()
    with qtbot.waitSignal(panel.state.download_finished, timeout=10_000) as done:
        panel.download_button.click()  # asking again resumes
    assert Path(done.args[0]).read_bytes() == server.big


def test_library_fits_a_narrow_side_panel_with_details_below_the_list(
        panel: LibraryPanel, models: Path, qtbot: QtBot) -> None:
    _select(panel, models, "models/Stable-diffusion/dreamy.safetensors")  # long path shown
    panel.resize(320, 640)
    qtbot.waitUntil(lambda: panel.width() == 320)
    assert panel.splitter.orientation() == Qt.Orientation.Vertical
    details = panel.splitter.widget(1)
    assert details.widget().minimumSizeHint().width() <= details.viewport().width()
    assert panel.details.path_label.toolTip().endswith("dreamy.safetensors")
    panel.resize(900, 640)
    qtbot.waitUntil(lambda: panel.splitter.orientation() == Qt.Orientation.Horizontal)


def test_empty_library_explains_how_to_add_models(qtbot: QtBot) -> None:
    state = LibraryState(Library(store=LibraryStore()))
    widget = LibraryPanel(state)
    qtbot.addWidget(widget)
    widget.show()
    try:
        assert widget.model.rowCount() == 0
        assert widget.empty_hint.isVisible() and "Add a checkpoint" in widget.empty_hint.text()
        assert not widget.details.hint.isVisible() and not widget.details.box.isVisible()
        widget.search_edit.setText("dream")
        assert "match" in widget.empty_hint.text()
    finally:
        state.close()


def test_details_ask_for_a_selection_until_a_model_is_picked(
        panel: LibraryPanel, models: Path) -> None:
    assert panel.details.hint.isVisible() and not panel.details.box.isVisible()
    _select(panel, models, "models/Stable-diffusion/dreamy.safetensors")
    assert panel.details.box.isVisible() and not panel.details.hint.isVisible()
