"""Per-step previews: the x0 prediction of image 0, as RGB bytes, as often as their cost allows
(`PREVIEW_BUDGET`: every step for the linear map, every few for a decoder).

Three decoders:
- `LinearPreviewer` (default, ~free): a fitted 4→3 linear map from latent channels to RGB at
  1/8 resolution. Factors are numeric facts (fitted regression coefficients) published in
  ComfyUI's `comfy/latent_formats.py` (classes SD15 — also used for SD2 — and SDXL, with the
  SDXL bias), applied to latents in the model's scaled space, then (rgb + 1) / 2 → 0..255.
  A diffusers folder whose VAE has its own latent space (the bundled demo model) ships its own
  fitted map as `latent_preview.json` ({"factors": 4 rows of R, G, B, "bias": [R, G, B]}); it
  wins over TAESD too, which only knows the SD VAEs' latents.
- `VaePreviewer`: the model's own VAE, when `latent_preview.json` says `"decoder": "vae"` (a
  VAE small enough to decode every few steps: the demo model's takes ~13 ms on one CPU core,
  where a linear map cannot follow its latent space).
- `TaesdPreviewer`: TAESD (`AutoencoderTiny`, madebyollin/taesd, MIT) when its weights are
  present: full-resolution previews for about a tenth of a UNet step. Weights are looked up in
  `data_dir()/models/taesd/` (a diffusers folder `taesd/` / `taesdxl/`, or the original
  `taesd_decoder.{safetensors,pth}` / `taesdxl_decoder.*` files) or an explicit folder.

The x0 prediction comes from `StepCapture`, which wraps the scheduler's `step` to keep
`pred_original_sample` (Euler, Heun, LMS, DDIM, DPM2, DPM++ SDE), `denoised` (LCM) or
`model_outputs[-1]` (DPM-Solver++ multistep and UniPC keep x0 there); PLMS exposes none, so its
previews show the noisy latents.
"""

from __future__ import annotations

import functools
import json
import logging
import weakref
from pathlib import Path
from typing import Any

import torch

from desktop_app import paths
from desktop_app.pipeline.api import PreviewImage
from desktop_app.pipeline.backend.memory import weights_dtype

log = logging.getLogger(__name__)

# Rows: latent channels 0..3; columns: R, G, B. Source: ComfyUI comfy/latent_formats.py.
SD15_RGB_FACTORS = (
    (0.3512, 0.2297, 0.3227),
    (0.3250, 0.4974, 0.2350),
    (-0.2829, 0.1762, 0.2721),
    (-0.2120, -0.2616, -0.7177),
)
SD15_RGB_BIAS = (0.0, 0.0, 0.0)
SDXL_RGB_FACTORS = (
    (0.3651, 0.4232, 0.4341),
    (-0.2533, -0.0042, 0.1068),
    (0.1076, 0.1111, -0.0362),
    (-0.3165, -0.2492, -0.2188),
)
SDXL_RGB_BIAS = (0.1084, -0.0175, -0.0011)


class StepCapture:
    """Wraps `scheduler.step` so the latest x0 prediction can be read in the step callback.

    The wrapper keeps the original signature visible (`functools.wraps`), because pipelines
    inspect it to decide whether to pass `generator=` and `eta=`.
    """

    def __init__(self, scheduler: Any) -> None:
        self.scheduler = scheduler
        self.x0: torch.Tensor | None = None
        original = scheduler.step

        @functools.wraps(original)
        def step(*args: Any, **kwargs: Any) -> Any:
            wants_dict = kwargs.get("return_dict", True)
            kwargs["return_dict"] = True
            out = original(*args, **kwargs)
            self.x0 = _x0_of(out, scheduler)
            return out if wants_dict else (out.prev_sample,)

        scheduler.step = step

    def preview_latents(self, latents: torch.Tensor) -> torch.Tensor:
        """Image 0's best available estimate of the final latents, shape (C, h, w)."""
        source = self.x0 if self.x0 is not None else latents
        return source[0]


def _x0_of(out: Any, scheduler: Any) -> torch.Tensor | None:
    for name in ("denoised", "pred_original_sample"):
        value = getattr(out, name, None)
        if value is not None:
            return value  # type: ignore[no-any-return]
    outputs = getattr(scheduler, "model_outputs", None)
    if outputs and outputs[-1] is not None:
        return outputs[-1]  # type: ignore[no-any-return]
    return None


def to_uint8(rgb: torch.Tensor) -> torch.Tensor:
    """RGB in [-1, 1] → uint8 0..255 (same layout)."""
    return ((rgb.float() + 1.0) * 127.5).clamp(0, 255).to(torch.uint8)


