"""Gallery at scale: N synthetic images with real metadata → index build rate, grid first paint,
search latency, memory. Goals: first paint ≤ 500 ms, search ≤ 50 ms (at 100 000 images).

    nice -n 10 .venv/bin/python benchmarks/gallery_scale.py --count 100000

Images are tiny (16×16) real PNGs carrying our `parameters` + `desktop_app` chunks like the
engine writes; the pixels are encoded once and reused, the chunks are built per file. Everything
lives in a temporary DESKTOP_APP_HOME (or --home) that is deleted afterwards unless --keep.
Prints the figures and a final JSON line.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import random
import resource
import shutil
import statistics
import struct
import sys
import tempfile
import time
import zlib
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

WORDS = (
    "fox", "castle", "portrait", "city", "street", "night", "forest", "river", "mountain",
    "dragon", "robot", "cat", "dog", "astronaut", "horse", "mars", "ocean", "sunset", "neon",
    "cyberpunk", "watercolor", "oil", "painting", "photo", "cinematic", "lighting",
    "detailed", "sharp", "soft", "dreamy", "misty", "golden", "hour", "snow", "desert",
    "lake", "temple", "garden", "flower", "owl", "wolf", "bear", "tiger", "lion", "knight",
    "wizard", "ship", "train", "bridge",
)
MODELS = ("sd15", "dreamshaper_8", "sd_xl_base_1.0", "realisticVision", "anything-v5")
SAMPLERS = ("Euler a", "DPM++ 2M Karras", "DDIM", "UniPC", "Euler")


def _chunk(kind: bytes, data: bytes) -> bytes:
    return (struct.pack(">I", len(data)) + kind + data
            + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))


def _base_png() -> tuple[bytes, bytes]:
    """(signature+IHDR, IDAT+IEND) of one tiny real image, to wrap metadata around."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (16, 16), (90, 120, 200)).save(buffer, "PNG")
    data = buffer.getvalue()
    ihdr_end = 8 + 25
    return data[:ihdr_end], data[ihdr_end:]


def generate(root: Path, count: int, seed: int = 0) -> float:
    """Write `count` images into day folders under `root`; returns seconds taken."""
    from desktop_app.gallery.metadata import ImageMetadata, format_a1111
    from desktop_app.pipeline.api import GenerationRequest

    rng = random.Random(seed)
    head, tail = _base_png()
    start = time.perf_counter()
    day0 = datetime(2025, 1, 1, tzinfo=UTC)
    for i in range(count):
        prompt = " ".join(rng.choices(WORDS, k=rng.randint(4, 14)))
        request = GenerationRequest(
            prompt=prompt, negative_prompt=" ".join(rng.choices(WORDS, k=3)),
            seed=rng.randrange(2**32), sampler=rng.choice(SAMPLERS),
            steps=rng.randint(10, 40), model=f"/models/{rng.choice(MODELS)}.safetensors")
        when = day0 + timedelta(seconds=i * 300)
        meta = ImageMetadata.from_request(request, created=when)
        text = format_a1111(meta).encode("latin-1", "replace")
        ours = zlib.compress(json.dumps(meta.to_json_dict()).encode())
        folder = root / when.strftime("%Y-%m-%d")
        folder.mkdir(parents=True, exist_ok=True)
        with open(folder / f"{i % 100000:05d}-{meta.seed}.png", "wb") as handle:
            handle.write(head + _chunk(b"tEXt", b"parameters\0" + text)
                         + _chunk(b"iTXt", b"desktop_app\0\1\0\0\0" + ours) + tail)
    return time.perf_counter() - start


def rss_mb() -> float:
    try:
        with open("/proc/self/statm") as handle:
            return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except OSError:
        return float("nan")


def measure_search(index: object) -> dict[str, float]:
    from desktop_app.gallery.index import GalleryIndex, GalleryQuery, SortOrder

    assert isinstance(index, GalleryIndex)
    queries = [GalleryQuery(search="fox"), GalleryQuery(search="golden hour"),
               GalleryQuery(search="drag"), GalleryQuery(search="cyberpunk neon city"),
               GalleryQuery(search="12345"), GalleryQuery(search="zzzz-nothing"),
               GalleryQuery(model="sd15"), GalleryQuery(search="owl", sort=SortOrder.oldest),
               GalleryQuery(search="fox", model="dreamshaper_8"),
               GalleryQuery(favourites_only=True), GalleryQuery()]
    times: list[float] = []
    for _ in range(3):
        for query in queries:
            start = time.perf_counter()
            index.count(query)
            index.query(query, limit=256)
            times.append((time.perf_counter() - start) * 1000)
    return {"search_median_ms": statistics.median(times), "search_max_ms": max(times)}


