"""`desktop-app models …`: list, add, download and convert model files from the command line.

The same library (SQLite index, scanner, catalog) as the GUI. Nothing here touches the network
except `models download`, and only for the file asked for.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from desktop_app.errors import ErrorKind, UserError, bad_input


def register(subparsers: Any) -> None:
    """Add the `models` command and its sub-commands to the CLI."""
    parser = subparsers.add_parser("models", help="list, add, download and convert model files",
                                   description="Manage the model library.")
    sub = parser.add_subparsers(dest="models_command", required=True)

    ls = sub.add_parser("list", help="list known model files")
    ls.add_argument("--json", action="store_true", help="one JSON list, an object per file")
    ls.add_argument("--hash", action="store_true",
                    help="compute missing sha256 hashes first (reads every new file once)")
    ls.set_defaults(func=cmd_list)

    add = sub.add_parser("add", help="add a model file, or adopt a folder in place")
    add.add_argument("path", help="a model file, a diffusers folder, or an A1111/ComfyUI/"
                                  "InvokeAI/plain folder to adopt in place")
    add.add_argument("--copy", action="store_true",
                     help="copy the file into the app's library instead of using it in place")
    add.set_defaults(func=cmd_add)

    dl = sub.add_parser("download", help="download a catalog entry or a URL (verified)")
    dl.add_argument("source", nargs="?", help="catalog id, https:// URL or owner/repo/file")
    dl.add_argument("--sha256", help="expected sha256 (required for URLs without a known hash)")
    dl.add_argument("--list", action="store_true", help="list the catalog's downloadable files")
    dl.set_defaults(func=cmd_download)

    cv = sub.add_parser("convert", help="convert a pickle .ckpt to .safetensors, safely")
    cv.add_argument("file", help="the .ckpt/.pt file")
    cv.add_argument("--out", help="output .safetensors path (default: next to the input)")
    cv.set_defaults(func=cmd_convert)


def _library() -> Any:
    from desktop_app.library.manager import Library

    library = Library()
    for problem in library.catalog.problems:
        print(f"warning: {problem}", file=sys.stderr)
    return library


def cmd_list(args: argparse.Namespace) -> int:
    """Print the library (after a quick re-stat of its folders)."""
    library = _library()
    try:
        library.refresh()
        if args.hash:
            _hash_missing(library)
        items = library.items()
        if args.json:
            print(json.dumps([i.to_json() for i in items], indent=2))
            return 0
        if not items:
            print("The library is empty. Add a folder with `desktop-app models add PATH`.")
        for item in items:
            family = item.family or "-"
            digest = item.short_hash or "…"
            reason = f"  ({item.reason})" if item.reason and item.status != "ok" else ""
            print(f"{item.status:<11} {item.kind:<10} {family:<9} {digest:<10} {item.name}"
                  f"\n{'':<43}{item.path}{reason}")
        return 0
    finally:
        library.close()


def _hash_missing(library: Any) -> None:
    from desktop_app.library.hashing import cached_sha256

    pending = library.store.unhashed()
    for n, item in enumerate(pending, 1):
        if Path(item.path).is_dir():
            continue
        print(f"hashing {n}/{len(pending)}: {Path(item.path).name}", file=sys.stderr)
        try:
            library.store.set_hash(item.path, item.size, item.mtime_ns, cached_sha256(item.path))
        except UserError as exc:
            print(f"warning: {exc}", file=sys.stderr)


def cmd_add(args: argparse.Namespace) -> int:
    """Add a file (in place or copied) or adopt a folder in place."""
    library = _library()
    try:
        what, result = library.add(Path(args.path), copy=args.copy)
        if what == "folder":
            items = [i for i in library.items() if i.root == str(Path(args.path).resolve())]
            ok = sum(1 for i in items if i.status == "ok")
            print(f"Adopted {Path(args.path).resolve()}: {result.files} files "
                  f"({ok} usable, {result.files - ok} not) in {result.seconds:.1f} s.")
        else:
            note = f" — {result.reason}" if result.reason else ""
            print(f"Added {result.path} ({result.kind}, {result.family or 'unknown family'}, "
                  f"{result.status}){note}")
        return 0
    finally:
        library.close()


class TerminalProgress:
    """A one-line progress bar on stderr, redrawn at most 10 times a second."""

    def __init__(self, label: str) -> None:
        self.label = label
        self.started = time.monotonic()
        self._last = 0.0

    def __call__(self, done: int, total: int | None) -> None:
        now = time.monotonic()
        if now - self._last < 0.1 and done != total:
            return
        self._last = now
        rate = done / max(now - self.started, 1e-6) / 1e6
        if total:
            width = 30
            filled = int(width * done / total)
            bar = "#" * filled + "-" * (width - filled)
            text = f"{self.label} [{bar}] {100 * done / total:5.1f}% {done / 1e6:,.0f}/" \
                   f"{total / 1e6:,.0f} MB {rate:.1f} MB/s"
        else:
            text = f"{self.label} {done / 1e6:,.1f} MB {rate:.1f} MB/s"
        print(f"\r{text}", end="", file=sys.stderr, flush=True)

    def close(self) -> None:
        print(file=sys.stderr)


def cmd_download(args: argparse.Namespace) -> int:
    """Download a catalog entry or URL into the library, verified by sha256."""
    from desktop_app.library.downloads import resolve_source

    library = _library()
    try:
        if args.list:
            for entry in library.catalog.entries.values():
                size = f"{entry.size / 1e9:.2f} GB" if entry.size else "?"
                verified = "" if entry.verified else "  (unverified: needs --sha256)"
                print(f"{entry.id:<20} {entry.kind:<10} {entry.family or '-':<9} {size:>8}  "
                      f"{entry.title} — {entry.license}{verified}")
            return 0
        if not args.source:
            raise bad_input("Name what to download.",
                            "Use a catalog id (see `models download --list`) or a URL.")
        source = resolve_source(args.source, library.catalog, sha256=args.sha256)
        progress = TerminalProgress(source.filename)
        try:
            path = library.download(source, on_progress=progress)
        finally:
            progress.close()
        print(path)
        return 0
    finally:
        library.close()


def cmd_convert(args: argparse.Namespace) -> int:
    """Convert a pickle checkpoint with the safe loader; the new file joins the library."""
    src = Path(args.file).expanduser()
    if not src.is_file():
        raise UserError(ErrorKind.missing_file, f"File not found: {src}")
    if src.suffix.lower() not in (".ckpt", ".pt", ".pth", ".bin"):
        raise bad_input(f"{src.name} is not a pickle checkpoint (.ckpt/.pt/.pth/.bin).",
                        "Only pickle files need converting; .safetensors load directly.")
    dst = Path(args.out).expanduser() if args.out else src.with_suffix(".safetensors")
    if dst.exists():
        raise bad_input(f"{dst} already exists.", "Pass --out with another file name.")
    from desktop_app.pipeline.backend.ckpt import convert_ckpt_to_safetensors

    convert_ckpt_to_safetensors(src, dst)
    library = _library()
    try:
        library.add(dst)
    finally:
        library.close()
    print(dst)
    return 0