def to_preview(rgb: torch.Tensor) -> PreviewImage:
    """(H, W, 3) uint8 tensor → PreviewImage (copied to host memory)."""
    array = rgb.contiguous().cpu().numpy()
    height, width = int(array.shape[0]), int(array.shape[1])
    return PreviewImage(width=width, height=height, rgb=array.tobytes())


PREVIEW_MAP_FILE = "latent_preview.json"
LinearMap = tuple[tuple[tuple[float, ...], ...], tuple[float, ...]]
# Previews take at most this share of a batch's time: each previewer's decode is timed as it
# runs (GPU time on CUDA) and the next preview waits until cost / PREVIEW_BUDGET has passed
# since the last one started. A linear map (~0.1 ms) still previews every step; a TAESD decode
# (2.1 ms against a 28 ms SD1.5 step on an H100, eager; 1.2 s against 9.9 s at 512² on a
# 2-core CPU: benchmarks/preview_cost.py) about every second or third step, instead of costing
# 7–14 % of the image.
PREVIEW_BUDGET = 0.05


class PreviewCosts:
    """What each previewer's preview costs in seconds, per latent shape: the least measured,
    so that one slow call (the first one's autotuning, a collector pause) does not thin out
    the previews that follow."""

    def __init__(self) -> None:
        self._costs: weakref.WeakKeyDictionary[Any, dict[tuple[int, ...], float]] = (
            weakref.WeakKeyDictionary())

    def record(self, previewer: Any, shape: tuple[int, ...], seconds: float) -> None:
        known = self._costs.setdefault(previewer, {})
        known[shape] = min(seconds, known.get(shape, seconds))

    def gap(self, previewer: Any, shape: tuple[int, ...]) -> float:
        """Seconds from one preview's start to the next that keep previews within budget
        (0 while the cost is not known)."""
        return self._costs.get(previewer, {}).get(shape, 0.0) / PREVIEW_BUDGET


def model_preview_spec(folder: str | Path) -> tuple[LinearMap, str] | None:
    """The model folder's own latent→RGB map and preview decoder ("linear" or "vae"), or None
    (absent, or unreadable: logged)."""
    file = Path(folder) / PREVIEW_MAP_FILE
    if not file.is_file():
        return None
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
        factors = tuple(tuple(float(v) for v in row) for row in data["factors"])
        bias = tuple(float(v) for v in data["bias"])
        if len(factors) != 4 or any(len(row) != 3 for row in factors) or len(bias) != 3:
            raise ValueError("expected 4 rows of 3 factors and 3 bias values")
        decoder = data.get("decoder", "linear")
        if decoder not in ("linear", "vae"):
            raise ValueError(f"unknown decoder {decoder!r}")
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        log.warning("Ignoring %s (%s); previews use the standard map", file, exc)
        return None
    return (factors, bias), decoder


class LinearPreviewer:
    """Latent → RGB with a fitted linear map (1/8 resolution)."""

    def __init__(self, is_xl: bool, linear_map: LinearMap | None = None) -> None:
        factors: tuple[tuple[float, ...], ...] = SDXL_RGB_FACTORS if is_xl else SD15_RGB_FACTORS
        bias: tuple[float, ...] = SDXL_RGB_BIAS if is_xl else SD15_RGB_BIAS
        if linear_map is not None:
            factors, bias = linear_map
        self._weight = torch.tensor(factors, dtype=torch.float32).T  # (3, 4)
        self._bias = torch.tensor(bias, dtype=torch.float32)
        self._device: torch.device | None = None

    def rgb(self, latent: torch.Tensor) -> torch.Tensor:
        """(4, h, w) scaled latents → (h, w, 3) uint8 on the latents' device."""
        if self._device != latent.device:
            self._weight = self._weight.to(latent.device)
            self._bias = self._bias.to(latent.device)
            self._device = latent.device
        mapped = torch.nn.functional.linear(
            latent[:4].float().movedim(0, -1), self._weight, self._bias
        )
        return to_uint8(mapped)

    def __call__(self, latent: torch.Tensor) -> PreviewImage:
        return to_preview(self.rgb(latent))


class TaesdPreviewer:
    """Latent → RGB with a TAESD decoder (full resolution, a few ms on a GPU)."""

    def __init__(self, decoder: Any) -> None:
        self.decoder = decoder

    @torch.no_grad()
    def rgb(self, latent: torch.Tensor) -> torch.Tensor:
        """(4, h, w) scaled latents → (H, W, 3) uint8."""
        param = next(self.decoder.parameters())
        if param.device != latent.device or param.dtype != latent.dtype:
            self.decoder.to(device=latent.device, dtype=latent.dtype)
        sample = latent.unsqueeze(0)
        image: torch.Tensor = self.decoder.decode(sample).sample[0]  # (3, H, W) in [-1, 1]
        return to_uint8(image).movedim(0, -1)

    def __call__(self, latent: torch.Tensor) -> PreviewImage:
        return to_preview(self.rgb(latent))


