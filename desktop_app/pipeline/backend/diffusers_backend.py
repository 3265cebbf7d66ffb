"""The diffusers engine behind the GUI worker and the CLI (the `Backend` protocol of api.py).

One job, linearly: resolve the seed → load (or reuse) the model, swapping only the VAE when
that is all that changed → encode the prompts A1111-style → for each of `batch_count` pipeline
calls: CPU noise per image (seed+i), a fresh scheduler from the model's own config, the
denoising loop with a step callback (progress in real model evaluations, a cheap preview of
image 0, the cancel check) → our own VAE decode (latents cast to the VAE's dtype, which may be
float32 under a float16 UNet) → PNG with metadata, written atomically by a writer thread
while the next batch denoises; the job returns only when all its images are on disk.

Cancel raises `GenerationCancelled` from the step callback: the loop stops at once, the VAE
decode never runs, nothing more is written (earlier batches of the job are kept), and the
pipeline stays usable for the next job.
"""

from __future__ import annotations

import itertools
import logging
import os
import time
import warnings
from concurrent.futures import Future, ThreadPoolExecutor, wait
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
from PIL import Image

from desktop_app.errors import ErrorKind, UserError, friendly_error
from desktop_app.gallery import storage
from desktop_app.gallery.metadata import ImageMetadata, save_png
from desktop_app.pipeline.api import (
    CancelToken,
    DeviceInfo,
    GeneratedImage,
    GenerationCancelled,
    GenerationRequest,
    GenerationResult,
    LoadCallback,
    StepCallback,
    StepUpdate,
)
from desktop_app.pipeline.backend.cpu_threads import CpuThreads
from desktop_app.pipeline.backend.device import plan_device
from desktop_app.pipeline.backend.fast_mode import sync_fast_mode, worth_compiling_ahead
from desktop_app.pipeline.backend.loading import LoadedModel
from desktop_app.pipeline.backend.memory import (
    execution_device,
    is_out_of_memory,
    weights_dtype,
)
from desktop_app.pipeline.backend.model_cache import ModelSwitcher
from desktop_app.pipeline.backend.noise import batch_noise
from desktop_app.pipeline.backend.png_scanlines import filtered_scanlines
from desktop_app.pipeline.backend.previews import PreviewCosts, StepCapture, to_preview
from desktop_app.pipeline.backend.samplers import build_scheduler, quiet_known_warnings
from desktop_app.pipeline.backend.text_encoding import Conditioning, PromptCache

log = logging.getLogger(__name__)

THREAD_PROBE_STEPS = 3  # throwaway steps per thread count when choosing CPU threads
COMPILE_AHEAD_STEPS = 2  # fast mode, ahead of a job: compile (1st UNet call), CUDA graph (2nd)
IMAGE_WRITERS = 2  # threads that encode and write PNGs; a batch's images are written in parallel


