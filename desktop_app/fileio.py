"""Atomic file replacement: readers see the old file or the complete new one, never half.

Every writer of a file that must survive a crash (settings, the job queue, gallery images, the
hash cache, converted checkpoints, copied models, caches) goes through `atomic_path`: the new
content is written to a hidden temp file in the target's folder (`.<name>.<random><suffix>`, so
folder scanners that skip hidden names never list it), synced to disk, renamed over the target
with `os.replace`, and the folder is synced so the rename itself is durable. On any failure the
temp file is removed and the exception propagates; the old file is untouched.

Torch-free and Qt-free: imported by every layer.
"""

from __future__ import annotations

import os
import secrets
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

TEMP_SUFFIX = ".tmp"


def fsync_dir(folder: Path) -> None:
    """Make a rename in `folder` durable (POSIX); a no-op where directories cannot be opened."""
    if sys.platform == "win32":
        return
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some filesystems refuse fsync on directories; the rename itself is atomic
    finally:
        os.close(fd)


def fsync_file(path: Path) -> None:
    """Flush a file's data to disk (before it is renamed into place)."""
    # Write access: Windows' fsync (_commit) refuses read-only descriptors.
    fd = os.open(path, os.O_RDWR | getattr(os, "O_BINARY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def keep_aside(path: Path, tag: str) -> Path:
    """Rename an unreadable file to `<name>.<tag>` (`<name>.<tag>-2`, `-3`, … when that is taken,
    so an earlier kept copy is never overwritten) for a person to recover; returns the new path."""
    aside, n = path.with_name(f"{path.name}.{tag}"), 1
    while aside.exists():
        n += 1
        aside = path.with_name(f"{path.name}.{tag}-{n}")
    os.replace(path, aside)
    fsync_dir(path.parent)
    return aside


def keep_aside_if_possible(path: Path, tag: str) -> Path:
    """`keep_aside`, or `path` itself when it cannot be moved (already gone, or a read-only
    folder): for files the app can do without, where a failed move must not stop it."""
    try:
        return keep_aside(path, tag)
    except OSError:
        return path


def _create_temp(target: Path, suffix: str) -> Path:
    # Like tempfile.mkstemp, but with the default permissions (0o666 less the umask) a plain
    # open() would give the target, not mkstemp's private 0o600.
    flags = os.O_CREAT | os.O_EXCL | os.O_WRONLY | getattr(os, "O_BINARY", 0)
    while True:
        tmp = target.with_name(f".{target.name}.{secrets.token_hex(4)}{suffix}")
        try:
            os.close(os.open(tmp, flags, 0o666))
        except FileExistsError:
            continue
        return tmp


@contextmanager
def atomic_path(target: Path, *, suffix: str = TEMP_SUFFIX, durable: bool = True) -> Iterator[Path]:
    """Yield a fresh (empty) temp file next to `target`; when the block succeeds it replaces it.

    Write the new content to the yielded path (by name: PIL, safetensors and shutil all take
    one) and close it before the block ends. `durable=False` skips both fsyncs, for disposable
    caches written on a hot path (the rename stays atomic). The target's folder is created.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = _create_temp(target, suffix)
    try:
        yield tmp
        if durable:
            fsync_file(tmp)
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    if durable:
        fsync_dir(target.parent)


def atomic_write_bytes(target: Path, data: bytes, *, durable: bool = True) -> None:
    """Replace `target` with `data` atomically (see `atomic_path`)."""
    with atomic_path(target, durable=durable) as tmp:
        tmp.write_bytes(data)


def atomic_write_text(target: Path, text: str, *, durable: bool = True) -> None:
    """Replace `target` with UTF-8 `text` atomically (see `atomic_path`)."""
    with atomic_path(target, durable=durable) as tmp:
        tmp.write_text(text, encoding="utf-8")
