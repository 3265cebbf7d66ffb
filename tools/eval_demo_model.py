"""Evaluate the bundled demo model on held-out prompts through the normal engine.

    .venv/bin/python tools/eval_demo_model.py [--model resources/models/demo]

1. Validates the pixel scorer on the training renderer's own images (must be ~100 %).
2. For every held-out (shape, colour, background) triple (never rendered in training; see
   tools/demo_data.py) builds prompts with a fixed size and position, generates them through
   `desktop_app.pipeline.engine.create_backend()` (default sampler, 25 steps, 64x64) at
   CFG 1, 2, 3, 5, 7, 9, and scores each image by plain pixel analysis:
   background = median of the border ring -> nearest palette colour; shape = largest connected
   region that differs from the background; its colour = median of its eroded pixels -> nearest
   palette colour; class = best IoU against the four shape templates drawn into its bounding
   box; position = bounding-box centre in a 3x3 grid.
3. Writes docs/demo_cfg_curve.png (adherence vs CFG, drawn with PIL) and docs/demo_samples.png
   (CFG 7 samples with their prompts), times 25-step generation, prints a JSON summary.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont
from scipy import ndimage

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(ROOT))
import demo_data  # noqa: E402
from demo_data import PALETTE, POSITIONS, Scene  # noqa: E402

CFGS = (1.0, 2.0, 3.0, 5.0, 7.0, 9.0)
METRICS = ("colour", "background", "shape", "position")
GOALS = {"colour": 0.90, "background": 0.90, "shape": 0.75, "position": 0.75}
SEED = 1000


def nearest_colour(rgb: np.ndarray) -> str:
    names = list(PALETTE)
    table = np.array([PALETTE[n] for n in names], dtype=np.float32)
    return names[int(np.argmin(((table - rgb) ** 2).sum(axis=1)))]


def template_mask(shape: str, box: tuple[int, int, int, int], size: int) -> np.ndarray:
    s = demo_data.SUPERSAMPLE
    img = Image.new("L", (size * s, size * s), 0)
    demo_data.draw_shape(ImageDraw.Draw(img), shape, tuple(v * s for v in box), 255)
    small = img.resize((size, size), Image.Resampling.BOX)
    return np.asarray(small) >= 128


def grid_cell(centre: float, size: int) -> int:
    if centre < 0.42 * size:
        return 0
    return 2 if centre > 0.58 * size else 1


def analyse(image: Image.Image) -> dict[str, object]:
    """What the image shows, by pixel analysis alone (see the module docstring)."""
    px = np.asarray(image.convert("RGB"), dtype=np.float32)
    size = px.shape[0]
    ring = np.ones(px.shape[:2], bool)
    ring[3:-3, 3:-3] = False
    bg_rgb = np.median(px[ring], axis=0)
    result: dict[str, object] = {"background": nearest_colour(bg_rgb), "colour": None,
                                 "shape": None, "position": None, "size": None}
    labels, count = ndimage.label(np.linalg.norm(px - bg_rgb, axis=2) > 60)
    if count == 0:
        return result
    areas = ndimage.sum(np.ones_like(labels), labels, index=range(1, count + 1))
    region = labels == (1 + int(np.argmax(areas)))
    if region.sum() < 12:
        return result
    core = ndimage.binary_erosion(region)
    result["colour"] = nearest_colour(np.median(px[core if core.sum() >= 4 else region], axis=0))
    ys, xs = np.nonzero(region)
    box = (int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1)
    ious = {}
    for shape in demo_data.SHAPES:
        tpl = template_mask(shape, box, size)
        ious[shape] = (tpl & region).sum() / max(1, (tpl | region).sum())
    result["shape"] = max(ious, key=lambda k: ious[k])
    col = grid_cell((box[0] + box[2]) / 2, size)
    row = grid_cell((box[1] + box[3]) / 2, size)
    result["position"] = next(name for name, cell in POSITIONS.items() if cell == (col, row))
    result["size"] = "big" if max(box[2] - box[0], box[3] - box[1]) > 0.4 * size else "small"
    return result


def score(scene: Scene, found: dict[str, object]) -> dict[str, bool]:
    return {
        "colour": found["colour"] == scene.colour,
        "background": found["background"] == scene.background,
        "shape": found["shape"] == scene.shape,
        "position": found["position"] == scene.position,
        "size": found["size"] == scene.size,
    }


def eval_scenes(per_triple: int) -> list[Scene]:
    rng = random.Random(SEED)
    scenes = []
    for shape, colour, background in demo_data.held_out_triples():
        for _ in range(per_triple):
            size, position = rng.choice(demo_data.SIZES), rng.choice(list(POSITIONS))
            scenes.append(Scene(shape, colour, background, size, position,
                                demo_data.place(size, position, rng)))
    return scenes


def mean_scores(rows: list[dict[str, bool]]) -> dict[str, float]:
    keys = (*METRICS, "size")
    out = {k: sum(r[k] for r in rows) / max(1, len(rows)) for k in keys}
    out["all_four"] = sum(all(r[k] for k in METRICS) for r in rows) / max(1, len(rows))
    return out


def check_scorer(count: int) -> dict[str, float]:
    """Score the renderer's own images (held-out and training triples alike)."""
    rng = random.Random(SEED + 1)
    rows = []
    for _ in range(count):
        scene = demo_data.random_scene(rng, demo_data.all_triples())
        rows.append(score(scene, analyse(demo_data.render(scene))))
    return mean_scores(rows)


