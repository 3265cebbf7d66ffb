"""Procedural captioned shapes for the bundled demo model (shared by training and evaluation).

Every image is one flat-coloured shape (circle, square, triangle, star) of a size (small, big)
at one of nine positions on a flat background of another colour, with a natural caption.
Nothing here imports torch: images are PIL/numpy, drawn 4x larger and box-filtered down, so
edges are anti-aliased the same way every time.

A fixed set of (shape, colour, background) triples is held out of training for evaluation.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

IMAGE_SIZE = 64
SUPERSAMPLE = 4

PALETTE: dict[str, tuple[int, int, int]] = {
    "red": (220, 30, 35),
    "green": (35, 165, 60),
    "blue": (35, 75, 220),
    "yellow": (245, 215, 35),
    "orange": (245, 130, 25),
    "purple": (130, 45, 175),
    "white": (245, 245, 245),
    "black": (20, 20, 20),
}
COLOURS = tuple(PALETTE)
SHAPES = ("circle", "square", "triangle", "star")
SIZES = ("small", "big")
# (column, row) in a 3x3 grid: 0 = left/top, 1 = centre, 2 = right/bottom.
POSITIONS: dict[str, tuple[int, int]] = {
    "top left": (0, 0),
    "top": (1, 0),
    "top right": (2, 0),
    "left": (0, 1),
    "centre": (1, 1),
    "right": (2, 1),
    "bottom left": (0, 2),
    "bottom": (1, 2),
    "bottom right": (2, 2),
}
SIZE_RANGE = {"small": (0.25, 0.31), "big": (0.50, 0.58)}  # side of the bounding box / image
MARGIN = 0.07  # gap between the shape and the image border at an edge position / image
JITTER = 0.03  # random shift of the shape centre / image
HELD_OUT_COUNT = 24
HELD_OUT_SEED = 1234


@dataclass(frozen=True)
class Scene:
    """One image's content; `box` is (x0, y0, x1, y1) of the shape in pixels."""

    shape: str
    colour: str
    background: str
    size: str
    position: str
    box: tuple[float, float, float, float]


def all_triples() -> list[tuple[str, str, str]]:
    """Every (shape, colour, background) with colour != background, in a fixed order."""
    return [(s, c, b) for s in SHAPES for c in COLOURS for b in COLOURS if c != b]


def held_out_triples() -> list[tuple[str, str, str]]:
    """The fixed triples never shown in training (each colour/shape still appears elsewhere)."""
    return sorted(random.Random(HELD_OUT_SEED).sample(all_triples(), HELD_OUT_COUNT))


def train_triples() -> list[tuple[str, str, str]]:
    held = set(held_out_triples())
    return [t for t in all_triples() if t not in held]


def shape_polygon(shape: str, box: tuple[float, float, float, float]) -> list[tuple[float, float]]:
    """Polygon of a triangle or star filling `box` (x0, y0, x1, y1)."""
    x0, y0, x1, y1 = box
    w, h = x1 - x0, y1 - y0
    if shape == "triangle":
        unit = [(0.5, 0.0), (1.0, 1.0), (0.0, 1.0)]
    elif shape == "star":
        pts = []
        for i in range(10):
            r = 1.0 if i % 2 == 0 else 0.42
            a = -np.pi / 2 + i * np.pi / 5
            pts.append((r * np.cos(a), r * np.sin(a)))
        xs, ys = [p[0] for p in pts], [p[1] for p in pts]
        unit = [
            ((x - min(xs)) / (max(xs) - min(xs)), (y - min(ys)) / (max(ys) - min(ys)))
            for x, y in pts
        ]
    else:
        raise ValueError(shape)
    return [(x0 + u * w, y0 + v * h) for u, v in unit]


def draw_shape(draw: ImageDraw.ImageDraw, shape: str, box: tuple[float, float, float, float],
               fill: tuple[int, int, int] | int) -> None:
    """Draw one filled shape into `box` on a PIL drawing surface."""
    if shape == "circle":
        draw.ellipse(box, fill=fill)
    elif shape == "square":
        draw.rectangle(box, fill=fill)
    else:
        draw.polygon(shape_polygon(shape, box), fill=fill)


