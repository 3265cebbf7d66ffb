"""Fast mode: compile the UNet with CUDA graphs, fuse QKV, TF32, channels_last, compiled VAE decode.

Everything here runs in the generation worker thread, on a pipeline that is already loaded. A
first job at a new size pays a one-off compile (about 1–2 min for SD1.5 on a fast GPU; a
`LoadUpdate` says so before it starts); the kernels land in `paths.cache_dir()/torch_compile`, so
the next app start reuses them, and compiles such a size ahead while the model loads before its
first job (`worth_compiling_ahead`, the backend's preload). When the toolchain is missing (no
CUDA, no Triton, no C compiler, as in a frozen build) the model stays eager and
`FastModeState.reason` says why.

How the pieces fit the diffusers pipeline loop (`pipeline_stable_diffusion*.py`):
* only `unet.forward` and `vae.decode` are replaced (instance attributes); the denoising loop and
  `callback_on_step_end` stay plain Python, so previews, progress and cancel still run each step;
* CUDA-graph outputs live in a static pool that the next replay overwrites, so every output is
  cloned (one latent-sized copy per step) before the scheduler may keep it (PNDM stores raw
  model outputs between steps);
* the timestep is normalised to a float32 0-d tensor on the UNet's device: a Python number would
  make dynamo specialise (recompile) on every step's value, a CPU tensor would disable graphs.
"""

from __future__ import annotations

import logging
import shutil
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from desktop_app.pipeline import collector
from desktop_app.pipeline.api import LoadCallback, LoadUpdate
from desktop_app.pipeline.backend import fast_mode_cache, fast_mode_compile
from desktop_app.pipeline.backend.memory import has_offload_hooks

log = logging.getLogger(__name__)

# Fast mode previews: at most one TAESD decode per this many seconds, and none at the last step
# (the image itself follows: a decode of a few ms, 22–124 ms even eager, on an H100). At
# ~130 it/s a 2.8 ms TAESD decode per step would cost a third of the step time.
PREVIEW_INTERVAL_S = 0.25
# Distinct shapes kept compiled per function (sizes × batch × prompt lengths); past this dynamo
# would silently run eager.
RECOMPILE_LIMIT = 32
SDPA_BACKENDS = ("auto", "flash", "efficient", "cudnn", "math")


class HasPipe(Protocol):
    """Anything holding a loaded diffusers pipeline (`loading.LoadedModel`)."""

    pipe: Any


@dataclass(frozen=True)
class FastModeConfig:
    """Which optimisations to apply; the defaults are the product's fast mode.

    `require_cuda=False` lets tests and benchmarks exercise the compile path on the CPU (inductor's
    C++ backend, or `backend="aot_eager"`: a full-graph trace without code generation); the app
    always keeps the defaults. `cuda_graphs` selects
    `mode="reduce-overhead"` for the UNet; the VAE decode runs once per image, so it is compiled
    without graphs unless `vae_cuda_graphs` (its activations would stay reserved in the pool).
    `inductor_options` are extra `torch._inductor.config` settings for both compiles, as
    (name, value) pairs (e.g. ("coordinate_descent_tuning", True)). `cudnn_benchmark` lets cuDNN
    time its convolution algorithms once per shape (compiled shapes are fixed, so it pays once).
    `fp8` runs the UNet's attention-block linears as FP8 matmuls (`fp8.py`; Ada/Hopper GPUs).
    """

    compile_unet: bool = True
    compile_vae: bool = True
    cuda_graphs: bool = True
    vae_cuda_graphs: bool = False
    fuse_qkv: bool = True
    channels_last: bool = True
    tf32: bool = True
    sdpa_backend: str = "auto"
    cudnn_benchmark: bool = False
    fp8: bool = False
    fullgraph: bool = True
    require_cuda: bool = True
    backend: str | Callable[..., Any] = "inductor"
    inductor_options: tuple[tuple[str, Any], ...] = ()


@dataclass
class FastModeState:
    """What fast mode did to one loaded pipeline. Lives in the worker thread with the pipeline.

    `active` is True when compiled calls are installed; `reason` says in words what runs (or why
    the model stays eager). `compiled` holds the UNet shapes compiled in this process as
    (width, height, unet_batch, prompt tokens) and `compile_seconds` how long each took.
    """

    active: bool = False
    reason: str = ""
    applied: list[str] = field(default_factory=list)
    compiled: set[tuple[int, ...]] = field(default_factory=set)
    compile_seconds: dict[str, float] = field(default_factory=dict)
    cache_dir: Path | None = None
    preview_interval_s: float = 0.0
    final_preview: bool = True  # a preview at the last step too (see _StepReporter)
    on_load: LoadCallback | None = None
    arch_key: str = ""
    offloaded: bool = False
    restore: list[Any] = field(default_factory=list, repr=False)
    wrapped: list[tuple[Any, str]] = field(default_factory=list, repr=False)  # (module, attr)

    def notify(self, stage: str, fraction: float, *, holds_cancel: bool = False) -> None:
        if self.on_load is not None:
            self.on_load(LoadUpdate(stage, fraction, holds_cancel))


