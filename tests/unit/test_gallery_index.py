"""The SQLite index is only a cache of the files: rebuildable, incremental, favourites kept."""

from __future__ import annotations

import os
import shutil
import sqlite3
from datetime import datetime
from pathlib import Path

import pytest
from PIL import Image, PngImagePlugin

from desktop_app import paths
from desktop_app.gallery import storage
from desktop_app.gallery.index import GalleryIndex, GalleryQuery, SortOrder, fts_expression
from desktop_app.gallery.metadata import ImageMetadata, save_png
from desktop_app.pipeline.api import GenerationRequest

PROMPTS = ["a red fox in snow", "a castle at dusk", "portrait of a fox, oil painting",
           "city street at night", "a bowl of fruit"]


def _save(prompt: str, seed: int, model: str = "/m/dream.safetensors",
          when: datetime | None = None) -> Path:
    request = GenerationRequest(prompt=prompt, negative_prompt="blurry", seed=seed,
                                model=model, sampler="Euler a")
    meta = ImageMetadata.from_request(request, created=when)
    path = storage.new_image_path(seed, when=when)
    return save_png(Image.new("RGB", (8, 8)), path, meta)


@pytest.fixture()
def filled() -> GalleryIndex:
    for seed, prompt in enumerate(PROMPTS):
        _save(prompt, seed, model="/m/other.safetensors" if seed == 3 else "/m/dream.safetensors")
    index = GalleryIndex()
    index.scan()
    return index


def test_scan_lists_every_image_with_its_parameters(filled: GalleryIndex) -> None:
    entries = filled.query(GalleryQuery(sort=SortOrder.seed))
    assert [e.prompt for e in entries] == PROMPTS
    first = entries[0]
    assert (first.seed, first.sampler, first.model, first.steps) == (0, "Euler a", "dream", 25)
    assert (first.negative_prompt, first.width, first.height) == ("blurry", 512, 512)


def test_fts_search_matches_words_prefixes_and_seed(filled: GalleryIndex) -> None:
    assert {e.prompt for e in filled.query(GalleryQuery(search="fox"))} == {
        "a red fox in snow", "portrait of a fox, oil painting"}
    assert [e.prompt for e in filled.query(GalleryQuery(search="cast"))] == ["a castle at dusk"]
    assert [e.seed for e in filled.query(GalleryQuery(search="4"))] == [4]
    assert filled.count(GalleryQuery(search="fox snow")) == 1
    assert filled.count(GalleryQuery(search='"unbalanced (quote OR')) == 0


def test_filters_model_date_and_sort(filled: GalleryIndex) -> None:
    assert [e.seed for e in filled.query(GalleryQuery(model="other"))] == [3]
    assert filled.models() == ["dream", "other"]
    old = _save("ancient", 99, when=datetime(2020, 1, 1, 12))
    filled.add_file(old)
    q = GalleryQuery(date_to=datetime(2021, 1, 1).timestamp())
    assert [e.prompt for e in filled.query(q)] == ["ancient"]
    assert filled.query(GalleryQuery(sort=SortOrder.oldest), limit=1)[0].prompt == "ancient"
    assert filled.query(GalleryQuery(sort=SortOrder.newest))[-1].prompt == "ancient"


def test_rebuild_from_files_equals_live_index(filled: GalleryIndex) -> None:
    _save("added live", 50)
    filled.add_file(next(paths.outputs_dir().rglob("*-50.png")))
    live = filled.snapshot()
    filled.close()
    os.remove(paths.data_dir() / "gallery.sqlite3")
    rebuilt = GalleryIndex()
    rebuilt.scan()
    assert rebuilt.snapshot() == live
    assert rebuilt.rebuild().added == len(live)
    assert rebuilt.snapshot() == live


def test_external_additions_and_removals_are_picked_up(filled: GalleryIndex,
                                                        tmp_path: Path) -> None:
    victim = filled.query(GalleryQuery(search="castle"))[0].path
    os.remove(victim)
    foreign = paths.outputs_dir() / "manual" / "from-a1111.png"
    foreign.parent.mkdir()
    info = PngImagePlugin.PngInfo()
    info.add_text("parameters", "a lighthouse\nSteps: 20, Sampler: Euler, CFG scale: 7, Seed: 5")
    Image.new("RGB", (4, 4)).save(foreign, pnginfo=info)
    plain = paths.outputs_dir() / "plain.jpg"
    Image.new("RGB", (4, 4)).save(plain)
    (paths.outputs_dir() / "notes.txt").write_text("not an image")
    stats = filled.scan()
    assert (stats.added, stats.removed, stats.unchanged) == (2, 1, 4)
    assert filled.count(GalleryQuery(search="castle")) == 0
    assert filled.query(GalleryQuery(search="lighthouse"))[0].source == "a1111"
    assert filled.entry(plain) is not None and filled.entry(plain).prompt == ""  # type: ignore[union-attr]


def test_changed_file_is_reread(filled: GalleryIndex) -> None:
    target = Path(filled.query(GalleryQuery(search="castle"))[0].path)
    request = GenerationRequest(prompt="a palace", seed=1)
    save_png(Image.new("RGB", (8, 8)), target, ImageMetadata.from_request(request))
    stats = filled.scan()
    assert stats.updated == 1
    assert filled.entry(target).prompt == "a palace"  # type: ignore[union-attr]


