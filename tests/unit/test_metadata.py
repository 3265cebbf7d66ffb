"""Our metadata writer: A1111 infotext exactness, round trips, atomic saves, reserved names."""

from __future__ import annotations

import json
import os
import threading
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from desktop_app.gallery import png_encode, storage
from desktop_app.gallery.metadata import (
    ImageMetadata,
    format_a1111,
    parse_a1111,
    read_image_metadata,
    save_png,
)
from desktop_app.gallery.readers import png_text_chunks
from desktop_app.pipeline.api import GenerationRequest

SHA = "31e35c80fc4829d14f90153f4c74cd59c90b779f6afe05a74cd6ffb3a0e7ed8e"


def _meta(**changes: object) -> ImageMetadata:
    request = GenerationRequest(prompt="a cat", seed=1234, model="/m/sd15.safetensors")
    meta = ImageMetadata.from_request(request, model_hash=SHA)
    return ImageMetadata(**{**meta.__dict__, **changes})


def test_a1111_line_has_a1111_key_order_and_split_schedule() -> None:
    meta = _meta(negative_prompt="lowres", vae_name="vae.safetensors", vae_hash="b" * 64,
                 variation_seed=42, variation_strength=0.1, clip_skip=2, app_version="0.1.0")
    text = format_a1111(meta)
    assert text.splitlines() == [
        "a cat",
        "Negative prompt: lowres",
        "Steps: 25, Sampler: DPM++ 2M, Schedule type: Karras, CFG scale: 7, Seed: 1234, "
        "Size: 512x512, Model hash: 31e35c80fc, Model: sd15, VAE hash: bbbbbbbbbb, "
        "VAE: vae.safetensors, Variation seed: 42, Variation seed strength: 0.1, Clip skip: 2, "
        "Version: desktop-app 0.1.0",
    ]


def test_defaults_are_omitted_like_a1111() -> None:
    text = format_a1111(_meta(sampler="Euler a", cfg_scale=7.5, model_hash=""))
    assert "Negative prompt" not in text
    assert text.endswith(
        "Steps: 25, Sampler: Euler a, CFG scale: 7.5, Seed: 1234, Size: 512x512, "
        "Model: sd15, Version: desktop-app 0.1.0")


def test_values_with_commas_colons_or_newlines_are_json_quoted() -> None:
    meta = _meta(model_name="my, model: v2", extra={"Lora hashes": "a: 1, b: 2"})
    line = format_a1111(meta).splitlines()[-1]
    assert 'Model: "my, model: v2"' in line
    assert 'Lora hashes: "a: 1, b: 2"' in line
    parsed = parse_a1111(format_a1111(meta))
    assert parsed["Model"] == "my, model: v2"
    assert parsed["Lora hashes"] == "a: 1, b: 2"


def test_a1111_docstring_example_parses() -> None:
    text = ("girl with an artist's beret, determined, blue eyes, desert scene, ...\n"
            "Negative prompt: ugly, fat, obese, chubby, (((deformed))), [blurry], ...\n"
            "Steps: 20, Sampler: Euler a, CFG scale: 7, Seed: 965400086, Size: 512x512, "
            "Model hash: 45dee52b")
    res = parse_a1111(text)
    assert res["Prompt"].startswith("girl with an artist's beret")
    assert res["Negative prompt"].startswith("ugly, fat")
    assert (res["Steps"], res["Sampler"], res["Seed"]) == ("20", "Euler a", "965400086")
    assert (res["Size-1"], res["Size-2"], res["Clip skip"]) == ("512", "512", "1")


def test_last_line_with_fewer_than_three_pairs_is_prompt() -> None:
    res = parse_a1111("a castle\nstyle: gothic, mood: dark")
    assert res["Prompt"] == "a castle\nstyle: gothic, mood: dark"
    assert "style" not in res


def test_multiline_prompt_and_negative() -> None:
    res = parse_a1111("line one\nline two\nNegative prompt: bad\nworse\n"
                      "Steps: 5, Sampler: Euler, CFG scale: 3, Seed: 1")
    assert res["Prompt"] == "line one\nline two"
    assert res["Negative prompt"] == "bad\nworse"


def test_old_combined_sampler_name_is_split() -> None:
    res = parse_a1111("x\nSteps: 5, Sampler: DPM++ 2M Karras, CFG scale: 3, Seed: 1")
    assert (res["Sampler"], res["Schedule type"]) == ("DPM++ 2M", "Karras")


def test_escaped_quotes_inside_quoted_values() -> None:
    res = parse_a1111('x\nSteps: 5, Note: "say \\"hi\\", ok", CFG scale: 3, Seed: 1')
    assert res["Note"] == 'say "hi", ok'
    assert res["CFG scale"] == "3"


def test_save_png_round_trips_everything(tmp_path: Path) -> None:
    meta = _meta(negative_prompt="blurry\nugly", prompt="ünïcødé 猫, (x:1.2)")
    path = save_png(Image.new("RGB", (16, 16), "red"), tmp_path / "a.png", meta)
    assert read_image_metadata(path) == meta
    chunks = png_text_chunks(path)
    ours = json.loads(chunks["desktop_app"])
    assert ours["schema"] == 1 and ours["model_sha256"] == SHA
    assert ours["request"]["prompt"] == "a cat"
    assert parse_a1111(chunks["parameters"])["Model hash"] == SHA[:10]
    with Image.open(path) as image:
        assert image.getpixel((0, 0)) == (255, 0, 0)


