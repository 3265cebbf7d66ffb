"""Family detection from safetensors headers: real key layouts, ModelSpec metadata, bad files.

The "full-size" files are header-only fakes: a real checkpoint's tensor names and shapes (built
on the meta device from the shipped configs and mapped to LDM names by our own mapping), with
all-zero sparse data, so no weights are generated or read.
"""

from __future__ import annotations

import functools
import json
import os
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from desktop_app.errors import ErrorKind, UserError
from desktop_app.library.detect import inspect_model_file, read_safetensors_header
from desktop_app.pipeline.api import ModelFamily
from tests.fixtures.tiny_models import full_size_ldm_shapes, write_header_only_safetensors


@functools.cache
def _shapes(family: str) -> dict[str, tuple[int, ...]]:
    return full_size_ldm_shapes(family)


def _fake(tmp_path: Path, family: str, metadata: dict[str, str] | None = None,
          name: str = "model.safetensors") -> Path:
    return write_header_only_safetensors(tmp_path / name, _shapes(family), metadata)


def _expect_corrupt(path: Path) -> UserError:
    with pytest.raises(UserError) as info:
        inspect_model_file(path)
    assert info.value.kind is ErrorKind.corrupt_file
    assert info.value.hint
    return info.value


# ---- real layouts ----------------------------------------------------------------------------


def test_tiny_sd15_ldm_file_is_an_sd15_checkpoint(tiny_sd15_file: Path) -> None:
    info = inspect_model_file(tiny_sd15_file)
    assert (info.kind, info.family, info.status) == ("checkpoint", ModelFamily.sd15, "ok")
    assert info.size_bytes == tiny_sd15_file.stat().st_size
    assert info.title == "tiny_sd15"


def test_tiny_sdxl_ldm_file_is_an_sdxl_checkpoint(tiny_sdxl_file: Path) -> None:
    info = inspect_model_file(tiny_sdxl_file)
    assert (info.kind, info.family, info.status) == ("checkpoint", ModelFamily.sdxl, "ok")


def test_tiny_sd2_ldm_file_is_sd2_defaulting_to_768_v(tiny_sd2_file: Path,
                                                        tiny_sd2_dir: Path) -> None:
    info = inspect_model_file(tiny_sd2_file)
    assert (info.kind, info.family, info.status) == ("checkpoint", ModelFamily.sd2_768_v, "ok")
    assert inspect_model_file(tiny_sd2_dir).family is ModelFamily.sd2_768_v


def test_full_size_sd15_header_is_sd15(tmp_path: Path) -> None:
    info = inspect_model_file(_fake(tmp_path, "sd15"))
    assert (info.family, info.status, info.prediction_type) == (ModelFamily.sd15, "ok", "epsilon")
    assert info.size_bytes > 1_900_000_000  # the real fp16 size, written sparse


def test_full_size_sdxl_header_is_sdxl(tmp_path: Path) -> None:
    info = inspect_model_file(_fake(tmp_path, "sdxl"))
    assert (info.kind, info.family, info.status) == ("checkpoint", ModelFamily.sdxl, "ok")


def test_sd2_without_metadata_defaults_to_768_v_and_says_how_to_override(tmp_path: Path) -> None:
    info = inspect_model_file(_fake(tmp_path, "sd2-512"))
    assert info.family is ModelFamily.sd2_768_v
    assert info.prediction_type == "v_prediction"
    assert "epsilon" in info.reason


@pytest.mark.parametrize(("metadata", "family"), [
    ({"modelspec.architecture": "stable-diffusion-v2-512"}, ModelFamily.sd2_512),
    ({"modelspec.architecture": "stable-diffusion-v2-768-v"}, ModelFamily.sd2_768_v),
    ({"modelspec.prediction_type": "epsilon"}, ModelFamily.sd2_512),
    ({"modelspec.prediction_type": "v"}, ModelFamily.sd2_768_v),
])
def test_modelspec_decides_between_sd2_512_and_768_v(
        tmp_path: Path, metadata: dict[str, str], family: ModelFamily) -> None:
    info = inspect_model_file(_fake(tmp_path, "sd2-768-v", metadata))
    assert info.family is family
    assert info.reason == ""


def test_sdxl_refiner_is_unsupported_with_a_reason(tmp_path: Path) -> None:
    # A refiner has only the OpenCLIP-bigG encoder, as embedders.0, and 1280-wide cross-attention.
    shapes = {}
    for name, shape in _shapes("sdxl").items():
        if name.startswith("conditioner.embedders.0."):
            continue
        name = name.replace("conditioner.embedders.1.", "conditioner.embedders.0.")
        if name.endswith("attn2.to_k.weight"):
            shape = (shape[0], 1280)
        shapes[name] = shape
    info = inspect_model_file(write_header_only_safetensors(tmp_path / "r.safetensors", shapes))
    assert (info.kind, info.family, info.status) == ("checkpoint", None, "unsupported")
    assert "refiner" in info.reason.lower()


