"""Adopting A1111 / ComfyUI / InvokeAI folders in place, bad files, the persisted index
(second listing does no header reads), background hashing and hash invalidation."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import struct
import time
from pathlib import Path
from typing import Any

import pytest

from desktop_app.errors import UserError
from desktop_app.library.detect import inspect_model_file
from desktop_app.library.manager import Library
from desktop_app.library.scan import BackgroundHasher, Scanner, detect_layout
from desktop_app.library.store import LibraryItem, LibraryStore
from tests.fixtures.tiny_models import (
    build_tiny_sd15,
    build_tiny_sdxl,
    build_tiny_vae,
    full_size_ldm_shapes,
    write_header_only_safetensors,
)


class CountingInspector:
    """The real detector, counting how many headers it read."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, path: Path) -> Any:
        self.calls += 1
        return inspect_model_file(path)


@pytest.fixture(scope="module")
def model_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("scan-models")
    sd15 = build_tiny_sd15(root / "sd15")
    files = {
        "sd15": sd15.file,
        "sd15_dir": sd15.folder,
        "sdxl": build_tiny_sdxl(root / "sdxl", metadata={
            "modelspec.title": "Tiny XL", "modelspec.description": "A test model",
            "modelspec.thumbnail": "data:image/png;base64,iVBORw0KGgo="}).file,
        "vae": build_tiny_vae(root / "vae" / "tiny.vae.safetensors"),
        "sd2_header": write_header_only_safetensors(
            root / "sd2.safetensors", full_size_ldm_shapes("sd2-768-v"),
            metadata={"modelspec.architecture": "stable-diffusion-v2-768-v"}),
    }
    return files


def _place(src: Path, dest: Path) -> Path:
    dest.parent.mkdir(parents=True, exist_ok=True)
    if src.stat().st_size > 64 * 1024 * 1024:
        os.link(src, dest)  # sparse full-size fakes: a copy would write gigabytes of zeros
    else:
        shutil.copyfile(src, dest)
    return dest


