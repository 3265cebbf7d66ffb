"""GPU suite: our engine vs raw diffusers, eager vs fast mode, peak VRAM, on random-weight models.

One prepared script for a GPU session (CI never has a GPU). For each family (SD1.5 512², SDXL
1024²; 30 steps, CFG 7.5, fp16, sampler Euler on both sides) it:
  1. builds the real architecture from our shipped configs (`resources/configs/<family>`) with
     random weights directly on the GPU, saves it as a diffusers folder and loads it back through
     our engine (`DiffusersBackend`, previews on) — the raw diffusers calls use the very same
     pipeline object, so both sides run the same weights. Previews are the linear latent→RGB
     map (what a fresh install has) or, with `--previews taesd`, a TAESD decoder of the
     default architecture with random weights (what a user who downloaded TAESD has);
     `--previews both` adds a TAESD alternation after each linear one (eager and fast);
  2. eager: raw `pipe(...)` + PNG save vs `backend.generate(...)`, alternated, R repeats
     (`--batch-count N`: one engine job of N images against N raw calls, each saving its PNG);
  3. fast mode (`apply_fast_mode` on the same pipeline): first call = compile time, then the
     same alternation; images compared with the eager ones of the same seed (mean absolute
     difference in 8-bit levels and PSNR; tolerance stated in MATCH_*);
  4. low-VRAM mode through the engine (model CPU offload), one image, peak VRAM;
  5. a second process with the same compile cache starts as the app does: the preload that
     compiles ahead (its seconds), then the first fast-mode image.
Peak VRAM (`torch.cuda.max_memory_allocated`) is recorded for every case. A time budget skips
remaining phases (listed in the JSON) so a run fits a 10-minute limit; `--quick` trims repeats.

    python -m benchmarks.gpu_suite --quick          # ~8 min on one H100
    python -m benchmarks.gpu_suite --smoke-cpu      # tiny models on the CPU: checks the script

Prints a table and a final JSON line. Without CUDA it says so and exits 0 (nothing measured).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from desktop_app.gallery.metadata import PNG_LEVEL  # noqa: E402
from desktop_app.pipeline.backend.fast_mode import SDPA_BACKENDS  # noqa: E402  (no torch import)

MATCH_MEAN_ABS = 2.0  # 8-bit levels
MATCH_PSNR_DB = 30.0
PROMPT = "a photo of an astronaut riding a horse on the moon, highly detailed"
NEGATIVE = "blurry, low quality"
FAMILIES = {"sd15": 512, "sdxl": 1024}


@dataclass
class Case:
    """One measured configuration."""

    family: str
    name: str  # e.g. "raw eager", "engine fast"
    seconds: list[float] = field(default_factory=list)
    steps: int = 0
    peak_gib: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def median_s(self) -> float:
        values = sorted(self.seconds)
        return values[len(values) // 2] if values else float("nan")

    @property
    def its(self) -> float:
        return self.steps / self.median_s if self.seconds else float("nan")


@dataclass
class Suite:
    args: argparse.Namespace
    started: float = field(default_factory=time.perf_counter)
    cases: list[Case] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def left(self) -> float:
        return float(self.args.budget_s - (time.perf_counter() - self.started))

    def allow(self, phase: str, need_s: float) -> bool:
        if self.left() >= need_s:
            return True
        self.skipped.append(f"{phase} (needs ~{need_s:.0f} s, {self.left():.0f} s left)")
        print(f"-- skipping {phase}: time budget", flush=True)
        return False


def _sync() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.synchronize()


def _reset_peak() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()


def _peak_gib() -> float:
    import torch

    return torch.cuda.max_memory_allocated() / 2**30 if torch.cuda.is_available() else 0.0


def build_random_folder(family: str, folder: Path, device: str, smoke: bool) -> None:
    """The family's architecture with random weights (fp16 on CUDA), saved as a diffusers folder."""
    import torch

    if smoke:
        from desktop_app.pipeline.backend.tiny import make_tiny_sd15_pipeline
        from tests.fixtures.tiny_models import make_tiny_sdxl_pipeline

        pipe = (make_tiny_sdxl_pipeline if family == "sdxl" else make_tiny_sd15_pipeline)()
        pipe.save_pretrained(str(folder), safe_serialization=True)
        return
    import diffusers
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    from desktop_app import paths

    configs = paths.resource("configs", family)
    dtype = torch.float16
    parts: dict[str, Any] = {}
    with torch.device(device):  # random init on the GPU: seconds instead of minutes
        torch.manual_seed(0)
        parts["unet"] = diffusers.UNet2DConditionModel.from_config(
            diffusers.UNet2DConditionModel.load_config(str(configs / "unet"))).to(dtype)
        parts["vae"] = diffusers.AutoencoderKL.from_config(
            diffusers.AutoencoderKL.load_config(str(configs / "vae"))).to(dtype)
        parts["text_encoder"] = CLIPTextModel(
            CLIPTextConfig.from_pretrained(str(configs / "text_encoder"))).to(dtype)
        if family == "sdxl":
            parts["text_encoder_2"] = CLIPTextModelWithProjection(
                CLIPTextConfig.from_pretrained(str(configs / "text_encoder_2"))).to(dtype)
    from transformers import CLIPTokenizer

    tokenizer_dir = str(paths.resource("tokenizer"))
    parts["tokenizer"] = CLIPTokenizer.from_pretrained(tokenizer_dir)
    scheduler_cls = diffusers.EulerDiscreteScheduler
    parts["scheduler"] = scheduler_cls.from_pretrained(str(configs), subfolder="scheduler")
    if family == "sdxl":
        parts["tokenizer_2"] = CLIPTokenizer.from_pretrained(tokenizer_dir, pad_token="!")
        pipe = diffusers.StableDiffusionXLPipeline(**parts)
    else:
        pipe = diffusers.StableDiffusionPipeline(**parts, safety_checker=None,
                                                 feature_extractor=None,
                                                 requires_safety_checker=False)
    pipe.save_pretrained(str(folder), safe_serialization=True)
    del pipe, parts
    torch.cuda.empty_cache()