# The state lives on the pipeline object itself: its undo closures refer to the pipeline, so a
# registry keyed weakly by the pipeline (a WeakKeyDictionary) would keep every pipeline that ever
# had fast mode alive for good, with its weights (an evicted model was never freed). On the
# pipeline, the references form an ordinary cycle that the collector frees with it.
_STATE_ATTR = "_desktop_app_fast_mode"


def _state_of(pipe: Any) -> FastModeState | None:
    state: FastModeState | None = vars(pipe).get(_STATE_ATTR)
    return state


def _set_state(pipe: Any, state: FastModeState | None) -> None:
    if state is None:
        vars(pipe).pop(_STATE_ATTR, None)
    else:
        vars(pipe)[_STATE_ATTR] = state


def fast_mode_available(config: FastModeConfig | None = None) -> tuple[bool, str]:
    """Whether this machine can compile (CUDA + Triton + a C compiler), and why not in words.

    Without compilation fast mode still applies its compile-free parts (TF32, fused QKV) on CUDA.
    """
    import importlib.util

    import torch

    config = config or FastModeConfig()
    if not hasattr(torch, "compile"):
        return False, f"This torch ({torch.__version__}) has no torch.compile."
    if importlib.util.find_spec("torch._inductor") is None:  # stripped from a frozen build
        return False, "This build does not include torch's compiler (torch._inductor)."
    if getattr(sys, "frozen", False) and not _c_compiler():
        return False, "This packaged build has no C compiler, which compilation needs."
    if config.inductor_options and config.backend == "inductor":
        import torch._inductor

        known = set(torch._inductor.list_options())
        unknown = [name for name, _ in config.inductor_options if name not in known]
        if unknown:
            return False, f"This torch's compiler has no setting {', '.join(unknown)}."
    if not torch.cuda.is_available():
        if config.require_cuda:
            return False, "Fast mode needs an NVIDIA GPU with CUDA; this machine runs normally."
        if not _cxx_compiler():
            return False, "No C++ compiler found (set CXX or install g++/clang++)."
        return True, "torch.compile on the CPU (inductor C++ backend)."
    major, minor = torch.cuda.get_device_capability()
    if major < 7:
        return False, f"The GPU (compute capability {major}.{minor}) is too old for Triton (7.0+)."
    if importlib.util.find_spec("triton") is None:
        return False, "Triton is not installed (pip install triton; triton-windows on Windows)."
    if not _c_compiler():
        return False, "No C compiler found: Triton builds a small launcher with one (set CC)."
    return True, f"torch.compile with CUDA graphs on {torch.cuda.get_device_name()}."


def _c_compiler() -> str | None:
    import os

    names = [os.environ.get("CC", ""), "cc", "gcc", "clang", "cl"]
    return next((found for n in names if n and (found := shutil.which(n))), None)


def _cxx_compiler() -> str | None:
    import os

    names = [os.environ.get("CXX", ""), "g++", "clang++", "c++", "cl"]
    return next((found for n in names if n and (found := shutil.which(n))), None)


def apply_fast_mode(
    loaded: HasPipe,
    width: int,
    height: int,
    batch: int,
    on_load: LoadCallback | None = None,
    config: FastModeConfig | None = None,
) -> FastModeState:
    """Put fast mode on `loaded.pipe` (once) and route this job's compile notices to `on_load`.

    Cheap after the first call for a pipeline. The compile itself happens lazily on the first
    UNet call at a new shape, inside the job, after a LoadUpdate "Compiling for W×H …". Never
    raises for a missing toolchain: the model stays eager and the state's `reason` says why.
    """
    pipe = loaded.pipe
    state = _state_of(pipe)
    if state is None:
        state = FastModeState(on_load=on_load)
        _set_state(pipe, state)
        _prepare(pipe, state, config or FastModeConfig())
    state.on_load = on_load
    if state.active and not any(s[:3] == (width, height, 2 * batch) for s in state.compiled):
        log.info("Fast mode: %d×%d×%d not compiled yet in this run", width, height, batch)
    return state


