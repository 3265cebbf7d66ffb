"""Adopt model folders in place: recognise A1111 / ComfyUI / InvokeAI layouts, index files fast.

A scan never loads weights. Per file it reads the safetensors header once (through
`detect.inspect_model_file`) and stores the result with the file's (size, mtime) signature in the
`LibraryStore`; later scans only `stat` files and re-read a header when the signature changed,
so thousands of files list instantly after the first scan (`LibraryStore.items()` does no file
system access at all). sha256 hashes are computed by `BackgroundHasher` on its own thread.

Layouts (given the tool's root folder, or its `models/` folder, or the sub-folder itself):
- A1111 / Forge / SD.Next: models/Stable-diffusion, models/VAE, models/VAE-approx
- ComfyUI:                  models/checkpoints, models/vae, models/vae_approx
- InvokeAI:                 models/{sd-1,sd-2,sdxl}/{main,vae}; a root with invokeai.yaml
                            but other sub-folders: all of models/ (kinds from headers)
Any other folder is walked as a whole; each file's kind comes from its header.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from desktop_app.errors import ErrorKind, UserError, bad_input
from desktop_app.fileio import atomic_path
from desktop_app.library.store import LibraryStore, Scanned

log = logging.getLogger(__name__)

MODEL_SUFFIXES = frozenset({".safetensors", ".ckpt", ".pt", ".pth", ".sft"})
DIFFUSERS_MARKER = "model_index.json"

# (relative folder, kind hint) per layout, first match wins for the layout name.
LAYOUTS: dict[str, tuple[tuple[str, str], ...]] = {
    "a1111": (("models/Stable-diffusion", "checkpoint"), ("models/VAE", "vae"),
              ("models/VAE-approx", "taesd")),
    "comfyui": (("models/checkpoints", "checkpoint"), ("models/vae", "vae"),
                ("models/vae_approx", "taesd")),
    "invokeai": tuple((f"models/{base}/{sub}", kind) for base in ("sd-1", "sd-2", "sdxl")
                      for sub, kind in (("main", "checkpoint"), ("vae", "vae"))),
}

INVOKEAI_MARKERS = ("invokeai.yaml", "databases/invokeai.db")

Inspector = Callable[[Path], Any]


@dataclass(frozen=True)
class ScanReport:
    """What a scan did: counts, header reads, seconds, and folders it could not read."""

    files: int = 0
    inspected: int = 0
    removed: int = 0
    seconds: float = 0.0
    problems: tuple[str, ...] = field(default=())


def detect_layout(root: Path) -> tuple[str, list[tuple[Path, str | None]]]:
    """Which tool's layout `root` is, and the folders to scan with their kind hint.

    Accepts the tool's root, its `models/` folder, or any plain folder ("folder" layout).
    """
    for base in (root, root.parent):
        for layout, folders in LAYOUTS.items():
            found = [(base / rel, kind) for rel, kind in folders if (base / rel).is_dir()]
            if found and (base == root or root.name == "models"):
                return layout, [(f, k) for f, k in found]
    if (root / "models").is_dir() and any((root / m).exists() for m in INVOKEAI_MARKERS):
        # Newer InvokeAI releases keep models in per-model folders: walk models/ as a whole.
        return "invokeai", [(root / "models", None)]
    return "folder", [(root, None)]


def _inspect_default(path: Path) -> Any:
    from desktop_app.library.detect import inspect_model_file

    return inspect_model_file(path)


def scanned_from_info(info: Any, size: int, mtime_ns: int, hint: str | None) -> Scanned:
    """Adapt detect's ModelFileInfo to a store row (enums → strings; data URI → bytes)."""
    def text(value: Any) -> str:
        return str(getattr(value, "value", value) or "")

    kind = text(getattr(info, "kind", "")) or hint or "unknown"
    if hint and (getattr(info, "needs_conversion", False) or kind == "unknown"):
        kind = hint  # a pickle's kind is only guessed from its name; its folder knows better
    family = text(getattr(info, "family", None)) or None
    thumb = getattr(info, "thumbnail", None)
    if isinstance(thumb, str):
        thumb = _decode_data_uri(thumb)
    return Scanned(size=size, mtime_ns=mtime_ns, kind=kind, family=family,
                   status=text(getattr(info, "status", "ok")) or "ok",
                   reason=text(getattr(info, "reason", "")),
                   title=text(getattr(info, "title", "")),
                   description=text(getattr(info, "description", "")),
                   thumbnail=bytes(thumb) if isinstance(thumb, bytes | bytearray) and thumb
                   else None)