SAVE_MS: list[float] = []  # every engine PNG write (encode + fsync), on its writer thread
ENCODE_MS: list[float] = []  # the encode alone (png_encode.encode) of each of those writes


def _time_engine_saves() -> None:
    """Wrap the engine's `save_png` and the PNG encoder (once per process) to record how long
    each write and its encode take: the part of a fast-mode image the GPU does not do. (The raw
    diffusers side saves with Pillow: neither is its.)"""
    from desktop_app.gallery import png_encode
    from desktop_app.pipeline.backend import diffusers_backend

    for owner, name, into in ((diffusers_backend, "save_png", SAVE_MS),
                              (png_encode, "encode", ENCODE_MS)):
        real = getattr(owner, name)
        if not getattr(real, "timed", False):
            setattr(owner, name, _timed(real, into))


def _timed(real: Any, into: list[float]) -> Any:
    def timed(*args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            return real(*args, **kwargs)
        finally:
            into.append((time.perf_counter() - started) * 1000)

    timed.timed = True  # type: ignore[attr-defined]
    return timed


class Runner:
    """Runs raw diffusers and our engine on one loaded model."""

    def __init__(self, family: str, folder: Path, out: Path, device: str, smoke: bool,
                 same_prompt: bool = False) -> None:
        from desktop_app.pipeline.backend.diffusers_backend import DiffusersBackend

        self.family, self.folder, self.out, self.device = family, folder, out, device
        self.same_prompt = same_prompt
        self.size = 64 if smoke else FAMILIES[family]
        self.steps = 3 if smoke else 30
        # Our own folder (empty: linear previews), so that weights a user keeps in the app's
        # data folder cannot change what is measured; `use_taesd` fills it.
        self.taesd_folder = out / "preview-decoders"
        self.backend = DiffusersBackend(out / "engine", previews=True,
                                        taesd_folder=self.taesd_folder)
        self.previews = 0
        _time_engine_saves()
        from diffusers import EulerDiscreteScheduler

        self.scheduler_config = EulerDiscreteScheduler.load_config(str(folder / "scheduler"))

    def close(self) -> str:
        """Drop the engine and its model, so the next family has the GPU to itself; says
        whether the model left memory and what stays allocated on the GPU."""
        import weakref

        import torch

        from desktop_app.pipeline import collector

        loaded = self.backend.loaded
        pipe = weakref.ref(loaded.pipe) if loaded is not None else lambda: None
        del loaded
        self.backend = None  # type: ignore[assignment]
        self._raw = self._raw_src = None
        collector.collect_all()  # also what fast mode's compile froze (collector.py)
        allocated = 0.0
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
            allocated = torch.cuda.memory_allocated() / 2**30
        return (f"{self.family}: model {'still in memory' if pipe() else 'freed'} after the "
                f"runs; {allocated:.2f} GiB left allocated on the GPU")

    def use_taesd(self, on: bool) -> None:
        """Previews from the next job on by a TAESD (TAESDXL) decoder of the default
        architecture with random weights, or (off) by the linear map: the engine picks up a
        decoder added to or removed from its folder at the next job."""
        import shutil

        from desktop_app.pipeline.backend.tiny import save_random_taesd

        is_xl = self.family == "sdxl"
        if on:
            save_random_taesd(self.taesd_folder, is_xl, self.device)
        else:
            shutil.rmtree(self.taesd_folder / ("taesdxl" if is_xl else "taesd"),
                          ignore_errors=True)

    def previewer_name(self) -> str:
        """The class of the previews the engine's last job made."""
        return type(self.backend._previewer).__name__

    def prompt(self, seed: int) -> str:
        """One prompt for every job with --same-prompt (the engine then reuses the last job's
        embeddings, as for "generate again"); else one per seed, so that it never does."""
        return PROMPT if self.same_prompt else f"{PROMPT}, take {seed}"

    def request(self, seed: int, low_vram: bool = False, batch_count: int = 1) -> Any:
        from desktop_app.pipeline.api import GenerationRequest

        return GenerationRequest(
            prompt=self.prompt(seed), negative_prompt=NEGATIVE, model=str(self.folder),
            sampler="Euler", steps=self.steps, cfg_scale=7.5, seed=seed, width=self.size,
            height=self.size, device=self.device, low_vram=low_vram, batch_count=batch_count)

    def engine(self, seed: int, low_vram: bool = False, on_load: Any = None,
               batch_count: int = 1) -> tuple[float, Any]:
        """One engine job of `batch_count` images; (seconds, uint8 array of the first)."""
        import numpy as np
        from PIL import Image

        from desktop_app.pipeline.api import CancelToken

        def on_step(update: Any) -> None:
            self.previews += update.preview is not None

        _sync()
        started = time.perf_counter()
        result = self.backend.generate(self.request(seed, low_vram, batch_count), CancelToken(),
                                       on_step, on_load)
        _sync()
        seconds = time.perf_counter() - started
        return seconds, np.asarray(Image.open(result.images[0].path).convert("RGB"))

    @property
    def pipe(self) -> Any:
        loaded = self.backend.loaded
        assert loaded is not None, "the engine loads the model on its first job"
        return loaded.pipe

    def raw_pipe(self) -> Any:
        """Plain diffusers on the engine's modules, as a diffusers user has it.

        Same UNet and text encoders (so fast mode's compiled UNet shows up here too). The VAE
        is shared when it has the model's dtype; the engine keeps SDXL's VAE in float32, so raw
        diffusers gets a float16 copy and does its own upcast around the decode, as it would.
        """
        import copy

        pipe = self.pipe
        if getattr(self, "_raw_src", None) is not pipe:
            components = dict(pipe.components)
            if pipe.vae.dtype != pipe.unet.dtype:
                components["vae"] = copy.deepcopy(pipe.vae).to(pipe.unet.dtype)
            if "safety_checker" in components:
                components["requires_safety_checker"] = False
            self._raw, self._raw_src = type(pipe)(**components), pipe
            self._raw.set_progress_bar_config(disable=True)
        return self._raw

    def raw(self, seed: int, batch_count: int = 1) -> tuple[float, Any]:
        """`batch_count` raw diffusers images on the same weights, each saved as PNG like a
        user would (Pillow, at the engine's zlib level); (seconds, uint8 array of the first)."""
        import numpy as np
        import torch
        from diffusers import EulerDiscreteScheduler

        pipe = self.raw_pipe()
        pipe.scheduler = EulerDiscreteScheduler.from_config(self.scheduler_config)
        _sync()
        started = time.perf_counter()
        images = []
        for index in range(batch_count):
            image = pipe(self.prompt(seed), negative_prompt=NEGATIVE,
                         num_inference_steps=self.steps, guidance_scale=7.5, width=self.size,
                         height=self.size,
                         generator=torch.Generator("cpu").manual_seed(seed + index)).images[0]
            image.save(self.out / f"raw-{seed + index}.png", compress_level=PNG_LEVEL)
            images.append(image)
        _sync()
        return time.perf_counter() - started, np.asarray(images[0].convert("RGB"))


def compare(a: Any, b: Any) -> dict[str, float | bool]:
    """Mean absolute difference (8-bit levels), PSNR (dB) and whether both are in tolerance."""
    import numpy as np

    x, y = a.astype(np.float64), b.astype(np.float64)
    mse = float(((x - y) ** 2).mean())
    psnr = 100.0 if mse == 0 else min(100.0, 10 * float(np.log10(255.0**2 / mse)))  # JSON-safe
    mean_abs = float(np.abs(x - y).mean())
    return {"mean_abs": round(mean_abs, 3), "psnr_db": round(psnr, 2),
            "match": bool(mean_abs <= MATCH_MEAN_ABS and psnr >= MATCH_PSNR_DB)}


def alternate(suite: Suite, runner: Runner, label: str, repeats: int) -> dict[str, Any]:
    """Raw and engine alternated (order swapped each round); returns seed-0 images."""
    count = suite.args.batch_count
    raw = Case(runner.family, f"raw {label}", steps=runner.steps * count)
    ours = Case(runner.family, f"engine {label}", steps=runner.steps * count)
    images: dict[str, Any] = {}
    previews_before, saves_before, encodes_before = runner.previews, len(SAVE_MS), len(ENCODE_MS)
    for round_ in range(repeats):
        order = [("raw", raw), ("engine", ours)]
        for kind, case in order if round_ % 2 == 0 else order[::-1]:
            _reset_peak()
            job = runner.raw if kind == "raw" else runner.engine
            seconds, image = job(seed=round_, batch_count=count)
            case.seconds.append(seconds)
            case.peak_gib = max(case.peak_gib, _peak_gib())
            if round_ == 0:
                images[kind] = image
    suite.cases += [raw, ours]
    save_partial(suite)
    ratio = ours.its / raw.its
    ours.extra["ratio_vs_raw"] = round(ratio, 4)
    ours.extra["previews_per_job"] = round((runner.previews - previews_before) / repeats, 2)
    saves, encodes = SAVE_MS[saves_before:], ENCODE_MS[encodes_before:]
    if saves and encodes:
        ours.extra["png_write_ms_median"] = round(statistics.median(saves), 2)
        ours.extra["png_encode_ms_median"] = round(statistics.median(encodes), 2)
    write = (f", engine PNG write {ours.extra['png_write_ms_median']} ms (encode "
             f"{ours.extra['png_encode_ms_median']} ms)" if saves and encodes else "")
    print(f"   {label}: raw {raw.its:.2f} it/s, engine {ours.its:.2f} it/s, "
          f"engine/raw {ratio:.3f}{write}", flush=True)
    return images


def with_taesd_too(suite: Suite, runner: Runner, label: str) -> None:
    """`--previews both`: the same alternation again with TAESD previews, then back to linear."""
    if suite.args.previews != "both":
        return
    runner.use_taesd(True)
    alternate(suite, runner, f"{label}, TAESD round", suite.args.repeats)
    suite.cases[-1].extra["previewer"] = runner.previewer_name()
    runner.use_taesd(False)


def guarded(suite: Suite, phase: str, fn: Any, *args: Any) -> None:
    """Run one phase; a failure is recorded (and printed) and the suite goes on."""
    import traceback

    try:
        fn(*args)
    except Exception as exc:  # one broken phase must not lose the others
        traceback.print_exc()
        suite.notes.append(f"{phase} FAILED: {type(exc).__name__}: {exc}"[:400])
    save_partial(suite)


def profile_images(suite: Suite, runner: Runner, label: str) -> None:
    """cProfile one raw and one engine image: where the Python thread spends its wall time
    (waiting on the GPU, PNG encoding, fsync, callbacks). Appended to profiles.txt next to
    --json-out."""
    import cProfile
    import io
    import pstats

    folder = suite.args.json_out.parent if suite.args.json_out else runner.out
    for kind in ("raw", "engine"):
        profiler = cProfile.Profile()
        profiler.enable()
        (runner.raw if kind == "raw" else runner.engine)(seed=7)
        profiler.disable()
        text = io.StringIO()
        pstats.Stats(profiler, stream=text).sort_stats("cumulative").print_stats(40)
        path = folder / "profiles.txt"  # one file: a device run brings back only 8 files
        with path.open("a", encoding="utf-8") as out:
            out.write(f"\n==== {runner.family} {label} {kind} ====\n{text.getvalue()}")
        print(f"   profile of {kind} {label} appended to {path}", flush=True)


def run_family(suite: Suite, family: str, tmp: Path) -> None:
    args = suite.args
    device = "cpu" if args.smoke_cpu else "cuda"
    folder = tmp / f"{family}-random"
    if not folder.exists():
        started = time.perf_counter()
        build_random_folder(family, folder, device, args.smoke_cpu)
        suite.notes.append(f"{family}: built + saved random weights in "
                           f"{time.perf_counter() - started:.1f} s")
    runner = Runner(family, folder, tmp / family, device, args.smoke_cpu, args.same_prompt)
    (tmp / family).mkdir(exist_ok=True)
    runner.use_taesd(args.previews == "taesd")
    started = time.perf_counter()
    runner.engine(seed=100)  # load + warm-up (CUDA context, cuBLAS/cuDNN autotune)
    suite.notes.append(f"{family}: previews by {runner.previewer_name()}")
    load = Case(family, "engine load + first image", seconds=[time.perf_counter() - started],
                steps=runner.steps, peak_gib=_peak_gib())
    runner.raw(seed=100)
    suite.cases.append(load)
    print(f"== {family}: {runner.size}² {runner.steps} steps CFG 7.5", flush=True)
    eager = alternate(suite, runner, "eager", args.repeats)
    with_taesd_too(suite, runner, "eager")
    if args.profile:
        profile_images(suite, runner, "eager")
    if not args.skip_fast and suite.allow(f"{family} fast mode", args.fast_need_s[family]):
        guarded(suite, f"{family} fast mode", run_fast, suite, runner, eager)
    if not args.skip_lowvram and device == "cuda" and suite.allow(f"{family} low-VRAM", 60):
        guarded(suite, f"{family} low-VRAM", run_low_vram, suite, runner)
    suite.notes.append(runner.close())
    save_partial(suite)


def run_fast(suite: Suite, runner: Runner, eager: dict[str, Any]) -> None:
    from benchmarks.compile_cache import notices_into
    from desktop_app.pipeline.backend import fast_mode

    config = fast_mode.FastModeConfig(inductor_options=tuple(suite.args.inductor),
                                      sdpa_backend=suite.args.sdpa,
                                      cudnn_benchmark=suite.args.cudnn_benchmark,
                                      fp8=suite.args.fp8)
    if suite.args.smoke_cpu:
        # aot_eager = one full-graph trace, no code generation; the VAE is left eager (on the
        # CPU, aot_eager trips over group_norm on a non-contiguous input in the VAE attention).
        config = fast_mode.FastModeConfig(require_cuda=False, backend="aot_eager",
                                          compile_vae=False, fp8=suite.args.fp8)
    notices: list[str] = []
    state = fast_mode.apply_fast_mode(runner.backend.loaded, runner.size, runner.size, 1,  # type: ignore[arg-type]
                                      notices_into(notices), config)
    runner.backend.fast_mode = True  # the setting; each job keeps the state made above
    print(f"   fast mode: {state.reason}", flush=True)
    _reset_peak()
    seconds, _ = runner.engine(seed=100, on_load=notices_into(notices))  # compiles
    suite.cases.append(Case(runner.family, "engine fast: first image (compile)", [seconds],
                            runner.steps, _peak_gib(), {"notices": notices[:6],
                                                        "compile_s": state.compile_seconds}))
    runner.raw(seed=100)  # the raw call path at this shape (same UNet shapes: no recompile)
    fast = alternate(suite, runner, "fast", suite.args.repeats)
    with_taesd_too(suite, runner, "fast")
    if suite.args.profile:
        profile_images(suite, runner, "fast")
    from torch._dynamo.utils import counters

    # Graphs compiled so far in this process (UNet + VAE per shape): more means recompiles.
    suite.cases[-1].extra["dynamo_graphs"] = int(counters["stats"]["unique_graphs"])
    for kind in ("raw", "engine"):
        match = compare(fast[kind], eager[kind])
        next(c for c in suite.cases if c.family == runner.family
             and c.name == f"{kind} fast").extra["vs_eager"] = match
        print(f"   {kind} fast vs eager image: {match}", flush=True)
    runner.backend.fast_mode = False
    fast_mode.remove_fast_mode(runner.backend.loaded)  # type: ignore[arg-type]


def run_low_vram(suite: Suite, runner: Runner) -> None:
    _reset_peak()
    seconds, _ = runner.engine(seed=0, low_vram=True)  # reload with CPU offload + first image
    first_peak = _peak_gib()
    _reset_peak()
    again, _ = runner.engine(seed=1, low_vram=True)
    suite.cases.append(Case(runner.family, "engine low-VRAM", [again], runner.steps,
                            max(first_peak, _peak_gib()), {"load_and_first_s": round(seconds, 2)}))
    print(f"   low-VRAM: {runner.steps / again:.2f} it/s, peak {_peak_gib():.2f} GiB", flush=True)


def warm_compile_child(family: str, folder: Path) -> None:
    """In a fresh process with the same DESKTOP_APP_HOME, as the app starts: the model loaded
    (an eager image), fast mode on, the preload that compiles ahead (the app's warm-up), then
    the first fast-mode image."""
    runner = Runner(family, folder, folder.parent / "warm", "cuda", smoke=False)
    (folder.parent / "warm").mkdir(exist_ok=True)
    runner.engine(seed=100)
    from desktop_app.pipeline.backend import fast_mode

    runner.backend.fast_mode = True
    _sync()
    started = time.perf_counter()
    runner.backend.preload(runner.request(101))
    _sync()
    preload = time.perf_counter() - started
    seconds, _ = runner.engine(seed=101)
    state = fast_mode.fast_mode_state(runner.backend.loaded)  # type: ignore[arg-type]
    assert state is not None
    print(json.dumps({"warm_preload_s": round(preload, 2),
                      "warm_first_fast_image_s": round(seconds, 3),
                      "compile_s": state.compile_seconds}))


def run_warm_cache(suite: Suite, tmp: Path) -> None:
    folder = tmp / "sd15-random"
    cmd = [sys.executable, "-m", "benchmarks.gpu_suite", "--warm-child", str(folder)]
    started = time.perf_counter()
    out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True,
                         timeout=max(60.0, suite.left()))
    line = (out.stdout.strip().splitlines() or ["{}"])[-1]
    data = json.loads(line) if line.startswith("{") else {"error": out.stderr[-500:]}
    suite.cases.append(Case("sd15", "second start: preload compiling ahead (warm cache)",
                            [float(data.get("warm_preload_s", "nan"))], 30, 0.0,
                            {**data, "process_s": round(time.perf_counter() - started, 1)}))
    suite.cases.append(Case("sd15", "second start: first fast image after the preload",
                            [float(data.get("warm_first_fast_image_s", "nan"))], 30, 0.0))
    print(f"   second start, warm compile cache: {data}", flush=True)