def test_save_png_leaves_no_temp_file_when_encoding_fails(tmp_path: Path) -> None:
    class Broken(Exception):
        pass

    def explode(*_args: object, **_kwargs: object) -> None:
        raise Broken()

    (tmp_path / "out").mkdir()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(png_encode, "encode", explode)
        with pytest.raises(Broken):
            save_png(Image.new("RGB", (8, 8)), tmp_path / "out" / "b.png", _meta())
    assert list((tmp_path / "out").iterdir()) == []


def test_save_png_leaves_no_temp_file_when_the_write_fails(tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    def disk_full(*_args: object, **_kwargs: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(Path, "write_bytes", disk_full)
    with pytest.raises(OSError, match="No space left"):
        save_png(Image.new("RGB", (8, 8)), tmp_path / "out" / "b.png", _meta())
    assert list((tmp_path / "out").iterdir()) == []


def test_a_failed_save_gives_its_reserved_name_back(tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    from desktop_app.gallery import storage

    folder = tmp_path / "out"
    folder.mkdir()
    target = storage.reserve_numbered(folder, 7, 1)
    assert storage.reservation_marker(target).exists()

    def disk_full(*_args: object, **_kwargs: object) -> None:
        raise OSError(28, "No space left on device")

    with monkeypatch.context() as patch:
        patch.setattr(Path, "write_bytes", disk_full)
        with pytest.raises(OSError, match="No space left"):
            save_png(Image.new("RGB", (8, 8)), target, _meta())
    assert list(folder.iterdir()) == []  # no marker left until the next clean-up
    assert storage.reserve_numbered(folder, 7, 1) == target  # the name is free again


@pytest.mark.parametrize("given_scanlines", [False, True])
def test_save_png_converts_other_modes(tmp_path: Path, given_scanlines: bool) -> None:
    """…and scanlines given for the image as it was (one byte a pixel) are dropped, not
    deflated as the converted image's."""
    palette = Image.new("RGB", (6, 4), (10, 200, 30)).convert("P")
    meta = _meta()
    scanlines = (png_encode.filter_rows(np.asarray(palette), 0, 4, 1) if given_scanlines
                 else None)
    path = save_png(palette, tmp_path / "p.png", meta, scanlines=scanlines)
    with Image.open(path) as image:
        assert image.mode == "RGB"
        assert image.getpixel((5, 3)) == palette.convert("RGB").getpixel((5, 3))
    assert read_image_metadata(path) == meta


def test_new_image_path_layout_and_numbering(tmp_path: Path) -> None:
    when = datetime(2026, 3, 4, 10, 0)
    first = storage.new_image_path(7, root=tmp_path, when=when)
    assert first == tmp_path / "2026-03-04" / "00001-7.png"
    assert not first.exists()
    save_png(Image.new("RGB", (8, 8)), first, _meta())
    second = storage.new_image_path(8, root=tmp_path, when=when)
    assert second.name == "00002-8.png"
    assert [p.name for p in first.parent.iterdir() if not p.name.startswith(".")] == [first.name]


def test_new_image_path_is_unique_under_concurrency(tmp_path: Path) -> None:
    results: list[Path] = []
    lock = threading.Lock()

    def grab() -> None:
        for _ in range(20):
            path = storage.new_image_path(1, root=tmp_path)
            with lock:
                results.append(path)

    threads = [threading.Thread(target=grab) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(set(results)) == 80


def test_clean_stale_removes_only_old_litter(tmp_path: Path) -> None:
    tmp_path = tmp_path / "out"
    tmp_path.mkdir()
    old = tmp_path / ".00001-1.png.abc.tmp"
    old.write_bytes(b"x")
    young = tmp_path / ".00002-1.png.reserve"
    young.write_bytes(b"")
    image = tmp_path / "00003-1.png"
    image.write_bytes(b"x")
    os.utime(old, (0, 0))
    assert storage.clean_stale(tmp_path, max_age_s=60) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == [young.name, image.name]


@settings(max_examples=150, deadline=None)
@given(prompt=st.text(max_size=200), negative=st.text(max_size=100),
       model=st.text(max_size=40), seed=st.integers(0, 2**32 - 1))
def test_format_then_parse_keeps_values(prompt: str, negative: str, model: str,
                                        seed: int) -> None:
    meta = _meta(prompt=prompt, negative_prompt=negative, model_name=model, seed=seed)
    res = parse_a1111(format_a1111(meta))
    assert res["Seed"] == str(seed)
    assert res["Steps"] == "25"
    # A1111 strips each line; the round trip is exact up to that.
    if "\n" not in prompt and "Negative prompt:" not in prompt and "\r" not in prompt:
        assert res["Prompt"] == prompt.strip() or not prompt.strip()
    if model.strip() == model and model and "\r" not in model:
        assert res["Model"] == model


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=2000))
def test_parse_a1111_never_raises(text: str) -> None:
    res = parse_a1111(text)
    assert isinstance(res["Prompt"], str)


def test_parse_a1111_is_fast_on_hostile_input() -> None:
    import time
    hostile = "a" + " " * 200_000 + "b" * 200_000 + ": " + '"' * 50_000
    start = time.perf_counter()
    parse_a1111("p\n" + hostile)
    assert time.perf_counter() - start < 5.0


def test_empty_prompt_starts_with_parameters_like_a1111() -> None:
    text = format_a1111(_meta(prompt="", negative_prompt="bad"))
    assert text.startswith("Negative prompt: bad\nSteps: 25,")
    res = parse_a1111(text)
    assert (res["Prompt"], res["Negative prompt"], res["Steps"]) == ("", "bad", "25")


def test_windows_line_endings_parse() -> None:
    res = parse_a1111("a cat\r\nNegative prompt: dog\r\nSteps: 5, Sampler: Euler, Seed: 3\r\n")
    assert (res["Prompt"], res["Negative prompt"], res["Seed"]) == ("a cat", "dog", "3")