def test_inpainting_checkpoint_is_unsupported(tmp_path: Path) -> None:
    shapes = dict(_shapes("sd15"))
    shapes["model.diffusion_model.input_blocks.0.0.weight"] = (320, 9, 3, 3)
    path = write_header_only_safetensors(tmp_path / "inpaint.safetensors", shapes)
    info = inspect_model_file(path)
    assert info.status == "unsupported" and "inpainting" in info.reason


def test_unet_only_file_is_unsupported(tmp_path: Path) -> None:
    shapes = {k: v for k, v in _shapes("sd15").items() if k.startswith("model.diffusion_model.")}
    info = inspect_model_file(write_header_only_safetensors(tmp_path / "u.safetensors", shapes))
    assert info.status == "unsupported" and "UNet" in info.reason


def test_lora_file_is_a_lora_and_unsupported(tmp_path: Path) -> None:
    shapes = {"lora_unet_down_blocks_0_attentions_0_proj_in.lora_down.weight": (4, 320, 1, 1),
              "lora_unet_down_blocks_0_attentions_0_proj_in.lora_up.weight": (320, 4, 1, 1),
              "lora_unet_down_blocks_0_attentions_0_proj_in.alpha": ()}
    info = inspect_model_file(write_header_only_safetensors(tmp_path / "l.safetensors", shapes))
    assert (info.kind, info.status) == ("lora", "unsupported")


@pytest.mark.parametrize("prefix", ["", "first_stage_model.", "vae."])
def test_standalone_vae_files_are_vaes(tmp_path: Path, prefix: str) -> None:
    shapes = {prefix + k.removeprefix("first_stage_model."): v for k, v in _shapes("sd15").items()
              if k.startswith("first_stage_model.")}
    info = inspect_model_file(write_header_only_safetensors(tmp_path / "v.safetensors", shapes))
    assert (info.kind, info.family, info.status) == ("vae", None, "ok")


def test_tiny_vae_fixture_is_a_vae(tiny_vae_file: Path) -> None:
    assert inspect_model_file(tiny_vae_file).kind == "vae"


def test_taesd_decoder_files_are_taesd(tmp_path: Path) -> None:
    original = {"1.weight": (64, 4, 3, 3), "1.bias": (64,), "3.conv.0.weight": (64, 64, 3, 3)}
    diffusers = {"decoder.layers.0.weight": (64, 4, 3, 3), "decoder.layers.0.bias": (64,)}
    for name, shapes in (("a", original), ("b", diffusers)):
        path = write_header_only_safetensors(tmp_path / f"{name}.safetensors", shapes)
        assert inspect_model_file(path).kind == "taesd"


def test_textual_inversion_embeddings_are_unsupported(tmp_path: Path) -> None:
    for name, shapes in (("sd", {"emb_params": (2, 768)}),
                         ("xl", {"clip_l": (2, 768), "clip_g": (2, 1280)})):
        path = write_header_only_safetensors(tmp_path / f"{name}.safetensors", shapes)
        info = inspect_model_file(path)
        assert info.status == "unsupported" and "inversion" in info.reason


def test_unrelated_tensors_are_unknown(tmp_path: Path) -> None:
    path = write_header_only_safetensors(tmp_path / "x.safetensors", {"fc.weight": (10, 10)})
    info = inspect_model_file(path)
    assert (info.kind, info.status) == ("unknown", "unsupported")


def test_modelspec_text_is_cleaned_and_only_data_uri_thumbnails_kept(tmp_path: Path) -> None:
    meta = {"modelspec.title": "My\x00 Model\x1b", "modelspec.description": "d" * 10_000,
            "modelspec.thumbnail": "data:image/png;base64,AAAA"}
    info = inspect_model_file(_fake(tmp_path, "sd15", meta))
    assert info.title == "My Model"
    assert len(info.description) == 4000
    assert info.thumbnail == "data:image/png;base64,AAAA"
    remote = {"modelspec.thumbnail": "https://example.com/t.png"}
    other = _fake(tmp_path, "sd15", remote, "o.safetensors")
    assert inspect_model_file(other).thumbnail is None


