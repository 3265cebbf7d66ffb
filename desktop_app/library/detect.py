"""What a model file is, from its safetensors header alone (no weights read, no torch).

`read_safetensors_header` validates the header strictly (size cap, JSON shape, tensor offsets
inside the file), so truncated, empty or random files become a `UserError(corrupt_file)` before
anything heavy touches them. `inspect_model_file` names the kind of file (checkpoint, VAE, TAESD,
LoRA) and the model family from tensor names and shapes, plus the SAI ModelSpec metadata.

SD 2.x 512 (ε-prediction) and 768 (v-prediction) checkpoints have identical tensors. When the
file carries `modelspec.architecture` or `modelspec.prediction_type`, that decides; otherwise
we assume **sd2-768-v** (SD 2.0/2.1 768, the most common SD2 download). A user with a 512-base
model overrides it with prediction_type "epsilon" (CLI `--prediction-type epsilon`), which
selects the sd2-512 configuration.
"""

from __future__ import annotations

import json
import re
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from desktop_app.errors import ErrorKind, UserError
from desktop_app.pipeline.api import ModelFamily

MAX_HEADER_BYTES = 100 * 1024 * 1024
MAX_THUMBNAIL_CHARS = 4 * 1024 * 1024
DTYPE_BYTES = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1,
               "U64": 8, "U32": 4, "U16": 2, "U8": 1, "BOOL": 1, "F8_E4M3": 1, "F8_E5M2": 1}
PICKLE_SUFFIXES = (".ckpt", ".pt", ".pth", ".bin")

Kind = Literal["checkpoint", "vae", "taesd", "lora", "unknown"]
Status = Literal["ok", "unsupported", "corrupt"]

_UNET = "model.diffusion_model."
_CORRUPT_HINT = "The file is damaged or incomplete: download it again."


@dataclass(frozen=True)
class TensorInfo:
    """One tensor entry of a safetensors header."""

    dtype: str
    shape: tuple[int, ...]
    start: int
    end: int


@dataclass(frozen=True)
class SafetensorsHeader:
    """A validated safetensors header: tensors by name and the free-text `__metadata__`."""

    tensors: dict[str, TensorInfo]
    metadata: dict[str, str]
    data_start: int  # file offset of the first tensor byte (8 + header length)
    file_size: int


@dataclass(frozen=True)
class ModelFileInfo:
    """What `inspect_model_file` found out about a file or diffusers folder.

    `status` is "ok" when the engine can load it, "unsupported" (with `reason`) when it is a
    known kind the engine cannot use, "corrupt" when it is damaged. Text fields come from the
    file and are untrusted display text (control characters removed, length capped).
    """

    path: str
    kind: Kind
    family: ModelFamily | None
    status: Status
    reason: str = ""
    title: str = ""
    description: str = ""
    thumbnail: str | None = None  # ModelSpec data: URI
    prediction_type: str | None = None  # "epsilon" / "v_prediction" when known
    size_bytes: int = 0
    needs_conversion: bool = False  # pickle .ckpt: converted to safetensors before loading
    architecture: str = ""  # modelspec.architecture, if any
    metadata: dict[str, str] = field(default_factory=dict, compare=False, repr=False)


def _corrupt(path: Path, what: str) -> UserError:
    return UserError(ErrorKind.corrupt_file,
                     f"{path.name} is not a valid .safetensors file: {what}.", _CORRUPT_HINT)


def read_safetensors_header(path: str | Path) -> SafetensorsHeader:
    """Read and validate the header of a .safetensors file without reading any tensor data.

    Raises UserError: missing_file when absent, corrupt_file when empty, truncated, not JSON,
    or when a tensor's offsets fall outside the file or disagree with its shape.
    """
    path = Path(path)
    try:
        with open(path, "rb") as f:
            size = f.seek(0, 2)
            f.seek(0)
            if size == 0:
                raise _corrupt(path, "the file is empty (0 bytes)")
            head = f.read(8)
            if len(head) < 8:
                raise _corrupt(path, "the file is too short to hold a header")
            (length,) = struct.unpack("<Q", head)
            if length < 2 or length > MAX_HEADER_BYTES or 8 + length > size:
                raise _corrupt(path, f"the header length ({length} bytes) does not fit the file")
            raw = f.read(length)
    except FileNotFoundError:
        raise UserError(ErrorKind.missing_file, f"File not found: {path}",
                        "Check the path, or pick the model again in the library.") from None
    except IsADirectoryError:
        raise UserError(ErrorKind.bad_input, f"{path} is a folder, not a .safetensors file.",
                        "Pick the file itself, or a diffusers folder with model_index.json."
                        ) from None
    except PermissionError:
        raise UserError(ErrorKind.missing_file, f"No permission to read {path}.",
                        "Check the file's permissions.") from None
    try:
        parsed = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise _corrupt(path, "the header is not valid JSON") from None
    if not isinstance(parsed, dict):
        raise _corrupt(path, "the header is not a JSON object")
    return _validate_header(path, parsed, 8 + length, size)


