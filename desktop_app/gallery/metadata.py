"""Image metadata: our typed record, A1111 infotext (write + parse), and the PNG writer/reader.

Every image we save carries two chunks (research/peers.md §5.5):
- tEXt `parameters`: A1111's exact infotext, which Civitai and most tools read;
- iTXt `desktop_app` (compressed): versioned JSON with the full request and full SHA-256 hashes.

Reading tries our JSON first, then everybody else's formats (`gallery.readers`). Malformed
metadata never raises: readers return None or a partial record.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from desktop_app import APP_NAME, __version__, fileio
from desktop_app.library.hashing import short_hash
from desktop_app.pipeline.api import GenerationRequest, join_sampler_name, split_sampler_name

if TYPE_CHECKING:
    import numpy as np
    from PIL import Image

SCHEMA_VERSION = 1
JSON_KEY = "desktop_app"
A1111_KEY = "parameters"
SOURCE_APP = "desktop-app"

# A1111's parameter regex (modules/infotext_utils.py), with the leading whitespace and the key
# length bounded so that hostile lines cost linear time; for every real infotext the matches
# are identical (keys are short words).
_RE_PARAM = re.compile(r'\s{0,64}(\w[\w \-/]{0,127}):\s*("(?:\\.|[^\\"])+"|[^,]*)(?:,|$)')
_RE_SIZE = re.compile(r"^(\d+)x(\d+)$")
PNG_LEVEL = 4  # zlib level: ComfyUI's; 6 (Pillow's default) is ≤ 1 % smaller, 2× slower
MAX_PARAM_LINE = 64 * 1024  # characters of the last line that go through the regex
MAX_TEXT = 4 * 1024 * 1024  # longer metadata texts are cut (a prompt is never this long)
# Old A1111 (<1.9) wrote the schedule inside the sampler name.
_OLD_SCHEDULE_SUFFIXES = ("Karras", "Exponential")


@dataclass(frozen=True)
class ImageMetadata:
    """What made an image, as far as its file tells; every field has an "unknown" default.

    `sampler` is our combined name ("DPM++ 2M Karras"); foreign names are kept verbatim.
    `model_hash` is the full SHA-256 hex for our images, whatever the file carried otherwise
    (A1111: 10 hex chars, InvokeAI: "blake3:…"). `request` is the full GenerationRequest dict
    when the image came from us. `extra` keeps unknown keys as opaque text.
    """

    prompt: str = ""
    negative_prompt: str = ""
    steps: int | None = None
    sampler: str = ""
    cfg_scale: float | None = None
    seed: int | None = None
    width: int | None = None
    height: int | None = None
    model_name: str = ""
    model_hash: str = ""
    vae_name: str = ""
    vae_hash: str = ""
    clip_skip: int = 1
    variation_seed: int | None = None
    variation_strength: float = 0.0
    batch_size: int = 1
    batch_index: int = 0
    app_version: str = ""
    source: str = SOURCE_APP
    created: str = ""
    request: Mapping[str, Any] | None = field(default=None, hash=False)
    extra: Mapping[str, str] = field(default_factory=dict, hash=False)

    @classmethod
    def from_request(
        cls,
        request: GenerationRequest,
        batch_index: int = 0,
        *,
        model_name: str | None = None,
        model_hash: str = "",
        vae_name: str | None = None,
        vae_hash: str = "",
        created: datetime | None = None,
    ) -> ImageMetadata:
        """The record for image `batch_index` of a resolved request (seed+i as the engine does).

        `model_name` defaults to the model file's stem (A1111 writes the checkpoint title
        without extension) and `vae_name` to the VAE's file name.
        """
        if model_name is None:
            model_name = Path(request.model).stem if request.model else ""
        if vae_name is None:
            vae_name = Path(request.vae).name if request.vae else ""
        when = created or datetime.now(UTC)
        return cls(
            prompt=request.prompt,
            negative_prompt=request.negative_prompt,
            steps=request.steps,
            sampler=request.sampler,
            cfg_scale=float(request.cfg_scale),
            seed=request.seed_for(batch_index),
            width=request.width,
            height=request.height,
            model_name=model_name,
            model_hash=model_hash,
            vae_name=vae_name,
            vae_hash=vae_hash,
            clip_skip=request.clip_skip,
            variation_seed=request.variation_seed_for(batch_index),
            variation_strength=(request.variation_strength
                                if request.variation_seed is not None else 0.0),
            batch_size=request.batch_size,
            batch_index=batch_index,
            app_version=__version__,
            source=SOURCE_APP,
            created=when.isoformat(timespec="milliseconds"),
            request=request.to_dict(),
        )

    def to_json_dict(self) -> dict[str, Any]:
        """Our versioned JSON chunk: every field plus the full hashes under explicit names."""
        data = dataclasses.asdict(self)
        data["request"] = dict(self.request) if self.request is not None else None
        data["extra"] = dict(self.extra)
        return {"schema": SCHEMA_VERSION, "app": APP_NAME, **data,
                "model_sha256": self.model_hash if _is_sha256(self.model_hash) else "",
                "vae_sha256": self.vae_hash if _is_sha256(self.vae_hash) else ""}

    @classmethod
    def from_json_dict(cls, data: Mapping[str, Any]) -> ImageMetadata | None:
        """Inverse of to_json_dict; tolerant of missing, extra or wrongly typed fields."""
        if not isinstance(data, Mapping) or not isinstance(data.get("schema"), int):
            return None
        kwargs: dict[str, Any] = {}
        for name in _field_names():
            if name in data:
                value = _coerce(name, data[name])
                if value is not None or name in _OPTIONAL:
                    kwargs[name] = value
        if not kwargs.get("model_hash") and _is_sha256(data.get("model_sha256")):
            kwargs["model_hash"] = data["model_sha256"]
        return cls(**kwargs)

    @property
    def size(self) -> str:
        return f"{self.width}x{self.height}" if self.width and self.height else ""


@functools.cache
def _field_names() -> tuple[str, ...]:
    return tuple(f.name for f in dataclasses.fields(ImageMetadata))


_OPTIONAL = {"steps", "cfg_scale", "seed", "width", "height", "variation_seed", "request"}
_INT_FIELDS = {"steps", "seed", "width", "height", "clip_skip", "variation_seed",
               "batch_size", "batch_index"}
_FLOAT_FIELDS = {"cfg_scale", "variation_strength"}


def _coerce(name: str, value: Any) -> Any:
    """Type-check one JSON field; wrong types become None (the field keeps its default)."""
    if name in _INT_FIELDS:
        return to_int(value)
    if name in _FLOAT_FIELDS:
        return to_float(value)
    if name == "request":
        return dict(value) if isinstance(value, Mapping) else None
    if name == "extra":
        if not isinstance(value, Mapping):
            return None
        return {str(k): str(v) for k, v in value.items()}
    return value if isinstance(value, str) else None


def _is_sha256(value: object) -> bool:
    return isinstance(value, str) and re.fullmatch(r"[0-9a-fA-F]{64}", value) is not None


def to_int(value: object) -> int | None:
    """int(value) for ints and numeric strings ("20", "7.0"); None for anything else."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and len(value) < 40:
        text = value.strip()
        if re.fullmatch(r"-?\d+", text):
            return int(text)
        number = to_float(text)
        return int(number) if number is not None and number.is_integer() else None
    return None


