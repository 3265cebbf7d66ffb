"""Device policy: which device and dtypes a pipeline runs with, chosen once per load.

auto → CUDA (float16) → Apple MPS (float16 UNet and text encoders, float32 VAE, attention
slicing; `PYTORCH_ENABLE_MPS_FALLBACK=1` is set by the backend package so ops MPS lacks run on
the CPU) → CPU (float32). An explicit "cuda"/"mps"/"cpu" is honoured or refused with a
UserError saying why. VAEs whose config says `force_upcast` (the SDXL VAE overflows in float16
and decodes to NaN/black) always stay float32.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from typing import Any

import torch

from desktop_app.errors import bad_input
from desktop_app.pipeline.api import DEVICES, DeviceInfo

GIB = 1 << 30


@dataclass(frozen=True)
class DevicePlan:
    """Where and in which precision the pipeline runs.

    `dtype` applies to the UNet and text encoders, `vae_dtype` to the VAE (the generation code
    casts latents to `pipe.vae.dtype` before decoding). `info` is what the user is shown.
    """

    device: str  # "cuda", "mps", "cpu"
    dtype: torch.dtype
    vae_dtype: torch.dtype
    attention_slicing: bool
    info: DeviceInfo

    @property
    def torch_device(self) -> torch.device:
        return torch.device(self.device)


def _dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def _system_memory() -> int | None:
    try:
        return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (AttributeError, ValueError, OSError):
        return None


def mps_available() -> bool:
    backend = getattr(torch.backends, "mps", None)
    return bool(backend is not None and backend.is_available())


def _cuda_plan() -> DevicePlan:
    props = torch.cuda.get_device_properties(0)
    mem = int(props.total_memory)
    info = DeviceInfo("cuda", f"{props.name} ({mem / GIB:.1f} GiB), float16", "float16", mem)
    return DevicePlan("cuda", torch.float16, torch.float16, False, info)


def _mps_plan() -> DevicePlan:
    info = DeviceInfo("mps", "Apple GPU (MPS), float16 UNet, float32 VAE, attention slicing",
                      "float16", _system_memory())
    return DevicePlan("mps", torch.float16, torch.float32, True, info)


def _cpu_plan() -> DevicePlan:
    threads = torch.get_num_threads()
    info = DeviceInfo("cpu", f"CPU ({threads} threads), float32", "float32", _system_memory())
    return DevicePlan("cpu", torch.float32, torch.float32, False, info)


def plan_device(requested: str = "auto") -> DevicePlan:
    """Choose the device: `requested` is "auto", "cuda", "mps" or "cpu".

    Raises UserError(bad_input) when an explicitly requested device is not available.
    """
    if requested not in DEVICES:
        raise bad_input(f"Unknown device {requested!r}.", f"Use one of: {', '.join(DEVICES)}.")
    if requested == "cuda" and not torch.cuda.is_available():
        raise bad_input("CUDA was requested, but no CUDA GPU is usable.",
                        "Use device 'auto' or 'cpu', or install a CUDA build of PyTorch and "
                        "a current NVIDIA driver.")
    if requested == "mps" and not mps_available():
        raise bad_input("Apple MPS was requested, but it is not available on this computer.",
                        "Use device 'auto' or 'cpu' (MPS needs Apple silicon and macOS ≥ 12.3).")
    if requested == "cuda" or (requested == "auto" and torch.cuda.is_available()):
        return _cuda_plan()
    if requested == "mps" or (requested == "auto" and mps_available()):
        return _mps_plan()
    return _cpu_plan()


def vae_dtype_for(plan: DevicePlan, vae: Any) -> torch.dtype:
    """The VAE's dtype under `plan`: float32 whenever its config asks for `force_upcast`."""
    if plan.vae_dtype == torch.float16 and bool(getattr(vae.config, "force_upcast", False)):
        return torch.float32
    return plan.vae_dtype


def with_vae_dtype(plan: DevicePlan, vae_dtype: torch.dtype) -> DevicePlan:
    """A copy of `plan` recording the VAE dtype actually used (reported in DeviceInfo)."""
    if vae_dtype == plan.vae_dtype:
        return plan
    info = plan.info
    note = f", {_dtype_name(vae_dtype)} VAE"
    desc = info.description if note in info.description else info.description + note
    return replace(plan, vae_dtype=vae_dtype, info=replace(info, description=desc))