def sync_fast_mode(loaded: HasPipe, enabled: bool, width: int, height: int, batch: int,
                   on_load: LoadCallback | None = None) -> FastModeState | None:
    """The one call a backend makes per job: put fast mode on or take it off `loaded.pipe`.

    Also re-applies when the memory plan changed underneath (low-VRAM offload switched on or
    off in place), since compiled calls and CPU offload hooks do not mix.
    """
    state = _state_of(loaded.pipe)
    if not enabled:
        if state is not None:
            remove_fast_mode(loaded)
        return None
    if state is not None and state.offloaded != has_offload_hooks(loaded.pipe):
        remove_fast_mode(loaded)
    return apply_fast_mode(loaded, width, height, batch, on_load)


def worth_compiling_ahead(loaded: HasPipe, width: int, height: int, unet_batch: int,
                          tokens: int) -> bool:
    """Whether loading a model ahead of its job (the backend's preload) should also compile it
    for that job's shape (size, UNet batch, prompt length in tokens): fast mode compiles on
    this pipeline, this process has not compiled the shape yet, and an earlier run did — so
    the compile cache holds its kernels and the compile is the short re-trace (~15 s for SD1.5
    on an H100), not the first one (1–2 min) for a shape the user may not even keep."""
    state = _state_of(loaded.pipe)
    if state is None or not state.active:
        return False
    size = (width, height, unet_batch, tokens)
    return size not in state.compiled and fast_mode_cache.was_compiled(
        state.cache_dir, state.arch_key, fast_mode_compile.UNET, size)


def fast_mode_state(loaded: HasPipe) -> FastModeState | None:
    """The fast-mode state of a pipeline, or None when fast mode was never applied to it."""
    return _state_of(loaded.pipe)


def remove_fast_mode(loaded: HasPipe) -> None:
    """Undo fast mode on `loaded.pipe` (eager calls, unfused QKV, contiguous weights)."""
    import torch

    state = _state_of(loaded.pipe)
    if state is None:
        return
    _set_state(loaded.pipe, None)
    for undo in reversed(state.restore):
        undo()
    if state.active:
        torch._dynamo.reset()  # drops compiled code and CUDA graph pools that hold the model
        fast_mode_compile.forget_compiled_code()  # …of every model: the others recompile
        collector.collect_all()  # the compile froze them; their cycles need the collector
    log.info("Fast mode removed")


def detach_fast_mode(pipe: Any) -> None:
    """Drop fast mode's compiled wrappers and state from a pipeline that is being thrown away
    (evicted from the model cache), without undoing its changes to the weights: they go with
    it. That breaks the only reference cycles a loaded pipeline has, so reference counting
    frees it at once, also after a compile froze it (collector.py)."""
    state = _state_of(pipe)
    if state is None:
        return
    _set_state(pipe, None)
    for module, attribute in state.wrapped:  # the compiled calls (fast_mode_compile._wrap)
        vars(module).pop(attribute, None)


def _prepare(pipe: Any, state: FastModeState, config: FastModeConfig) -> None:
    import torch

    device = next(pipe.unet.parameters()).device
    if config.require_cuda and device.type != "cuda":
        state.reason = f"Fast mode needs a CUDA GPU; the model runs on {device.type} as usual."
        log.info("%s", state.reason)
        state.notify(state.reason, 1.0)
        return
    if has_offload_hooks(pipe):
        state.offloaded = True
        state.reason = "Fast mode is off in low-VRAM mode (models move between CPU and GPU)."
        log.info("%s", state.reason)
        state.notify(state.reason, 1.0)
        return
    if config.sdpa_backend not in SDPA_BACKENDS:
        raise ValueError(f"unknown SDPA backend {config.sdpa_backend!r}")
    if device.type == "cuda" and config.tf32:
        _enable_tf32(state)
    if device.type == "cuda" and config.cudnn_benchmark:
        _enable_cudnn_benchmark(state)
    if config.fuse_qkv:
        _fuse_qkv(pipe, state)
    if config.fp8:
        _use_fp8(pipe, state, device)
    ok, why = fast_mode_available(config)
    if not ok or not (config.compile_unet or config.compile_vae):
        state.reason = f"{why} Compilation is off; " if not ok else ""
        state.reason += f"applied: {', '.join(state.applied) or 'nothing'}."
        if not ok:
            log.warning("Fast mode falls back to eager: %s", why)
            state.notify(f"Fast mode without compilation: {why}", 1.0)
        return
    state.cache_dir = fast_mode_cache.configure_compile_cache()
    fast_mode_cache.load_mega_cache(state.cache_dir)
    dynamo = torch._dynamo.config  # `recompile_limit` is `cache_size_limit` before torch 2.7
    limit = "recompile_limit" if hasattr(dynamo, "recompile_limit") else "cache_size_limit"
    setattr(dynamo, limit, max(getattr(dynamo, limit), RECOMPILE_LIMIT))
    state.arch_key = fast_mode_cache.arch_key(pipe.unet.config, f"{device}/{pipe.unet.dtype}")
    if config.channels_last and device.type == "cuda":
        _channels_last(pipe, state)
    if config.compile_unet:
        fast_mode_compile.install_unet(pipe.unet, state, config)
    if config.compile_vae and hasattr(pipe, "vae"):
        fast_mode_compile.install_vae(pipe.vae, state, config)
    state.active = True
    state.preview_interval_s, state.final_preview = PREVIEW_INTERVAL_S, False
    state.reason = f"Fast mode on ({', '.join(state.applied)}); {why}"
    log.info("%s", state.reason)


