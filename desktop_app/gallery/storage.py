"""Where generated images go: `outputs/YYYY-MM-DD/NNNNN-<seed>.png`, unique under concurrency.

A name is reserved by creating a hidden marker `.NNNNN-<seed>.png.reserve` exclusively
(O_EXCL), not the `.png` itself, so a crash between reservation and save never leaves an
empty or partial `.png` behind. `metadata.save_png` writes through a hidden temp file and
releases the marker. Hidden files are never indexed; `clean_stale` removes old litter.
"""

from __future__ import annotations

import contextlib
import os
import re
import time
from datetime import datetime
from pathlib import Path

from desktop_app import fileio, paths

RESERVE_SUFFIX = ".reserve"
TEMP_SUFFIX = fileio.TEMP_SUFFIX  # atomic_path's hidden temps: `.<name>.<random>.tmp`
IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".webp"})
_NUMBERED = re.compile(r"^\.?(\d+)-")
MAX_ATTEMPTS = 1000


def day_dir(root: Path | None = None, when: datetime | None = None) -> Path:
    """The folder for images made on `when`'s local date (default: today)."""
    base = Path(root) if root is not None else paths.outputs_dir()
    return base / (when or datetime.now()).strftime("%Y-%m-%d")


def _next_number(folder: Path) -> int:
    highest = 0
    with contextlib.suppress(FileNotFoundError):
        for entry in os.scandir(folder):
            match = _NUMBERED.match(entry.name)
            if match is not None:
                highest = max(highest, int(match.group(1)))
    return highest + 1


def reservation_marker(path: Path) -> Path:
    """The hidden marker that reserves `path` while its image is being made."""
    return path.with_name(f".{path.name}{RESERVE_SUFFIX}")


def new_image_path(seed: int, root: Path | None = None, when: datetime | None = None) -> Path:
    """Reserve and return a fresh `…/YYYY-MM-DD/NNNNN-<seed>.png` (the file is not created).

    The number is one above the highest in the day's folder; two processes asking at once
    get different names because the reservation marker is created exclusively. Pass the path
    to `metadata.save_png`, which releases the reservation.
    """
    folder = day_dir(root, when)
    folder.mkdir(parents=True, exist_ok=True)
    return reserve_numbered(folder, seed, _next_number(folder))


def reserve_numbered(folder: Path, seed: int, number: int) -> Path:
    """Reserve and return the first free `folder/NNNNN-<seed>.png` from `number` upwards.

    Free means neither the image nor its reservation marker exists; the marker is created
    exclusively (O_EXCL), so concurrent callers never get the same name. `folder` must exist.
    """
    for _ in range(MAX_ATTEMPTS):
        path = folder / f"{number:05d}-{seed}.png"
        if not path.exists():
            try:
                fd = os.open(reservation_marker(path), os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            except FileExistsError:
                pass
            else:
                os.close(fd)
                if not path.exists():  # a writer that skipped reservation got there first
                    return path
                release(path)
        number += 1
    raise OSError(f"could not find a free image name in {folder}")


def release(path: Path) -> None:
    """Drop the reservation of `path` (no-op when there is none)."""
    with contextlib.suppress(OSError):
        reservation_marker(Path(path)).unlink()


def is_litter(name: str) -> bool:
    """True for our temp files and reservation markers."""
    return name.startswith(".") and (name.endswith(TEMP_SUFFIX) or name.endswith(RESERVE_SUFFIX))


def clean_stale(root: Path, max_age_s: float = 3600.0) -> int:
    """Delete temp files and reservations older than `max_age_s` under `root` (crash litter).

    Young ones are left alone: another process may be writing them right now. Returns the
    number removed.
    """
    removed = 0
    cutoff = time.time() - max_age_s
    for folder, dirs, files in os.walk(root):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        for name in files:
            if not is_litter(name):
                continue
            target = Path(folder) / name
            with contextlib.suppress(OSError):
                if target.stat().st_mtime < cutoff:
                    target.unlink()
                    removed += 1
    return removed


def is_image_name(name: str) -> bool:
    """Files the gallery lists: visible images with a known suffix."""
    return not name.startswith(".") and os.path.splitext(name)[1].lower() in IMAGE_SUFFIXES