class _StepReporter:
    """The `callback_on_step_end`: cancel check, progress, preview of image 0.

    Progress counts model evaluations: the pipeline calls back once per entry of its timestep
    list, which has two entries per step for second-order samplers (Heun, DPM2), so
    `step = index + 1` of `pipe.num_timesteps` is exact.

    Previews are paced by their cost (`PreviewCosts`): each one is timed as it is made (GPU
    time on CUDA) and the next waits until that cost / `PREVIEW_BUDGET` has passed since it
    started, so they take at most that share of the batch — a linear map still previews every
    step, a TAESD or VAE decode every few. `preview_interval_s` (fast mode) is a floor on the
    gap; the first preview comes one gap after the batch starts (at step 1 when nothing is
    known yet). The last step always has one unless `final_preview` is False (fast mode on
    CUDA: the image itself follows within milliseconds, and the last preview cost a decode on
    the GPU's critical path plus a wait for the GPU that left it idle until the final decode
    was launched). On CUDA the preview's copy to the host is started asynchronously and
    published once done, a step or more later (the last step's at once), so previews never
    stall the GPU queue.
    """

    def __init__(self, cancel: CancelToken, on_step: StepCallback, capture: StepCapture,
                 previewer: Any, batch_index: int, batch_total: int,
                 preview_interval_s: float = 0.0, final_preview: bool = True,
                 costs: PreviewCosts | None = None) -> None:
        self.cancel, self.on_step, self.capture = cancel, on_step, capture
        self.previewer, self.batch_index, self.batch_total = previewer, batch_index, batch_total
        self.preview_interval_s, self.final_preview = preview_interval_s, final_preview
        self.costs = costs if costs is not None else PreviewCosts()
        # (host copy, start and end events, latent shape) of a CUDA preview not yet shown
        self._pending: tuple[torch.Tensor, Any, Any, tuple[int, ...]] | None = None
        self._preview_at = time.perf_counter()

    def __call__(self, pipe: Any, index: int, timestep: Any, kwargs: dict[str, Any]) -> Any:
        self.cancel.raise_if_cancelled()
        total = int(pipe.num_timesteps)
        preview = self._preview(kwargs["latents"], last=index + 1 >= total)
        self.on_step(StepUpdate(index + 1, total, self.batch_index, self.batch_total, preview))
        self.cancel.raise_if_cancelled()  # a cancel during this step's report stops before the next
        return kwargs

    def _preview(self, latents: torch.Tensor, *, last: bool) -> Any:
        if self.previewer is None:
            return None
        shown = self._finished_preview()  # first, so that its GPU time counts below
        if last and not self.final_preview:
            return shown
        source = self.capture.preview_latents(latents)
        shape = tuple(source.shape)
        now = time.perf_counter()
        gap = max(self.preview_interval_s, self.costs.gap(self.previewer, shape))
        if not last and now - self._preview_at < gap:
            return shown
        self._preview_at = now
        try:
            if source.device.type == "cuda":
                made = self._cuda_preview(source, shape, last)
                return made if made is not None else shown
            if source.device.type == "mps":  # time the preview, not the step queued before it
                torch.mps.synchronize()
            started = time.perf_counter()
            image = to_preview(self.previewer.rgb(source))
        except Exception as exc:  # a preview must never cost the image itself
            self._drop_previews(exc)
            return None
        self.costs.record(self.previewer, shape, time.perf_counter() - started)
        return image

    def _cuda_preview(self, source: torch.Tensor, shape: tuple[int, ...], last: bool) -> Any:
        """Decode and start the copy to the host; show the previous preview if its copy is
        done, or this one at once (waiting for it) at the last step."""
        event: Any = torch.cuda.Event  # untyped in torch's stubs
        start, end = event(enable_timing=True), event(enable_timing=True)
        start.record()
        host = self.previewer.rgb(source).to("cpu", non_blocking=True)
        end.record()
        ready, self._pending = self._pending, (host, start, end, shape)
        if last:
            return self._show(self._pending, wait=True)
        return None if ready is None else self._show(ready, wait=True)

    def _finished_preview(self) -> Any:
        """The preview whose copy to the host started at an earlier step, once that copy is
        done; never waits. Throttled previews so show up a step after they were made, not one
        gap later (when the next one is made)."""
        if self._pending is None or not self._pending[2].query():
            return None
        return self._show(self._pending, wait=False)

    def _show(self, pending: tuple[torch.Tensor, Any, Any, tuple[int, ...]], *,
              wait: bool) -> Any:
        host, start, end, shape = pending
        if wait:
            end.synchronize()
        if self._pending is pending:
            self._pending = None
        try:
            gpu_ms = start.elapsed_time(end)
        except RuntimeError:  # the timing is best effort; the preview itself is fine
            log.debug("No GPU time for a preview", exc_info=True)
        else:
            self.costs.record(self.previewer, shape, gpu_ms / 1000.0)
        return to_preview(host)

    def _drop_previews(self, exc: Exception) -> None:
        """A failed preview decode (out of memory for a full-VAE preview on a full GPU, say)
        switches previews off for the rest of this batch; the denoising goes on."""
        self.previewer = None
        self._pending = None
        oom = is_out_of_memory(exc)
        log.warning("Live preview failed (%s); no more previews in this batch",
                    "out of memory" if oom else type(exc).__name__, exc_info=not oom)
        if oom:
            _release_cached_memory()


def _translate(exc: BaseException) -> UserError:
    """A UserError for any failure during a job; out-of-memory gets its own kind and hint."""
    error = friendly_error(exc)  # recognises out-of-memory errors (kind out_of_memory, OOM_HINT)
    if error.kind is ErrorKind.out_of_memory:
        _release_cached_memory()
    return error


def _release_cached_memory() -> None:
    """After running out of GPU memory: hand the allocator's cached blocks back, so that what
    comes next (the next job, the other programs on the GPU) has them."""
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


