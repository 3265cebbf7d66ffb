"""Readers for the metadata other tools embed (research/peers.md §5), behind one entry point.

`read_metadata(path)` collects the text chunks of a PNG (with a small bounded chunk walker:
no pixel decoding, zip-bomb safe) or the EXIF UserComment of a JPEG/WebP, then tries, in
order: our JSON, A1111 `parameters` (also Fooocus' A1111 scheme), InvokeAI, ComfyUI, Fooocus
JSON. Everything here returns None or a partial record on bad input; nothing raises.
"""

from __future__ import annotations

import json
import logging
import os
import stat
import struct
import warnings
import zlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from desktop_app.gallery import comfyui
from desktop_app.gallery.metadata import (
    A1111_KEY,
    JSON_KEY,
    MAX_TEXT,
    ImageMetadata,
    meta_from_a1111,
    parse_a1111,
    to_float,
    to_int,
)

log = logging.getLogger(__name__)

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
MAX_CHUNKS = 10_000
MAX_CHUNK_BYTES = 32 * 1024 * 1024
USER_COMMENT_TAG = 0x9286
EXIF_IFD_TAG = 0x8769


def _inflate(data: bytes) -> bytes:
    """Decompress at most MAX_TEXT bytes (a zip bomb yields a cut text, not a full memory)."""
    return zlib.decompressobj().decompress(data, MAX_TEXT)


def _text_chunk(kind: bytes, data: bytes) -> tuple[str, str] | None:
    key, sep, rest = data.partition(b"\0")
    if not sep or not key:
        return None
    keyword = key.decode("latin-1")
    if kind == b"tEXt":
        return keyword, rest.decode("latin-1")
    if kind == b"zTXt":
        return keyword, _inflate(rest[1:]).decode("latin-1")
    # iTXt: compression flag, method, language\0, translated keyword\0, text
    if len(rest) < 2:
        return None
    compressed, body = rest[0], rest[2:]
    _lang, _, body = body.partition(b"\0")
    _translated, _, body = body.partition(b"\0")
    raw = _inflate(body) if compressed else body
    return keyword, raw.decode("utf-8", errors="replace")


def png_text_chunks(path: Path) -> dict[str, str]:
    """All tEXt/zTXt/iTXt chunks of a PNG, reading headers and seeking past image data."""
    texts: dict[str, str] = {}
    with open(path, "rb") as handle:
        if handle.read(8) != PNG_SIGNATURE:
            return texts
        for _ in range(MAX_CHUNKS):
            header = handle.read(8)
            if len(header) < 8:
                break
            length, kind = struct.unpack(">I4s", header)
            if kind == b"IEND":
                break
            if kind in (b"tEXt", b"zTXt", b"iTXt") and length <= MAX_CHUNK_BYTES:
                data = handle.read(length)
                handle.seek(4, 1)
                try:
                    item = _text_chunk(kind, data)
                except (zlib.error, ValueError):
                    item = None
                if item is not None:
                    texts.setdefault(item[0], item[1][:MAX_TEXT])
            else:
                handle.seek(length + 4, 1)
    return texts


def decode_user_comment(raw: object) -> str | None:
    """EXIF UserComment → text: 8-byte charset header (UNICODE = UTF-16, ASCII, JIS, none)."""
    if isinstance(raw, str):
        return raw
    if not isinstance(raw, bytes | bytearray) or not raw:
        return None
    data = bytes(raw[: 2 * MAX_TEXT])
    header, body = data[:8], data[8:]
    if header == b"UNICODE\0":
        return _decode_utf16(body)
    if header == b"ASCII\0\0\0":
        return body.decode("ascii", errors="replace").rstrip("\0")
    if header == b"JIS\0\0\0\0\0":
        return body.decode("shift_jis", errors="replace").rstrip("\0")
    if header == b"\0" * 8:
        return body.decode("utf-8", errors="replace").rstrip("\0") or None
    # No valid header: A1111 falls back to UTF-8 over the whole value.
    return data.decode("utf-8", errors="ignore").rstrip("\0") or None