def _enable_tf32(state: FastModeState) -> None:
    """TF32 only touches fp32 work (SDXL's fp32 VAE, fp32 leftovers): harmless for 8-bit pixels."""
    import torch

    matmul = torch.backends.cuda.matmul
    conv = getattr(torch.backends.cudnn, "conv", None)
    if conv is not None and hasattr(matmul, "fp32_precision"):  # torch ≥ 2.9: allow_tf32 is
        old = (matmul.fp32_precision, conv.fp32_precision)     # deprecated
        matmul.fp32_precision = "tf32"
        conv.fp32_precision = "tf32"

        def undo() -> None:
            matmul.fp32_precision, conv.fp32_precision = old
    else:  # pragma: no cover - torch < 2.9
        old_flag = matmul.allow_tf32
        matmul.allow_tf32 = True

        def undo() -> None:
            matmul.allow_tf32 = old_flag
    state.restore.append(undo)
    state.applied.append("TF32")


def _enable_cudnn_benchmark(state: FastModeState) -> None:
    """cuDNN picks the fastest convolution algorithm per shape, timed on first use."""
    import torch

    old = torch.backends.cudnn.benchmark
    torch.backends.cudnn.benchmark = True

    def undo() -> None:
        torch.backends.cudnn.benchmark = old
    state.restore.append(undo)
    state.applied.append("cuDNN autotuning")


def _fuse_qkv(pipe: Any, state: FastModeState) -> None:
    """diffusers' StableDiffusionMixin.fuse_qkv_projections (SD and SDXL pipelines, 0.42.1)."""
    from diffusers import AutoencoderKL

    if not hasattr(pipe, "fuse_qkv_projections"):
        log.info("Fast mode: this pipeline cannot fuse QKV projections")
        return
    fuse_vae = isinstance(getattr(pipe, "vae", None), AutoencoderKL)
    try:
        pipe.fuse_qkv_projections(unet=True, vae=fuse_vae)
    except ValueError as exc:  # "added KV projections" (IP-Adapter and similar)
        log.info("Fast mode: QKV projections not fused: %s", exc)
        return

    def undo() -> None:
        from diffusers.models.attention_processor import FusedAttnProcessor2_0

        for module in [pipe.unet] + ([pipe.vae] if fuse_vae else []):
            current = module.attn_processors
            module.unfuse_qkv_projections()  # back to the processors from before the fusion…
            if not all(isinstance(p, FusedAttnProcessor2_0) for p in current.values()):
                module.set_attn_processor(current)  # …unless someone set others since (slicing)
        pipe.fusing_unet = pipe.fusing_vae = False

    state.restore.append(undo)
    state.applied.append("fused QKV")


def _use_fp8(pipe: Any, state: FastModeState, device: Any) -> None:
    from desktop_app.pipeline.backend import fp8

    ok, why = fp8.fp8_supported(device)
    if not ok:
        log.info("Fast mode: no FP8: %s", why)
        state.notify(f"FP8 is off: {why}", 1.0)
        return
    undo, swapped = fp8.use_fp8_linears(pipe.unet)
    state.restore.append(undo)
    state.applied.append(f"FP8 linears ×{swapped}")


def _channels_last(pipe: Any, state: FastModeState) -> None:
    import torch

    modules = [m for m in (pipe.unet, getattr(pipe, "vae", None)) if m is not None]
    for module in modules:
        module.to(memory_format=torch.channels_last)

    def undo() -> None:
        for module in modules:
            module.to(memory_format=torch.contiguous_format)

    state.restore.append(undo)
    state.applied.append("channels_last")