def _decode_data_uri(uri: str) -> bytes | None:
    import base64
    import binascii

    head, _, data = uri.partition(",")
    if not head.startswith("data:") or ";base64" not in head:
        return None
    try:
        return base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        return None


def iter_model_files(folder: Path) -> Iterator[tuple[Path, os.stat_result]]:
    """Model files under `folder` (recursively, following symlinks without loops).

    Diffusers folders (with model_index.json) are yielded as one entry; `.part` downloads and
    hidden files are skipped.
    """
    seen: set[str] = set()
    stack = [folder]
    while stack:
        current = stack.pop()
        try:
            real = os.path.realpath(current)
            if real in seen:
                continue
            seen.add(real)
            entries = list(os.scandir(current))
        except OSError as exc:
            log.warning("cannot read %s: %s", current, exc)
            continue
        for entry in entries:
            if entry.name.startswith("."):
                continue
            try:
                if entry.is_dir():
                    path = Path(entry.path)
                    if (path / DIFFUSERS_MARKER).is_file():
                        yield path, entry.stat()
                    else:
                        stack.append(path)
                elif Path(entry.name).suffix.lower() in MODEL_SUFFIXES:
                    yield Path(entry.path), entry.stat()
            except OSError as exc:  # a dangling symlink, a permission problem
                log.warning("skipping %s: %s", entry.path, exc)


class Scanner:
    """Indexes adopted folders and single files into a LibraryStore.

    `inspect` reads one file's header (default: `detect.inspect_model_file`); tests pass a
    counting wrapper to prove that unchanged files are never re-read.
    """

    def __init__(self, store: LibraryStore, inspect: Inspector | None = None) -> None:
        self.store = store
        self._inspect = inspect or _inspect_default

    def adopt(self, folder: Path) -> ScanReport:
        """Add a folder (kept in place) to the library and scan it."""
        folder = folder.expanduser().resolve()
        if not folder.is_dir():
            raise UserError(ErrorKind.missing_file, f"Folder not found: {folder}",
                            "Pick an existing folder (an A1111, ComfyUI or InvokeAI folder "
                            "works as a whole).")
        layout, _ = detect_layout(folder)
        self.store.add_root(str(folder), layout)
        return self.scan_root(folder)

    def add_file(self, path: Path, copy_to: Path | None = None) -> Path:
        """Add one model file: in place (default) or copied into `copy_to` (atomic)."""
        path = path.expanduser().resolve()
        if not path.exists():
            raise UserError(ErrorKind.missing_file, f"File not found: {path}",
                            "Check the path, or drop the file on the library again.")
        if path.is_dir() and not (path / DIFFUSERS_MARKER).is_file():
            raise bad_input(f"{path} is a folder.", "Use `models add` on it to adopt the folder.")
        if copy_to is not None:
            path = _copy_atomic(path, copy_to)
        existing = self.store.get(str(path))
        root = existing.root if existing is not None else None  # still part of its folder
        self.store.upsert_many(root, [(str(path), self._scanned(path, path.stat(), None))])
        self.store.set_hidden(str(path), False)  # added explicitly: show it again
        return path

    def scan_all(self, extra_folders: tuple[Path, ...] = ()) -> ScanReport:
        """Re-stat every adopted folder (and `extra_folders`) and the single files."""
        started = time.perf_counter()
        for folder in extra_folders:
            if folder.is_dir() and str(folder.resolve()) not in dict(self.store.roots()):
                self.store.add_root(str(folder.resolve()), detect_layout(folder.resolve())[0])
        reports = [self.scan_root(Path(root)) for root, _ in self.store.roots()]
        reports.append(self._rescan_singles())
        return ScanReport(
            files=sum(r.files for r in reports), inspected=sum(r.inspected for r in reports),
            removed=sum(r.removed for r in reports), seconds=time.perf_counter() - started,
            problems=tuple(p for r in reports for p in r.problems))

    def scan_root(self, root: Path) -> ScanReport:
        """Re-stat one adopted folder; only new or changed files are inspected."""
        started = time.perf_counter()
        known = self.store.signatures(str(root))
        if not root.is_dir():
            self.store.mark_missing(known, f"Folder not reachable: {root}")
            return ScanReport(files=len(known), seconds=time.perf_counter() - started,
                              problems=(f"Folder not reachable: {root}",))
        _, folders = detect_layout(root)
        fresh: list[tuple[str, Scanned]] = []
        seen: set[str] = set()
        for folder, hint in folders:
            for path, st in iter_model_files(folder):
                key = str(path)
                seen.add(key)
                old = known.get(key)
                if old and old[:2] == _signature(path, st) and old[2] != "missing":
                    continue
                fresh.append((key, self._scanned(path, st, hint)))
        self.store.upsert_many(str(root), fresh)
        gone = [p for p in known if p not in seen]
        self.store.delete_rows(gone)
        return ScanReport(files=len(seen), inspected=len(fresh), removed=len(gone),
                          seconds=time.perf_counter() - started)

    def _rescan_singles(self) -> ScanReport:
        known = self.store.signatures(None)
        fresh, missing = [], []
        for key, (size, mtime_ns, status) in known.items():
            path = Path(key)
            try:
                st = path.stat()
            except OSError:
                missing.append(key)
                continue
            if _signature(path, st) != (size, mtime_ns) or status == "missing":
                fresh.append((key, self._scanned(path, st, None)))
        self.store.upsert_many(None, fresh)
        self.store.mark_missing(missing, "File not found (moved, renamed or on a removed drive).")
        return ScanReport(files=len(known), inspected=len(fresh))

    def _scanned(self, path: Path, st: os.stat_result, hint: str | None) -> Scanned:
        size, mtime_ns = _signature(path, st)
        try:
            info = self._inspect(path)
        except UserError as exc:
            return Scanned(size, mtime_ns, hint or "unknown", None, "corrupt", exc.message)
        except Exception as exc:  # one odd file must never stop a scan of thousands
            log.exception("inspecting %s failed", path)
            return Scanned(size, mtime_ns, hint or "unknown", None, "corrupt",
                           f"Could not read the file: {exc}")
        return scanned_from_info(info, size, mtime_ns, hint)


