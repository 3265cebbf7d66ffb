"""Load a Stable Diffusion pipeline from what people have on disk — fully offline.

Sources (see research/diffusers.md §1):
* a single `.safetensors` checkpoint (SD 1.x, SD 2.x 512/768-v, SDXL base): family detected
  from the header (`library.detect`), loaded with `from_single_file(config=<shipped config
  folder>, local_files_only=True)` and our own tokenizers — never the Hub;
* `model_config=DIR`: a diffusers config folder used verbatim instead of detection (for
  architectures the detector does not know); its tokenizer folders if present, else ours;
* a diffusers folder (`model_index.json`), via `from_pretrained(local_files_only=True)`;
* a pickle `.ckpt`: converted once (safely, `ckpt.py`) to
  `cache_dir()/converted/<sha256>.safetensors`;
* a standalone VAE file, built with the *base model's* VAE config (right scaling factor).

Every failure reaches the caller as a UserError with a hint, never a raw traceback.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from desktop_app import paths
from desktop_app.errors import ErrorKind, UserError, bad_input, friendly_error
from desktop_app.library import detect, hashing
from desktop_app.pipeline.api import LoadCallback, LoadUpdate, ModelFamily
from desktop_app.pipeline.backend.ckpt import convert_ckpt_to_safetensors
from desktop_app.pipeline.backend.device import (
    DevicePlan,
    plan_device,
    vae_dtype_for,
    with_vae_dtype,
)
from desktop_app.pipeline.backend.memory import quick_execution_device

log = logging.getLogger(__name__)

SD2_FAMILIES = (ModelFamily.sd2_512, ModelFamily.sd2_768_v)
PREDICTION_TYPES = ("epsilon", "v_prediction")
_CONFIG_HINT = ("If this is a Stable Diffusion variant the app does not recognise, give its "
                "diffusers config folder as model config (--model-config DIR).")


@dataclass
class LoadedModel:
    """A loaded pipeline and what it was loaded from (lives in the worker thread only)."""

    pipe: Any  # StableDiffusionPipeline or StableDiffusionXLPipeline, on its device
    family: ModelFamily | None
    name: str  # display name: file stem, folder name, or "demo"
    path: str  # absolute path
    sha256: str  # full sha256 of the file ('' for folders)
    vae_name: str  # '' when the baked-in VAE is used
    vae_sha256: str
    device: DevicePlan
    vae_config: str = field(default="", repr=False)  # folder whose vae/config.json fits the model
    baked_vae: Any = field(default=None, repr=False)  # the checkpoint's own VAE while swapped out


def default_model_path() -> Path:
    """The bundled demo model (a diffusers folder); it may be absent in a source checkout."""
    return paths.resource("models", "demo")


def import_generation_modules() -> None:
    """Import the classes a first job needs: both pipelines, their models, every sampler.

    diffusers and transformers import these lazily on first use, which would put a second of
    imports (scipy.stats, every diffusers model module) into the first job's model load;
    `engine.create_backend` calls this while it imports torch, before any model is loaded.
    """
    import diffusers
    import transformers
    from diffusers.pipelines.pipeline_loading_utils import LOADABLE_CLASSES

    from desktop_app.pipeline.backend.samplers import SAMPLERS

    for name in ("StableDiffusionPipeline", "StableDiffusionXLPipeline", "AutoencoderKL",
                 "AutoencoderTiny", "UNet2DConditionModel"):
        getattr(diffusers, name)
    for library in (diffusers, transformers):  # the base classes a folder's loader looks up
        for name in LOADABLE_CLASSES.get(library.__name__, ()):
            getattr(library, name, None)
    for scheduler in {spec.scheduler for spec in SAMPLERS.values()}:
        # Loading a model looks up the schedulers "compatible" with its own (all Karras ones).
        for name in getattr(getattr(diffusers, scheduler), "_compatibles", ()):
            getattr(diffusers, str(name), None)
    for name in ("CLIPTextModel", "CLIPTextModelWithProjection", "CLIPTokenizer"):
        getattr(transformers, name)


def _quiet_libraries() -> None:
    from diffusers.utils import logging as dlog
    from transformers.utils import logging as tlog

    dlog.disable_progress_bar()
    tlog.disable_progress_bar()  # type: ignore[no-untyped-call]
    dlog.set_verbosity_error()
    tlog.set_verbosity_error()  # type: ignore[no-untyped-call]


class _Progress:
    def __init__(self, on_load: LoadCallback | None) -> None:
        self._cb = on_load

    def __call__(self, stage: str, fraction: float) -> None:
        if self._cb is not None:
            self._cb(LoadUpdate(stage, max(0.0, min(1.0, fraction))))

    def hashing(self, low: float, high: float) -> Callable[[int, int], None]:
        def report(done: int, total: int) -> None:
            if done % (64 << 20) < (1 << 20) or done == total:  # every 64 MiB
                self("Hashing the model file", low + (high - low) * done / max(total, 1))
        return report


def _our_tokenizer(pad_bang: bool) -> Any:
    """The shipped CLIP tokenizer; a fresh object per pipeline (its backend state is mutable)."""
    from transformers import CLIPTokenizer

    kwargs: dict[str, Any] = {"pad_token": "!"} if pad_bang else {}
    return CLIPTokenizer.from_pretrained(str(paths.resource("tokenizer")), **kwargs)


def _tokenizer_kwargs(config_dir: Path, xl: bool, pad_bang: bool) -> dict[str, Any]:
    """Our tokenizers for the slots the config folder does not provide itself."""
    out: dict[str, Any] = {}
    if not (config_dir / "tokenizer").is_dir():
        out["tokenizer"] = _our_tokenizer(pad_bang and not xl)
    if xl and not (config_dir / "tokenizer_2").is_dir():
        out["tokenizer_2"] = _our_tokenizer(True)
    return out


def _pipeline_class(config_dir: Path) -> Any:
    import diffusers

    try:
        index = json.loads((config_dir / "model_index.json").read_text(encoding="utf-8"))
        name = index["_class_name"]
    except (OSError, ValueError, KeyError, TypeError):
        raise UserError(ErrorKind.bad_input, f"{config_dir} is not a diffusers folder: "
                        "model_index.json is missing or unreadable.",
                        "Use a folder that contains model_index.json.") from None
    if name not in ("StableDiffusionPipeline", "StableDiffusionXLPipeline"):
        raise UserError(ErrorKind.unsupported, f"Pipeline type {name!r} is not supported.",
                        "Use an SD 1.x, SD 2.x or SDXL (base) text-to-image model.")
    return getattr(diffusers, name)


def _sd_kwargs(cls: Any) -> dict[str, Any]:
    """Components we never load (a Hub-style folder may list them without their files)."""
    unused: dict[str, Any] = {"feature_extractor": None, "image_encoder": None}
    if cls.__name__ == "StableDiffusionPipeline":
        unused.update(safety_checker=None, requires_safety_checker=False)
    return unused


def _weights_variant(folder: Path) -> dict[str, Any]:
    """`variant="fp16"` for Hub folders that only ship `*.fp16.safetensors` weights."""
    unet = folder / "unet"
    if not any(unet.glob("diffusion_pytorch_model.safetensors*")) and \
            any(unet.glob("diffusion_pytorch_model.fp16.safetensors*")):
        return {"variant": "fp16"}
    return {}


def _load_error(exc: BaseException, what: str, hint: str = _CONFIG_HINT) -> UserError:
    if isinstance(exc, UserError):
        return exc
    friendly = friendly_error(exc)
    if friendly.kind is not ErrorKind.runtime:  # out of memory, missing file: their own advice
        return friendly
    first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
    return UserError(ErrorKind.unsupported, f"Could not load {what}: {first}", hint)


def _resolve_path(model: str | None) -> tuple[Path, str]:
    if model is None or not str(model).strip():
        path = default_model_path()
        if not path.exists():
            raise UserError(ErrorKind.missing_file, "The bundled demo model is not installed.",
                            "Choose a model file (.safetensors) or a diffusers folder.")
        return path.resolve(), "demo"
    path = Path(model).expanduser()
    if not path.exists():
        raise UserError(ErrorKind.missing_file, f"Model not found: {path}",
                        "Check the path, or pick the model again in the library.")
    path = path.resolve()
    return path, path.name if path.is_dir() else path.stem


def _convert_cached(path: Path, sha256: str, progress: _Progress) -> Path:
    """A pickle checkpoint as safetensors in the cache (converted once per file content)."""
    dst = paths.cache_dir() / "converted" / f"{sha256}.safetensors"
    if not dst.is_file():
        progress("Converting the .ckpt file to .safetensors (once)", 0.3)
        convert_ckpt_to_safetensors(path, dst)
    return dst


@dataclass(frozen=True)
class _Source:
    file: Path  # the .safetensors to load (may be a converted copy)
    family: ModelFamily | None
    config_dir: Path
    prediction_type: str | None  # scheduler override, None = keep the config's


def _check_prediction(prediction_type: str | None) -> None:
    if prediction_type is not None and prediction_type not in PREDICTION_TYPES:
        raise bad_input(f"Unknown prediction type {prediction_type!r}.",
                        "Use 'epsilon' or 'v_prediction'.")


def _single_file_source(file: Path, model_config: str | None,
                        prediction_type: str | None) -> _Source:
    info = detect.inspect_model_file(file)
    if info.kind in ("vae", "taesd", "lora"):
        what = {"vae": "a VAE", "taesd": "a TAESD preview decoder", "lora": "a LoRA"}[info.kind]
        raise bad_input(f"{file.name} is {what}, not a model checkpoint.",
                        "Choose a full checkpoint as the model" +
                        ("; pass this file as the VAE." if info.kind == "vae" else "."))
    if model_config:
        config_dir = Path(model_config).expanduser()
        if not (config_dir / "model_index.json").is_file():
            raise UserError(ErrorKind.missing_file, f"Model config folder {config_dir} has no "
                            "model_index.json.", "Give a diffusers config folder (as written by "
                            "save_pretrained, weights not needed).")
        family, _ = detect.folder_family(config_dir)
        return _Source(file, family, config_dir.resolve(), prediction_type)
    if info.status != "ok" or info.family is None:
        raise UserError(ErrorKind.unsupported, f"{file.name}: {info.reason or 'unsupported.'}",
                        _CONFIG_HINT)
    family = info.family
    if family in SD2_FAMILIES and prediction_type is not None:
        # The two SD2 variants differ only in prediction type (and native size).
        family = ModelFamily.sd2_768_v if prediction_type == "v_prediction" else ModelFamily.sd2_512
        prediction_type = None
    elif prediction_type is None and info.metadata.get("modelspec.prediction_type"):
        prediction_type = info.prediction_type  # e.g. a v-prediction SD1/SDXL fine-tune
    if family in SD2_FAMILIES and info.reason:
        log.info("%s: %s", file.name, info.reason)
    config_dir = paths.resource("configs", family.value)
    if not (config_dir / "model_index.json").is_file():
        raise UserError(ErrorKind.missing_file, f"The shipped configuration for {family.label} "
                        f"is missing ({config_dir}).", "Reinstall the app.")
    return _Source(file, family, config_dir, prediction_type)


def _load_single_file(src: _Source, plan: DevicePlan) -> Any:
    cls = _pipeline_class(src.config_dir)
    xl = cls.__name__ == "StableDiffusionXLPipeline"
    kwargs = _tokenizer_kwargs(src.config_dir, xl, pad_bang=src.family in SD2_FAMILIES)
    return cls.from_single_file(str(src.file), config=str(src.config_dir), local_files_only=True,
                                dtype=plan.dtype, **_sd_kwargs(cls), **kwargs)


def _load_folder(folder: Path, plan: DevicePlan) -> tuple[Any, ModelFamily | None]:
    family, reason = detect.folder_family(folder)
    if family is None:
        raise UserError(ErrorKind.unsupported, f"{folder.name}: {reason}",
                        "Use an SD 1.x, SD 2.x or SDXL (base) text-to-image model.")
    cls = _pipeline_class(folder)
    kwargs = _tokenizer_kwargs(folder, family.is_xl, pad_bang=family in SD2_FAMILIES)
    pipe = cls.from_pretrained(str(folder), local_files_only=True, dtype=plan.dtype,
                               **_sd_kwargs(cls), **_weights_variant(folder), **kwargs)
    return pipe, family


def _set_prediction_type(pipe: Any, prediction_type: str | None) -> None:
    if prediction_type and pipe.scheduler.config.get("prediction_type") != prediction_type:
        pipe.scheduler = type(pipe.scheduler).from_config(pipe.scheduler.config,
                                                          prediction_type=prediction_type)


def _file_sha(path: Path, progress: _Progress) -> str:
    return hashing.default_cache().sha256(path, progress.hashing(0.05, 0.25))


def _load_pipeline(path: Path, model_config: str | None, prediction_type: str | None,
                   plan: DevicePlan, progress: _Progress
                   ) -> tuple[Any, ModelFamily | None, str, Path]:
    """(pipe, family, sha256, folder whose vae/config.json fits) for any kind of source."""
    if path.is_dir():
        if model_config:
            raise bad_input("A model config folder applies only to single-file checkpoints.",
                            "Leave model config empty for diffusers folders.")
        progress("Loading the diffusers folder", 0.3)
        pipe, family = _load_folder(path, plan)
        _set_prediction_type(pipe, prediction_type)
        return pipe, family, "", path
    suffix = path.suffix.lower()
    if suffix != ".safetensors" and suffix not in detect.PICKLE_SUFFIXES:
        hint = ("Choose the folder that contains model_index.json, not the file itself."
                if path.name == "model_index.json" else
                "Use a .safetensors or .ckpt checkpoint, or a diffusers folder.")
        raise UserError(ErrorKind.unsupported,
                        f"Unsupported model file type {suffix or '(none)'}.", hint)
    if suffix == ".safetensors":
        detect.read_safetensors_header(path)  # fail fast on corrupt files, before hashing
    sha = _file_sha(path, progress)
    file = path if suffix == ".safetensors" else _convert_cached(path, sha, progress)
    src = _single_file_source(file, model_config, prediction_type)
    label = src.family.label if src.family else "the given config"
    progress(f"Loading {label} weights", 0.4)
    pipe = _load_single_file(src, plan)
    _set_prediction_type(pipe, src.prediction_type)
    return pipe, src.family, sha, src.config_dir


def _place(pipe: Any, plan: DevicePlan, low_vram: bool) -> DevicePlan:
    vae_dtype = vae_dtype_for(plan, pipe.vae)
    pipe.vae.to(dtype=vae_dtype)
    plan = with_vae_dtype(plan, vae_dtype)
    if low_vram and plan.device == "cuda":
        pipe.enable_model_cpu_offload()  # whole models visit the GPU only while used
    else:
        pipe.to(plan.device)
    if plan.attention_slicing or low_vram:
        pipe.enable_attention_slicing()
    if low_vram:
        pipe.vae.enable_tiling()
    pipe.set_progress_bar_config(disable=True)
    return plan


def load_model(model: str | None, *, model_config: str | None = None, vae: str | None = None,
               prediction_type: str | None = None, device: str = "auto", low_vram: bool = False,
               on_load: LoadCallback | None = None) -> LoadedModel:
    """Load a checkpoint file, a diffusers folder, or the demo model (None) for generation.

    `model_config` overrides family detection with a diffusers config folder; `vae` replaces
    the baked-in VAE; `prediction_type` ("epsilon"/"v_prediction") overrides the scheduler's
    (for SD 2.x it selects the 512 or 768-v variant). Reports stages through `on_load`.
    Raises UserError for every failure a person can act on.
    """
    progress = _Progress(on_load)
    _check_prediction(prediction_type)
    plan = plan_device(device)
    progress("Checking the model file", 0.02)
    path, name = _resolve_path(model)
    _quiet_libraries()
    try:
        pipe, family, sha, vae_cfg = _load_pipeline(path, model_config, prediction_type,
                                                       plan, progress)
    except Exception as exc:
        raise _load_error(exc, path.name) from exc
    quick_execution_device(pipe)
    loaded = LoadedModel(pipe=pipe, family=family, name=name, path=str(path), sha256=sha,
                         vae_name="", vae_sha256="", device=plan, vae_config=str(vae_cfg))
    if vae:
        progress("Loading the VAE", 0.8)
        _replace_vae(loaded, vae)
    progress(f"Moving to {plan.device}", 0.9)
    try:
        loaded.device = _place(pipe, plan, low_vram)
    except Exception as exc:
        raise _load_error(exc, path.name, "Try the CPU device or low-VRAM mode.") from exc
    progress("Model ready", 1.0)
    return loaded


def _vae_file(path: Path) -> tuple[Path, str]:
    """(safetensors file to load, sha256 of the user's file) for a standalone VAE."""
    if not path.is_file():
        raise UserError(ErrorKind.missing_file, f"VAE not found: {path}",
                        "Check the path, or choose 'Automatic' to use the model's own VAE.")
    suffix = path.suffix.lower()
    if suffix == ".safetensors":
        info = detect.inspect_model_file(path)
        if info.kind not in ("vae", "checkpoint"):
            raise bad_input(f"{path.name} is not a VAE (it looks like a {info.kind} file).",
                            "Choose a VAE file such as sdxl_vae.safetensors.")
        return path, hashing.default_cache().sha256(path)
    if suffix in detect.PICKLE_SUFFIXES:
        sha = hashing.default_cache().sha256(path)
        return _convert_cached(path, sha, _Progress(None)), sha
    raise UserError(ErrorKind.unsupported, f"Unsupported VAE file type {suffix or '(none)'}.",
                    "Use a .safetensors (or .pt/.ckpt) VAE file.")


def _build_vae(path: Path, config_dir: Path, dtype: torch.dtype) -> tuple[Any, str]:
    from diffusers import AutoencoderKL

    if path.is_dir():
        return AutoencoderKL.from_pretrained(  # type: ignore[no-untyped-call]
            str(path), local_files_only=True,
                                             dtype=dtype), ""
    file, sha = _vae_file(path)
    # The base model's VAE config: right architecture and scaling factor (SDXL 0.13025).
    vae = AutoencoderKL.from_single_file(str(file), config=str(config_dir), subfolder="vae",
                                         local_files_only=True, dtype=dtype)
    return vae, sha


def _replace_vae(loaded: LoadedModel, vae: str) -> None:
    path = Path(vae).expanduser().resolve()
    pipe = loaded.pipe
    current = pipe.vae
    device = next(current.parameters()).device
    try:
        new_vae, sha = _build_vae(path, Path(loaded.vae_config), current.dtype)
    except Exception as exc:
        raise _load_error(exc, f"the VAE {path.name}", "Choose a VAE made for this model's "
                          "family, or 'Automatic' for the model's own VAE.") from exc
    dtype = vae_dtype_for(loaded.device, new_vae)
    new_vae.to(device=device, dtype=dtype)
    if loaded.baked_vae is None:
        loaded.baked_vae = current.to("cpu")  # kept (in RAM) to switch back without reloading
    pipe.vae = new_vae
    pipe.register_modules(vae=new_vae)
    loaded.vae_name, loaded.vae_sha256 = path.stem, sha


def swap_vae(loaded: LoadedModel, vae: str | None) -> None:
    """Use another VAE (a file path) or, with None, the checkpoint's own, without reloading.

    The UNet and text encoders stay untouched. Raises UserError when the VAE cannot be used;
    the pipeline then keeps its current VAE.
    """
    if vae:
        _replace_vae(loaded, vae)
        return
    if loaded.baked_vae is None:
        return  # already the baked-in VAE
    pipe = loaded.pipe
    device = next(pipe.vae.parameters()).device
    baked = loaded.baked_vae.to(device)
    pipe.register_modules(vae=baked)
    loaded.baked_vae = None
    loaded.vae_name = loaded.vae_sha256 = ""
