"""Model file hashes as A1111 and Civitai show them, with a persistent cache.

* `sha256_file`: sha256 of the whole file in 1 MiB blocks (A1111 ≥1.0 `sha256`).
* `short_hash`: its first 10 hex digits — A1111's infotext "Model hash", Civitai "AutoV2".
* `addnet_hash`: sha256 of the bytes after the safetensors header — kohya "addnet" hash,
  Civitai "AutoV3", and the value of `modelspec.hash_sha256` (without the "0x").

Hashing a multi-GB checkpoint takes seconds, so results are cached in a JSON file under
`paths.cache_dir()` keyed by (absolute path, size, mtime_ns): a changed file is hashed again.
The cache is thread-safe within a process and written atomically (temp file + os.replace).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import struct
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

from desktop_app import paths
from desktop_app.errors import ErrorKind, UserError
from desktop_app.fileio import atomic_write_text

BLOCK_SIZE = 1024 * 1024
CACHE_FILE_NAME = "hashes.json"
CACHE_VERSION = 1

log = logging.getLogger(__name__)
ProgressCallback = Callable[[int, int], None]  # (bytes done, bytes total)


def _digest(f: BinaryIO, total: int, progress: ProgressCallback | None) -> str:
    h = hashlib.sha256()
    done = 0
    while block := f.read(BLOCK_SIZE):
        h.update(block)
        done += len(block)
        if progress is not None:
            progress(done, total)
    return h.hexdigest()


def _open(path: Path) -> BinaryIO:
    try:
        return open(path, "rb")
    except FileNotFoundError:
        raise UserError(ErrorKind.missing_file, f"File not found: {path}",
                        "Check the path, or pick the model again in the library.") from None
    except (IsADirectoryError, PermissionError) as exc:
        raise UserError(ErrorKind.bad_input, f"Cannot read {path}: {exc.strerror}.",
                        "Pick a readable model file.") from None


def sha256_file(path: str | Path, progress: ProgressCallback | None = None) -> str:
    """Full sha256 (lower-case hex) of a file, read in 1 MiB blocks."""
    path = Path(path)
    with _open(path) as f:
        return _digest(f, os.fstat(f.fileno()).st_size, progress)


def short_hash(sha256: str) -> str:
    """A1111 "Model hash" / Civitai AutoV2: the first 10 hex digits of the full sha256."""
    return sha256[:10]


def addnet_hash(path: str | Path, progress: ProgressCallback | None = None) -> str:
    """sha256 of a .safetensors file's tensor bytes (everything after the header): AutoV3."""
    path = Path(path)
    with _open(path) as f:
        head = f.read(8)
        size = os.fstat(f.fileno()).st_size
        if len(head) < 8:
            raise UserError(ErrorKind.corrupt_file, f"{path.name} is not a .safetensors file.",
                            "The file is damaged or incomplete: download it again.")
        (length,) = struct.unpack("<Q", head)
        if 8 + length > size:
            raise UserError(ErrorKind.corrupt_file, f"{path.name} has a header longer than "
                            "the file.", "The file is damaged or incomplete: download it again.")
        f.seek(8 + length)
        return _digest(f, size - 8 - length, progress)


def _matches(entry: dict[str, Any], st: os.stat_result) -> bool:
    return entry.get("size") == st.st_size and entry.get("mtime_ns") == st.st_mtime_ns


class HashCache:
    """Persistent cache of file hashes, keyed by (absolute path, size, mtime_ns).

    Safe to use from several threads; each update merges with what is on disk (another process
    may share the file) and rewrites it atomically. A damaged cache file is ignored (and
    replaced on the next write), never an error.
    """

    def __init__(self, file: Path | None = None) -> None:
        self._file = file
        self._lock = threading.RLock()
        self._entries: dict[str, dict[str, Any]] | None = None

    @property
    def file(self) -> Path:
        return self._file or paths.cache_dir() / CACHE_FILE_NAME

    def _load(self) -> dict[str, dict[str, Any]]:
        if self._entries is None:
            self._entries = self._on_disk()
        return self._entries

    def _on_disk(self) -> dict[str, dict[str, Any]]:
        try:
            data = json.loads(self.file.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        if not isinstance(data, dict) or data.get("version") != CACHE_VERSION:
            return {}
        entries = data.get("entries", {})
        return {k: v for k, v in entries.items() if isinstance(v, dict)} \
            if isinstance(entries, dict) else {}

    def _save(self) -> None:
        target = self.file
        # Another process (GUI and CLI share the cache) may have added entries since we read it.
        merged = {**self._on_disk(), **(self._entries or {})}
        self._entries = merged
        payload = json.dumps({"version": CACHE_VERSION, "entries": merged}, indent=0)
        try:
            atomic_write_text(target, payload)
        except OSError:
            log.warning("Could not write the hash cache %s", target, exc_info=True)

    def _get(self, path: Path, algo: str,
             compute: Callable[[Path, ProgressCallback | None], str],
             progress: ProgressCallback | None) -> str:
        path = path.expanduser().absolute()
        try:
            st = path.stat()
        except FileNotFoundError:
            raise UserError(ErrorKind.missing_file, f"File not found: {path}",
                            "Check the path, or pick the model again in the library.") from None
        key = str(path)
        with self._lock:
            entry = self._load().get(key)
            if entry and _matches(entry, st):
                value = entry.get(algo)
                if isinstance(value, str):
                    return value
        value = compute(path, progress)  # outside the lock: may take seconds
        with self._lock:
            entries = self._load()
            entry = entries.get(key)
            if not entry or not _matches(entry, st):
                entry = {"size": st.st_size, "mtime_ns": st.st_mtime_ns}
            entry[algo] = value
            entries[key] = entry
            self._save()
        return value

    def sha256(self, path: str | Path, progress: ProgressCallback | None = None) -> str:
        """Full sha256 of `path`, from the cache when the file is unchanged."""
        return self._get(Path(path), "sha256", sha256_file, progress)

    def addnet(self, path: str | Path, progress: ProgressCallback | None = None) -> str:
        """AutoV3 / addnet hash of a .safetensors file, cached like `sha256`."""
        return self._get(Path(path), "addnet", addnet_hash, progress)


_default_lock = threading.Lock()
_default: dict[str, HashCache] = {}


def default_cache() -> HashCache:
    """The process-wide cache for the current `paths.cache_dir()` (tests change it per test)."""
    file = paths.cache_dir() / CACHE_FILE_NAME
    with _default_lock:
        cache = _default.get(str(file))
        if cache is None:
            cache = _default[str(file)] = HashCache(file)
        return cache


def cached_sha256(path: str | Path, progress: ProgressCallback | None = None) -> str:
    """Full sha256 through the default cache."""
    return default_cache().sha256(path, progress)
