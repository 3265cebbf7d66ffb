"""`desktop-app gallery list/rebuild/import` and "Use these parameters" value checks."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image, PngImagePlugin

from desktop_app import cli, paths
from desktop_app.gallery import storage
from desktop_app.gallery.metadata import ImageMetadata, save_png
from desktop_app.gallery.restore import restore_parameters
from desktop_app.gallery.thumbnails import ensure_thumbnail, thumbnail_path
from desktop_app.pipeline.api import GenerationRequest


def _save(prompt: str, seed: int) -> Path:
    request = GenerationRequest(prompt=prompt, negative_prompt="ugly", seed=seed,
                                model="/m/dream.safetensors", sampler="DDIM", cfg_scale=5.0)
    return save_png(Image.new("RGB", (8, 8)), storage.new_image_path(seed),
                    ImageMetadata.from_request(request))


def _list(capsys: pytest.CaptureFixture[str], *args: str) -> list[dict[str, object]]:
    assert cli.main(["gallery", "list", "--json", *args]) == 0
    return json.loads(capsys.readouterr().out)  # type: ignore[no-any-return]


def test_list_json_has_one_object_per_image(capsys: pytest.CaptureFixture[str]) -> None:
    path = _save("a quiet harbour", 7)
    _save("a loud market", 8)
    items = _list(capsys)
    assert len(items) == 2
    harbour = next(i for i in items if i["seed"] == 7)
    assert harbour["path"] == str(path)
    assert (harbour["prompt"], harbour["negative_prompt"]) == ("a quiet harbour", "ugly")
    assert (harbour["steps"], harbour["sampler"], harbour["cfg"]) == (25, "DDIM", 5.0)
    assert (harbour["size"], harbour["model"]) == ("512x512", "dream")


def test_list_search_filters(capsys: pytest.CaptureFixture[str]) -> None:
    _save("a quiet harbour", 7)
    _save("a loud market", 8)
    assert [i["seed"] for i in _list(capsys, "--search", "market")] == [8]
    assert _list(capsys, "--search", "nothing") == []


def test_import_indexes_a_folder_in_place(capsys: pytest.CaptureFixture[str],
                                          tmp_path: Path) -> None:
    folder = tmp_path / "a1111-outputs"
    folder.mkdir()
    info = PngImagePlugin.PngInfo()
    info.add_text("parameters", "old work\nSteps: 20, Sampler: Euler a, CFG scale: 7, Seed: 3")
    Image.new("RGB", (8, 8)).save(folder / "00001.png", pnginfo=info)
    assert cli.main(["gallery", "import", str(folder)]) == 0
    capsys.readouterr()
    items = _list(capsys)
    assert [(i["prompt"], i["seed"]) for i in items] == [("old work", 3)]
    assert (folder / "00001.png").exists()


def test_import_of_missing_folder_is_a_clean_error(capsys: pytest.CaptureFixture[str],
                                                   tmp_path: Path) -> None:
    assert cli.main(["gallery", "import", str(tmp_path / "nope")]) == 2
    assert "Not a folder" in capsys.readouterr().err


def test_rebuild_after_deleting_index(capsys: pytest.CaptureFixture[str]) -> None:
    _save("kept", 1)
    _list(capsys)
    (paths.data_dir() / "gallery.sqlite3").unlink()
    assert cli.main(["gallery", "rebuild"]) == 0
    assert "Indexed 1 images" in capsys.readouterr().out
    assert [i["prompt"] for i in _list(capsys, "--no-scan")] == ["kept"]


def test_restore_drops_values_our_engine_cannot_use() -> None:
    meta = ImageMetadata(prompt="p", sampler="dpmpp_3m_sde", steps=500, seed=2**40,
                         width=513, height=512, cfg_scale=7.0, model_name="unknown")
    restored = restore_parameters(meta, lambda name, sha: None)
    assert restored.values == {"prompt": "p", "negative_prompt": "", "cfg_scale": 7.0,
                               "clip_skip": 1}
    text = " ".join(restored.warnings)
    assert "dpmpp_3m_sde" in text and "Seed" in text and "513x512" in text
    assert "unknown" in text


def test_thumbnail_is_cached_per_version(tmp_path: Path) -> None:
    image = tmp_path / "big.png"
    Image.new("RGB", (1024, 512), "blue").save(image)
    thumb = ensure_thumbnail(str(image), 1)
    assert thumb == thumbnail_path(str(image), 1)
    with Image.open(thumb) as small:
        assert small.size == (192, 96)
    assert thumbnail_path(str(image), 2) != thumb
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\nbroken")
    assert ensure_thumbnail(str(broken), 1) is None


def test_restore_of_our_image_keeps_existing_model_and_vae_files(tmp_path: Path) -> None:
    model = tmp_path / "mine.safetensors"
    vae = tmp_path / "vae.safetensors"
    model.write_bytes(b"x")
    vae.write_bytes(b"x")
    request = GenerationRequest(prompt="p", seed=9, model=str(model), vae=str(vae),
                                variation_seed=0, variation_strength=0.3)
    restored = restore_parameters(ImageMetadata.from_request(request))
    assert restored.warnings == ()
    assert (restored.values["model"], restored.values["vae"]) == (str(model), str(vae))
    assert (restored.values["variation_seed"], restored.values["variation_strength"]) == (0, 0.3)
    GenerationRequest(**restored.values)
