"""models.toml: the shipped catalog is valid; user additions merge; typos don't crash."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from desktop_app import paths
from desktop_app.errors import UserError
from desktop_app.library.catalog import load_catalog, user_catalog_path
from desktop_app.pipeline.api import GenerationRequest, ModelFamily


def _write_user(text: str) -> Path:
    path = user_catalog_path()
    path.write_text(text, encoding="utf-8")
    return path


def test_shipped_catalog_has_every_family_with_valid_request_defaults() -> None:
    catalog = load_catalog()
    assert catalog.problems == ()
    assert set(catalog.families) == {f.value for f in ModelFamily}
    for family in ModelFamily:
        preset = catalog.family(family)
        request = GenerationRequest(prompt="x").replace(**preset.request_defaults())
        assert (request.width, request.height) == (family.native_size, family.native_size)
        assert paths.resource("configs", preset.config, "model_index.json").is_file()
        for width, height in preset.sizes + preset.buckets:
            GenerationRequest(prompt="x", width=width, height=height)
    assert catalog.family("sd2-768-v").prediction_type == "v_prediction"
    assert catalog.family("sdxl").buckets


def test_shipped_downloads_are_verified_https_entries_of_each_kind() -> None:
    catalog = load_catalog()
    kinds = {e.kind for e in catalog.entries.values()}
    assert kinds == {"checkpoint", "vae", "taesd"}
    families = {e.family for e in catalog.entries.values() if e.kind == "checkpoint"}
    assert families == {"sd15", "sd2-512", "sd2-768-v", "sdxl"}
    for entry in catalog.entries.values():
        assert entry.verified and re.fullmatch(r"[0-9a-f]{64}", entry.sha256 or "")
        assert entry.size and entry.license and entry.description
        assert all(u.startswith("https://") for u in entry.urls)
    assert "sdxl-vae-fp16-fix" in catalog.entries


def test_family_presets_pick_the_sdxl_bucket_nearest_to_an_aspect_ratio() -> None:
    sdxl = load_catalog().family(ModelFamily.sdxl)
    assert sdxl.nearest_bucket(1920, 1080) == (1344, 768)
    assert sdxl.nearest_bucket(1000, 1000) == (1024, 1024)


def test_user_file_adds_an_entry_and_overrides_a_family_field() -> None:
    _write_user(
        """
        [families.sd15]
        steps = 40
        clip_skip = 2

        [models.my-anime]
        kind = "checkpoint"
        family = "sd15"
        title = "My anime model"
        urls = ["https://example.org/anime.safetensors"]
        filename = "anime.safetensors"

        [library]
        folders = ["/srv/stable-diffusion-webui"]
        """
    )
    catalog = load_catalog()
    assert catalog.problems == ()
    assert catalog.family("sd15").steps == 40 and catalog.family("sd15").clip_skip == 2
    assert catalog.family("sd15").width == 512  # untouched fields keep the shipped value
    entry = catalog.entry("my-anime")
    assert not entry.verified and entry.sha256 is None
    assert catalog.library.folders == (Path("/srv/stable-diffusion-webui"),)
    assert catalog.entry("sd15").verified  # shipped entries survive


def test_broken_user_toml_is_reported_and_the_shipped_catalog_still_loads() -> None:
    _write_user("[models.oops\nkind = ")
    catalog = load_catalog()
    assert len(catalog.problems) == 1 and "not valid TOML" in catalog.problems[0]
    assert "sd15" in catalog.entries


@pytest.mark.parametrize(
    ("table", "expected"),
    [
        ('[families.sd15]\nsampler = "Nope"', "unknown sampler"),
        ("[families.sd15]\nwidth = 500", "multiples of 8"),
        ("[families.sd15]\nsteps = 0", "outside"),
        ('[families.flux]\nlabel = "x"', "unknown family"),
        ('[models.x]\nkind = "lora"', "kind must be one of"),
        ('[models.x]\nkind = "vae"\nurls = ["http://a/b"]\nfilename = "b"', "https://"),
        ('[models.x]\nkind = "vae"\nurls = ["https://a/b"]\nfilename = "../b"',
         "plain file name"),
        ('[models.x]\nkind = "vae"\nurls = ["https://a/b"]\nfilename = "b"\nsha256 = "12"',
         "64 hexadecimal"),
    ],
)
def test_invalid_user_entries_are_skipped_with_a_reason(table: str, expected: str) -> None:
    _write_user(table)
    catalog = load_catalog()
    assert any(expected in p for p in catalog.problems), catalog.problems
    assert catalog.family("sd15").sampler == "DPM++ 2M Karras"  # shipped value kept
    assert "x" not in catalog.entries


def test_an_invalid_shipped_catalog_raises(tmp_path: Path) -> None:
    bad = tmp_path / "models.toml"
    bad.write_text('schema_version = 1\n[families.sd15]\nlabel = "x"\n', encoding="utf-8")
    with pytest.raises(UserError, match="missing 'width'"):
        load_catalog(shipped=bad)
    with pytest.raises(UserError, match="not found"):
        load_catalog(shipped=tmp_path / "absent.toml")


def test_newer_schema_version_is_refused_clearly(tmp_path: Path) -> None:
    _write_user("schema_version = 2\n")
    catalog = load_catalog()
    assert any("schema_version 2" in p for p in catalog.problems)


def test_unknown_ids_raise_user_errors_with_the_known_ones() -> None:
    catalog = load_catalog()
    with pytest.raises(UserError, match="sdxl-base"):
        catalog.entry("sdxl")
    with pytest.raises(UserError, match="sd15"):
        catalog.family("flux")


def test_find_by_sha256_names_a_known_file() -> None:
    catalog = load_catalog()
    digest = catalog.entry("sd15").sha256
    assert digest is not None
    found = catalog.find_by_sha256(digest.upper())
    assert found is not None and found.id == "sd15"
    assert catalog.find_by_sha256("0" * 64) is None