def measure_gui(home: Path) -> dict[str, float]:
    from PySide6.QtWidgets import QApplication

    from desktop_app.state.gallery_list_model import ThumbnailRole
    from desktop_app.ui.gallery_panel import GalleryPanel

    app = QApplication.instance() or QApplication([])
    start = time.perf_counter()
    panel = GalleryPanel(scan_on_start=False)
    panel.resize(1280, 800)
    panel.show()
    panel.grid.viewport().repaint()  # synchronous paint of the first screen
    first_paint = (time.perf_counter() - start) * 1000
    visible = min(panel.model.rowCount(), 30)
    deadline = time.perf_counter() + 60
    while time.perf_counter() < deadline and not all(
            panel.model.index(r).data(ThumbnailRole) is not None for r in range(visible)):
        app.processEvents()
        time.sleep(0.005)
    thumbs = (time.perf_counter() - start) * 1000
    start = time.perf_counter()
    panel.search_edit.setText("cyberpunk")
    panel.apply_filters()
    panel.grid.viewport().repaint()
    search_paint = (time.perf_counter() - start) * 1000
    start = time.perf_counter()
    panel.search_edit.setText("")
    panel.apply_filters()
    while panel.model.canFetchMore():
        panel.model.fetchMore()
    scroll_all = (time.perf_counter() - start) * 1000
    panel.grid.scrollToBottom()
    panel.grid.viewport().repaint()
    panel.shutdown()
    panel.deleteLater()
    app.processEvents()
    return {"first_paint_ms": first_paint, "first_screen_thumbnails_ms": thumbs,
            "search_repaint_ms": search_paint, "load_all_rows_ms": scroll_all,
            "rss_after_all_rows_mb": rss_mb()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=100_000)
    parser.add_argument("--home", type=Path, default=None)
    parser.add_argument("--keep", action="store_true")
    args = parser.parse_args()
    home = args.home or Path(tempfile.mkdtemp(prefix="gallery-bench-"))
    os.environ["DESKTOP_APP_HOME"] = str(home)
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from desktop_app import paths
    from desktop_app.gallery.index import GalleryIndex, GalleryQuery

    results: dict[str, float] = {"count": args.count}
    try:
        outputs = paths.outputs_dir()
        if not any(outputs.iterdir()):
            results["generate_s"] = generate(outputs, args.count)
            print(f"generated {args.count} images in {results['generate_s']:.1f} s")
        index = GalleryIndex()
        start = time.perf_counter()
        stats = index.scan()
        build = time.perf_counter() - start
        results.update(index_build_s=build, index_rate_per_s=stats.added / build if build else 0)
        print(f"index build: {stats.added} images in {build:.1f} s "
              f"({results['index_rate_per_s']:.0f}/s)")
        start = time.perf_counter()
        index.scan()
        results["rescan_unchanged_s"] = time.perf_counter() - start
        print(f"rescan (nothing changed): {results['rescan_unchanged_s']:.2f} s")
        for entry in index.query(GalleryQuery(), limit=50):
            index.set_favourite(entry.path, True)
        results.update(measure_search(index))
        print(f"search: median {results['search_median_ms']:.1f} ms, "
              f"max {results['search_max_ms']:.1f} ms (goal ≤ 50)")
        results["index_mb"] = sum(p.stat().st_size for p in paths.data_dir().glob("gallery.*")
                                  ) / 2**20
        index.close()
        results.update(measure_gui(home))
        print(f"grid first paint: {results['first_paint_ms']:.0f} ms (goal ≤ 500); "
              f"first screen of thumbnails (cold cache): "
              f"{results['first_screen_thumbnails_ms']:.0f} ms")
        print(f"search + repaint in the panel: {results['search_repaint_ms']:.0f} ms; "
              f"loading every row: {results['load_all_rows_ms']:.0f} ms")
        results["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(f"index file {results['index_mb']:.0f} MB; RSS after all rows "
              f"{results['rss_after_all_rows_mb']:.0f} MB, peak {results['peak_rss_mb']:.0f} MB")
    finally:
        if not args.keep and args.home is None:
            shutil.rmtree(home, ignore_errors=True)
    print(json.dumps({k: round(v, 3) for k, v in results.items()}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
