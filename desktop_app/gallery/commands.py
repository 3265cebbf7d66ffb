"""`desktop-app gallery …`: list, rebuild and import from the command line."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from desktop_app.errors import ErrorKind, UserError
from desktop_app.gallery.index import GalleryIndex, GalleryQuery, SortOrder


def register(subparsers: Any) -> None:
    """Add the `gallery` command and its sub-commands."""
    parser = subparsers.add_parser("gallery", help="list, rebuild or import the image gallery")
    commands = parser.add_subparsers(dest="gallery_command", required=True)

    listing = commands.add_parser("list", help="list indexed images (newest first)")
    listing.add_argument("--search", default="", metavar="TEXT",
                         help="words that must appear in prompt, negative prompt, model, "
                              "sampler or seed")
    listing.add_argument("--model", default=None, help="only images made with this model")
    listing.add_argument("--favourites", action="store_true", help="only favourites")
    listing.add_argument("--sort", choices=[s.value for s in SortOrder], default="newest")
    listing.add_argument("--limit", type=int, default=0, help="at most N images (0 = all)")
    listing.add_argument("--json", action="store_true", help="a JSON list, one object per image")
    listing.add_argument("--no-scan", action="store_true",
                         help="do not look for files added or removed outside the app first")
    listing.set_defaults(func=_list)

    rebuild = commands.add_parser("rebuild", help="rebuild the index from the image files")
    rebuild.set_defaults(func=_rebuild)

    importing = commands.add_parser("import", help="index a folder of images in place")
    importing.add_argument("folder", metavar="DIR")
    importing.set_defaults(func=_import)


def _list(args: argparse.Namespace) -> int:
    if args.limit < 0:
        raise UserError(ErrorKind.bad_input, "--limit must be 0 or more.")
    index = GalleryIndex()
    try:
        if not args.no_scan:
            index.scan()
        query = GalleryQuery(search=args.search, model=args.model,
                             favourites_only=args.favourites, sort=SortOrder(args.sort))
        entries = index.query(query, limit=args.limit or -1)
    finally:
        index.close()
    if args.json:
        json.dump([e.to_json() for e in entries], sys.stdout, ensure_ascii=False, indent=1)
        print()
        return 0
    for entry in entries:
        prompt = " ".join(entry.prompt.split())
        short = prompt if len(prompt) <= 60 else prompt[:57] + "..."
        print(f"{entry.path}\tseed {entry.seed if entry.seed is not None else '-'}\t{short}")
    return 0


def _rebuild(args: argparse.Namespace) -> int:
    index = GalleryIndex()
    try:
        stats = index.rebuild()
    finally:
        index.close()
    print(f"Indexed {stats.added} images.")
    return 0


def _import(args: argparse.Namespace) -> int:
    folder = Path(args.folder).expanduser()
    if not folder.is_dir():
        raise UserError(ErrorKind.missing_file, f"Not a folder: {folder}",
                        "Give the folder that holds the images.")
    index = GalleryIndex()
    try:
        root = index.add_root(folder)
        stats = index.scan()
    finally:
        index.close()
    print(f"Imported {root}: {stats.added} new images, {stats.removed} removed.")
    return 0
