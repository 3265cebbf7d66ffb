"""`desktop-app --bundle-check`: does the frozen bundle hold everything the engine needs?

Independent of the GUI and of any model on disk, it checks what a PyInstaller bundle typically
gets wrong: package metadata (without it diffusers turns pipelines into dummies), lazily imported
pipelines, schedulers and CLIP classes, the shipped tokenizer and configs found through
`paths.resource`, scipy/torchsde-backed samplers, safetensors save and load by class name, tqdm
with no console, the ISA-L deflate of fast mode's PNGs, CA certificates for HTTPS downloads, and
the Qt platform plugins. It builds a tiny random-weight SD pipeline in a temporary folder (never
the install folder), runs it for two steps with three schedulers, round-trips a PNG through
ISA-L and prints one JSON line; exit code 0 when every check passed, 1 otherwise.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

# "a photo of a cat" with the shipped CLIP tokenizer (see resources/tokenizer).
TOKENIZER_TEXT = "a photo of a cat"
TOKENIZER_IDS = [49406, 320, 1125, 539, 320, 2368, 49407]
FAMILIES = ("sd15", "sd2-512", "sd2-768-v", "sdxl")
# (scheduler class, what it exercises)
SCHEDULERS = (
    ("EulerAncestralDiscreteScheduler", "plain"),
    ("LMSDiscreteScheduler", "scipy.integrate"),
    ("DPMSolverSDEScheduler", "torchsde"),
)
IMAGE_SIZE = 64


def _versions() -> dict[str, str]:
    import diffusers
    import PySide6
    import torch
    import transformers

    return {
        "torch": torch.__version__,
        "diffusers": diffusers.__version__,
        "transformers": transformers.__version__,
        "pyside6": PySide6.__version__,
    }


def _check_backends() -> str:
    import diffusers
    from diffusers.utils import is_torch_available, is_transformers_available

    if not (is_torch_available() and is_transformers_available()):
        raise RuntimeError("diffusers cannot see torch/transformers: package metadata missing")
    for name in ("StableDiffusionPipeline", "StableDiffusionXLPipeline", "AutoencoderTiny"):
        cls = getattr(diffusers, name)
        if type(cls).__name__ == "DummyObject":
            raise RuntimeError(f"diffusers.{name} is a dummy object")
    return "pipelines are real classes"


def _check_resources() -> str:
    from transformers import CLIPTokenizer

    from desktop_app import paths

    tokenizer = CLIPTokenizer.from_pretrained(str(paths.resource("tokenizer")))
    ids = tokenizer(TOKENIZER_TEXT).input_ids
    if ids != TOKENIZER_IDS:
        raise RuntimeError(f"tokenizer gave {ids}")
    missing = [
        family
        for family in FAMILIES
        if not paths.resource("configs", family, "model_index.json").is_file()
    ]
    if missing:
        raise RuntimeError(f"configs missing: {missing}")
    if not paths.models_toml().is_file():
        return "tokenizer and configs found; no models.toml in this bundle"
    return "tokenizer, configs and models.toml found"


def _check_generation() -> str:
    import diffusers
    import torch
    from diffusers import StableDiffusionPipeline

    from desktop_app.pipeline.backend.tiny import build_tiny_sd15_folder

    with tempfile.TemporaryDirectory(prefix="desktop-app-bundle-check-") as tmp:
        folder = Path(tmp) / "tiny"
        build_tiny_sd15_folder(folder)  # the self-test's model: real SD1 topology, tiny widths
        # Loading by class name exercises the lazy imports and the safetensors mmap path.
        pipe = StableDiffusionPipeline.from_pretrained(str(folder), local_files_only=True)
        for name, _what in SCHEDULERS:
            pipe.scheduler = getattr(diffusers, name).from_config(pipe.scheduler.config)
            image = pipe(
                "a photo of a cat",
                num_inference_steps=2,
                height=IMAGE_SIZE,
                width=IMAGE_SIZE,
                generator=torch.Generator().manual_seed(1),
            ).images[0]
            if image.size != (IMAGE_SIZE, IMAGE_SIZE):
                raise RuntimeError(f"{name}: image size {image.size}")
    return "tiny pipeline saved, reloaded and run with " + ", ".join(n for n, _ in SCHEDULERS)


def _check_png() -> str:
    import io

    import numpy as np
    from PIL import Image

    from desktop_app.gallery import png_encode

    if png_encode._isal() is None:
        raise RuntimeError("isal missing: fast mode would save PNGs with the slower zlib")
    pixels = np.random.default_rng(0).integers(0, 256, (96, 80, 3), dtype=np.uint8)
    back = Image.open(io.BytesIO(png_encode.encode(Image.fromarray(pixels), fast=True)))
    if not np.array_equal(np.asarray(back), pixels):
        raise RuntimeError("a PNG deflated by ISA-L did not decode back")
    return "a PNG deflated by ISA-L decodes back"


def _check_tls() -> str:
    import ssl

    stats = ssl.create_default_context().cert_store_stats()
    if not stats["x509_ca"]:
        raise RuntimeError("no CA certificates: HTTPS downloads would fail")
    return f"{stats['x509_ca']} CA certificates for HTTPS downloads"


def _check_qt() -> str:
    from PySide6.QtWidgets import QApplication, QLabel

    app = QApplication.instance() or QApplication([sys.argv[0]])
    label = QLabel("bundle check")
    label.show()
    app.processEvents()
    label.close()
    return f"Qt platform {QApplication.platformName()}"


CHECKS: tuple[tuple[str, Callable[[], str]], ...] = (
    ("backends", _check_backends),
    ("resources", _check_resources),
    ("generation", _check_generation),
    ("png", _check_png),
    ("tls", _check_tls),
    ("qt", _check_qt),
)


def run() -> dict[str, Any]:
    """Run every check; never raises. Returns the report printed by `main`."""
    started = time.perf_counter()
    report: dict[str, Any] = {"ok": True, "frozen": bool(getattr(sys, "frozen", False))}
    try:
        report["versions"] = _versions()
    except Exception as exc:
        report.update(ok=False, versions=f"import failed: {exc!r}")
        traceback.print_exc()
        return report
    results: dict[str, str] = {}
    for name, check in CHECKS:
        try:
            results[name] = check()
        except Exception as exc:
            report["ok"] = False
            results[name] = f"FAILED: {exc!r}"
            traceback.print_exc()
    report["checks"] = results
    report["seconds"] = round(time.perf_counter() - started, 2)
    return report


def main() -> int:
    report = run()
    print(json.dumps(report), flush=True)
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