def _decode_utf16(body: bytes) -> str:
    """UTF-16 of unknown byte order: honour a BOM, else guess from where the zero bytes are."""
    if body[:2] in (b"\xfe\xff", b"\xff\xfe"):
        return body.decode("utf-16", errors="replace").rstrip("\0")
    sample = body[:2000]
    even_zeros = sample[0::2].count(0)
    odd_zeros = sample[1::2].count(0)
    encoding = "utf-16-le" if odd_zeros > even_zeros else "utf-16-be"
    return body[: len(body) // 2 * 2].decode(encoding, errors="replace").rstrip("\0")


def _pillow_texts(path: Path) -> dict[str, str]:
    """Metadata texts of non-PNG images through Pillow: EXIF UserComment, comments, info."""
    from PIL import Image

    texts: dict[str, str] = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # decompression-bomb and EXIF warnings: we only read
        with Image.open(path) as image:
            for key, value in image.info.items():
                if isinstance(key, str) and isinstance(value, str) and key not in texts:
                    texts[key] = value[:MAX_TEXT]
            comment = image.getexif().get_ifd(EXIF_IFD_TAG).get(USER_COMMENT_TAG)
            text = decode_user_comment(comment)
            if text:
                texts.setdefault(A1111_KEY, text[:MAX_TEXT])
            raw_comment = image.info.get("comment")
            if isinstance(raw_comment, bytes) and raw_comment:
                texts.setdefault(A1111_KEY, raw_comment[:MAX_TEXT].decode("utf-8", "replace"))
    return texts


def image_texts(path: Path) -> dict[str, str]:
    """The metadata key/value texts of any image file ({} when unreadable)."""
    try:
        if not stat.S_ISREG(os.stat(path).st_mode):  # never open a FIFO or device
            return {}
        with open(path, "rb") as handle:
            magic = handle.read(8)
        if magic == PNG_SIGNATURE:
            return png_text_chunks(path)
        return _pillow_texts(path)
    except Exception as exc:  # a bad file is "no metadata", never a crash
        log.debug("cannot read metadata of %s: %s", path, exc)
        return {}


def _json(text: str | None) -> Any:
    if not text or len(text) > MAX_TEXT:
        return None
    try:
        return json.loads(text)
    except (ValueError, RecursionError):
        return None


def read_metadata(path: Path) -> ImageMetadata | None:
    """See metadata.read_image_metadata."""
    texts = image_texts(path)
    return parse_texts(texts) if texts else None


def parse_texts(texts: Mapping[str, str]) -> ImageMetadata | None:
    """Pick the richest format present in an image's texts and parse it (never raises)."""
    for parser in (_ours, _fooocus, _a1111, _invokeai, _invokeai_legacy, _comfyui, _novelai):
        try:
            meta = parser(texts)
        except Exception as exc:  # malformed metadata: try the next format
            log.debug("%s failed: %s", parser.__name__, exc)
            continue
        if meta is not None:
            return meta
    return None


def _ours(texts: Mapping[str, str]) -> ImageMetadata | None:
    data = _json(texts.get(JSON_KEY))
    return ImageMetadata.from_json_dict(data) if isinstance(data, dict) else None


def _a1111(texts: Mapping[str, str]) -> ImageMetadata | None:
    text = texts.get(A1111_KEY)
    if not text or text.lstrip().startswith("{"):
        return None
    params = parse_a1111(text)
    version = params.get("Version", "")
    source = "desktop-app" if version.startswith("desktop-app") else "a1111"
    return meta_from_a1111(params, source)


# InvokeAI scheduler names → A1111 names (invokeai/backend/stable_diffusion/schedulers).
_INVOKE_SCHEDULERS = {
    "ddim": "DDIM", "pndm": "PLMS", "lms": "LMS", "lms_k": "LMS Karras", "heun": "Heun",
    "euler": "Euler", "euler_a": "Euler a", "kdpm_2": "DPM2", "kdpm_2_a": "DPM2 a",
    "kdpm_2_k": "DPM2 Karras", "kdpm_2_a_k": "DPM2 a Karras", "dpmpp_2m": "DPM++ 2M",
    "dpmpp_2m_k": "DPM++ 2M Karras", "dpmpp_2m_sde": "DPM++ 2M SDE",
    "dpmpp_2m_sde_k": "DPM++ 2M SDE Karras", "dpmpp_sde_k": "DPM++ SDE Karras",
    "unipc": "UniPC", "lcm": "LCM", "k_lms": "LMS", "k_euler": "Euler",
    "k_euler_a": "Euler a", "k_heun": "Heun", "k_dpm_2": "DPM2", "k_dpm_2_a": "DPM2 a",
    "k_dpmpp_2": "DPM++ 2M", "plms": "PLMS",
}


def _mapping(value: object) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _text(value: object) -> str:
    return value if isinstance(value, str) else ""


def _invokeai(texts: Mapping[str, str]) -> ImageMetadata | None:
    data = _json(texts.get("invokeai_metadata"))
    if not isinstance(data, dict):
        return None
    model = _mapping(data.get("model"))
    vae = _mapping(data.get("vae"))
    scheduler = _text(data.get("scheduler"))
    known = {"positive_prompt", "negative_prompt", "steps", "scheduler", "cfg_scale", "seed",
             "width", "height", "model", "vae", "clip_skip", "app_version"}
    return ImageMetadata(
        prompt=_text(data.get("positive_prompt")),
        negative_prompt=_text(data.get("negative_prompt")),
        steps=to_int(data.get("steps")),
        sampler=_INVOKE_SCHEDULERS.get(scheduler, scheduler),
        cfg_scale=to_float(data.get("cfg_scale")),
        seed=to_int(data.get("seed")),
        width=to_int(data.get("width")),
        height=to_int(data.get("height")),
        model_name=_text(model.get("name")) or _text(model.get("model_name")),
        model_hash=_text(model.get("hash")),
        vae_name=_text(vae.get("name")) or _text(vae.get("model_name")),
        clip_skip=(to_int(data.get("clip_skip")) or 0) + 1,  # Invoke counts skipped layers
        app_version=_text(data.get("app_version")),
        source="invokeai",
        extra=_extra(data, known),
    )


def _extra(data: Mapping[str, Any], known: set[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for key, value in list(data.items())[:200]:
        if key in known:
            continue
        out[str(key)] = value if isinstance(value, str) else json.dumps(value)[:10_000]
    return out


def _split_invoke_negative(prompt: str) -> tuple[str, str]:
    """Invoke 2.x kept the negative prompt in [square brackets] inside the prompt."""
    positive: list[str] = []
    negative: list[str] = []
    depth = 0
    current: list[str] = []
    for char in prompt[:MAX_TEXT]:
        if char == "[":
            if depth == 0:
                positive.append("".join(current))
                current = []
            else:
                current.append(char)
            depth += 1
        elif char == "]" and depth > 0:
            depth -= 1
            if depth == 0:
                negative.append("".join(current))
                current = []
            else:
                current.append(char)
        else:
            current.append(char)
    (negative if depth else positive).append("".join(current))
    clean = " ".join(" ".join(positive).split())
    return clean, ", ".join(n.strip() for n in negative if n.strip())


def _invokeai_legacy(texts: Mapping[str, str]) -> ImageMetadata | None:
    data = _json(texts.get("sd-metadata"))
    if not isinstance(data, dict) or not isinstance(data.get("image"), dict):
        return None
    image = data["image"]
    prompt_value = image.get("prompt")
    if isinstance(prompt_value, list):
        parts = [p.get("prompt") for p in prompt_value if isinstance(p, dict)]
        prompt_value = " ".join(p for p in parts if isinstance(p, str))
    prompt, negative = _split_invoke_negative(_text(prompt_value))
    sampler = _text(image.get("sampler"))
    return ImageMetadata(
        prompt=prompt,
        negative_prompt=negative,
        steps=to_int(image.get("steps")),
        sampler=_INVOKE_SCHEDULERS.get(sampler, sampler),
        cfg_scale=to_float(image.get("cfg_scale")),
        seed=to_int(image.get("seed")),
        width=to_int(image.get("width")),
        height=to_int(image.get("height")),
        model_name=_text(data.get("model_weights")),
        model_hash=_text(data.get("model_hash")),
        app_version=_text(data.get("app_version")),
        source="invokeai",
    )


def _comfyui(texts: Mapping[str, str]) -> ImageMetadata | None:
    graph = _json(texts.get("prompt"))
    return comfyui.parse_graph(graph) if isinstance(graph, dict) else None


# Fooocus sampler names are ComfyUI's (k-diffusion) names.
def _fooocus(texts: Mapping[str, str]) -> ImageMetadata | None:
    scheme = texts.get("fooocus_scheme")
    if scheme is None:
        return None
    if scheme == "a1111":
        params = parse_a1111(texts.get(A1111_KEY, ""))
        return meta_from_a1111(params, "fooocus")
    data = _json(texts.get(A1111_KEY))
    if not isinstance(data, dict):
        return None
    lower = {str(k).lower().replace(" ", "_"): v for k, v in data.items()}
    width, height = _fooocus_resolution(lower.get("resolution"))
    sampler = comfyui.sampler_name(_text(lower.get("sampler")), _text(lower.get("scheduler")))
    known = {"prompt", "negative_prompt", "steps", "sampler", "scheduler", "guidance_scale",
             "seed", "resolution", "base_model", "base_model_hash", "vae", "version"}
    return ImageMetadata(
        prompt=_text(lower.get("prompt")),
        negative_prompt=_text(lower.get("negative_prompt")),
        steps=to_int(lower.get("steps")),
        sampler=sampler,
        cfg_scale=to_float(lower.get("guidance_scale")),
        seed=to_int(lower.get("seed")),
        width=width,
        height=height,
        model_name=_text(lower.get("base_model")),
        model_hash=_text(lower.get("base_model_hash")),
        vae_name=_text(lower.get("vae")) if lower.get("vae") != "Default (model)" else "",
        app_version=_text(lower.get("version")),
        source="fooocus",
        extra=_extra(lower, known),
    )


def _fooocus_resolution(value: object) -> tuple[int | None, int | None]:
    """Fooocus writes "(1024, 1024)" (a Python tuple as text) or a list."""
    if isinstance(value, str):
        parts = value.strip("()[] ").split(",")
        if len(parts) == 2:
            return to_int(parts[0]), to_int(parts[1])
    if isinstance(value, list) and len(value) == 2:
        return to_int(value[0]), to_int(value[1])
    return None, None


def _novelai(texts: Mapping[str, str]) -> ImageMetadata | None:
    """NovelAI: tEXt `Software` = NovelAI, `Description` = prompt, `Comment` = JSON."""
    data = _json(texts.get("Comment"))
    if not isinstance(data, dict) or "NovelAI" not in texts.get("Software", "NovelAI"):
        return None
    name = _text(data.get("sampler")).removeprefix("k_")
    sampler = comfyui.sampler_name(name, _text(data.get("noise_schedule"))) if name else ""
    return ImageMetadata(
        prompt=_text(data.get("prompt")) or texts.get("Description", ""),
        negative_prompt=_text(data.get("uc")),
        steps=to_int(data.get("steps")),
        sampler=sampler,
        cfg_scale=to_float(data.get("scale")),
        seed=to_int(data.get("seed")),
        width=to_int(data.get("width")),
        height=to_int(data.get("height")),
        model_name=texts.get("Source", ""),
        source="novelai",
        extra=_extra(data, {"prompt", "uc", "steps", "sampler", "scale", "seed", "width",
                            "height"}),
    )