def to_float(value: object) -> float | None:
    """float(value) for finite numbers and numeric strings; None for anything else."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        number = float(value)
    elif isinstance(value, str) and len(value) < 40:
        try:
            number = float(value.strip())
        except ValueError:
            return None
    else:
        return None
    return number if number == number and abs(number) != float("inf") else None


def _number(value: float) -> str:
    """7.0 → "7", 7.5 → "7.5" (how A1111's infotexts show CFG scale)."""
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def _quote(text: str) -> str:
    """A1111's quote(): JSON-encode only when the value contains `,`, a newline or `:`."""
    if "," not in text and "\n" not in text and ":" not in text:
        return text
    return json.dumps(text, ensure_ascii=False)


def a1111_pairs(meta: ImageMetadata) -> list[tuple[str, str]]:
    """The parameter line's key/value pairs in A1111 1.10's order, absent values left out."""
    sampler, schedule = split_sampler_name(meta.sampler) if meta.sampler else ("", None)
    has_variation = meta.variation_seed is not None and meta.variation_strength > 0
    candidates: list[tuple[str, object]] = [
        ("Steps", meta.steps),
        ("Sampler", sampler or None),
        ("Schedule type", schedule),
        ("CFG scale", _number(meta.cfg_scale) if meta.cfg_scale is not None else None),
        ("Seed", meta.seed),
        ("Size", meta.size or None),
        ("Model hash", short_hash(meta.model_hash) or None),
        ("Model", meta.model_name or None),
        ("VAE hash", short_hash(meta.vae_hash) or None),
        ("VAE", meta.vae_name or None),
        ("Variation seed", meta.variation_seed if has_variation else None),
        ("Variation seed strength",
         _number(meta.variation_strength) if has_variation else None),
        ("Clip skip", meta.clip_skip if meta.clip_skip > 1 else None),
    ]
    pairs = [(k, str(v)) for k, v in candidates if v is not None]
    pairs += [(k, v) for k, v in meta.extra.items() if k not in _KNOWN_KEYS]
    version = meta.extra.get("Version") if meta.source != SOURCE_APP else None
    pairs.append(("Version", version or f"{APP_NAME} {meta.app_version or __version__}"))
    return pairs


_KNOWN_KEYS = {"Steps", "Sampler", "Schedule type", "CFG scale", "Seed", "Size", "Size-1",
               "Size-2", "Model hash", "Model", "VAE hash", "VAE", "Variation seed",
               "Variation seed strength", "Clip skip", "Version", "Prompt", "Negative prompt"}


def format_a1111(meta: ImageMetadata) -> str:
    """A1111's exact infotext: prompt, `Negative prompt:` line (if any), parameter line."""
    line = ", ".join(f"{k}: {_quote(v)}" for k, v in a1111_pairs(meta))
    negative = f"\nNegative prompt: {meta.negative_prompt}" if meta.negative_prompt else ""
    return f"{meta.prompt}{negative}\n{line}".strip()  # A1111 strips the whole text too


def _unquote(text: str) -> str:
    if len(text) < 2 or text[0] != '"' or text[-1] != '"':
        return text
    try:
        value = json.loads(text)
    except ValueError:
        return text
    return value if isinstance(value, str) else text


def parse_a1111(text: str) -> dict[str, str]:
    """A1111's parse_generation_parameters: a dict of strings, "Prompt" and "Negative prompt"
    included; sizes as "Size-1"/"Size-2"; "Clip skip" defaults to "1"; old combined sampler
    names ("DPM++ 2M Karras") split into Sampler + Schedule type. Never raises on text input.
    """
    res: dict[str, str] = {}
    *lines, lastline = text[:MAX_TEXT].replace("\r\n", "\n").strip().split("\n")
    if len(_RE_PARAM.findall(lastline[:MAX_PARAM_LINE])) < 3:
        lines.append(lastline)
        lastline = ""
    prompt: list[str] = []
    negative: list[str] = []
    done_with_prompt = False
    for raw in lines:
        line = raw.strip()
        if line.startswith("Negative prompt:"):
            done_with_prompt = True
            line = line[16:].strip()
        (negative if done_with_prompt else prompt).append(line)
    for key, value in _RE_PARAM.findall(lastline[:MAX_PARAM_LINE]):
        value = _unquote(value)
        match = _RE_SIZE.match(value)
        if match is not None:
            res[f"{key}-1"], res[f"{key}-2"] = match.group(1), match.group(2)
        else:
            res[key] = value
    res["Prompt"] = "\n".join(prompt)
    res["Negative prompt"] = "\n".join(negative)
    res.setdefault("Clip skip", "1")
    sampler = res.get("Sampler", "")
    if "Schedule type" not in res:
        for suffix in _OLD_SCHEDULE_SUFFIXES:
            if sampler.endswith(" " + suffix):
                res["Sampler"], res["Schedule type"] = sampler[: -len(suffix) - 1], suffix
    return res


def meta_from_a1111(params: Mapping[str, str], source: str = "a1111") -> ImageMetadata:
    """Typed record from parse_a1111's dict; keys we do not model go to `extra`."""
    sampler = params.get("Sampler", "")
    variation_strength = to_float(params.get("Variation seed strength")) or 0.0
    version = params.get("Version", "")
    return ImageMetadata(
        prompt=params.get("Prompt", ""),
        negative_prompt=params.get("Negative prompt", ""),
        steps=to_int(params.get("Steps")),
        sampler=join_sampler_name(sampler, params.get("Schedule type")) if sampler else "",
        cfg_scale=to_float(params.get("CFG scale")),
        seed=to_int(params.get("Seed")),
        width=to_int(params.get("Size-1")),
        height=to_int(params.get("Size-2")),
        model_name=params.get("Model", ""),
        model_hash=params.get("Model hash", ""),
        vae_name=params.get("VAE", ""),
        vae_hash=params.get("VAE hash", ""),
        clip_skip=to_int(params.get("Clip skip")) or 1,
        variation_seed=to_int(params.get("Variation seed")),
        variation_strength=variation_strength,
        app_version=version,
        source=source,
        extra={k: v for k, v in params.items()
               if k not in _KNOWN_KEYS or (k == "Version" and source != SOURCE_APP)},
    )


def metadata_chunks(meta: ImageMetadata) -> list[tuple[bytes, bytes]]:
    """The A1111 `parameters` text (tEXt; iTXt when not Latin-1, as Pillow writes it) and our
    compressed JSON iTXt chunk."""
    from desktop_app.gallery import png_encode  # numpy: not at startup

    return [png_encode.text_chunk(A1111_KEY, format_a1111(meta)),
            png_encode.text_chunk(JSON_KEY, json.dumps(meta.to_json_dict(), ensure_ascii=False),
                                  compress=True)]


def save_png(image: Image.Image, path: Path, meta: ImageMetadata, *, fast: bool = False,
             scanlines: np.ndarray | None = None) -> Path:
    """Write `image` with its metadata to `path` atomically and durably.

    The bytes go to a hidden temp file in the same folder, are flushed and fsynced, then
    renamed over `path` (os.replace), and the folder is fsynced: a crash at any moment leaves
    either no file or the complete one, never a partial `.png`. Releases the reservation made
    by `storage.new_image_path`, also when the write fails. Returns `path`. The PNG is encoded
    on several cores (`png_encode`, zlib level 4 as before: the same file size as Pillow's;
    with `fast`, ISA-L: ~10× less deflate time, 3–8 % larger); images in other modes than L,
    RGB and RGBA are converted to RGB(A) first. `scanlines`: the image's rows already
    filtered for PNG (by the GPU that decoded it; `png_encode.encode`).
    """
    from desktop_app.gallery import png_encode, storage

    path = Path(path)
    try:
        if not png_encode.supports(image):
            image = image.convert("RGBA" if "A" in image.getbands() else "RGB")
            scanlines = None  # they were the other mode's
        data = png_encode.encode(image, metadata_chunks(meta), level=PNG_LEVEL, fast=fast,
                                 scanlines=scanlines)
        # storage.TEMP_SUFFIX: the scanner skips the hidden temp, `clean_stale` removes litter.
        with fileio.atomic_path(path, suffix=storage.TEMP_SUFFIX) as tmp:
            tmp.write_bytes(data)
    finally:  # written or failed, the name is no longer held for this image
        storage.release(path)
    return path


def read_image_metadata(path: Path) -> ImageMetadata | None:
    """The generation parameters embedded in an image file, whatever tool wrote them.

    Order: our JSON → A1111 `parameters` (PNG text or JPEG/WebP EXIF UserComment) → InvokeAI →
    ComfyUI → Fooocus. None when the file has no metadata we understand (or cannot be read).
    Never raises for bad files.
    """
    from desktop_app.gallery import readers

    return readers.read_metadata(Path(path))