class VaePreviewer:
    """Latent → RGB with the model's own (small) VAE: full resolution."""

    def __init__(self, vae: Any) -> None:
        self.vae = vae

    @torch.no_grad()
    def rgb(self, latent: torch.Tensor) -> torch.Tensor:
        """(4, h, w) scaled latents → (H, W, 3) uint8."""
        sample = (latent.unsqueeze(0) / self.vae.config.scaling_factor).to(weights_dtype(self.vae))
        image: torch.Tensor = self.vae.decode(sample).sample[0]  # (3, H, W) in [-1, 1]
        return to_uint8(image).movedim(0, -1)

    def __call__(self, latent: torch.Tensor) -> PreviewImage:
        return to_preview(self.rgb(latent))


def taesd_dir() -> Path:
    """Where TAESD weights are looked for by default."""
    return paths.data_dir() / "models" / "taesd"


def _decoder_from_original(file: Path) -> Any:
    """An AutoencoderTiny (default architecture) from an original `taesd*_decoder` file.

    The original decoder is nn.Sequential(Clamp(), conv, ...); diffusers' DecoderTiny does the
    clamp in forward(), so layer indices shift down by one (checked to 1.5e-8 on real weights).
    """
    import diffusers

    autoencoder_tiny: Any = diffusers.AutoencoderTiny  # untyped library class

    if file.suffix == ".safetensors":
        from safetensors.torch import load_file

        state = load_file(str(file))
        if any(k.startswith("decoder.layers.") for k in state):  # a whole diffusers TAESD
            tiny = autoencoder_tiny()
            tiny.load_state_dict(state)
            return tiny
    else:
        state = torch.load(str(file), map_location="cpu", weights_only=True)
    mapped = {}
    for key, value in state.items():
        index, rest = key.split(".", 1)
        mapped[f"decoder.layers.{int(index) - 1}.{rest}"] = value
    tiny = autoencoder_tiny()
    missing, unexpected = tiny.load_state_dict(mapped, strict=False)
    if unexpected or any(not k.startswith("encoder.") for k in missing):
        raise ValueError(f"{file.name} is not a TAESD decoder")
    return tiny


def _taesd_candidates(is_xl: bool, folder: Path | None) -> list[Path]:
    base = folder if folder is not None else taesd_dir()
    stem = "taesdxl" if is_xl else "taesd"
    return [base / stem, base / f"{stem}_decoder.safetensors", base / f"{stem}_decoder.pth",
            base / f"{stem}.safetensors"]  # the library's download (diffusers keys)


def taesd_signature(is_xl: bool, folder: Path | None = None) -> tuple[tuple[str, int, int], ...]:
    """What `load_taesd` would find, as (name, mtime, size) of each candidate present: it
    changes when a TAESD is downloaded, replaced or deleted. A few stat calls."""
    found = []
    for candidate in _taesd_candidates(is_xl, folder):
        try:
            info = candidate.stat()
        except OSError:
            continue
        found.append((candidate.name, info.st_mtime_ns, info.st_size))
    return tuple(found)


def load_taesd(is_xl: bool, folder: Path | None = None) -> Any | None:
    """The TAESD (or TAESDXL) decoder found in `folder` (default `taesd_dir()`), or None.

    A broken file is logged and ignored: previews fall back to the linear map.
    """
    for candidate in _taesd_candidates(is_xl, folder):
        if not candidate.exists():
            continue
        try:
            if candidate.is_dir():
                import diffusers

                tiny_class: Any = diffusers.AutoencoderTiny
                return tiny_class.from_pretrained(str(candidate)).eval()
            return _decoder_from_original(candidate).eval()
        except Exception:  # previews are optional; the linear map still works
            log.warning("Could not load TAESD weights from %s", candidate, exc_info=True)
    return None


def model_previewer(folder: str | Path, is_xl: bool, vae: Any) -> Any | None:
    """The previewer a model folder asks for in its `latent_preview.json` (its own VAE or its
    own linear map), or None when it asks for none. Only valid with the model's own VAE."""
    spec = model_preview_spec(folder)
    if spec is None:
        return None
    linear_map, decoder = spec
    return VaePreviewer(vae) if decoder == "vae" else LinearPreviewer(is_xl, linear_map)


def make_previewer(is_xl: bool, taesd_folder: Path | None = None) -> Any:
    """TAESD when its weights are present, otherwise the linear map."""
    decoder = load_taesd(is_xl, taesd_folder)
    return TaesdPreviewer(decoder) if decoder is not None else LinearPreviewer(is_xl)