def test_pickle_checkpoints_need_conversion(tmp_path: Path) -> None:
    path = tmp_path / "old.ckpt"
    path.write_bytes(b"PK\x03\x04 not inspected")
    info = inspect_model_file(path)
    assert (info.kind, info.family, info.status, info.needs_conversion) == (
        "checkpoint", None, "ok", True)


@pytest.mark.parametrize(("folder", "family"), [
    ("sd15", ModelFamily.sd15), ("sd2-512", ModelFamily.sd2_512),
    ("sd2-768-v", ModelFamily.sd2_768_v), ("sdxl", ModelFamily.sdxl)])
def test_diffusers_folders_get_their_family_from_the_configs(folder: str,
                                                             family: ModelFamily) -> None:
    from desktop_app import paths

    info = inspect_model_file(paths.resource("configs", folder))
    assert (info.kind, info.family, info.status) == ("checkpoint", family, "ok")


def test_tiny_diffusers_folders(tiny_sd15_dir: Path, tiny_sdxl_dir: Path) -> None:
    assert inspect_model_file(tiny_sd15_dir).family is ModelFamily.sd15
    assert inspect_model_file(tiny_sdxl_dir).family is ModelFamily.sdxl


def test_folder_without_model_index_is_not_a_model(tmp_path: Path) -> None:
    assert inspect_model_file(tmp_path).status == "unsupported"


# ---- bad files -------------------------------------------------------------------------------


def test_missing_file_is_missing_file(tmp_path: Path) -> None:
    with pytest.raises(UserError) as info:
        inspect_model_file(tmp_path / "nope.safetensors")
    assert info.value.kind is ErrorKind.missing_file


def test_empty_file_is_corrupt(tmp_path: Path) -> None:
    path = tmp_path / "empty.safetensors"
    path.write_bytes(b"")
    assert "empty" in _expect_corrupt(path).message


def test_truncated_file_is_corrupt(tmp_path: Path, tiny_sd15_file: Path) -> None:
    data = tiny_sd15_file.read_bytes()
    path = tmp_path / "cut.safetensors"
    path.write_bytes(data[: len(data) // 2])
    assert "truncated" in _expect_corrupt(path).message


def test_file_cut_inside_the_header_is_corrupt(tmp_path: Path, tiny_sd15_file: Path) -> None:
    path = tmp_path / "cut.safetensors"
    path.write_bytes(tiny_sd15_file.read_bytes()[:100])
    _expect_corrupt(path)


def test_random_bytes_are_corrupt(tmp_path: Path) -> None:
    path = tmp_path / "random.safetensors"
    path.write_bytes(os.urandom(4096))
    _expect_corrupt(path)


def test_header_that_is_not_json_is_corrupt(tmp_path: Path) -> None:
    path = tmp_path / "bad.safetensors"
    body = b"{not json at all}"
    path.write_bytes(struct.pack("<Q", len(body)) + body)
    assert "JSON" in _expect_corrupt(path).message


def test_lying_header_whose_offsets_exceed_the_file_is_corrupt(tmp_path: Path) -> None:
    header = {"w": {"dtype": "F16", "shape": [1024, 1024], "data_offsets": [0, 2 * 1024 * 1024]}}
    body = json.dumps(header).encode()
    path = tmp_path / "liar.safetensors"
    path.write_bytes(struct.pack("<Q", len(body)) + body + b"\0" * 16)
    _expect_corrupt(path)


def test_offsets_that_disagree_with_the_shape_are_corrupt(tmp_path: Path) -> None:
    header = {"w": {"dtype": "F32", "shape": [4, 4], "data_offsets": [0, 8]}}
    body = json.dumps(header).encode()
    path = tmp_path / "odd.safetensors"
    path.write_bytes(struct.pack("<Q", len(body)) + body + b"\0" * 64)
    _expect_corrupt(path)


def test_huge_header_length_is_refused_without_reading_it(tmp_path: Path) -> None:
    path = tmp_path / "huge.safetensors"
    path.write_bytes(struct.pack("<Q", 2**40) + b"{}")
    _expect_corrupt(path)


def test_header_reader_returns_metadata_and_data_start(tiny_vae_file: Path) -> None:
    header = read_safetensors_header(tiny_vae_file)
    (length,) = struct.unpack("<Q", tiny_vae_file.read_bytes()[:8])
    assert header.data_start == 8 + length
    assert all(t.end + header.data_start <= header.file_size for t in header.tensors.values())


def test_detection_and_hashing_do_not_import_torch() -> None:
    code = ("import sys, desktop_app.library.detect, desktop_app.library.hashing;"
            "print([m for m in ('torch', 'diffusers', 'transformers') if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