def _validate_header(path: Path, parsed: dict[str, Any], data_start: int,
                     size: int) -> SafetensorsHeader:
    raw_meta = parsed.pop("__metadata__", None) or {}
    metadata = ({str(k): v for k, v in raw_meta.items() if isinstance(v, str)}
                if isinstance(raw_meta, dict) else {})
    tensors: dict[str, TensorInfo] = {}
    for name, entry in parsed.items():
        try:
            dtype = entry["dtype"]
            shape = tuple(entry["shape"])
            start, end = entry["data_offsets"]
            ok = (isinstance(dtype, str) and all(isinstance(d, int) and d >= 0 for d in shape)
                  and isinstance(start, int) and isinstance(end, int) and 0 <= start <= end)
        except (TypeError, KeyError, ValueError):
            ok = False
        if not ok:
            raise _corrupt(path, f"tensor {name[:80]!r} has a malformed entry")
        if data_start + end > size:
            raise _corrupt(path, "the file is truncated (tensor data runs past its end)")
        numel = 1
        for dim in shape:
            numel *= dim
        if dtype in DTYPE_BYTES and numel * DTYPE_BYTES[dtype] != end - start:
            raise _corrupt(path, f"tensor {name[:80]!r} has offsets that do not match its shape")
        tensors[name] = TensorInfo(dtype, shape, start, end)
    return SafetensorsHeader(tensors, metadata, data_start, size)


def _clean(text: str, limit: int) -> str:
    text = re.sub(r"[\x00-\x08\x0b-\x1f\x7f]", "", text)
    return text[:limit].strip()


def _prediction_from_meta(meta: dict[str, str]) -> str | None:
    value = meta.get("modelspec.prediction_type", "").strip().lower()
    if value in ("v", "v_prediction", "v-prediction"):
        return "v_prediction"
    if value in ("epsilon", "eps"):
        return "epsilon"
    return None


@dataclass(frozen=True)
class _Verdict:
    kind: Kind
    family: ModelFamily | None = None
    status: Status = "ok"
    reason: str = ""


def _text_layout(names: list[str]) -> str:
    prefixes = {"cond_stage_model.transformer.": "sd1", "cond_stage_model.model.": "sd2",
                "conditioner.embedders.1.model.": "sdxl",
                "conditioner.embedders.0.model.": "refiner"}
    found = {tag for prefix, tag in prefixes.items() if any(n.startswith(prefix) for n in names)}
    for tag in ("sdxl", "refiner", "sd2", "sd1"):
        if tag in found:
            return tag
    return ""


def _sd2_family(meta: dict[str, str]) -> tuple[ModelFamily, str]:
    arch = meta.get("modelspec.architecture", "").lower()
    pred = _prediction_from_meta(meta)
    if "768-v" in arch or pred == "v_prediction":
        return ModelFamily.sd2_768_v, ""
    if "512" in arch or pred == "epsilon":
        return ModelFamily.sd2_512, ""
    return ModelFamily.sd2_768_v, ("SD 2.x file without ModelSpec metadata: assumed 768 "
                                   "v-prediction. For a 512 base model set prediction type "
                                   "to 'epsilon'.")


