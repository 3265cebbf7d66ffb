"""Library scan at scale: first scan vs listing vs re-stat scan of N model files.

    nice -n 10 .venv/bin/python benchmarks/library_scan.py --count 3000

Files are small valid safetensors (a VAE-shaped header), laid out like a ComfyUI models folder
in a temporary DESKTOP_APP_HOME. The first scan reads every header once; the listing comes from
SQLite without touching the files; the re-stat scan only calls stat(). Prints the figures and a
final JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--count", type=int, default=3000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["DESKTOP_APP_HOME"] = tmp
        from desktop_app.library.detect import inspect_model_file
        from desktop_app.library.scan import Scanner
        from desktop_app.library.store import LibraryStore
        from tests.fixtures.tiny_models import write_header_only_safetensors

        folder = Path(tmp) / "ComfyUI" / "models" / "checkpoints"
        folder.mkdir(parents=True)
        first_file = write_header_only_safetensors(
            folder / "m00000.safetensors",
            {"decoder.conv_in.weight": (8, 4, 3, 3), "encoder.conv_in.weight": (8, 3, 3, 3)},
            dtype="F32")
        blob = first_file.read_bytes()
        for i in range(1, args.count):
            (folder / f"m{i:05d}.safetensors").write_bytes(blob)
        reads = [0]

        def counting(path: Path) -> object:
            reads[0] += 1
            return inspect_model_file(path)

        started = time.perf_counter()
        Scanner(LibraryStore(), counting).adopt(folder.parent.parent)
        first = time.perf_counter() - started
        first_reads = reads[0]
        store = LibraryStore()  # as after a restart
        started = time.perf_counter()
        items = store.items()
        listing = time.perf_counter() - started
        started = time.perf_counter()
        Scanner(store, counting).scan_all()
        rescan = time.perf_counter() - started
        print(f"{args.count} files: first scan {first:.2f} s ({first_reads} header reads), "
              f"listing {listing * 1000:.0f} ms ({len(items)} items), re-stat scan "
              f"{rescan:.2f} s ({reads[0] - first_reads} header reads)")
        print(json.dumps({"files": args.count, "first_scan_s": round(first, 3),
                          "listing_ms": round(listing * 1000, 1), "rescan_s": round(rescan, 3),
                          "rescan_header_reads": reads[0] - first_reads}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
