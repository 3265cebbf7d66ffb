"""Memory policy: from the device's memory and the job, choose dtype, attention, tiling, offload.

`plan_memory` is a pure function of numbers (testable without a GPU); `probe_memory` reads the
numbers from torch/psutil; `apply_plan` puts a plan on a loaded pipeline and can be called again
with a different plan (e.g. "Retry in low-VRAM mode" after an out-of-memory error) without
reloading any weights.

Low-VRAM mode (forced by `GenerationRequest.low_vram`, or chosen automatically when the weights
plus the job's working memory would not fit): model CPU offload on CUDA (whole models move to the
GPU only while used — moderate savings, small slowdown), VAE tiling, attention slicing. The
estimates are deliberately conservative heuristics (fp16 weights of the shipped families plus
a per-megapixel working-set allowance); the reasons are recorded in the plan for the log.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from desktop_app.errors import OOM_HINT, ErrorKind, UserError
from desktop_app.pipeline.api import ModelFamily

log = logging.getLogger(__name__)

GIB = 1 << 30
# fp16 weights of UNet + text encoder(s) + VAE of each family, rounded up.
WEIGHT_BYTES_FP16 = {
    ModelFamily.sd15: int(2.2 * GIB), ModelFamily.sd2_512: int(2.7 * GIB),
    ModelFamily.sd2_768_v: int(2.7 * GIB), ModelFamily.sdxl: int(7.0 * GIB),
}
# UNet activations + VAE decode working set per megapixel per image (fp16, SDPA), rounded up.
WORK_BYTES_PER_MEGAPIXEL = int(2.0 * GIB)
HEADROOM_BYTES = int(0.75 * GIB)  # CUDA context, allocator fragmentation
MPS_SLICING_BELOW = 64 * GIB  # diffusers' MPS guide: attention slicing below 64 GB of RAM


@dataclass(frozen=True)
class MemoryPlan:
    """How to run one job on one device. Immutable; compared to decide whether to re-apply."""

    device: str
    dtype: str  # "float16", "bfloat16", "float32"
    attention: str  # "sdpa" or "sliced"
    vae_tiling: bool
    cpu_offload: bool
    low_vram: bool
    reasons: tuple[str, ...] = field(default=(), compare=False)


@dataclass(frozen=True)
class MemoryInfo:
    """What the machine has: accelerator memory (None on CPU) and free system RAM."""

    device: str
    total_bytes: int | None
    free_bytes: int | None
    ram_available_bytes: int


def working_bytes(width: int, height: int, batch: int) -> int:
    """Estimated activation + decode memory of one job."""
    return int(width * height / 1e6 * batch * WORK_BYTES_PER_MEGAPIXEL)


def plan_memory(info: MemoryInfo, family: ModelFamily, width: int, height: int, batch: int = 1,
                force_low_vram: bool = False, dtype: str | None = None) -> MemoryPlan:
    """Choose dtype, attention backend, VAE tiling and offload for a job (pure function)."""
    reasons: list[str] = []
    device = info.device
    chosen_dtype = dtype or ("float32" if device == "cpu" else "float16")
    weights = WEIGHT_BYTES_FP16[family] * (2 if chosen_dtype == "float32" else 1)
    need = weights + working_bytes(width, height, batch) + HEADROOM_BYTES
    low = force_low_vram
    if force_low_vram:
        reasons.append("low-VRAM mode requested")
    elif device in ("cuda", "mps") and info.total_bytes is not None and need > info.total_bytes:
        low = True
        reasons.append(f"needs ~{need / GIB:.1f} GiB, device has {info.total_bytes / GIB:.1f} GiB")
    native = family.native_size
    large = width * height > 1.5 * native * native or width * height * batch > 4 * native * native
    tiling = low or large
    if large:
        reasons.append("large image: VAE tiling")
    attention = "sdpa"
    if low or (device == "mps" and info.ram_available_bytes < MPS_SLICING_BELOW):
        attention = "sliced"
    offload = low and device == "cuda"  # offload needs an accelerator to offload from
    if offload:
        reasons.append("model CPU offload")
    return MemoryPlan(device, chosen_dtype, attention, tiling, offload, low, tuple(reasons))


def probe_memory(device: str) -> MemoryInfo:
    """Read total/free accelerator memory and available RAM (imports torch)."""
    import psutil
    import torch

    ram = int(psutil.virtual_memory().available)
    if device == "cuda" and torch.cuda.is_available():
        free, total = torch.cuda.mem_get_info()
        return MemoryInfo(device, int(total), int(free), ram)
    if device == "mps":
        # Unified memory: the GPU can use most of the system RAM.
        total = int(psutil.virtual_memory().total)
        return MemoryInfo(device, total, ram, ram)
    return MemoryInfo(device, None, None, ram)


def apply_plan(pipe: Any, plan: MemoryPlan, previous: MemoryPlan | None = None) -> None:
    """Put `plan` on a loaded pipeline (idempotent; switches offload on or off in place)."""
    if previous is not None and previous == plan:
        return
    vae = getattr(pipe, "vae", None)
    if vae is not None and hasattr(vae, "enable_tiling"):
        if plan.vae_tiling:
            vae.enable_tiling()
        else:
            vae.disable_tiling()
    if plan.attention == "sliced":
        pipe.enable_attention_slicing()
    else:
        pipe.disable_attention_slicing()
    was_offloaded = previous is not None and previous.cpu_offload
    if plan.cpu_offload and not was_offloaded:
        pipe.enable_model_cpu_offload(device=plan.device)
    elif was_offloaded and not plan.cpu_offload:
        pipe.remove_all_hooks()
        pipe.to(plan.device)
    log.info("memory plan: %s", plan)


def has_offload_hooks(pipe: Any) -> bool:
    """Whether accelerate (model/sequential CPU offload) or diffusers (group offloading) hooks
    sit on the pipeline's models, i.e. weights move between CPU and GPU during a call."""
    modules = [getattr(pipe, name, None) for name in ("unet", "vae", "text_encoder")]
    return any(hasattr(m, "_hf_hook") or hasattr(m, "_diffusers_hook") for m in modules if m)