class Decoded(NamedTuple):
    """One decoded image, and its PNG scanlines when the GPU that decoded it filtered them
    (`png_scanlines`: then the PNG encoder only deflates; None: it filters on the CPU)."""

    image: Image.Image
    scanlines: np.ndarray | None = None


@torch.no_grad()
def decode_latents(pipe: Any, latents: torch.Tensor) -> list[Decoded]:
    """Full VAE decode to PIL images; latents are cast to the VAE's own dtype first."""
    vae = pipe.vae
    config = vae.config
    latents = latents.to(dtype=weights_dtype(vae))
    mean, std = getattr(config, "latents_mean", None), getattr(config, "latents_std", None)
    if mean is not None and std is not None:  # SDXL variants that normalise their latents
        shape = (1, latents.shape[1], 1, 1)
        mean_t = torch.tensor(mean).view(shape).to(latents.device, latents.dtype)
        std_t = torch.tensor(std).view(shape).to(latents.device, latents.dtype)
        latents = latents * std_t / config.scaling_factor + mean_t
    else:
        latents = latents / config.scaling_factor
    image = vae.decode(latents, return_dict=False)[0]
    return to_decoded(image, denormalize=pipe.image_processor.config.do_normalize,
                      scanlines=image.device.type == "cuda")


def to_decoded(image: torch.Tensor, *, denormalize: bool = True,
               scanlines: bool = False) -> list[Decoded]:
    """PIL images of a decoded batch (N, C, H, W), pixel for pixel what diffusers'
    `VaeImageProcessor.postprocess(image, output_type="pil")` makes, with the float → 8-bit
    step done where the image is: a quarter (fp32 VAE: an eighth) of the bytes cross to the host
    and no numpy pass over full-size float arrays runs on the CPU (0.06 s of an SDXL image
    on the H200 machine). Same operations in the same dtypes, so the rounding is identical.
    With `scanlines`, each image's PNG filtering is done there too (`png_scanlines`)."""
    if denormalize:
        image = (image * 0.5 + 0.5).clamp(0, 1)  # as VaeImageProcessor.denormalize
    pixels = (image.float() * 255).round().to(torch.uint8).permute(0, 2, 3, 1)
    rows = [_scanlines(one) if scanlines else None for one in pixels]
    return [Decoded(Image.fromarray(one[..., 0], mode="L") if one.shape[-1] == 1
                    else Image.fromarray(one), filtered)
            for one, filtered in zip(pixels.cpu().numpy(), rows, strict=True)]


def _scanlines(pixels: torch.Tensor) -> np.ndarray | None:
    """The PNG scanlines of one (H, W, C) uint8 image, or None when filtering them where the
    image is fails (out of memory after a large batch, say): the encoder then filters them
    itself. A shortcut never costs the image."""
    try:
        return filtered_scanlines(pixels.reshape(pixels.shape[0], -1), pixels.shape[2]
                                  ).cpu().numpy()
    except Exception as exc:
        log.warning("Filtering the PNG rows on %s failed; the CPU does it", pixels.device,
                    exc_info=True)
        if is_out_of_memory(exc):
            _release_cached_memory()
        return None