def result(suite: Suite) -> dict[str, Any]:
    return {"benchmark": "gpu_suite", "env": environment(),
            "tolerance": {"mean_abs": MATCH_MEAN_ABS, "psnr_db": MATCH_PSNR_DB},
            "inductor_options": dict(suite.args.inductor),
            "sdpa": suite.args.sdpa, "cudnn_benchmark": suite.args.cudnn_benchmark,
            "fp8": suite.args.fp8,
            "batch_count": suite.args.batch_count, "same_prompt": suite.args.same_prompt,
            "previews": suite.args.previews,
            "cases": [{**asdict(c), "median_s": round(c.median_s, 4), "its": round(c.its, 2)}
                      for c in suite.cases],
            "skipped": suite.skipped, "notes": suite.notes,
            "wall_s": round(time.perf_counter() - suite.started, 1)}


def save_partial(suite: Suite) -> None:
    """With --json-out, the results so far: a run cut off by its time limit keeps them."""
    if suite.args.json_out:
        suite.args.json_out.write_text(json.dumps(result(suite), indent=1))


def print_table(suite: Suite) -> None:
    print("\n| family | case | median s/job | it/s | peak VRAM GiB | notes |")
    print("|---|---|---|---|---|---|")
    for c in suite.cases:
        notes = ", ".join(f"{k}={v}" for k, v in c.extra.items() if k != "notices")
        print(f"| {c.family} | {c.name} | {c.median_s:.3f} | {c.its:.2f} | {c.peak_gib:.2f} | "
              f"{notes} |")