def execution_device(pipe: Any) -> Any:
    """The device the pipeline computes on. `pipe._execution_device` (and a model's `.device`)
    walk every submodule of every component looking for group-offloading hooks: 6 ms per call
    for SD1.5 on a fast host, 5 % of a fast-mode image. Without offload hooks the first UNet
    weight's device is the same answer."""
    device = _device_without_walk(pipe)
    return pipe._execution_device if device is None else device


def _device_without_walk(pipe: Any) -> Any:
    """The first UNet weight's device, or None when only diffusers' walk can tell (offload
    hooks on, or no UNet)."""
    if has_offload_hooks(pipe) or getattr(pipe, "unet", None) is None:
        return None
    return next(pipe.unet.parameters()).device


_QUICK_CLASSES: dict[type, type] = {}


def quick_execution_device(pipe: Any) -> None:
    """Give `pipe` the shortcut of `execution_device` inside diffusers' own `__call__` too.

    Every pipeline call starts with `self._execution_device`, whose walks over every submodule
    (SD1.5: 4 ms on dev-cpu, `benchmarks.pipeline_attrs`, ~6 ms on the H200 host; SDXL 10 ms)
    run while the GPU waits for the job's first step. The pipeline's class becomes a subclass of
    the same name whose property answers from the first UNet weight unless offload hooks are
    on, and then asks the original; `isinstance` checks and the saved `_class_name` see no
    difference.
    """
    cls = type(pipe)
    if cls in _QUICK_CLASSES.values():
        return
    quick = _QUICK_CLASSES.get(cls)
    if quick is None:
        original = cls._execution_device

        def device(self: Any) -> Any:
            quick = _device_without_walk(self)
            return original.fget(self) if quick is None else quick

        quick = type(cls.__name__, (cls,), {
            "_execution_device": property(device, doc=original.__doc__),
            "__module__": cls.__module__, "__qualname__": cls.__qualname__,
        })
        _QUICK_CLASSES[cls] = quick
    pipe.__class__ = quick


def weights_dtype(module: Any) -> Any:
    """A diffusers model's `.dtype` without its walk over all submodules (it looks for
    layerwise-casting hooks, which this app never adds, and skips weights kept in fp32)."""
    if hasattr(module, "_diffusers_hook") or getattr(module, "_keep_in_fp32_modules", None):
        return module.dtype
    return next(module.parameters()).dtype


def is_out_of_memory(exc: BaseException) -> bool:
    """True for torch's CUDA/MPS out-of-memory errors (and their RuntimeError forms)."""
    import torch

    if isinstance(exc, torch.OutOfMemoryError):
        return True
    return isinstance(exc, RuntimeError) and "out of memory" in str(exc).lower()


def recover_from_oom(pipe: Any) -> None:
    """Free what an OOM left behind so the next job (e.g. in low-VRAM mode) can run."""
    import gc

    import torch

    free_hooks = getattr(pipe, "maybe_free_model_hooks", None)
    if callable(free_hooks):
        free_hooks()
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def out_of_memory_error(plan: MemoryPlan | None) -> UserError:
    """The job failure shown to the user; the GUI offers "Retry in low-VRAM mode" on this kind."""
    if plan is not None and plan.low_vram:
        return UserError(ErrorKind.out_of_memory,
                         "Out of GPU memory, even in low-VRAM mode.",
                         "Try a smaller size or batch size.")
    return UserError(ErrorKind.out_of_memory, "Out of GPU memory.", OOM_HINT)