def test_favourites_survive_rebuild_and_index_deletion(filled: GalleryIndex) -> None:
    fox = filled.query(GalleryQuery(search="red fox"))[0]
    filled.set_favourite(fox.path, True)
    assert [e.path for e in filled.query(GalleryQuery(favourites_only=True))] == [fox.path]
    filled.rebuild()
    assert filled.query(GalleryQuery(favourites_only=True))[0].favourite
    filled.close()
    os.remove(paths.data_dir() / "gallery.sqlite3")
    again = GalleryIndex()
    again.scan()
    assert [e.path for e in again.query(GalleryQuery(favourites_only=True))] == [fox.path]
    again.set_favourite(fox.path, False)
    assert again.count(GalleryQuery(favourites_only=True)) == 0


def test_imported_folder_is_indexed_in_place(filled: GalleryIndex, tmp_path: Path) -> None:
    other = tmp_path / "elsewhere"
    other.mkdir()
    for name in ("one.png", "two.png"):
        shutil.copy(next(paths.outputs_dir().rglob("*.png")), other / name)
    filled.add_root(other)
    assert filled.scan().added == 2
    assert filled.count(GalleryQuery()) == 7
    assert (other / "one.png").exists()
    filled.rebuild()
    assert filled.count(GalleryQuery()) == 7


def test_corrupt_index_file_is_replaced(filled: GalleryIndex) -> None:
    filled.close()
    db = paths.data_dir() / "gallery.sqlite3"
    for suffix in ("-wal", "-shm"):
        Path(f"{db}{suffix}").unlink(missing_ok=True)
    db.write_bytes(b"this is not a database" * 100)
    index = GalleryIndex()
    assert index.count(GalleryQuery()) == 0
    index.scan()
    assert index.count(GalleryQuery()) == 5


def test_paging_covers_everything_once(filled: GalleryIndex) -> None:
    pages = [filled.query(GalleryQuery(), limit=2, offset=o) for o in (0, 2, 4, 6)]
    assert [len(p) for p in pages] == [2, 2, 1, 0]
    assert len({e.path for p in pages for e in p}) == 5


def test_temp_and_reserved_files_are_never_indexed(filled: GalleryIndex) -> None:
    folder = next(paths.outputs_dir().iterdir())
    (folder / ".00009-1.png.abcd.tmp").write_bytes(b"\x89PNG partial")
    storage.new_image_path(3)
    filled.scan()
    assert all(not Path(e.path).name.startswith(".")
               for e in filled.query(GalleryQuery(), limit=100))
    assert filled.count(GalleryQuery()) == 5


def test_fts_expression_quotes_everything() -> None:
    assert fts_expression('cat "dog" OR') == '"cat"* AND """dog"""* AND "OR"*'
    assert fts_expression("   ") == ""
    conn = sqlite3.connect(":memory:")
    conn.execute("CREATE VIRTUAL TABLE t USING fts5(a)")
    for text in ['a"b', "NEAR(", "*", "-x", "a:b", "(((", "AND"]:
        conn.execute("SELECT * FROM t WHERE t MATCH ?", (fts_expression(text),)).fetchall()


def test_keyset_paging_matches_offset_paging(filled: GalleryIndex) -> None:
    for sort in SortOrder:
        q = GalleryQuery(sort=sort)
        everything = filled.query(q, limit=100)
        pages: list[str] = []
        last = None
        while True:
            page = filled.query(q, limit=2, offset=len(pages), after=last)
            if not page:
                break
            pages += [e.path for e in page]
            last = page[-1]
        assert pages == [e.path for e in everything]


def test_both_search_plans_give_the_same_pages(filled: GalleryIndex,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    import desktop_app.gallery.index as index_module

    for sort in SortOrder:
        q = GalleryQuery(search="a", sort=sort)
        monkeypatch.setattr(index_module, "SCAN_PLAN_MIN_MATCHES", 10**9)
        filled._fts_counts.clear()
        by_rowid = [e.path for e in filled.query(q)]
        monkeypatch.setattr(index_module, "SCAN_PLAN_MIN_MATCHES", 0)
        filled._fts_counts.clear()
        by_scan = [e.path for e in filled.query(q)]
        assert by_rowid == by_scan and len(by_scan) == filled.count(q) == 5


def test_index_of_another_schema_version_is_rebuilt(filled: GalleryIndex) -> None:
    filled.set_favourite(filled.query(GalleryQuery(), limit=1)[0].path, True)
    filled.conn.execute("PRAGMA user_version=99")
    filled.close()
    index = GalleryIndex()
    assert index.count(GalleryQuery()) == 0
    index.scan()
    assert index.count(GalleryQuery()) == 5
    assert index.count(GalleryQuery(favourites_only=True)) == 1


def test_unopenable_index_folder_is_a_user_error(tmp_path: Path) -> None:
    from desktop_app.errors import UserError

    blocker = tmp_path / "not-a-folder"
    blocker.write_text("x")
    with pytest.raises((UserError, OSError)):
        GalleryIndex(blocker / "sub")
    folder = tmp_path / "index-as-folder"
    (folder / "gallery.sqlite3").mkdir(parents=True)
    with pytest.raises(UserError, match="Cannot open the gallery index"):
        GalleryIndex(folder)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
def test_fifo_named_like_an_image_does_not_block_the_scan(filled: GalleryIndex) -> None:
    from desktop_app.gallery.metadata import read_image_metadata

    fifo = paths.outputs_dir() / "trap.png"
    os.mkfifo(fifo)
    assert read_image_metadata(fifo) is None
    filled.scan()
    assert filled.entry(fifo) is None and filled.count(GalleryQuery()) == 5
