"""FP8 matmuls for the UNet's transformer blocks (a fast-mode option for H100 / Ada GPUs).

Each `nn.Linear` inside the UNet's attention blocks (`…attentions.N…`: proj_in/out where they
are linear, the attention projections — fused QKV included — and the feed-forward) becomes an
`Fp8Linear`: its weight is quantised once to float8 e4m3 with one scale per output channel, and
every call quantises the activations per row (token) and runs `torch._scaled_mm`, which on
sm89+ GPUs does the multiply at FP8 tensor-core rate with fp32 accumulation. Under
torch.compile the per-row amax, scaling and cast fuse into one kernel before each matmul.
The convolutions (most of SD1.5's ResNet work) and the small time-embedding layers stay fp16.

Rowwise-scaled `_scaled_mm` returns bfloat16 (some CUDA builds refuse float16 for it); the
result is cast back to the layer's dtype and the bias added there. Quality: e4m3 keeps 3
mantissa bits to fp16's 10. Measured on an H100 (docs/performance.md): SD1.5 512² went from
127.7 to 115.5 it/s (the per-row quantisation costs more than the small matmuls save) and its
image moved 1.2 levels from eager instead of 0.08, so fast mode leaves it off.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

FP8 = torch.float8_e4m3fn
FP8_MAX = float(torch.finfo(FP8).max)  # 448
_ALIGN = 16  # _scaled_mm needs both matrix dimensions of the weight to be multiples of 16


class Fp8Linear(nn.Module):
    """`linear` with its matmul in FP8: per-output-channel weight scales, per-row activation
    scales, fp32 accumulation."""

    weight_fp8: torch.Tensor  # (out, in) float8, registered buffers
    weight_scale: torch.Tensor  # (1, out) float32

    def __init__(self, linear: nn.Linear) -> None:
        super().__init__()
        weight = linear.weight.detach()
        scale = _scale(weight.float())  # (out, 1)
        self.in_features, self.out_features = linear.in_features, linear.out_features
        self.register_buffer("weight_fp8", (weight.float() / scale).to(FP8))  # (out, in)
        self.register_buffer("weight_scale", scale.t().contiguous())  # (1, out)
        self.bias = linear.bias

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rows = x.reshape(-1, self.in_features)
        scale = _scale(rows.float())
        quantised = (rows.float() / scale).clamp(-FP8_MAX, FP8_MAX).to(FP8)
        out = torch._scaled_mm(quantised, self.weight_fp8.t(), scale_a=scale,
                               scale_b=self.weight_scale, out_dtype=torch.bfloat16)
        out = out.to(x.dtype)
        if self.bias is not None:
            out = out + self.bias
        return out.reshape(*x.shape[:-1], self.out_features)


def _scale(rows: torch.Tensor) -> torch.Tensor:
    """One float32 scale per row mapping its largest magnitude to FP8's largest value."""
    return rows.abs().amax(dim=1, keepdim=True).clamp(min=1e-12) / FP8_MAX


def fp8_supported(device: torch.device) -> tuple[bool, str]:
    """FP8 tensor cores: compute capability 8.9 (Ada) or 9.0+ (Hopper); any CPU torch that has
    `_scaled_mm` (tests)."""
    if not hasattr(torch, "_scaled_mm"):
        return False, f"This torch ({torch.__version__}) has no FP8 matmul."
    if device.type == "cuda":
        capability = torch.cuda.get_device_capability(device)
        if capability < (8, 9):
            return False, (f"FP8 needs an Ada or Hopper GPU (compute capability 8.9+); this one "
                           f"is {capability[0]}.{capability[1]}.")
    return True, ""


def use_fp8_linears(unet: nn.Module) -> tuple[Callable[[], None], int]:
    """Swap the eligible linears of `unet`'s attention blocks for `Fp8Linear`; returns
    (undo, how many were swapped)."""
    swapped: list[tuple[nn.Module, str, nn.Linear]] = []
    for name, module in list(unet.named_modules()):
        if ".attentions." not in f".{name}.":
            continue
        for child_name, child in list(module.named_children()):
            if (type(child) is nn.Linear and child.in_features % _ALIGN == 0
                    and child.out_features % _ALIGN == 0):
                setattr(module, child_name, Fp8Linear(child))
                swapped.append((module, child_name, child))

    def undo() -> None:
        for parent, child_name, original in swapped:
            setattr(parent, child_name, original)

    return undo, len(swapped)
