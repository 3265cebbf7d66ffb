"""SIGKILL at random moments while images are generated, saved and indexed: nothing corrupt,
nothing finished lost, and the index recovers to match the files."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from PIL import Image

from desktop_app import paths
from desktop_app.gallery import storage
from desktop_app.gallery.index import GalleryIndex, GalleryQuery
from desktop_app.gallery.readers import png_text_chunks

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="needs SIGKILL")

REPO = Path(__file__).resolve().parents[2]
KILLS = 25

# The child "generates" (random pixels plus a busy loop standing in for denoising), saves
# through the real writer like the engine does, indexes, and sometimes rescans, forever; it
# reports each image once save_png has returned.
CHILD = r"""
import os, random, sys
from PIL import Image
from desktop_app.gallery import storage
from desktop_app.gallery.index import GalleryIndex
from desktop_app.gallery.metadata import ImageMetadata, save_png
from desktop_app.pipeline.api import GenerationRequest

index = GalleryIndex()
rng = random.Random(int(sys.argv[1]))
while True:
    seed = rng.randrange(2**32)
    request = GenerationRequest(prompt=f"crash test {seed}", seed=seed)
    size = rng.choice((64, 256, 384))
    image = Image.frombytes("RGB", (size, size), os.urandom(size * size * 3))
    sum(range(rng.randrange(300_000)))
    path = storage.new_image_path(seed)
    save_png(image, path, ImageMetadata.from_request(request))
    print(path, flush=True)
    index.add_file(path)
    if rng.random() < 0.3:
        index.scan()
"""


def _run_and_kill(round_no: int, rng: random.Random) -> list[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(round_no)], cwd=REPO, env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(rng.uniform(0.6, 2.0))  # the child's imports take ~0.5 s
    child.send_signal(signal.SIGKILL)
    out, err = child.communicate(timeout=30)
    assert child.returncode == -signal.SIGKILL, err
    return out.split()


def test_sigkill_during_generation_and_saving_loses_nothing() -> None:
    rng = random.Random(1234)
    finished: list[str] = []
    for round_no in range(KILLS):
        finished += _run_and_kill(round_no, rng)
    assert len(finished) > KILLS, "the child never got to save: the test would prove nothing"
    outputs = paths.outputs_dir()
    pngs = sorted(str(p) for p in outputs.rglob("*.png") if not p.name.startswith("."))
    # Every finished image is there; every visible .png is complete and carries metadata.
    assert set(finished) <= set(pngs)
    for name in pngs:
        with Image.open(name) as image:
            image.load()
        assert "parameters" in png_text_chunks(Path(name))
        assert "desktop_app" in png_text_chunks(Path(name))
    # The index recovers: after a rescan it matches the files, and equals a full rebuild.
    index = GalleryIndex()
    index.scan()
    indexed = sorted(e.path for e in index.query(GalleryQuery(), limit=-1))
    assert indexed == pngs
    live = index.snapshot()
    index.rebuild()
    assert index.snapshot() == live
    # Crash litter (temp files, reservations) stays hidden and is cleaned once old.
    litter = [p for p in outputs.rglob(".*") if storage.is_litter(p.name)]
    print(f"finished={len(finished)} pngs={len(pngs)} litter={len(litter)}")
    for path in litter:
        os.utime(path, (0, 0))
    storage.clean_stale(outputs, max_age_s=60)
    assert not [p for p in outputs.rglob(".*") if storage.is_litter(p.name)]
