"""The bundled demo model (resources/models/demo) through the normal engine, offline, on CPU.

Prompts use (shape, colour, background) triples from training; tools/eval_demo_model.py measures
held-out prompts. 25 steps (the app's default for this model; at 12 steps its images fall apart)
and 64x64 images keep each generation under a second or two.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from desktop_app import cli, paths
from desktop_app.gallery.metadata import read_image_metadata
from desktop_app.pipeline.api import CancelToken, GenerationRequest, GenerationResult
from desktop_app.pipeline.backend.diffusers_backend import DiffusersBackend

DEMO = paths.resource("models", "demo")
SIZE = 64
STEPS = 25
RGB = {"red": (220, 30, 35), "white": (245, 245, 245), "black": (20, 20, 20)}


@pytest.fixture(scope="module")
def backend(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DiffusersBackend]:
    yield DiffusersBackend(tmp_path_factory.mktemp("demo-out"), previews=False)


def generate(backend: DiffusersBackend, prompt: str, seed: int = 1) -> GenerationResult:
    request = GenerationRequest(prompt=prompt, model=None, steps=STEPS, cfg_scale=7.0,
                                seed=seed, width=SIZE, height=SIZE)
    return backend.generate(request, CancelToken(), lambda update: None)


def pixels(result: GenerationResult) -> np.ndarray:
    return np.asarray(Image.open(result.images[0].path).convert("RGB"), dtype=np.float32)


def share_near(image: np.ndarray, colour: str, tolerance: float = 70.0) -> float:
    """Fraction of pixels within `tolerance` (RGB distance) of a named colour."""
    return float((np.linalg.norm(image - np.array(RGB[colour]), axis=-1) < tolerance).mean())


def border(image: np.ndarray) -> np.ndarray:
    ring = np.ones(image.shape[:2], bool)
    ring[3:-3, 3:-3] = False
    return image[ring]


def test_demo_model_folder_is_small_fp16_with_the_project_tokenizer() -> None:
    files = [f for f in DEMO.rglob("*") if f.is_file()]
    assert sum(f.stat().st_size for f in files) <= 30_000_000
    weights = [f for f in files if f.suffix == ".safetensors"]
    assert {f.parent.name for f in weights} == {"unet", "vae", "text_encoder"}
    for weight in weights:
        header_len = int.from_bytes(weight.read_bytes()[:8], "little")
        header = json.loads(weight.read_bytes()[8:8 + header_len])
        assert {v["dtype"] for k, v in header.items() if k != "__metadata__"} == {"F16"}
    for name in ("vocab.json", "merges.txt", "tokenizer_config.json"):
        assert (DEMO / "tokenizer" / name).read_bytes() == paths.resource(
            "tokenizer", name).read_bytes()


def test_demo_model_is_the_default_and_loads_offline(backend: DiffusersBackend) -> None:
    result = generate(backend, "a big red square in the centre on a white background")
    assert result.model_name == "demo"
    assert pixels(result).shape == (SIZE, SIZE, 3)


def test_prompt_gives_the_asked_colours(backend: DiffusersBackend) -> None:
    image = pixels(generate(backend, "a big red square in the centre on a white background"))
    assert share_near(image, "red") > 0.10  # a big shape: 25-35 % of the image
    assert share_near(border(image), "white") > 0.8
    # The picture is the asked two colours: a big red square (~35 %) on white, little else.
    assert share_near(image, "white") > 0.3
    assert share_near(image, "red") + share_near(image, "white") > 0.7


def test_background_follows_the_prompt(backend: DiffusersBackend) -> None:
    on_black = pixels(generate(backend, "a small white circle on a black background"))
    on_white = pixels(generate(backend, "a big red square in the centre on a white background"))
    assert share_near(border(on_black), "black") > 0.8
    assert share_near(border(on_white), "white") > 0.8


def test_same_seed_same_pixels_other_seed_different(backend: DiffusersBackend) -> None:
    prompt = "a small yellow star on the left, blue background"
    first, again = pixels(generate(backend, prompt, 5)), pixels(generate(backend, prompt, 5))
    other = pixels(generate(backend, prompt, 6))
    assert np.array_equal(first, again)
    assert not np.array_equal(first, other)


def test_cli_generate_without_model_uses_the_demo_model(tmp_path: Path,
                                                        capsys: pytest.CaptureFixture[str]
                                                        ) -> None:
    target = tmp_path / "demo.png"
    code = cli.main(["generate", "a big red square in the centre on a white background",
                     "--width", "64",
                     "--height", "64", "--steps", str(STEPS), "--seed", "3", "--out",
                     str(target)])
    assert code == 0
    assert capsys.readouterr().out.strip() == str(target)
    meta = read_image_metadata(target)
    assert meta is not None and meta.model_name == "demo"
    image = np.asarray(Image.open(target).convert("RGB"), dtype=np.float32)
    assert share_near(image, "red") > 0.05 and share_near(border(image), "white") > 0.8


def test_cli_without_a_size_uses_the_demo_models_native_64px(tmp_path: Path) -> None:
    target = tmp_path / "native.png"
    assert cli.main(["generate", "a small blue star in the top left, yellow background",
                     "--steps", "2", "--seed", "1", "--out", str(target)]) == 0
    with Image.open(target) as image:
        assert image.size == (64, 64)
