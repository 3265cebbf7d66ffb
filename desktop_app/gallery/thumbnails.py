"""Disk-cached thumbnails, keyed by image path + mtime (an edited file gets a new one).

Pure Pillow, called from worker threads (never the GUI thread): `ensure_thumbnail` returns
the cached JPEG, making it first if needed. Cache files are written through a temp file and
renamed, so a crash never leaves a half thumbnail.
"""

from __future__ import annotations

import hashlib
import warnings
from pathlib import Path

from desktop_app import paths
from desktop_app.fileio import atomic_path

THUMB_SIZE = 192


def thumbnail_dir() -> Path:
    """`cache_dir()/thumbnails`."""
    return paths.cache_dir() / "thumbnails"


def thumbnail_path(path: str, mtime_ns: int, size: int = THUMB_SIZE) -> Path:
    """Where the thumbnail of this version of `path` lives in the cache."""
    key = hashlib.sha1(f"{path}\0{mtime_ns}\0{size}".encode(), usedforsecurity=False)
    digest = key.hexdigest()
    return thumbnail_dir() / digest[:2] / f"{digest}.jpg"


def ensure_thumbnail(path: str, mtime_ns: int, size: int = THUMB_SIZE) -> Path | None:
    """The cached thumbnail of `path`, made now if missing; None if the image is unreadable."""
    target = thumbnail_path(path, mtime_ns, size)
    if target.exists():
        return target
    from PIL import Image

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # decompression-bomb warnings: we only shrink
            with Image.open(path) as image:
                image.draft("RGB", (size, size))  # JPEG: decode at reduced scale
                image.thumbnail((size, size))
                rgb = image.convert("RGB")
    except Exception:  # unreadable or truncated image: the grid shows a placeholder
        return None
    try:
        # Not durable: a disposable cache made per image; skipping fsync keeps scrolling fast.
        with atomic_path(target, durable=False) as tmp:
            rgb.save(tmp, "JPEG", quality=85)
    except OSError:
        return None
    return target