class DiffusersBackend:
    """Generates images with diffusers; keeps the last model loaded between jobs.

    `output` chooses where images go: None → the gallery (`outputs_dir()/YYYY-MM-DD/`), a
    folder → numbered files in it, a `.png` path → that file (then `-1`, `-2`, … for further
    images). `previews` False skips preview images (progress is still reported). TAESD
    weights for previews are looked up in `taesd_folder` (default `data_dir()/models/taesd`).
    """

    def __init__(self, output: str | Path | None = None, *, previews: bool = True,
                 taesd_folder: Path | None = None, fast_mode: bool = False) -> None:
        self.output = Path(output).expanduser() if output is not None else None
        # Fast mode (settings): compiled UNet + CUDA graphs on CUDA, eager elsewhere
        # (fast_mode.py). May be flipped between jobs; the next job applies or removes it.
        self.fast_mode = fast_mode
        self._preview_interval_s, self._final_preview = 0.0, True
        self.previews = previews
        self.taesd_folder = taesd_folder
        self._loaded: LoadedModel | None = None
        self._scheduler_config: dict[str, Any] = {}
        self._previewer: Any = None
        self._preview_costs = PreviewCosts()  # what each previewer's decode took, per size
        self._cpu_threads: CpuThreads | None = None  # made with the first job on the CPU
        self._prompts = PromptCache()  # the last job's embeddings, reused for the same prompts
        # LRU of loaded pipelines + VAE swaps + memory plan (low-VRAM mode applied in place).
        self._models = ModelSwitcher(previews=previews, taesd_folder=taesd_folder)
        # PNG encoding + fsync run here while the next batch denoises (zlib releases the GIL);
        # every job waits for its own images before it returns, so none is left half-written.
        self._writer = ThreadPoolExecutor(max_workers=IMAGE_WRITERS,
                                          thread_name_prefix="image-writer")

    # -- Backend protocol -------------------------------------------------------------------

    def device_info(self) -> DeviceInfo:
        """The device of the loaded model, or the one a load would use now."""
        if self._loaded is not None:
            return self._loaded.device.info
        return plan_device("auto").info

    def generate(self, request: GenerationRequest, cancel: CancelToken, on_step: StepCallback,
                 on_load: LoadCallback | None = None) -> GenerationResult:
        """Run one job; see the module docstring. Raises UserError or GenerationCancelled."""
        request = request.resolved()
        started = time.perf_counter()
        try:
            cancel.raise_if_cancelled()
            loaded = self._ensure_model(request, on_load)
            images = self._run(loaded, request, cancel, on_step)
        except (GenerationCancelled, UserError):
            raise
        except Exception as exc:
            raise self._failure("Generation failed", exc) from exc
        return GenerationResult(
            request=request, images=tuple(images), device=loaded.device.info.description,
            seconds=time.perf_counter() - started, model_name=loaded.name,
            model_hash=loaded.sha256,
        )

    def preload(self, request: GenerationRequest, on_load: LoadCallback | None = None) -> str:
        """Load what a job for `request` would load first — model, VAE, memory plan, the
        prompt's embeddings, on the CPU the thread count, in fast mode the compiled UNet and
        VAE decode for its size when an earlier run compiled that size (`_compile_ahead`) —
        so that the job starts denoising at once. Returns the model's name; raises UserError
        as `generate` does."""
        request = request.resolved()
        try:
            loaded = self._ensure_model(request, on_load)
            self._prepare(loaded, request, ahead=True)
            return loaded.name
        except UserError:
            raise
        except Exception as exc:
            raise self._failure("Loading the model ahead of its first job failed", exc) from exc

    def _failure(self, what: str, exc: Exception) -> UserError:
        """The UserError for an unexpected failure (logged with its traceback)."""
        log.exception("%s", what)
        if is_out_of_memory(exc):  # hooks freed; "Retry in low-VRAM mode" reuses the model
            return self._models.out_of_memory()  # type: ignore[no-any-return]
        return _translate(exc)

    @property
    def loaded(self) -> LoadedModel | None:
        """The model currently loaded (None before the first job)."""
        return self._loaded

    # -- model ------------------------------------------------------------------------------

    def _ensure_model(self, request: GenerationRequest, on_load: LoadCallback | None
                      ) -> LoadedModel:
        self._loaded = self._previewer = None  # lets a model evicted by the load be freed
        active = self._models.ensure(request, on_load)
        loaded: LoadedModel = active.loaded
        self._loaded = loaded
        fast = sync_fast_mode(loaded, self.fast_mode, request.width, request.height,
                              request.batch_size, on_load)
        self._preview_interval_s = fast.preview_interval_s if fast is not None else 0.0
        self._final_preview = fast.final_preview if fast is not None else True
        self._scheduler_config, self._previewer = active.scheduler_config, active.previewer
        return loaded

    # -- generation -------------------------------------------------------------------------

    def _run(self, loaded: LoadedModel, request: GenerationRequest, cancel: CancelToken,
             on_step: StepCallback) -> list[GeneratedImage]:
        pipe = loaded.pipe
        conditioning, shape = self._prepare(loaded, request, cancel)
        saving: list[Future[GeneratedImage]] = []
        try:
            for batch in range(request.batch_count):
                cancel.raise_if_cancelled()
                _raise_failed_save(saving)  # a full disk stops the job, as a direct write would
                first = batch * request.batch_size
                noise = batch_noise(request, first, request.batch_size, shape)
                scheduler = build_scheduler(request.sampler, self._scheduler_config, noise.seeds)
                pipe.scheduler = scheduler
                reporter = _StepReporter(cancel, on_step, StepCapture(scheduler),
                                         self._previewer, batch, request.batch_count,
                                         self._preview_interval_s, self._final_preview,
                                         self._preview_costs)
                latents = self._denoise(pipe, request, conditioning, noise.latents,
                                        request.steps, reporter, noise.generators)
                decoded = decode_latents(pipe, latents)
                pipe.maybe_free_model_hooks()
                saving += [self._save(loaded, request, first + offset, one)
                           for offset, one in enumerate(decoded)]
        finally:
            wait(saving)  # also on cancel or error: images already made are kept, not lost
            for future in saving:
                if future.exception() is not None:
                    log.error("Saving an image failed", exc_info=future.exception())
        return [future.result() for future in saving]  # raises the first failed save

    def _prepare(self, loaded: LoadedModel, request: GenerationRequest,
                 cancel: CancelToken | None = None, *, ahead: bool = False
                 ) -> tuple[Conditioning, tuple[int, int, int]]:
        """What a job needs before its first step, and what `preload` (`ahead`) does before
        the job: the prompts' embeddings, the latent shape and, on the CPU, the thread count;
        ahead of the job also fast mode's compile for its size."""
        conditioning = self._prompts.encode(loaded.pipe, request.prompt, request.negative_prompt,
                                            request.clip_skip)
        shape = _latent_shape(loaded.pipe, request)
        if ahead:  # first: the CPU thread timing below must not time a compile
            self._compile_ahead(loaded, request, conditioning, shape)
        self._settle_cpu_threads(loaded, request, conditioning, shape, cancel)
        return conditioning, shape

    def _compile_ahead(self, loaded: LoadedModel, request: GenerationRequest,
                       conditioning: Conditioning, shape: tuple[int, int, int]) -> None:
        """Fast mode, while the model loads ahead of its first job (at start, after a model
        switch): compile the UNet and the VAE decode for the job's size now, through the job's
        own call path (throwaway steps and a decode), so that the job finds them compiled.
        Only for a size an earlier run compiled (`worth_compiling_ahead`). Two steps: the first
        call compiles, the second records the CUDA graph. A failure here is only logged — the
        model is loaded, and the job compiles (or fails, with its message) as it would have."""
        guided = request.cfg_scale > 1  # classifier-free guidance doubles the UNet's batch
        unet_batch = request.batch_size * (2 if guided else 1)
        tokens = int(conditioning.prompt_embeds.shape[1])
        if not worth_compiling_ahead(loaded, request.width, request.height, unet_batch, tokens):
            return
        started = time.perf_counter()
        try:
            latents = self._throwaway_steps(loaded.pipe, request, conditioning, shape,
                                            COMPILE_AHEAD_STEPS)
            decode_latents(loaded.pipe, latents)
        except Exception as exc:
            log.warning("Compiling ahead of the first job failed; the job will compile",
                        exc_info=True)
            if is_out_of_memory(exc):
                _release_cached_memory()
        else:
            log.info("Fast mode: compiled ahead for %d×%d in %.1f s", request.width,
                     request.height, time.perf_counter() - started)

    def _settle_cpu_threads(self, loaded: LoadedModel, request: GenerationRequest,
                            conditioning: Conditioning, shape: tuple[int, int, int],
                            cancel: CancelToken | None = None) -> None:
        """On the CPU: the thread count for this model and size (cpu_threads.py), chosen
        before its first job's steps by timing a few throwaway ones (`cancel` is checked
        after each)."""
        if loaded.device.device != "cpu":
            return
        if self._cpu_threads is None:
            self._cpu_threads = CpuThreads(torch.get_num_threads(), torch.set_num_threads)
        pipe = loaded.pipe
        guided = request.cfg_scale > 1  # classifier-free guidance doubles the UNet's batch

        def work() -> float:
            return float(sum(p.numel() for p in pipe.unet.parameters()) * shape[1] * shape[2])

        def step_s() -> float:
            marks: list[float] = []

            def mark(_pipe: Any, _index: int, _timestep: Any, kwargs: dict[str, Any]) -> Any:
                marks.append(time.perf_counter())
                if cancel is not None:
                    cancel.raise_if_cancelled()
                return kwargs

            self._throwaway_steps(pipe, request, conditioning, shape, THREAD_PROBE_STEPS, mark)
            return min(b - a for a, b in itertools.pairwise(marks))  # step 1 also sets up

        self._cpu_threads.settle((loaded.path, shape, request.batch_size, guided), work, step_s)

    def _throwaway_steps(self, pipe: Any, request: GenerationRequest,
                         conditioning: Conditioning, shape: tuple[int, int, int], steps: int,
                         on_step: Any = None) -> torch.Tensor:
        """`steps` Euler steps from zero latents with the request's prompts, size, batch and
        guidance — the job's UNet calls, shape for shape — for timing or compiling; returns
        the latents."""
        pipe.scheduler = build_scheduler("Euler", self._scheduler_config, [0])
        return self._denoise(pipe, request, conditioning,
                             torch.zeros((request.batch_size, *shape)), steps, on_step)

    @staticmethod
    def _denoise(pipe: Any, request: GenerationRequest, conditioning: Conditioning,
                 latents: torch.Tensor, steps: int, on_step: Any,
                 generators: list[torch.Generator] | None = None) -> torch.Tensor:
        """The denoising loop of one pipeline call from `latents`; returns latents (no VAE
        decode). A job's batches and the throwaway steps (CPU thread timing, fast mode's
        compile ahead) all call the pipeline here, so what is compiled ahead is the job's call.

        Known harmless library warnings are silenced with `warnings.catch_warnings` (a class,
        not a `contextlib.contextmanager`: those cannot re-raise the frozen UserError).
        """
        device, dtype = execution_device(pipe), weights_dtype(pipe.unet)
        try:
            with warnings.catch_warnings():
                quiet_known_warnings()
                output = pipe(
                    **conditioning.pipeline_kwargs(request.batch_size),
                    latents=latents.to(device=device, dtype=dtype),
                    generator=generators,
                    num_inference_steps=steps,
                    guidance_scale=request.cfg_scale,
                    height=request.height,
                    width=request.width,
                    output_type="latent",
                    callback_on_step_end=on_step,
                )
        except BaseException:
            pipe.maybe_free_model_hooks()  # skipped by the pipeline when a callback raises
            raise
        return output.images  # type: ignore[no-any-return]

    def _save(self, loaded: LoadedModel, request: GenerationRequest, index: int,
              decoded: Decoded) -> Future[GeneratedImage]:
        """Name the file now (numbers follow the batch order), write it on a writer thread
        (in fast mode with the faster deflate: png_encode)."""
        seed = request.seed_for(index)
        fast = self.fast_mode
        meta = ImageMetadata.from_request(
            request, batch_index=index, model_name=loaded.name, model_hash=loaded.sha256,
            vae_name=loaded.vae_name, vae_hash=loaded.vae_sha256,
        )
        try:
            target = self._target(seed, index)
        except OSError as exc:
            raise _save_failed(f"the image in {self.output or storage.day_dir()}", exc) from exc

        image = decoded.image

        def write() -> GeneratedImage:
            try:
                path = save_png(image, target, meta, fast=fast, scanlines=decoded.scanlines)
            except OSError as exc:
                raise _save_failed(target.name, exc) from exc
            return GeneratedImage(path=str(path), seed=seed, width=image.width,
                                  height=image.height,
                                  variation_seed=request.variation_seed_for(index))
        return self._writer.submit(write)

    def _target(self, seed: int, index: int) -> Path:
        if self.output is None:
            return storage.new_image_path(seed)
        if self.output.suffix.lower() == ".png":
            if index == 0:
                return self.output
            return self.output.with_name(f"{self.output.stem}-{index}{self.output.suffix}")
        return _reserve_in(self.output, seed)


def _latent_shape(pipe: Any, request: GenerationRequest) -> tuple[int, int, int]:
    """(channels, height, width) of one image's latents."""
    factor = int(pipe.vae_scale_factor)
    return (int(pipe.unet.config.in_channels), request.height // factor,
            request.width // factor)


def _save_failed(what: str, exc: OSError) -> UserError:
    return UserError(ErrorKind.runtime, f"Could not save {what}: {exc.strerror or exc}",
                     "Check that the output folder exists, is writable and has free space.")


def _raise_failed_save(saving: list[Future[GeneratedImage]]) -> None:
    for future in saving:
        if future.done() and future.exception() is not None:
            future.result()


def _reserve_in(folder: Path, seed: int) -> Path:
    """A fresh `NNNNN-<seed>.png` directly in `folder`, reserved like the gallery's names."""
    folder.mkdir(parents=True, exist_ok=True)
    # Reserved names count too: earlier images of the job may still be on the writer thread.
    number = 1 + sum(1 for name in os.listdir(folder)
                     if storage.is_image_name(name) or name.endswith(storage.RESERVE_SUFFIX))
    return storage.reserve_numbered(folder, seed, number)