def place(size: str, position: str, rng: random.Random, image_size: int = IMAGE_SIZE
          ) -> tuple[float, float, float, float]:
    """A jittered bounding box for a shape of `size` at `position`."""
    lo, hi = SIZE_RANGE[size]
    side = rng.uniform(lo, hi) * image_size
    col, row = POSITIONS[position]

    def centre(index: int) -> float:
        edge = MARGIN * image_size + side / 2
        base = (edge, image_size / 2, image_size - edge)[index]
        return base + rng.uniform(-JITTER, JITTER) * image_size

    cx, cy = centre(col), centre(row)
    return (cx - side / 2, cy - side / 2, cx + side / 2, cy + side / 2)


def render(scene: Scene, image_size: int = IMAGE_SIZE) -> Image.Image:
    """Draw a scene as an anti-aliased RGB image."""
    big = image_size * SUPERSAMPLE
    img = Image.new("RGB", (big, big), PALETTE[scene.background])
    box = tuple(v * SUPERSAMPLE for v in scene.box)
    draw_shape(ImageDraw.Draw(img), scene.shape, box,  # type: ignore[arg-type]
               PALETTE[scene.colour])
    return img.resize((image_size, image_size), Image.Resampling.BOX)


def random_scene(rng: random.Random, triples: list[tuple[str, str, str]]) -> Scene:
    shape, colour, background = rng.choice(triples)
    size = rng.choice(SIZES)
    position = rng.choice(list(POSITIONS))
    return Scene(shape, colour, background, size, position, place(size, position, rng))


_SIZE_WORDS = {
    "small": ("small", "small", "little", "tiny"),
    "big": ("big", "big", "large", "huge"),
}
_CENTRE_WORDS = ("in the centre", "in the center", "in the middle")


def _article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


def _position_phrase(position: str, rng: random.Random) -> str:
    if position == "centre":
        return rng.choice(_CENTRE_WORDS)
    if position in ("left", "right"):
        return rng.choice((f"on the {position}", f"at the {position}", f"on the {position} side"))
    if position in ("top", "bottom"):
        return rng.choice((f"at the {position}", f"at the {position}", f"near the {position}"))
    return rng.choice((f"in the {position}", f"in the {position} corner", f"at the {position}"))


def caption(scene: Scene, rng: random.Random, full: bool = False) -> str:
    """A natural caption; unless `full`, size, position or background are sometimes left out."""
    size = rng.choice(_SIZE_WORDS[scene.size]) if full or rng.random() < 0.9 else ""
    pos = _position_phrase(scene.position, rng) if full or rng.random() < 0.9 else ""
    bg = scene.background if full or rng.random() < 0.92 else ""
    noun = " ".join(w for w in (size, scene.colour, scene.shape) if w)
    subject = f"{_article(noun)} {noun}"
    where = f" {pos}" if pos else ""
    if not bg:
        return f"{subject}{where}"
    template = rng.randrange(4)
    if template == 0:
        return f"{subject}{where} on {_article(bg)} {bg} background"
    if template == 1:
        return f"{subject}{where}, {bg} background"
    if template == 2:
        return f"{_article(bg)} {bg} background with {subject}{where}"
    return f"{subject} on {bg}{where}".replace(f"on {bg} on the", f"on {bg}, on the")


def eval_prompt(scene: Scene) -> str:
    """The fixed caption used for evaluation prompts (template: '... on a X background')."""
    pos = "in the centre" if scene.position == "centre" else (
        f"on the {scene.position}" if scene.position in ("left", "right") else
        f"at the {scene.position}" if scene.position in ("top", "bottom") else
        f"in the {scene.position}")
    noun = f"{scene.size} {scene.colour} {scene.shape}"
    bg = scene.background
    return f"{_article(noun)} {noun} {pos} on {_article(bg)} {bg} background"
