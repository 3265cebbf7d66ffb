"""Model switching through the LRU pipeline cache, VAE swaps without UNet reloads, and the
memory policy (plan + in-place re-application) on real tiny diffusers pipelines (CPU)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from desktop_app.pipeline.api import ModelFamily
from desktop_app.pipeline.backend.memory import (
    GIB,
    MemoryInfo,
    apply_plan,
    execution_device,
    plan_memory,
    quick_execution_device,
    weights_dtype,
)
from desktop_app.pipeline.backend.model_cache import ModelCache, ModelKey, pipeline_nbytes
from tests.fixtures.tiny_models import build_tiny_sd15, build_tiny_vae


@pytest.fixture(scope="module")
def tiny_folders(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    root = tmp_path_factory.mktemp("cache-models")
    return [build_tiny_sd15(root / f"m{i}", seed=i).folder for i in range(3)]


@pytest.fixture(scope="module")
def vae_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_vae(tmp_path_factory.mktemp("cache-vae") / "vae.safetensors", seed=7)


def _loader(folder: Path, calls: list[Path]) -> Any:
    def load() -> Any:
        from diffusers import StableDiffusionPipeline

        calls.append(folder)
        return StableDiffusionPipeline.from_pretrained(str(folder), safety_checker=None,
                                                       requires_safety_checker=False)
    return load


def test_switching_back_is_a_cache_hit_with_the_same_pipeline(tiny_folders: list[Path]) -> None:
    cache = ModelCache(budget_bytes=10 * GIB)
    calls: list[Path] = []
    a, b = (ModelKey.for_file(str(f)) for f in tiny_folders[:2])
    first = cache.get_or_load(a, _loader(tiny_folders[0], calls))
    cache.get_or_load(b, _loader(tiny_folders[1], calls))
    again = cache.get_or_load(a, _loader(tiny_folders[0], calls))
    assert again.pipe is first.pipe and again.pipe.unet is first.pipe.unet
    assert calls == tiny_folders[:2]  # A was not loaded twice
    assert (cache.hits, cache.misses) == (1, 2)


def test_least_recently_used_pipeline_is_evicted_at_the_budget(tiny_folders: list[Path]) -> None:
    calls: list[Path] = []
    probe = ModelCache(budget_bytes=10 * GIB)
    one = probe.get_or_load(ModelKey.for_file(str(tiny_folders[0])),
                            _loader(tiny_folders[0], calls)).nbytes
    cache = ModelCache(budget_bytes=int(2.5 * one))  # room for two tiny pipelines
    a, b, c = (ModelKey.for_file(str(f)) for f in tiny_folders)
    cache.get_or_load(a, _loader(tiny_folders[0], calls))
    cache.get_or_load(b, _loader(tiny_folders[1], calls))
    cache.get_or_load(a, _loader(tiny_folders[0], calls))  # A is now most recent
    cache.get_or_load(c, _loader(tiny_folders[2], calls))
    assert cache.keys() == [a, c] and cache.evictions == 1
    assert cache.total_bytes <= cache.budget_bytes


def test_a_changed_file_gets_a_new_key(tmp_path: Path) -> None:
    path = tmp_path / "m.safetensors"
    path.write_bytes(b"x" * 10)
    before = ModelKey.for_file(str(path))
    path.write_bytes(b"y" * 11)
    assert ModelKey.for_file(str(path)) != before


def test_changing_the_vae_keeps_the_same_unet_and_text_encoder(
        tmp_path_factory: pytest.TempPathFactory, vae_file: Path) -> None:
    from desktop_app.pipeline.backend.loading import load_model, swap_vae

    tiny = build_tiny_sd15(tmp_path_factory.mktemp("vae-swap"), seed=3)
    cache = ModelCache(budget_bytes=10 * GIB)
    key = ModelKey.for_file(str(tiny.file), model_config=str(tiny.config))
    entry = cache.get_or_load(key, lambda: load_model(str(tiny.file),
                                                      model_config=str(tiny.config),
                                                      device="cpu"))
    pipe = entry.pipe
    unet, text_encoder, baked = pipe.unet, pipe.text_encoder, pipe.vae
    swap_vae(entry.value, str(vae_file))
    assert pipe.vae is not baked and entry.value.vae_name == "vae"
    assert pipe.unet is unet and pipe.text_encoder is text_encoder
    again = cache.get_or_load(key, lambda: pytest.fail("reloaded"))  # VAE choice survives
    assert again.pipe.vae is pipe.vae and again.pipe.unet is unet
    swap_vae(entry.value, None)
    assert pipe.vae is baked and pipe.unet is unet


def test_pipeline_nbytes_counts_every_component(tiny_folders: list[Path]) -> None:
    pipe = _loader(tiny_folders[0], [])()
    expected = sum(p.numel() * p.element_size() for name in ("unet", "vae", "text_encoder")
                   for p in [*getattr(pipe, name).parameters(), *getattr(pipe, name).buffers()])
    assert pipeline_nbytes(pipe) == expected


# ---- memory policy --------------------------------------------------------------------------

def _gpu(total_gib: float) -> MemoryInfo:
    return MemoryInfo("cuda", int(total_gib * GIB), int(total_gib * GIB), 32 * GIB)


def test_small_gpus_get_low_vram_mode_automatically() -> None:
    sdxl_on_6gb = plan_memory(_gpu(6), ModelFamily.sdxl, 1024, 1024)
    assert sdxl_on_6gb.low_vram and sdxl_on_6gb.cpu_offload and sdxl_on_6gb.vae_tiling
    sdxl_on_24gb = plan_memory(_gpu(24), ModelFamily.sdxl, 1024, 1024)
    assert not sdxl_on_24gb.low_vram and not sdxl_on_24gb.cpu_offload
    assert sdxl_on_24gb.dtype == "float16" and sdxl_on_24gb.attention == "sdpa"
    sd15_on_4gb = plan_memory(_gpu(4), ModelFamily.sd15, 512, 512)
    assert not sd15_on_4gb.low_vram


def test_large_images_get_vae_tiling_and_cpu_runs_in_float32() -> None:
    big = plan_memory(_gpu(24), ModelFamily.sd15, 1536, 1536)
    assert big.vae_tiling and not big.low_vram
    cpu = plan_memory(MemoryInfo("cpu", None, None, 16 * GIB), ModelFamily.sd15, 512, 512)
    assert cpu.dtype == "float32" and not cpu.cpu_offload and not cpu.vae_tiling
    forced = plan_memory(MemoryInfo("cpu", None, None, 16 * GIB), ModelFamily.sd15, 512, 512,
                         force_low_vram=True)
    assert forced.low_vram and forced.vae_tiling and forced.attention == "sliced"
    assert not forced.cpu_offload  # nothing to offload from on a CPU
    mps = plan_memory(MemoryInfo("mps", 16 * GIB, 12 * GIB, 12 * GIB), ModelFamily.sd15, 512, 512)
    assert mps.attention == "sliced" and mps.dtype == "float16"


def test_apply_plan_switches_tiling_and_slicing_in_place(tiny_folders: list[Path]) -> None:
    pipe = _loader(tiny_folders[0], [])()
    unet = pipe.unet
    cpu = MemoryInfo("cpu", None, None, 16 * GIB)
    normal = plan_memory(cpu, ModelFamily.sd15, 512, 512)
    low = plan_memory(cpu, ModelFamily.sd15, 512, 512, force_low_vram=True)
    apply_plan(pipe, normal)
    assert not pipe.vae.use_tiling
    apply_plan(pipe, low, previous=normal)
    assert pipe.vae.use_tiling and pipe.unet is unet
    apply_plan(pipe, normal, previous=low)
    assert not pipe.vae.use_tiling


# ---- through the real backend ----------------------------------------------------------------

def _backend_request(model: Path, config: Path | None, **changes: Any) -> Any:
    from tests.pipeline.engine_helpers import request

    return request(model, config, **changes)


def test_backend_switching_back_reuses_the_cached_pipeline(
        tmp_path: Path, tiny_sd15_file: Path, tiny_sd15_config: Path,
        tiny_folders: list[Path]) -> None:
    from desktop_app.pipeline.backend.diffusers_backend import DiffusersBackend
    from tests.pipeline.engine_helpers import images_of, run

    backend = DiffusersBackend(tmp_path / "out", previews=False)
    first, _ = run(backend, _backend_request(tiny_sd15_file, tiny_sd15_config))
    pipe_a = backend.loaded.pipe
    run(backend, _backend_request(tiny_folders[1], None))
    assert backend.loaded.pipe is not pipe_a
    again, _ = run(backend, _backend_request(tiny_sd15_file, tiny_sd15_config))
    assert backend.loaded.pipe is pipe_a  # switched back without loading from disk
    cache = backend._models.cache
    assert (cache.hits, cache.misses) == (1, 2)
    assert (images_of(again)[0] == images_of(first)[0]).all()


def test_oom_fails_with_a_hint_and_low_vram_retry_reuses_the_model(
        tmp_path: Path, tiny_sd15_file: Path, tiny_sd15_config: Path) -> None:
    import torch

    from desktop_app.errors import ErrorKind, UserError
    from desktop_app.pipeline.backend.diffusers_backend import DiffusersBackend
    from tests.pipeline.engine_helpers import run

    backend = DiffusersBackend(tmp_path / "out", previews=False)
    req = _backend_request(tiny_sd15_file, tiny_sd15_config)
    run(backend, req)
    pipe, unet = backend.loaded.pipe, backend.loaded.pipe.unet
    assert not pipe.vae.use_tiling
    real_forward = unet.forward
    failures: list[int] = []

    def exhausted_once(*args: Any, **kwargs: Any) -> Any:
        if not failures:
            failures.append(1)
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 9.00 GiB")
        return real_forward(*args, **kwargs)

    unet.forward = exhausted_once
    try:
        with pytest.raises(UserError) as info:
            run(backend, req)
        assert info.value.kind is ErrorKind.out_of_memory
        assert "low-VRAM" in info.value.hint
        result, _ = run(backend, req.replace(low_vram=True))  # "Retry in low-VRAM mode"
    finally:
        del unet.forward
    assert len(result.images) == 1 and Path(result.images[0].path).is_file()
    assert backend.loaded.pipe is pipe and pipe.unet is unet  # no reload, no restart
    assert pipe.vae.use_tiling  # the low-VRAM plan was applied in place
    assert backend._models.cache.misses == 1
    run(backend, req)  # and back to the normal plan
    assert not pipe.vae.use_tiling


def test_oom_in_low_vram_mode_says_so(tmp_path: Path, tiny_sd15_file: Path,
                                      tiny_sd15_config: Path) -> None:
    import torch

    from desktop_app.errors import UserError
    from desktop_app.pipeline.backend.diffusers_backend import DiffusersBackend
    from tests.pipeline.engine_helpers import run

    backend = DiffusersBackend(tmp_path / "out", previews=False)
    req = _backend_request(tiny_sd15_file, tiny_sd15_config, low_vram=True)
    run(backend, req)
    unet = backend.loaded.pipe.unet

    def exhausted(*args: Any, **kwargs: Any) -> Any:
        raise torch.OutOfMemoryError("CUDA out of memory.")

    unet.forward = exhausted
    try:
        with pytest.raises(UserError, match="even in low-VRAM mode") as info:
            run(backend, req)
    finally:
        del unet.forward
    assert "smaller size" in info.value.hint


def test_a_taesd_downloaded_by_the_library_is_found_for_previews() -> None:
    import torch
    from diffusers import AutoencoderTiny
    from safetensors.torch import save_file

    from desktop_app.library.catalog import load_catalog
    from desktop_app.pipeline.backend.previews import load_taesd, taesd_dir

    catalog = load_catalog()
    folder = catalog.library.folder_for("taesd")
    assert folder == taesd_dir()  # downloads land where the engine looks
    folder.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    original = AutoencoderTiny()
    save_file({k: v.contiguous() for k, v in original.state_dict().items()},
              str(folder / catalog.entry("taesd").filename))
    loaded = load_taesd(is_xl=False)
    assert loaded is not None
    key = "decoder.layers.0.weight"
    assert torch.equal(loaded.state_dict()[key], original.state_dict()[key])
    assert load_taesd(is_xl=True) is None  # TAESDXL not downloaded


def test_weights_dtype_agrees_with_diffusers() -> None:
    import torch

    from desktop_app.pipeline.backend.tiny import make_tiny_sd15_pipeline

    pipe = make_tiny_sd15_pipeline()
    pipe.vae.to(torch.bfloat16)
    assert weights_dtype(pipe.unet) == pipe.unet.dtype == torch.float32
    assert weights_dtype(pipe.vae) == pipe.vae.dtype == torch.bfloat16
    pipe.unet.to(torch.float16)
    pipe.unet.conv_in.to(torch.float32)  # the first weights, kept in fp32 like some models do
    pipe.unet._keep_in_fp32_modules = ["conv_in"]
    assert weights_dtype(pipe.unet) == pipe.unet.dtype == torch.float16


def test_execution_device_skips_the_module_walk_only_without_offload_hooks(
        monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    from desktop_app.pipeline.backend.tiny import make_tiny_sd15_pipeline

    pipe = make_tiny_sd15_pipeline()
    assert execution_device(pipe) == pipe._execution_device == torch.device("cpu")
    walks: list[int] = []

    def walk(self: Any) -> Any:
        walks.append(1)
        return torch.device("meta")  # stands for the GPU an offloaded pipeline computes on

    monkeypatch.setattr(type(pipe), "_execution_device", property(walk))
    assert execution_device(pipe) == torch.device("cpu") and walks == []
    pipe.unet._hf_hook = object()  # what enable_model_cpu_offload puts on each model
    assert execution_device(pipe) == torch.device("meta") and walks == [1]


def test_a_loaded_pipeline_knows_its_device_without_walking_its_modules(
        tiny_sd15_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """diffusers asks `_execution_device` at the start of every call, while the GPU waits."""
    import torch
    from diffusers import StableDiffusionPipeline

    from desktop_app.pipeline.backend.loading import load_model

    pipe = load_model(str(tiny_sd15_dir), device="cpu").pipe
    assert isinstance(pipe, StableDiffusionPipeline)
    assert type(pipe).__name__ == "StableDiffusionPipeline"
    walks: list[int] = []
    modules = torch.nn.Module.modules

    def counted(self: torch.nn.Module) -> Any:
        walks.append(1)
        return modules(self)

    monkeypatch.setattr(torch.nn.Module, "modules", counted)
    assert pipe._execution_device == torch.device("cpu") and walks == []
    pipe.unet._hf_hook = object()  # with offload hooks the device is diffusers' to find
    assert pipe._execution_device == torch.device("cpu") and walks
    del pipe.unet._hf_hook
    quick_execution_device(pipe)  # applying it twice changes nothing
    assert type(pipe).__mro__[1] is StableDiffusionPipeline


def test_an_evicted_fast_mode_pipeline_leaves_memory_at_once(
        tiny_folders: list[Path], monkeypatch: pytest.MonkeyPatch) -> None:
    """Fast mode's compile freezes the loaded models with its own objects (collector.py); the
    switcher detaches fast mode from a pipeline it evicts, so reference counting frees it
    without the costly unfreeze-and-collect-everything fallback."""
    import gc
    import weakref

    import torch

    from desktop_app.pipeline.backend.fast_mode import FastModeConfig, apply_fast_mode
    from desktop_app.pipeline.backend.model_cache import ModelSwitcher

    cache = ModelSwitcher(ModelCache(budget_bytes=10 * GIB, max_entries=1)).cache
    a, b = (ModelKey.for_file(str(f)) for f in tiny_folders[:2])
    entry = cache.get_or_load(a, _loader(tiny_folders[0], []))
    traced = FastModeConfig(require_cuda=False, backend="aot_eager", compile_vae=False)
    assert apply_fast_mode(entry, 64, 64, 1, None, traced).active
    entry.pipe.set_progress_bar_config(disable=True)
    entry.pipe("a cat", num_inference_steps=1, height=64, width=64, output_type="latent",
               generator=torch.Generator().manual_seed(0))  # compiled, then frozen
    pipe_ref = weakref.ref(entry.pipe)
    del entry
    unfrozen: list[bool] = []
    unfreeze = gc.unfreeze
    monkeypatch.setattr(gc, "unfreeze", lambda: (unfrozen.append(True), unfreeze())[1])
    cache.get_or_load(b, _loader(tiny_folders[1], []))
    assert cache.keys() == [b] and cache.evictions == 1
    assert pipe_ref() is None and unfrozen == []


def test_a_model_the_backend_evicts_is_freed_during_the_switch(
        tmp_path: Path, tiny_folders: list[Path], caplog: pytest.LogCaptureFixture) -> None:
    """Nothing outside the cache (the backend's current model, its previewer, the switcher)
    still holds the evicted model while the cache drops it."""
    import weakref

    from desktop_app.pipeline.backend.diffusers_backend import DiffusersBackend
    from tests.pipeline.engine_helpers import run

    backend = DiffusersBackend(tmp_path / "out", previews=True)
    backend._models.cache.max_entries = 1
    run(backend, _backend_request(tiny_folders[0], None))
    first = weakref.ref(backend.loaded.pipe)
    run(backend, _backend_request(tiny_folders[1], None))
    assert first() is None and backend._models.cache.evictions == 1
    assert "still referenced" not in caplog.text