def _classify_unet(h: SafetensorsHeader) -> _Verdict:
    names = list(h.tensors)
    conv_in = h.tensors.get(_UNET + "input_blocks.0.0.weight")
    in_ch = conv_in.shape[1] if conv_in and len(conv_in.shape) == 4 else 4
    if in_ch != 4:
        what = "an inpainting model" if in_ch == 9 else f"a {in_ch}-channel UNet (e.g. pix2pix)"
        return _Verdict("checkpoint", None, "unsupported", f"This is {what}; only text-to-image "
                        "checkpoints are supported.")
    cross = next((t.shape[-1] for n, t in h.tensors.items()
                  if n.startswith(_UNET) and n.endswith("attn2.to_k.weight")), 0)
    label = _UNET + "label_emb.0.0.weight" in h.tensors
    text = _text_layout(names)
    if not any(n.startswith(("first_stage_model.", "vae.")) for n in names) or not text:
        return _Verdict("checkpoint", None, "unsupported", "The file holds only the UNet (no VAE "
                        "or text encoder); a full checkpoint is needed.")
    if text == "refiner" or (label and cross == 1280):
        return _Verdict("checkpoint", None, "unsupported", "SDXL refiner checkpoints are not "
                        "supported; use an SDXL base model.")
    if text == "sdxl" or (label and cross == 2048):
        return _Verdict("checkpoint", ModelFamily.sdxl)
    if label:
        return _Verdict("checkpoint", None, "unsupported", "Class-conditioned UNet (upscaler or "
                        "unCLIP): not a supported text-to-image family.")
    if cross == 1024 or (text == "sd2" and cross != 768):
        family, note = _sd2_family(h.metadata)
        return _Verdict("checkpoint", family, "ok", note)
    if cross == 768 or text == "sd1":
        return _Verdict("checkpoint", ModelFamily.sd15)
    return _Verdict("checkpoint", None, "unsupported", f"Unknown architecture (cross-attention "
                    f"width {cross}); give its diffusers config folder as model config.")


def _is_taesd(h: SafetensorsHeader) -> bool:
    names = list(h.tensors)
    if names and all(n.startswith(("decoder.layers.", "encoder.layers.")) for n in names):
        return any(n.startswith("decoder.layers.") for n in names)
    first = h.tensors.get("1.weight")
    return bool(names) and all(re.match(r"\d+\.", n) for n in names) and first is not None \
        and len(first.shape) == 4 and first.shape[1] == 4


def _is_vae(names: list[str]) -> bool:
    stripped = [re.sub(r"^(first_stage_model|vae)\.", "", n) for n in names]
    allowed = ("encoder.", "decoder.", "quant_conv.", "post_quant_conv.")
    return bool(stripped) and all(n.startswith(allowed) for n in stripped) \
        and any(n.startswith("decoder.") for n in stripped)


def classify_header(h: SafetensorsHeader) -> tuple[Kind, ModelFamily | None, Status, str]:
    """Kind, family, status and reason of a header, from tensor names/shapes and metadata."""
    names = list(h.tensors)
    arch = h.metadata.get("modelspec.architecture", "").lower()
    if any(n.startswith(("lora_unet_", "lora_te")) or ".lora_down." in n or ".lora_A." in n
           for n in names) or arch.endswith("/lora") or arch.endswith("-lora"):
        return "lora", None, "unsupported", "LoRA files are not supported yet."
    if any(n.startswith(_UNET) for n in names):
        v = _classify_unet(h)
        return v.kind, v.family, v.status, v.reason
    if _is_taesd(h):
        return "taesd", None, "ok", ""
    if _is_vae(names):
        return "vae", None, "ok", ""
    if names and all(n in ("emb_params", "clip_l", "clip_g") or n.startswith("string_to_param")
                     for n in names):
        return "unknown", None, "unsupported", "Textual-inversion embeddings are not supported."
    return "unknown", None, "unsupported", "Not a Stable Diffusion model (unknown tensor names)."


def _default_prediction(family: ModelFamily | None) -> str | None:
    if family is None:
        return None
    return "v_prediction" if family is ModelFamily.sd2_768_v else "epsilon"


def _inspect_safetensors(path: Path) -> ModelFileInfo:
    header = read_safetensors_header(path)
    kind, family, status, reason = classify_header(header)
    meta = header.metadata
    thumb = meta.get("modelspec.thumbnail")
    if not (thumb and thumb.startswith("data:image/") and len(thumb) <= MAX_THUMBNAIL_CHARS):
        thumb = None
    return ModelFileInfo(
        path=str(path), kind=kind, family=family, status=status, reason=reason,
        title=_clean(meta.get("modelspec.title", ""), 200) or path.stem,
        description=_clean(meta.get("modelspec.description", ""), 4000), thumbnail=thumb,
        prediction_type=_prediction_from_meta(meta) or _default_prediction(family),
        size_bytes=header.file_size, architecture=_clean(meta.get("modelspec.architecture", ""),
                                                          200),
        metadata=meta,
    )


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        raise UserError(ErrorKind.corrupt_file, f"{path} is not valid JSON.",
                        "The diffusers folder is damaged: copy or download it again.") from None
    return data if isinstance(data, dict) else {}