def _signature(path: Path, st: os.stat_result) -> tuple[int, int]:
    """(size, mtime_ns) that changes when the model changes.

    A diffusers folder's own mtime only changes when entries are added or removed, so its
    model_index.json stands in (rewritten whenever the folder is saved again).
    """
    if path.is_dir():
        with contextlib.suppress(OSError):  # unreadable marker: fall back to the folder
            st = (path / DIFFUSERS_MARKER).stat()
    return st.st_size, st.st_mtime_ns


def _copy_atomic(src: Path, dest_dir: Path) -> Path:
    dest_dir.mkdir(parents=True, exist_ok=True)
    dest = dest_dir / src.name
    if dest.exists():
        if dest.stat().st_size == src.stat().st_size and dest.samefile(src):
            return dest
        raise bad_input(f"{dest} already exists.", "Rename one of the files, or add it in place.")
    if src.is_dir():
        raise bad_input("Copying a diffusers folder is not supported.", "Add it in place.")
    try:
        with atomic_path(dest) as tmp:  # hidden temp: the scanner never lists a half copy
            shutil.copyfile(src, tmp)
    except OSError as exc:
        raise UserError(ErrorKind.runtime, f"Could not copy {src.name}: {exc.strerror or exc}",
                        "Check the free disk space, or add the file in place.") from None
    return dest


HashFunction = Callable[[Path], str]


def _hash_default(path: Path) -> str:
    from desktop_app.library.hashing import cached_sha256

    return cached_sha256(path)  # shared with the engine's "Model hash", so hashed only once


class BackgroundHasher:
    """Computes missing sha256 hashes on its own daemon thread, one file at a time.

    `on_hashed(path, sha256)` is called from the hasher thread (the state layer re-emits it as
    a Qt signal). Hashes are stored only if the file's (size, mtime) did not change meanwhile.
    """

    def __init__(self, store: LibraryStore, on_hashed: Callable[[str, str], None] | None = None,
                 hash_file: HashFunction | None = None) -> None:
        self.store = store
        self._on_hashed = on_hashed
        self._hash = hash_file or _hash_default
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self.idle = threading.Event()

    def start(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name="library-hasher", daemon=True)
            self._thread.start()
        self._wake.set()

    def wake(self) -> None:
        """New rows were added: look for unhashed files again."""
        self.idle.clear()
        self._wake.set()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.clear()
            for item in self.store.unhashed():
                if self._stop.is_set():
                    return
                self._hash_one(item.path, item.size, item.mtime_ns)
            self.idle.set()
            self._wake.wait()

    def _hash_one(self, path: str, size: int, mtime_ns: int) -> None:
        target = Path(path)
        if target.is_dir():
            return
        try:
            digest = self._hash(target)
        except (OSError, UserError) as exc:
            log.warning("cannot hash %s: %s", path, exc)
            return
        if self.store.set_hash(path, size, mtime_ns, digest) and self._on_hashed is not None:
            self._on_hashed(path, digest)