def generate_all(model: str | None, scenes: list[Scene], cfg: float, seeds: int, steps: int,
                 out: Path, sampler: str | None = None) -> list[list[Image.Image]]:
    """One engine request per scene (batch of `seeds` images); returns the images."""
    from desktop_app.pipeline.api import CancelToken, GenerationRequest
    from desktop_app.pipeline.engine import create_backend

    backend = create_backend(out, previews=False)
    images = []
    for i, scene in enumerate(scenes):
        request = GenerationRequest(
            prompt=demo_data.eval_prompt(scene), model=model, steps=steps, cfg_scale=cfg,
            seed=SEED + 100 * i, width=demo_data.IMAGE_SIZE, height=demo_data.IMAGE_SIZE,
            batch_size=seeds, **({"sampler": sampler} if sampler else {}),
        )
        result = backend.generate(request, CancelToken(), lambda update: None)
        images.append([Image.open(img.path).convert("RGB") for img in result.images])
    return images


def measure_speed(model: str | None, steps: int, repeats: int, out: Path) -> dict[str, float]:
    """Seconds per 64x64 image, `steps` steps, CFG 7, one image per request, after a warm-up."""
    from desktop_app.pipeline.api import CancelToken, GenerationRequest
    from desktop_app.pipeline.engine import create_backend

    backend = create_backend(out, previews=False)
    times = []
    for i in range(repeats + 1):
        request = GenerationRequest(
            prompt="a big red circle in the centre on a white background", model=model,
            steps=steps, cfg_scale=7.0, seed=i, width=demo_data.IMAGE_SIZE,
            height=demo_data.IMAGE_SIZE)
        started = time.perf_counter()
        backend.generate(request, CancelToken(), lambda update: None)
        times.append(time.perf_counter() - started)
    return {"steps": steps, "median_s": round(statistics.median(times[1:]), 3),
            "min_s": round(min(times[1:]), 3), "first_call_s": round(times[0], 2),
            "load_average_1m": round(os.getloadavg()[0], 2)}


def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    return ImageFont.load_default(size=size)


def draw_curve(curve: dict[float, dict[str, float]], path: Path) -> None:
    """Adherence (%) against CFG scale, one line per metric, drawn with PIL."""
    w, h, left, right, top, bottom = 640, 400, 60, 150, 40, 50
    img = Image.new("RGB", (w, h), "white")
    d = ImageDraw.Draw(img)
    font = _font(13)
    x0, x1, y0, y1 = left, w - right, h - bottom, top
    cfgs = sorted(curve)

    def px(cfg: float, value: float) -> tuple[float, float]:
        fx = (cfg - cfgs[0]) / max(1e-9, cfgs[-1] - cfgs[0])
        return x0 + fx * (x1 - x0), y0 + value * (y1 - y0)

    for pct in range(0, 101, 20):
        _, y = px(cfgs[0], pct / 100)
        d.line([(x0, y), (x1, y)], fill=(225, 225, 225))
        d.text((x0 - 8, y), f"{pct}%", fill="black", font=font, anchor="rm")
    for cfg in cfgs:
        x, _ = px(cfg, 0)
        d.line([(x, y0), (x, y0 + 5)], fill="black")
        d.text((x, y0 + 8), f"{cfg:g}", fill="black", font=font, anchor="mt")
    d.line([(x0, y0), (x1, y0)], fill="black")
    d.line([(x0, y0), (x0, y1)], fill="black")
    d.text(((x0 + x1) / 2, h - 12), "CFG scale", fill="black", font=font, anchor="mm")
    d.text((w / 2, 14), "Demo model: held-out prompt adherence vs CFG", fill="black",
           font=font, anchor="mm")
    colours = {"colour": (220, 30, 35), "background": (35, 75, 220), "shape": (35, 165, 60),
               "position": (245, 130, 25), "all_four": (20, 20, 20)}
    for i, (metric, colour) in enumerate(colours.items()):
        points = [px(cfg, curve[cfg][metric]) for cfg in cfgs]
        d.line(points, fill=colour, width=3 if metric == "all_four" else 2)
        for x, y in points:
            d.ellipse([x - 3, y - 3, x + 3, y + 3], fill=colour)
        ly = top + 20 + 22 * i
        d.line([(x1 + 15, ly), (x1 + 40, ly)], fill=colour, width=3)
        d.text((x1 + 46, ly), metric.replace("_", " "), fill="black", font=font, anchor="lm")
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path)


