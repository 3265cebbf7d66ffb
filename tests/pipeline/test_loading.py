"""Offline model loading on tiny random-weight models: every source kind, VAE swap, bad inputs.

The network is disabled for every test here (socket connect raises), so anything that tried the
Hugging Face Hub would fail loudly.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import random
import socket
import sys
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

from desktop_app import paths
from desktop_app.errors import ErrorKind, UserError
from desktop_app.pipeline.api import LoadUpdate, ModelFamily
from desktop_app.pipeline.backend import device, loading
from desktop_app.pipeline.backend.ckpt import convert_ckpt_to_safetensors
from desktop_app.pipeline.backend.loading import LoadedModel, load_model, swap_vae
from tests.fixtures import ldm_keys


@pytest.fixture(autouse=True)
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise OSError("network disabled in tests")

    monkeypatch.setattr(socket.socket, "connect", refuse)


def _image(loaded: LoadedModel, seed: int = 0) -> Any:
    return loaded.pipe("a photo of a cat", num_inference_steps=1, height=64, width=64,
                       generator=torch.Generator().manual_seed(seed), output_type="np").images[0]


def _decode(loaded: LoadedModel) -> Any:
    latents = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(3))
    vae = loaded.pipe.vae
    with torch.no_grad():
        return vae.decode(latents.to(vae.dtype) / vae.config.scaling_factor).sample


def _assert_same_weights(a: Any, b: Any) -> None:
    for name in ("unet", "vae", "text_encoder", "text_encoder_2"):
        ma, mb = getattr(a, name, None), getattr(b, name, None)
        if ma is None:
            assert mb is None
            continue
        sa, sb = ma.state_dict(), mb.state_dict()
        assert sa.keys() == sb.keys(), name
        assert all(torch.equal(sa[k], sb[k]) for k in sa), name


def _reallocate_weights(pipe: Any) -> None:
    for name in ("unet", "vae", "text_encoder", "text_encoder_2"):
        module = getattr(pipe, name, None)
        for param in module.parameters() if module is not None else ():
            param.data = param.data.clone()


def _compare_in_fresh_memory(single: LoadedModel, folder: LoadedModel) -> None:
    """Equal weights must give bit-identical images.

    from_pretrained leaves some weights in the file's mmap at unaligned addresses, which changes
    CPU matmul rounding (~1e-7) depending on thread count and allocation. With every weight
    copied into fresh memory the images are bit-identical.
    """
    for pipe in (single.pipe, folder.pipe):
        _reallocate_weights(pipe)
    assert (_image(single) == _image(folder)).all()


# ---- each source kind ------------------------------------------------------------------------


def test_sd15_diffusers_folder_loads(tiny_sd15_dir: Path) -> None:
    loaded = load_model(str(tiny_sd15_dir))
    assert loaded.family is ModelFamily.sd15
    assert type(loaded.pipe).__name__ == "StableDiffusionPipeline"
    assert (loaded.name, loaded.sha256, loaded.vae_name) == (tiny_sd15_dir.name, "", "")
    assert loaded.path == str(tiny_sd15_dir.resolve())
    assert loaded.device.device == "cpu" and loaded.device.info.dtype == "float32"


def test_sd15_single_file_with_model_config_matches_the_folder_bit_for_bit(
        tiny_sd15_file: Path, tiny_sd15_config: Path, tiny_sd15_dir: Path) -> None:
    single = load_model(str(tiny_sd15_file), model_config=str(tiny_sd15_config))
    folder = load_model(str(tiny_sd15_dir))
    assert single.family is ModelFamily.sd15
    _assert_same_weights(single.pipe, folder.pipe)
    _compare_in_fresh_memory(single, folder)


# diffusers' EulerDiscreteScheduler.set_timesteps calls np.array(tensor), which numpy 2 flags
# with a DeprecationWarning under torch 2.13; harmless, and not our code.
@pytest.mark.filterwarnings("ignore:__array__ implementation doesn't accept a copy keyword")
def test_sdxl_single_file_with_model_config_matches_the_folder(
        tiny_sdxl_file: Path, tiny_sdxl_config: Path, tiny_sdxl_dir: Path) -> None:
    single = load_model(str(tiny_sdxl_file), model_config=str(tiny_sdxl_config))
    folder = load_model(str(tiny_sdxl_dir))
    assert single.family is folder.family is ModelFamily.sdxl
    assert type(single.pipe).__name__ == "StableDiffusionXLPipeline"
    assert single.pipe.tokenizer_2.pad_token == "!"
    _assert_same_weights(single.pipe, folder.pipe)
    _compare_in_fresh_memory(single, folder)


def test_sd2_single_file_with_model_config_matches_the_folder_bit_for_bit(
        tiny_sd2_file: Path, tiny_sd2_config: Path, tiny_sd2_dir: Path) -> None:
    single = load_model(str(tiny_sd2_file), model_config=str(tiny_sd2_config))
    folder = load_model(str(tiny_sd2_dir))
    assert single.family is folder.family is ModelFamily.sd2_768_v
    assert single.pipe.tokenizer.pad_token == "!"  # ours, as SD2 needs
    assert single.pipe.scheduler.config.prediction_type == "v_prediction"
    _assert_same_weights(single.pipe, folder.pipe)
    _compare_in_fresh_memory(single, folder)


def test_single_file_hash_is_the_full_sha256_and_is_cached(tiny_sd15_file: Path,
                                                          tiny_sd15_config: Path) -> None:
    loaded = load_model(str(tiny_sd15_file), model_config=str(tiny_sd15_config))
    assert loaded.sha256 == hashlib.sha256(tiny_sd15_file.read_bytes()).hexdigest()
    cache = (paths.cache_dir() / "hashes.json").read_text()
    assert loaded.sha256 in cache


def test_hub_style_folder_with_fp16_variant_files_loads(tmp_path: Path,
                                                        tiny_sd15_dir: Path) -> None:
    import shutil

    folder = tmp_path / "hub"
    shutil.copytree(tiny_sd15_dir, folder)
    for weights in folder.glob("*/*.safetensors"):
        weights.rename(weights.with_name(weights.name.replace(".safetensors", ".fp16.safetensors")))
    reference = load_model(str(tiny_sd15_dir))
    loaded = load_model(str(folder))
    _assert_same_weights(loaded.pipe, reference.pipe)


def test_config_folder_tokenizer_is_used_when_present(
        tmp_path: Path, tiny_sd15_file: Path, tiny_sd15_config: Path, tiny_sd15_dir: Path) -> None:
    import shutil

    config = tmp_path / "config"
    shutil.copytree(tiny_sd15_config, config)
    shutil.copytree(tiny_sd15_dir / "tokenizer", config / "tokenizer")
    cfg = config / "tokenizer" / "tokenizer_config.json"
    cfg.write_text(cfg.read_text().replace('"model_max_length": 77', '"model_max_length": 60'))
    loaded = load_model(str(tiny_sd15_file), model_config=str(config))
    assert loaded.pipe.tokenizer.model_max_length == 60


def test_load_reports_stages_in_order(tiny_sd15_file: Path, tiny_sd15_config: Path) -> None:
    updates: list[LoadUpdate] = []
    load_model(str(tiny_sd15_file), model_config=str(tiny_sd15_config), on_load=updates.append)
    fractions = [u.fraction for u in updates]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0
    assert all(u.stage for u in updates)


def test_prediction_type_override_reaches_the_scheduler(tiny_sd15_file: Path,
                                                        tiny_sd15_config: Path) -> None:
    loaded = load_model(str(tiny_sd15_file), model_config=str(tiny_sd15_config),
                        prediction_type="v_prediction")
    assert loaded.pipe.scheduler.config.prediction_type == "v_prediction"


def test_sd2_files_pick_their_shipped_config_from_metadata_or_override(tmp_path: Path) -> None:
    from tests.fixtures.tiny_models import full_size_ldm_shapes, write_header_only_safetensors

    path = write_header_only_safetensors(tmp_path / "sd2.safetensors",
                                         full_size_ldm_shapes("sd2-512"))
    default = loading._single_file_source(path, None, None)
    assert default.family is ModelFamily.sd2_768_v
    assert default.config_dir == paths.resource("configs", "sd2-768-v")
    eps = loading._single_file_source(path, None, "epsilon")
    assert eps.family is ModelFamily.sd2_512 and eps.prediction_type is None
    assert eps.config_dir == paths.resource("configs", "sd2-512")


# ---- VAE -------------------------------------------------------------------------------------


def test_vae_swap_changes_pixels_and_back_restores_them(
        tiny_sd15_dir: Path, tiny_vae_file: Path) -> None:
    loaded = load_model(str(tiny_sd15_dir))
    unet = loaded.pipe.unet
    baked = _decode(loaded)
    swap_vae(loaded, str(tiny_vae_file))
    assert loaded.vae_name == "tiny_vae"
    assert loaded.vae_sha256 == hashlib.sha256(tiny_vae_file.read_bytes()).hexdigest()
    assert not torch.equal(_decode(loaded), baked)
    assert loaded.pipe.unet is unet  # the UNet was not reloaded
    swap_vae(loaded, None)
    assert (loaded.vae_name, loaded.vae_sha256) == ("", "")
    assert torch.equal(_decode(loaded), baked)


def test_standalone_vae_uses_the_base_family_scaling_factor(
        tiny_sdxl_file: Path, tiny_sdxl_config: Path, tiny_sd15_dir: Path,
        tiny_vae_file: Path) -> None:
    xl = load_model(str(tiny_sdxl_file), model_config=str(tiny_sdxl_config),
                    vae=str(tiny_vae_file))
    assert xl.pipe.vae.config.scaling_factor == 0.13025
    assert xl.vae_name == "tiny_vae"
    sd = load_model(str(tiny_sd15_dir), vae=str(tiny_vae_file))
    assert sd.pipe.vae.config.scaling_factor == 0.18215


def test_vae_file_weights_arrive_intact(tiny_sd15_dir: Path, tiny_vae_file: Path) -> None:
    from safetensors.torch import load_file

    loaded = load_model(str(tiny_sd15_dir), vae=str(tiny_vae_file))
    vae = loaded.pipe.vae
    written = load_file(str(tiny_vae_file))
    mapped = ldm_keys.vae_to_ldm(vae.state_dict(), vae.config, prefix="")
    assert mapped.keys() == written.keys()
    assert all(torch.equal(mapped[k], written[k]) for k in written)


def test_pickle_vae_is_converted_and_used(tiny_sd15_dir: Path, tiny_vae_file: Path,
                                          tmp_path: Path) -> None:
    from safetensors.torch import load_file

    pt = tmp_path / "old.vae.pt"
    torch.save({"state_dict": load_file(str(tiny_vae_file))}, pt)
    loaded = load_model(str(tiny_sd15_dir), vae=str(pt))
    reference = load_model(str(tiny_sd15_dir), vae=str(tiny_vae_file))
    assert loaded.vae_sha256 == hashlib.sha256(pt.read_bytes()).hexdigest()
    assert torch.equal(_decode(loaded), _decode(reference))


def test_bad_vae_keeps_the_current_one(tiny_sd15_dir: Path, tmp_path: Path) -> None:
    loaded = load_model(str(tiny_sd15_dir))
    vae = loaded.pipe.vae
    broken = tmp_path / "broken.safetensors"
    broken.write_bytes(os.urandom(1000))
    with pytest.raises(UserError) as info:
        swap_vae(loaded, str(broken))
    assert info.value.kind is ErrorKind.corrupt_file
    assert loaded.pipe.vae is vae and loaded.vae_name == ""


# ---- .ckpt -----------------------------------------------------------------------------------


def _lightning_ckpt(tmp_path: Path, state: dict[str, torch.Tensor],
                    monkeypatch: pytest.MonkeyPatch, legacy: bool = False) -> Path:
    """A .ckpt like 2022 SD releases: state_dict plus a pickled Lightning ModelCheckpoint."""
    module = types.ModuleType("pytorch_lightning.callbacks.model_checkpoint")

    class ModelCheckpoint:
        def __init__(self) -> None:
            self.best_model_score = 0.5
            self.dirpath = "/logs"

    ModelCheckpoint.__module__ = module.__name__
    ModelCheckpoint.__qualname__ = "ModelCheckpoint"
    module.ModelCheckpoint = ModelCheckpoint  # type: ignore[attr-defined]
    for name in ("pytorch_lightning", "pytorch_lightning.callbacks", module.__name__):
        monkeypatch.setitem(sys.modules, name, module if name == module.__name__
                            else types.ModuleType(name))
    path = tmp_path / "lightning.ckpt"
    torch.save({"state_dict": state, "global_step": 470000, "epoch": 6,
                "callbacks": {"ModelCheckpoint": ModelCheckpoint()}}, path,
               _use_new_zipfile_serialization=not legacy)
    for name in ("pytorch_lightning", "pytorch_lightning.callbacks", module.__name__):
        monkeypatch.delitem(sys.modules, name)
    return path


def test_lightning_ckpt_converts_and_loads(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, tiny_sd15_file: Path,
        tiny_sd15_config: Path) -> None:
    from safetensors.torch import load_file

    state = load_file(str(tiny_sd15_file))
    ckpt = _lightning_ckpt(tmp_path, state, monkeypatch)
    loaded = load_model(str(ckpt), model_config=str(tiny_sd15_config))
    sha = hashlib.sha256(ckpt.read_bytes()).hexdigest()
    assert (loaded.name, loaded.sha256, loaded.family) == ("lightning", sha, ModelFamily.sd15)
    converted = paths.cache_dir() / "converted" / f"{sha}.safetensors"
    assert converted.is_file()
    reference = load_model(str(tiny_sd15_file), model_config=str(tiny_sd15_config))
    _assert_same_weights(loaded.pipe, reference.pipe)


@pytest.mark.parametrize("legacy", [False, True], ids=["zip", "pre-zip-format"])
def test_convert_ckpt_writes_an_equal_safetensors_file(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, legacy: bool) -> None:
    from safetensors.torch import load_file

    base = torch.randn(4, 4)
    state = {"a": base, "b": base[0]}  # shared storage, as in many pickles
    out = convert_ckpt_to_safetensors(_lightning_ckpt(tmp_path, state, monkeypatch, legacy),
                                      tmp_path / "out" / "m.safetensors")
    back = load_file(str(out))
    assert torch.equal(back["a"], base) and torch.equal(back["b"], base[0])
    assert sorted(p.name for p in out.parent.iterdir()) == ["m.safetensors"]


class _TouchPayload:
    def __init__(self, target: Path) -> None:
        self.target = target

    def __reduce__(self) -> tuple[Any, ...]:
        return (Path.touch, (self.target,))


@pytest.mark.parametrize("style", ["torch_zip", "plain_pickle"])
def test_malicious_ckpt_is_refused_and_never_executed(tmp_path: Path, style: str) -> None:
    target = tmp_path / "pwned"
    path = tmp_path / "evil.ckpt"
    payload = {"state_dict": {"w": torch.zeros(2)}, "x": _TouchPayload(target)}
    if style == "torch_zip":
        torch.save(payload, path)
    else:
        path.write_bytes(pickle.dumps(payload))
    assert not target.exists()
    with pytest.raises(UserError) as info:
        load_model(str(path))
    assert info.value.kind is ErrorKind.unsafe_file
    assert "never executed" in info.value.message and info.value.hint
    assert not target.exists()


# ---- bad inputs ------------------------------------------------------------------------------


def _error(model: str | None, **kwargs: Any) -> UserError:
    with pytest.raises(UserError) as info:
        load_model(model, **kwargs)
    assert info.value.hint, info.value
    return info.value


def test_missing_model_file(tmp_path: Path) -> None:
    assert _error(str(tmp_path / "nope.safetensors")).kind is ErrorKind.missing_file


def test_missing_demo_model(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(loading, "default_model_path", lambda: tmp_path / "no-demo")
    assert _error(None).kind is ErrorKind.missing_file


@pytest.mark.parametrize("content", [b"", b"\x07", os.urandom(3000)],
                         ids=["zero-bytes", "one-byte", "random-bytes"])
def test_broken_safetensors_are_corrupt(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "bad.safetensors"
    path.write_bytes(content)
    assert _error(str(path)).kind is ErrorKind.corrupt_file


def test_truncated_safetensors_is_corrupt(tmp_path: Path, tiny_sd15_file: Path,
                                          tiny_sd15_config: Path) -> None:
    data = tiny_sd15_file.read_bytes()
    path = tmp_path / "cut.safetensors"
    path.write_bytes(data[: len(data) - 1000])
    err = _error(str(path), model_config=str(tiny_sd15_config))
    assert err.kind is ErrorKind.corrupt_file


def test_broken_ckpt_is_corrupt(tmp_path: Path) -> None:
    for content in (b"", os.urandom(3000)):
        path = tmp_path / "bad.ckpt"
        path.write_bytes(content)
        assert _error(str(path)).kind is ErrorKind.corrupt_file


@pytest.mark.parametrize("prefix", [b"", b"\x80\x04", b"\x80\x02\x8a\nl\xfc\x9cF\xf9 j\xa8P\x19."],
                         ids=["random", "pickle-protocol-4", "pre-zip-magic"])
def test_random_bytes_named_ckpt_are_always_corrupt(tmp_path: Path, prefix: bytes) -> None:
    """Garbage must never surface as 'unsupported' (an unpickler IndexError), 'unsafe' or
    'out of memory' (a garbage length field): 60 seeded files per kind, each a clean error."""
    rng = random.Random(7)
    path = tmp_path / "bad.ckpt"
    for _ in range(60):
        path.write_bytes(prefix + rng.randbytes(3000))
        assert _error(str(path)).kind is ErrorKind.corrupt_file


@pytest.mark.parametrize("legacy", [True, False], ids=["pre-zip", "zip"])
def test_damaged_real_checkpoints_fail_as_damaged_files(tmp_path: Path, legacy: bool) -> None:
    """A real torch checkpoint with a few bytes changed (a bad download, a bad disk): it loads,
    or fails as damaged (or unsafe, when the change forms a code reference) — never as an
    "unexpected error" (the pre-zip loader's assertions and short unpacks, a zip end record
    that makes `is_zipfile` raise) or "out of memory"."""
    from desktop_app.pipeline.backend.ckpt import load_ckpt_state_dict

    state = {"state_dict": {"model.diffusion_model.out.weight": torch.randn(8, 8),
                            "first_stage_model.b": torch.ones(3, dtype=torch.float16)}}
    good = tmp_path / "good.ckpt"
    torch.save(state, good, _use_new_zipfile_serialization=not legacy)
    original = good.read_bytes()
    rng = random.Random(7)
    path = tmp_path / "bad.ckpt"
    kinds = set()
    for _ in range(600):
        damaged = bytearray(original)
        for _ in range(rng.choice([1, 2, 4, 8])):
            damaged[rng.randrange(len(damaged))] = rng.randrange(256)
        if rng.random() < 0.1:
            damaged = damaged[:rng.randrange(len(damaged))]  # cut short
        path.write_bytes(damaged)
        try:
            load_ckpt_state_dict(path)
        except UserError as exc:
            assert exc.kind in (ErrorKind.corrupt_file, ErrorKind.unsafe_file), exc
            kinds.add(exc.kind)
    assert ErrorKind.corrupt_file in kinds


def test_vae_file_given_as_model_is_bad_input(tiny_vae_file: Path) -> None:
    err = _error(str(tiny_vae_file))
    assert err.kind is ErrorKind.bad_input and "VAE" in err.message


def test_unknown_architecture_without_config_is_unsupported(tmp_path: Path) -> None:
    from tests.fixtures.tiny_models import write_header_only_safetensors

    path = write_header_only_safetensors(tmp_path / "x.safetensors", {"fc.weight": (4, 4)})
    err = _error(str(path))
    assert err.kind is ErrorKind.unsupported


def test_tiny_file_without_model_config_fails_cleanly(tiny_sd15_file: Path) -> None:
    # Detected as SD1 by its layout, but its tiny shapes do not fit the shipped SD1.5 config.
    err = _error(str(tiny_sd15_file))
    assert err.kind is ErrorKind.unsupported and "model config" in err.hint


def test_wrong_model_config_fails_cleanly(tiny_sd15_file: Path, tiny_sdxl_config: Path) -> None:
    assert _error(str(tiny_sd15_file), model_config=str(tiny_sdxl_config)).kind is \
        ErrorKind.unsupported


def test_model_config_without_model_index(tiny_sd15_file: Path, tmp_path: Path) -> None:
    err = _error(str(tiny_sd15_file), model_config=str(tmp_path))
    assert err.kind is ErrorKind.missing_file


def test_unsupported_file_type(tmp_path: Path) -> None:
    path = tmp_path / "model.gguf"
    path.write_bytes(b"GGUF")
    assert _error(str(path)).kind is ErrorKind.unsupported


def test_bad_prediction_type_and_device(tiny_sd15_dir: Path) -> None:
    assert _error(str(tiny_sd15_dir), prediction_type="x").kind is ErrorKind.bad_input
    assert _error(str(tiny_sd15_dir), device="tpu").kind is ErrorKind.bad_input


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_requesting_cuda_without_a_gpu_says_so(tiny_sd15_dir: Path) -> None:
    err = _error(str(tiny_sd15_dir), device="cuda")
    assert err.kind is ErrorKind.bad_input and "CUDA" in err.message


# ---- device policy ---------------------------------------------------------------------------


def test_backend_package_sets_offline_and_mps_fallback_environment() -> None:
    assert os.environ["HF_HUB_OFFLINE"] == "1"
    assert os.environ["HF_HUB_DISABLE_TELEMETRY"] == "1"
    assert os.environ["PYTORCH_ENABLE_MPS_FALLBACK"] == "1"


def test_auto_device_without_gpu_is_cpu_float32(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(device, "mps_available", lambda: False)
    plan = device.plan_device("auto")
    assert (plan.device, plan.dtype, plan.vae_dtype) == ("cpu", torch.float32, torch.float32)
    assert plan.info.name == "cpu" and "float32" in plan.info.description


def test_mps_plan_uses_fp16_unet_fp32_vae_and_attention_slicing(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(device, "mps_available", lambda: True)
    for requested in ("auto", "mps"):
        plan = device.plan_device(requested)
        assert (plan.device, plan.dtype, plan.vae_dtype, plan.attention_slicing) == (
            "mps", torch.float16, torch.float32, True)


def test_unavailable_mps_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(device, "mps_available", lambda: False)
    with pytest.raises(UserError) as info:
        device.plan_device("mps")
    assert info.value.kind is ErrorKind.bad_input and info.value.hint


def _fp16_plan() -> device.DevicePlan:
    from desktop_app.pipeline.api import DeviceInfo

    info = DeviceInfo("cpu", "test plan, float16", "float16")
    return device.DevicePlan("cpu", torch.float16, torch.float16, False, info)


def test_half_precision_keeps_force_upcast_vaes_in_float32(
        monkeypatch: pytest.MonkeyPatch, tiny_sdxl_dir: Path, tiny_sd15_dir: Path) -> None:
    # As on CUDA: UNet and text encoders in float16; the SDXL VAE (force_upcast) stays float32,
    # so it cannot overflow to NaN/black. The SD1 VAE may run in float16.
    monkeypatch.setattr(loading, "plan_device", lambda requested: _fp16_plan())
    xl = load_model(str(tiny_sdxl_dir))
    assert xl.pipe.unet.dtype == xl.pipe.text_encoder_2.dtype == torch.float16
    assert xl.pipe.vae.dtype == torch.float32 and xl.device.vae_dtype == torch.float32
    assert "float32 VAE" in xl.device.info.description
    assert torch.isfinite(_decode(xl)).all()
    sd = load_model(str(tiny_sd15_dir))
    assert sd.pipe.vae.dtype == torch.float16


def test_swapped_in_vae_follows_the_same_dtype_rule(
        monkeypatch: pytest.MonkeyPatch, tiny_sdxl_dir: Path, tiny_vae_file: Path) -> None:
    monkeypatch.setattr(loading, "plan_device", lambda requested: _fp16_plan())
    xl = load_model(str(tiny_sdxl_dir))
    swap_vae(xl, str(tiny_vae_file))  # the SDXL config (force_upcast) is applied to the file
    assert xl.pipe.vae.dtype == torch.float32 and xl.pipe.vae.config.force_upcast


# ---- the shipped configs fit real files --------------------------------------------------------


@pytest.fixture
def full_size_sd15(tmp_path: Path) -> Iterator[Path]:
    from tests.fixtures.tiny_models import write_full_size_random

    path = write_full_size_random("sd15", tmp_path / "sd15-full.safetensors")
    yield path
    path.unlink()


@pytest.mark.slow
def test_full_size_sd15_file_loads_through_the_shipped_config(full_size_sd15: Path) -> None:
    from safetensors import safe_open

    loaded = load_model(str(full_size_sd15))
    assert loaded.family is ModelFamily.sd15
    components = {k: getattr(loaded.pipe, k) for k in ("unet", "vae", "text_encoder")}
    mapped = ldm_keys.pipeline_to_ldm(components)
    with safe_open(str(full_size_sd15), "pt") as f:
        names = f.keys()  # safe_open is not iterable
        weights = {k for k in names if not k.startswith(("model_ema.", "alphas_cumprod"))}
        weights.discard("cond_stage_model.transformer.text_model.embeddings.position_ids")
        assert weights == set(mapped)
        for name, tensor in mapped.items():
            assert torch.equal(tensor.to(torch.float16), f.get_tensor(name)), name