def environment() -> dict[str, Any]:
    import diffusers
    import torch

    env = {"torch": torch.__version__, "diffusers": diffusers.__version__,
           "python": sys.version.split()[0]}
    if torch.cuda.is_available():
        env["gpu"] = torch.cuda.get_device_name()
        env["cuda"] = torch.version.cuda
    return env


def inductor_option(text: str) -> tuple[str, Any]:
    """NAME=VALUE with VALUE an int, a float, true/false or a string."""
    name, sep, raw = text.partition("=")
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE, got {text!r}")
    lowered = raw.strip().lower()
    if lowered in ("true", "false"):
        return name.strip(), lowered == "true"
    for kind in (int, float):
        try:
            return name.strip(), kind(raw)
        except ValueError:
            pass
    return name.strip(), raw


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="2 repeats; budget 540 s")
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument("--families", default="sd15,sdxl")
    parser.add_argument("--budget-s", type=float, default=None)
    parser.add_argument("--skip-fast", action="store_true")
    parser.add_argument("--skip-lowvram", action="store_true")
    parser.add_argument("--skip-warm", action="store_true")
    parser.add_argument("--smoke-cpu", action="store_true", help="tiny models on the CPU")
    parser.add_argument("--fast-need-s", type=float, help="seconds a fast-mode phase is "
                        "assumed to need (default: 150 SD1.5, 240 SDXL)")
    parser.add_argument("--profile", action="store_true", help="cProfile one raw and one "
                        "engine image per mode (files next to --json-out)")
    parser.add_argument("--inductor", type=inductor_option, action="append", default=[],
                        metavar="NAME=VALUE", help="extra torch._inductor.config setting for "
                        "the fast-mode compiles (repeatable), e.g. coordinate_descent_tuning=1")
    parser.add_argument("--batch-count", type=int, default=1, help="images per measured job "
                        "(engine: one job with this batch count; raw: that many calls)")
    parser.add_argument("--previews", default="linear", choices=("linear", "taesd", "both"),
                        help="the engine's previews: the linear latent→RGB map, a TAESD "
                             "decoder with random weights, or both (a TAESD alternation "
                             "after each linear one)")
    parser.add_argument("--same-prompt", action="store_true", help="one prompt for all jobs "
                        "(the engine reuses its embeddings); default: one per seed")
    parser.add_argument("--sdpa", default="auto", choices=SDPA_BACKENDS,
                        help="attention backend forced in the fast-mode compiles")
    parser.add_argument("--cudnn-benchmark", action="store_true", help="fast mode lets cuDNN "
                        "time its convolution algorithms per shape")
    parser.add_argument("--fp8", action="store_true", help="fast mode runs the UNet's "
                        "attention-block linears as FP8 matmuls (Ada/Hopper)")
    parser.add_argument("--json-out", type=Path, help="also write the results here, after "
                        "every phase")
    parser.add_argument("--warm-child", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.repeats = args.repeats or (2 if args.quick or args.smoke_cpu else 3)
    args.budget_s = args.budget_s or (540.0 if args.quick else 1800.0)
    args.fast_need_s = {"sd15": args.fast_need_s or 150.0, "sdxl": args.fast_need_s or 240.0}
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    import torch

    if args.warm_child:
        warm_compile_child("sd15", args.warm_child)
        return 0
    if not torch.cuda.is_available() and not args.smoke_cpu:
        print("gpu_suite: no CUDA GPU here; nothing measured. Run on a GPU machine: "
              "python -m benchmarks.gpu_suite --quick")
        print(json.dumps({"benchmark": "gpu_suite", "skipped": "no CUDA GPU"}))
        return 0
    suite = Suite(args)
    with tempfile.TemporaryDirectory(prefix="gpu-suite-") as tmp_name:
        tmp = Path(tmp_name)
        os.environ["DESKTOP_APP_HOME"] = str(tmp / "home")  # fresh compile cache: cold numbers
        for family in [f for f in args.families.split(",") if f]:
            if suite.allow(f"{family} eager", 90 if family == "sd15" else 150):
                guarded(suite, f"{family}", run_family, suite, family, tmp)
        if not (args.skip_warm or args.skip_fast or args.smoke_cpu) and "sd15" in args.families \
                and suite.allow("warm-cache second start", 90):
            guarded(suite, "warm-cache second start", run_warm_cache, suite, tmp)
    print_table(suite)
    for note in suite.notes:
        print(f"note: {note}")
    save_partial(suite)
    print(json.dumps(result(suite)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