def folder_family(folder: Path) -> tuple[ModelFamily | None, str]:
    """Family of a diffusers folder from model_index.json and the UNet/scheduler configs.

    Returns (family, reason) — family None with a reason when the pipeline is not supported.
    """
    index = _read_json(folder / "model_index.json")
    cls = str(index.get("_class_name", ""))
    unet = _read_json(folder / "unet" / "config.json")
    sched = _read_json(folder / "scheduler" / "scheduler_config.json")
    if unet.get("in_channels", 4) != 4 or "Inpaint" in cls:
        return None, "Inpainting pipelines are not supported."
    if cls == "StableDiffusionXLPipeline":
        return ModelFamily.sdxl, ""
    if cls == "StableDiffusionPipeline":
        text = _read_json(folder / "text_encoder" / "config.json")
        # SD2: 1024-wide cross-attention, or (for non-standard widths) its OpenCLIP text
        # encoder, recognisable by GELU where CLIP-L uses quick_gelu.
        if unet.get("cross_attention_dim") == 1024 or text.get("hidden_act") == "gelu":
            v = sched.get("prediction_type") == "v_prediction"
            return (ModelFamily.sd2_768_v if v else ModelFamily.sd2_512), ""
        return ModelFamily.sd15, ""
    return None, f"Pipeline type {cls or '(none)'!r} is not supported."


def folder_native_size(folder: Path) -> int | None:
    """The image size a diffusers folder was trained at: UNet sample_size × the VAE's scale.

    None when the configs do not say (e.g. a broken folder); callers fall back to the family's
    native size. This is what makes the 64×64 demo model default to 64×64, not 512×512.
    """
    try:
        unet = _read_json(folder / "unet" / "config.json")
        vae = _read_json(folder / "vae" / "config.json")
    except UserError:
        return None
    sample, blocks = unet.get("sample_size"), vae.get("block_out_channels")
    if not isinstance(sample, int) or not isinstance(blocks, list) or not blocks:
        return None
    return int(sample * 2 ** (len(blocks) - 1))


def native_size(model: str | Path) -> int | None:
    """Default square image size for a model file or folder, without loading weights."""
    path = Path(model).expanduser()
    if path.is_dir():
        return folder_native_size(path)
    try:
        family = inspect_model_file(path).family
    except UserError:
        return None
    return family.native_size if family is not None else None


def _inspect_folder(folder: Path) -> ModelFileInfo:
    if not (folder / "model_index.json").is_file():
        return ModelFileInfo(str(folder), "unknown", None, "unsupported",
                             "Not a diffusers folder (no model_index.json).", title=folder.name)
    family, reason = folder_family(folder)
    size = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
    status: Status = "ok" if family else "unsupported"
    if family and not (folder / "unet").is_dir():
        status, reason = "corrupt", "The folder has no unet/ sub-folder."
    sched = _read_json(folder / "scheduler" / "scheduler_config.json")
    pred = sched.get("prediction_type") if isinstance(sched.get("prediction_type"), str) else None
    return ModelFileInfo(str(folder), "checkpoint", family, status, reason, title=folder.name,
                         prediction_type=pred or _default_prediction(family), size_bytes=size)


def inspect_model_file(path: str | Path) -> ModelFileInfo:
    """Identify a model file or diffusers folder without loading weights (and without torch).

    Raises UserError(missing_file) when the path does not exist and UserError(corrupt_file) for
    a damaged .safetensors file. Everything else is described in the returned ModelFileInfo.
    """
    path = Path(path).expanduser()
    if path.is_dir():
        return _inspect_folder(path)
    if not path.exists():
        raise UserError(ErrorKind.missing_file, f"File not found: {path}",
                        "Check the path, or pick the model again in the library.")
    suffix = path.suffix.lower()
    if suffix == ".safetensors":
        return _inspect_safetensors(path)
    size = path.stat().st_size
    if suffix in PICKLE_SUFFIXES:
        name = path.name.lower()
        kind: Kind = ("taesd" if name.startswith("taesd") else
                      "vae" if ".vae." in name or name.startswith("vae") else "checkpoint")
        return ModelFileInfo(str(path), kind, None, "ok", "Pickle file: converted to "
                             ".safetensors (safely) before use.", title=path.stem,
                             size_bytes=size, needs_conversion=True)
    return ModelFileInfo(str(path), "unknown", None, "unsupported",
                         f"Unsupported file type {suffix or '(none)'}; use .safetensors, .ckpt "
                         "or a diffusers folder.", title=path.stem, size_bytes=size)