def draw_grid(images: list[Image.Image], prompts: list[str], path: Path, columns: int = 6) -> None:
    """Samples upscaled 2x with their prompts underneath."""
    cell, text_h = 2 * demo_data.IMAGE_SIZE, 54
    pad = 8
    rows = (len(images) + columns - 1) // columns
    width = columns * (cell + 2 * pad + 40)
    grid = Image.new("RGB", (width, rows * (cell + text_h + pad) + pad), "white")
    d = ImageDraw.Draw(grid)
    font = _font(11)
    col_w = width // columns
    for i, (img, prompt) in enumerate(zip(images, prompts, strict=False)):
        cx = (i % columns) * col_w + col_w // 2
        y = pad + (i // columns) * (cell + text_h + pad)
        grid.paste(img.resize((cell, cell), Image.Resampling.LANCZOS), (cx - cell // 2, y))
        words, lines, line = prompt.split(), [], ""
        for word in words:
            if len(line) + len(word) + 1 > 26:
                lines.append(line)
                line = word
            else:
                line = f"{line} {word}".strip()
        lines.append(line)
        for j, text in enumerate(lines[:4]):
            d.text((cx, y + cell + 3 + 12 * j), text, fill="black", font=font, anchor="mt")
    path.parent.mkdir(parents=True, exist_ok=True)
    grid.save(path)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--model", default=str(ROOT / "resources" / "models" / "demo"),
                   help="diffusers folder; 'default' = the engine's own default (no --model)")
    p.add_argument("--per-triple", type=int, default=4,
                   help="prompts per held-out triple (4: 192 images per CFG)")
    p.add_argument("--seeds", type=int, default=2, help="images per prompt")
    p.add_argument("--steps", type=int, default=25)
    p.add_argument("--cfgs", default=",".join(f"{c:g}" for c in CFGS))
    p.add_argument("--sampler", help="an A1111 sampler name (default: the engine's default)")
    p.add_argument("--speed-repeats", type=int, default=5, help="0 skips the speed check")
    p.add_argument("--docs", type=Path, default=ROOT / "docs", help="where the PNGs go")
    p.add_argument("--json-out", type=Path, help="also write the summary here")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    model = None if args.model == "default" else args.model
    summary: dict[str, object] = {"scorer_on_ground_truth": check_scorer(400)}
    print("scorer on ground truth:", json.dumps(summary["scorer_on_ground_truth"]), flush=True)
    scenes = eval_scenes(args.per_triple)
    curve: dict[float, dict[str, float]] = {}
    samples: list[list[Image.Image]] = []
    with tempfile.TemporaryDirectory() as tmp:
        for cfg in (float(c) for c in args.cfgs.split(",")):
            started = time.time()
            images = generate_all(model, scenes, cfg, args.seeds, args.steps, Path(tmp) / str(cfg),
                                  args.sampler)
            rows = [score(s, analyse(im))
                    for s, ims in zip(scenes, images, strict=True) for im in ims]
            curve[cfg] = mean_scores(rows)
            print(f"cfg {cfg:g}: " + " ".join(f"{k} {v:.0%}" for k, v in curve[cfg].items())
                  + f" ({len(rows)} images, {time.time() - started:.0f}s)", flush=True)
            if cfg == 7.0 or not samples:
                samples = images
        if args.speed_repeats:
            summary["speed_64px"] = measure_speed(model, 25, args.speed_repeats, Path(tmp) / "sp")
    at7 = curve.get(7.0, curve[max(curve)])
    first = curve[min(curve)]
    summary.update({
        "images_per_cfg": len(scenes) * args.seeds,
        "held_out_triples": len(scenes) // max(1, args.per_triple), "steps": args.steps,
        "sampler": args.sampler or "engine default",
        "curve": {f"{k:g}": v for k, v in curve.items()},
        "goals_at_cfg7": {k: {"value": round(at7[k], 3), "goal": g, "met": at7[k] >= g}
                          for k, g in GOALS.items()},
        "adherence_rises_cfg1_to_7": at7["all_four"] > first["all_four"],
    })
    draw_curve(curve, args.docs / "demo_cfg_curve.png")
    picks = [ims[0] for ims in samples][::args.per_triple][:24]
    prompts = [demo_data.eval_prompt(s) for s in scenes][::args.per_triple][:24]
    draw_grid(picks, prompts, args.docs / "demo_samples.png")
    text = json.dumps(summary, indent=None)
    if args.json_out:
        args.json_out.write_text(json.dumps(summary, indent=2))
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
