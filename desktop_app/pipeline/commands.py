"""Headless engine commands: `generate`, `info`, `samplers` (registered by desktop_app.cli).

`generate` builds a validated GenerationRequest from the flags (bad values → exit 2 with one
line), runs it on the same engine as the GUI (`engine.create_backend`) and prints each written
path on its own line on stdout; progress goes to stderr (a live bar on a terminal, one line
per finished batch otherwise), so `desktop-app generate … | xargs` works.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, TextIO

from desktop_app import paths
from desktop_app.errors import ErrorKind, UserError, bad_input
from desktop_app.pipeline import api
from desktop_app.pipeline.api import CancelToken, GenerationRequest, LoadUpdate, StepUpdate

BAR_WIDTH = 30


def register(subparsers: Any) -> None:
    """Add `generate`, `info` and `samplers` to the CLI."""
    gen = subparsers.add_parser("generate", help="generate images from a prompt",
                                description="Generate images offline; prints each written path.")
    gen.add_argument("prompt", help="the prompt (A1111 syntax: (word:1.2), [word], BREAK)")
    gen.add_argument("--negative", default="", help="negative prompt")
    gen.add_argument("--model", help="checkpoint file or diffusers folder (default: demo model)")
    gen.add_argument("--model-config", help="diffusers config folder overriding detection")
    gen.add_argument("--vae", help="standalone VAE file to use instead of the model's own")
    gen.add_argument("--sampler", default=api.DEFAULT_SAMPLER,
                     help=f"sampler name (default {api.DEFAULT_SAMPLER!r}; see `samplers`)")
    gen.add_argument("--steps", type=int, default=25)
    gen.add_argument("--cfg", type=float, default=7.0, help="CFG scale")
    gen.add_argument("--seed", type=int, default=api.RANDOM_SEED, help="-1 = random")
    gen.add_argument("--width", type=int, default=None,
                     help="multiple of 8, 64–2048 (default: the model's native size)")
    gen.add_argument("--height", type=int, default=None,
                     help="multiple of 8, 64–2048 (default: the model's native size)")
    gen.add_argument("--batch", type=int, default=1, help="images per pipeline call")
    gen.add_argument("--batch-count", type=int, default=1, help="number of pipeline calls")
    gen.add_argument("--clip-skip", type=int, default=1)
    gen.add_argument("--variation-seed", type=int, help="variation seed (-1 = random)")
    gen.add_argument("--variation-strength", type=float, default=0.0)
    gen.add_argument("--prediction-type", choices=("epsilon", "v_prediction"))
    gen.add_argument("--device", default="auto", help="auto, cuda, mps or cpu")
    gen.add_argument("--low-vram", action="store_true", help="offload and tile to save memory")
    gen.add_argument("--out", help="output folder, or a .png path (default: the gallery)")
    gen.set_defaults(func=run_generate)

    info = subparsers.add_parser("info", help="show the generation parameters of an image")
    info.add_argument("image", help="PNG/JPEG/WebP file")
    info.add_argument("--json", action="store_true", help="print all fields as JSON")
    info.set_defaults(func=run_info)

    samplers = subparsers.add_parser("samplers", help="list the sampler names")
    samplers.set_defaults(func=run_samplers)


def _default_size(model: str | None) -> int:
    """The model's native size: 64 for the bundled demo model, 512 SD1, 768 SD2-v, 1024 SDXL."""
    from desktop_app.library.detect import native_size

    target = model if model is not None else paths.resource("models", "demo")
    return native_size(target) or 512


def request_from_args(args: argparse.Namespace) -> GenerationRequest:
    """The validated request the flags describe (raises UserError(bad_input))."""
    if args.width is None or args.height is None:
        size = _default_size(args.model)
        args.width = size if args.width is None else args.width
        args.height = size if args.height is None else args.height
    return GenerationRequest(
        prompt=args.prompt, negative_prompt=args.negative, model=args.model,
        model_config=args.model_config, vae=args.vae, sampler=args.sampler, steps=args.steps,
        cfg_scale=args.cfg, seed=args.seed, width=args.width, height=args.height,
        batch_size=args.batch, batch_count=args.batch_count, clip_skip=args.clip_skip,
        variation_seed=args.variation_seed, variation_strength=args.variation_strength,
        prediction_type=args.prediction_type, device=args.device, low_vram=args.low_vram,
    )


class ProgressBar:
    """Step progress on stderr: redrawn in place on a terminal, one line per batch otherwise."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.live = stream.isatty()

    def step(self, update: StepUpdate) -> None:
        done = update.step == update.total
        if self.live:
            filled = BAR_WIDTH * update.step // max(1, update.total)
            bar = "#" * filled + "-" * (BAR_WIDTH - filled)
            batch = (f" batch {update.batch_index + 1}/{update.batch_total}"
                     if update.batch_total > 1 else "")
            end = "\n" if done else ""
            self.stream.write(f"\r[{bar}] {update.step}/{update.total}{batch}{end}")
        elif done:
            self.stream.write(f"batch {update.batch_index + 1}/{update.batch_total}: "
                              f"{update.total}/{update.total} steps\n")
        self.stream.flush()

    def load(self, update: LoadUpdate) -> None:
        if self.live:
            self.stream.write(f"\r{update.stage}…".ljust(BAR_WIDTH + 20))
            if update.fraction >= 1.0:
                self.stream.write("\n")
            self.stream.flush()


def run_generate(args: argparse.Namespace) -> int:
    """`desktop-app generate`: exit 0 with the written paths on stdout."""
    request = request_from_args(args)
    if request.model is not None and not Path(request.model).expanduser().exists():
        raise UserError(ErrorKind.missing_file, f"Model not found: {request.model}",
                        "Check the path to the .safetensors file or diffusers folder.")
    from desktop_app.pipeline.engine import create_backend

    backend = create_backend(args.out, previews=False)
    bar = ProgressBar(sys.stderr)
    result = backend.generate(request, CancelToken(), bar.step, bar.load)
    for image in result.images:
        print(image.path, flush=True)
    return 0


def run_info(args: argparse.Namespace) -> int:
    """`desktop-app info IMAGE [--json]`: the parameters embedded in an image."""
    from desktop_app.gallery.metadata import format_a1111, read_image_metadata

    path = Path(args.image).expanduser()
    if not path.is_file():
        raise UserError(ErrorKind.missing_file, f"Image not found: {path}",
                        "Check the path to the image file.")
    meta = read_image_metadata(path)
    if meta is None:
        raise bad_input(f"{path.name} holds no generation parameters this app can read.",
                        "Only images made by this app, A1111, ComfyUI, InvokeAI or Fooocus "
                        "carry them.")
    if args.json:
        print(json.dumps(meta.to_json_dict(), indent=2, ensure_ascii=False, default=str))
    else:
        print(format_a1111(meta))
    return 0


def run_samplers(args: argparse.Namespace) -> int:
    """`desktop-app samplers`: one name a line."""
    for name in api.SAMPLER_NAMES:
        print(name)
    return 0