def _bad_files(folder: Path) -> dict[str, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    zero = folder / "empty.safetensors"
    zero.write_bytes(b"")
    noise = folder / "noise.safetensors"
    noise.write_bytes(os.urandom(4096))
    lying = folder / "lying.safetensors"
    header = json.dumps({"model.diffusion_model.x": {"dtype": "F16", "shape": [1024, 1024],
                                                     "data_offsets": [0, 2 * 1024 * 1024]}})
    lying.write_bytes(struct.pack("<Q", len(header)) + header.encode() + b"\0" * 100)
    (folder / "download.safetensors.part").write_bytes(b"partial")
    (folder / "notes.txt").write_text("not a model")
    return {"empty": zero, "noise": noise, "lying": lying}


def _by_name(items: list[LibraryItem]) -> dict[str, LibraryItem]:
    return {Path(i.path).name: i for i in items}


def test_a1111_folder_is_adopted_in_place_with_kinds_and_families(
        tmp_path: Path, model_files: dict[str, Path]) -> None:
    webui = tmp_path / "stable-diffusion-webui"
    ckpts = webui / "models" / "Stable-diffusion"
    _place(model_files["sd15"], ckpts / "tiny_sd15.safetensors")
    _place(model_files["sdxl"], ckpts / "xl" / "tiny_xl.safetensors")
    _place(model_files["vae"], webui / "models" / "VAE" / "tiny.vae.safetensors")
    _place(model_files["sd2_header"], ckpts / "sd21.safetensors")
    _bad_files(ckpts)
    (webui / "models" / "Lora").mkdir()
    _place(model_files["sd15"], webui / "models" / "Lora" / "not_scanned.safetensors")

    store = LibraryStore()
    report = Scanner(store).adopt(webui)
    items = _by_name(store.items())
    assert store.roots() == [(str(webui.resolve()), "a1111")]
    assert set(items) == {"tiny_sd15.safetensors", "tiny_xl.safetensors", "tiny.vae.safetensors",
                          "sd21.safetensors", "empty.safetensors", "noise.safetensors",
                          "lying.safetensors"}
    assert report.files == 7 and report.inspected == 7
    assert (items["tiny_sd15.safetensors"].kind, items["tiny_sd15.safetensors"].family) == (
        "checkpoint", "sd15")
    xl = items["tiny_xl.safetensors"]
    assert (xl.family, xl.status, xl.name, xl.description) == ("sdxl", "ok", "Tiny XL",
                                                               "A test model")
    assert xl.has_thumbnail and store.thumbnail(xl.path) == b"\x89PNG\r\n\x1a\n"
    assert items["sd21.safetensors"].family == "sd2-768-v"
    assert items["tiny.vae.safetensors"].kind == "vae"
    for bad in ("empty", "noise", "lying"):
        row = items[f"{bad}.safetensors"]
        assert row.status == "corrupt" and row.reason, row
    assert "0 bytes" in items["empty.safetensors"].reason
    assert "truncated" in items["lying.safetensors"].reason
    assert ckpts.joinpath("tiny_sd15.safetensors").exists()  # adopted, not moved or copied


def test_comfyui_models_folder_is_recognised(tmp_path: Path,
                                            model_files: dict[str, Path]) -> None:
    comfy = tmp_path / "ComfyUI"
    _place(model_files["sdxl"], comfy / "models" / "checkpoints" / "xl.safetensors")
    _place(model_files["vae"], comfy / "models" / "vae" / "sdxl_vae.safetensors")
    layout, folders = detect_layout(comfy / "models")
    assert layout == "comfyui"
    assert {f.name for f, _ in folders} == {"checkpoints", "vae"}
    store = LibraryStore()
    Scanner(store).adopt(comfy / "models")
    items = _by_name(store.items())
    assert items["xl.safetensors"].family == "sdxl" and items["sdxl_vae.safetensors"].kind == "vae"


def test_invokeai_root_finds_main_and_vae_folders(tmp_path: Path,
                                                 model_files: dict[str, Path]) -> None:
    invoke = tmp_path / "invokeai"
    _place(model_files["sd15"], invoke / "models" / "sd-1" / "main" / "dream.safetensors")
    _place(model_files["vae"], invoke / "models" / "sd-1" / "vae" / "ft.safetensors")
    _place(model_files["sd15"], invoke / "databases" / "ignored.safetensors")
    assert detect_layout(invoke)[0] == "invokeai"
    store = LibraryStore()
    Scanner(store).adopt(invoke)
    assert set(_by_name(store.items())) == {"dream.safetensors", "ft.safetensors"}


def test_a_plain_folder_is_walked_and_each_kind_comes_from_the_header(
        tmp_path: Path, model_files: dict[str, Path]) -> None:
    folder = tmp_path / "my models"
    _place(model_files["vae"], folder / "deep" / "a.safetensors")
    _place(model_files["sd15"], folder / "b.safetensors")
    (folder / "c.ckpt").write_bytes(b"PK\x03\x04 not really")
    assert detect_layout(folder)[0] == "folder"
    store = LibraryStore()
    Scanner(store).adopt(folder)
    items = _by_name(store.items())
    assert (items["a.safetensors"].kind, items["b.safetensors"].kind) == ("vae", "checkpoint")
    assert items["c.ckpt"].kind == "checkpoint"


def test_missing_folder_and_file_give_clear_errors(tmp_path: Path) -> None:
    scanner = Scanner(LibraryStore())
    with pytest.raises(UserError, match="Folder not found"):
        scanner.adopt(tmp_path / "nope")
    with pytest.raises(UserError, match="File not found"):
        scanner.add_file(tmp_path / "nope.safetensors")


def test_second_scan_of_3000_files_reads_no_headers(tmp_path: Path) -> None:
    folder = tmp_path / "many" / "models" / "checkpoints"
    folder.mkdir(parents=True)
    shapes = {"decoder.conv_in.weight": (8, 4, 3, 3), "encoder.conv_in.weight": (8, 3, 3, 3)}
    write_header_only_safetensors(folder / "m0000.safetensors", shapes, dtype="F32")
    blob = (folder / "m0000.safetensors").read_bytes()
    for i in range(1, 3000):
        (folder / f"m{i:04d}.safetensors").write_bytes(blob)
    inspector = CountingInspector()
    scanner = Scanner(LibraryStore(), inspector)

    started = time.perf_counter()
    first = scanner.adopt(folder.parent.parent)
    first_s = time.perf_counter() - started
    assert inspector.calls == 3000 and first.inspected == 3000

    reopened = Scanner(LibraryStore(), inspector)  # a new app start: state comes from SQLite
    started = time.perf_counter()
    listed = reopened.store.items()
    list_s = time.perf_counter() - started
    second = reopened.scan_all()
    rescan_s = time.perf_counter() - started - list_s
    assert len(listed) == 3000 and all(i.kind == "vae" for i in listed)
    assert inspector.calls == 3000 and second.inspected == 0 and second.files == 3000
    print(f"\n3000 files: first scan {first_s:.2f}s, listing {list_s * 1000:.0f} ms, "
          f"re-stat scan {rescan_s:.2f}s")

    os.utime(folder / "m0042.safetensors", ns=(1, 1))
    (folder / "m0001.safetensors").unlink()
    third = reopened.scan_all()
    assert (third.inspected, third.removed, inspector.calls) == (1, 1, 3001)


def _hash_all(store: LibraryStore, seen: list[tuple[str, str]] | None = None) -> None:
    hasher = BackgroundHasher(store, on_hashed=(lambda p, h: seen.append((p, h)))
                              if seen is not None else None)
    hasher.start()
    try:
        assert hasher.idle.wait(30)
    finally:
        hasher.stop()


def test_hashes_are_computed_in_the_background_and_invalidated_on_change(
        tmp_path: Path, model_files: dict[str, Path]) -> None:
    folder = tmp_path / "ckpts"
    path = _place(model_files["sd15"], folder / "m.safetensors")
    store = LibraryStore()
    scanner = Scanner(store)
    scanner.adopt(folder)
    assert store.get(str(path.resolve())).sha256 is None  # listing never waits for hashing
    seen: list[tuple[str, str]] = []
    _hash_all(store, seen)
    expected = hashlib.sha256(path.read_bytes()).hexdigest()
    item = store.get(str(path.resolve()))
    assert item.sha256 == expected and item.short_hash == expected[:10]
    assert seen == [(str(path.resolve()), expected)]

    with path.open("ab") as fh:
        fh.write(b"\0" * 16)  # same name, new content
    scanner.scan_all()
    assert store.get(str(path.resolve())).sha256 is None
    _hash_all(store)
    assert store.get(str(path.resolve())).sha256 == hashlib.sha256(path.read_bytes()).hexdigest()


def test_a_hash_of_a_file_that_changed_meanwhile_is_not_stored(tmp_path: Path,
                                                              model_files: dict[str, Path]) -> None:
    path = _place(model_files["vae"], tmp_path / "v.safetensors")
    store = LibraryStore()
    Scanner(store).add_file(path)
    item = store.get(str(path.resolve()))
    assert not store.set_hash(item.path, item.size + 1, item.mtime_ns, "0" * 64)
    assert store.get(item.path).sha256 is None


def test_removing_hides_the_row_but_never_touches_the_file(tmp_path: Path,
                                                          model_files: dict[str, Path]) -> None:
    folder = tmp_path / "ckpts"
    path = _place(model_files["sd15"], folder / "m.safetensors")
    library = Library()
    library.add(folder)
    key = str(path.resolve())
    library.remove(key)
    library.refresh()
    assert key not in {i.path for i in library.items()} and path.exists()
    single = _place(model_files["vae"], tmp_path / "single.safetensors")
    library.add(single)
    library.remove(str(single.resolve()))
    assert single.exists() and library.store.get(str(single.resolve())) is None
    library.close()


def test_add_file_links_in_place_or_copies_into_the_library(tmp_path: Path,
                                                           model_files: dict[str, Path]) -> None:
    library = Library()
    src = _place(model_files["vae"], tmp_path / "downloads" / "my.vae.safetensors")
    kind, linked = library.add(src)
    assert kind == "file" and isinstance(linked, LibraryItem)
    assert linked.path == str(src.resolve()) and linked.root is None
    _, copied = library.add(src, copy=True)
    assert isinstance(copied, LibraryItem)
    target = library.catalog.library.folder_for("vae") / "my.vae.safetensors"
    assert copied.path == str(target.resolve()) and target.read_bytes() == src.read_bytes()
    assert not list(target.parent.glob("*.part"))
    library.close()


def test_a_vanished_single_file_is_shown_as_missing(tmp_path: Path,
                                                    model_files: dict[str, Path]) -> None:
    src = _place(model_files["vae"], tmp_path / "gone.safetensors")
    library = Library()
    library.add(src)
    src.unlink()
    library.refresh()
    item = library.store.get(str(src.resolve()))
    assert item is not None and item.status == "missing" and "not found" in item.reason
    library.close()


def test_user_choices_survive_a_rescan_of_a_changed_file(tmp_path: Path,
                                                         model_files: dict[str, Path]) -> None:
    path = _place(model_files["sd15"], tmp_path / "c" / "m.safetensors")
    library = Library()
    library.add(path.parent)
    key = str(path.resolve())
    library.store.set_display_name(key, "  My favourite ")
    library.store.set_vae(key, "baked")
    os.utime(path, ns=(5, 5))
    library.refresh()
    item = library.store.get(key)
    assert item is not None and (item.name, item.vae) == ("My favourite", "baked")
    library.close()



def test_a_diffusers_folder_is_one_item_and_reindexed_when_resaved(
        tmp_path: Path, model_files: dict[str, Path]) -> None:
    folder = tmp_path / "models" / "my-diffusers"
    shutil.copytree(model_files["sd15_dir"], folder)
    inspector = CountingInspector()
    scanner = Scanner(LibraryStore(), inspector)
    scanner.adopt(tmp_path / "models")
    [item] = scanner.store.items()
    assert (item.path, item.kind, item.family) == (str(folder.resolve()), "checkpoint", "sd15")
    scanner.scan_all()
    assert inspector.calls == 1
    os.utime(folder / "model_index.json", ns=(7, 7))  # saved again
    scanner.scan_all()
    assert inspector.calls == 2


def test_adding_a_removed_file_again_shows_it(tmp_path: Path,
                                              model_files: dict[str, Path]) -> None:
    path = _place(model_files["vae"], tmp_path / "f" / "v.safetensors")
    library = Library()
    library.add(path.parent)
    library.remove(str(path.resolve()))
    assert library.items() == []
    library.add(path)
    [item] = library.items()
    assert item.root == str(path.parent.resolve())  # still belongs to its adopted folder
    library.close()


def test_an_invokeai_root_with_per_model_folders_walks_models(
        tmp_path: Path, model_files: dict[str, Path]) -> None:
    invoke = tmp_path / "invokeai"
    (invoke / "invokeai.yaml").parent.mkdir(parents=True)
    (invoke / "invokeai.yaml").write_text("schema_version: 4.0.2\n")
    _place(model_files["sd15"], invoke / "models" / "3f2a9c" / "model.safetensors")
    _place(model_files["vae"], invoke / "models" / "77bd01" / "vae.safetensors")
    layout, folders = detect_layout(invoke)
    assert (layout, folders) == ("invokeai", [(invoke / "models", None)])
    store = LibraryStore()
    Scanner(store).adopt(invoke)
    kinds = {Path(i.path).name: i.kind for i in store.items()}
    assert kinds == {"model.safetensors": "checkpoint", "vae.safetensors": "vae"}


def test_a_damaged_library_file_is_kept_aside_and_a_fresh_index_starts(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    db = tmp_path / "library.sqlite3"
    db.write_bytes(b"this is not an SQLite database" * 100)
    store = LibraryStore(db)
    store.add_root(str(tmp_path / "models"), "plain")
    store.close()
    kept = list(tmp_path.glob("library.sqlite3.damaged-*"))
    assert len(kept) == 1 and kept[0].read_bytes().startswith(b"this is not an SQLite")
    assert "unreadable" in caplog.text
    reopened = LibraryStore(db)  # the fresh index is a normal one
    assert reopened._db.execute("SELECT count(*) FROM roots").fetchone()[0] == 1
    reopened.close()


def test_a_library_from_a_newer_version_is_refused_with_a_hint_and_left_alone(
        tmp_path: Path) -> None:
    import sqlite3

    db = tmp_path / "library.sqlite3"
    conn = sqlite3.connect(db)
    conn.execute("PRAGMA user_version=99")
    conn.execute("CREATE TABLE future (x)")
    conn.commit()
    conn.close()
    with pytest.raises(UserError) as info:
        LibraryStore(db)
    assert "newer version" in info.value.message and "Update desktop_app" in info.value.hint
    conn = sqlite3.connect(db)  # untouched: still the newer schema, none of ours added
    tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master")}
    assert conn.execute("PRAGMA user_version").fetchone()[0] == 99 and tables == {"future"}
    conn.close()
    assert not list(tmp_path.glob("*.damaged-*"))
