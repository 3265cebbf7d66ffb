"""The compiled calls behind fast mode: UNet forward and VAE decode wrappers.

`install_unet` / `install_vae` replace `unet.forward` / `vae.decode` by instance attributes that
call a `torch.compile`d version of the original, so the module keeps its type (`.config`,
`.dtype`, `isinstance` all still work) and `remove_fast_mode` only has to drop the attribute.
See fast_mode.py for why outputs are cloned and timesteps normalised.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
import weakref
from types import TracebackType
from typing import TYPE_CHECKING, Any

from desktop_app.pipeline import collector
from desktop_app.pipeline.backend import fast_mode_cache
from desktop_app.pipeline.backend.fast_mode_cache import PROMPT_WINDOW
from desktop_app.pipeline.backend.memory import weights_dtype
from desktop_app.pipeline.tokens import CHUNK_LENGTH

if TYPE_CHECKING:
    from desktop_app.pipeline.backend.fast_mode import FastModeConfig, FastModeState

log = logging.getLogger(__name__)

_LIVE_CALLS: weakref.WeakSet[_CompiledCall] = weakref.WeakSet()  # for forget_compiled_code
UNET = "UNet"  # the compiled calls' names, as the compile record and the notices have them
VAE = "VAE decode"
# While a compile runs (it blocks the worker for up to two minutes), a progress update this often.
COMPILE_TICK_S = 1.0
# What a compile takes when this machine has not timed it yet: (name, found in the cache) →
# seconds. H100/H200 runs, 2026-11-26/27: UNet 55–67 s (SD1.5), 96–112 s (SDXL); VAE decode
# 14–24 s; from the cache 15 s and 2 s (SD1.5).
EXPECTED_S = {(UNET, False): 90.0, (UNET, True): 20.0, (VAE, False): 20.0, (VAE, True): 5.0}
MAX_TICK_FRACTION = 0.95  # a compile running past its estimate holds here until it ends

# What one compile is for: (width, height, batch) for the VAE decode, and for the UNet also the
# prompt embeddings' length in tokens (77 per 75-token chunk: a longer prompt is a new shape).
Shape = tuple[int, ...]


def install_unet(unet: Any, state: FastModeState, config: FastModeConfig) -> None:
    import torch

    graphs = config.cuda_graphs and _is_cuda(unet)
    compiled = torch.compile(unet.forward, **compile_kwargs(config, graphs))
    call = _CompiledCall(UNET, unet.forward, compiled, state, config.sdpa_backend,
                         cuda_graphs=graphs)

    def forward(sample: Any, timestep: Any, *args: Any, return_dict: bool = True,
                **kwargs: Any) -> Any:
        timestep = _timestep_tensor(timestep, sample)
        text = kwargs.get("encoder_hidden_states", args[0] if args else None)
        tokens = int(text.shape[1]) if torch.is_tensor(text) and text.dim() == 3 else 0
        out = call((sample.shape[-1] * 8, sample.shape[-2] * 8, sample.shape[0], tokens),
                   sample, timestep, *args, return_dict=False, **kwargs)
        noise = out[0].clone() if call.cuda_graphs else out[0]
        if not return_dict:
            return (noise,)
        from diffusers.models.unets.unet_2d_condition import UNet2DConditionOutput

        return UNet2DConditionOutput(sample=noise)

    _wrap(state, unet, "forward", forward)
    state.applied.append("compiled UNet" + (" + CUDA graphs" if graphs else ""))


def install_vae(vae: Any, state: FastModeState, config: FastModeConfig) -> None:
    import torch
    from diffusers.models.autoencoders.vae import DecoderOutput

    if not hasattr(vae, "decode"):
        return
    if vae.dtype == torch.float16 and getattr(vae.config, "force_upcast", False):
        # SDXL's VAE overflows in fp16; the pipeline would convert it to fp32 and back around
        # every decode (new weight tensors each time: recompiles, re-recorded graphs). Keep it in
        # fp32 for good; the wrapper below casts the latents.
        vae.to(torch.float32)
        state.restore.append(lambda: vae.to(torch.float16))
        state.applied.append("fp32-resident VAE")
    eager = vae.decode
    graphs = config.vae_cuda_graphs and _is_cuda(vae)

    def decode_sample(z: Any) -> Any:
        return eager(z, return_dict=False)[0]

    compiled = torch.compile(decode_sample, **compile_kwargs(config, graphs))
    call = _CompiledCall(VAE, decode_sample, compiled, state, config.sdpa_backend,
                         cuda_graphs=graphs)

    def decode(z: Any, return_dict: bool = True, generator: Any = None) -> Any:
        z = z.to(weights_dtype(vae))
        image = call((z.shape[-1] * 8, z.shape[-2] * 8, z.shape[0]), z)
        image = image.clone() if call.cuda_graphs else image
        return DecoderOutput(sample=image) if return_dict else (image,)

    _wrap(state, vae, "decode", decode)
    state.applied.append("compiled VAE decode")


def _wrap(state: FastModeState, module: Any, attribute: str, wrapper: Any) -> None:
    """Shadow `module.<attribute>` with an instance attribute; recorded in the state, so that
    removing (restore) and detaching (fast_mode.detach_fast_mode) both find every wrapper."""
    setattr(module, attribute, wrapper)
    state.wrapped.append((module, attribute))
    state.restore.append(lambda: vars(module).pop(attribute, None))


def compile_kwargs(config: FastModeConfig, cuda_graphs: bool) -> dict[str, Any]:
    """`torch.compile` arguments. Inductor takes either a mode or an options dict, not both;
    with extra `inductor_options` the mode becomes its option ("reduce-overhead" is exactly
    `triton.cudagraphs`)."""
    kwargs: dict[str, Any] = {"backend": config.backend, "fullgraph": config.fullgraph,
                              "dynamic": False}
    if config.inductor_options and config.backend == "inductor":
        kwargs["options"] = {"triton.cudagraphs": cuda_graphs, **dict(config.inductor_options)}
    else:
        kwargs["mode"] = "reduce-overhead" if cuda_graphs else None
    return kwargs


def _is_cuda(module: Any) -> bool:
    return bool(next(module.parameters()).device.type == "cuda")


def _timestep_tensor(timestep: Any, sample: Any) -> Any:
    import torch

    if not torch.is_tensor(timestep):
        return torch.tensor(float(timestep), dtype=torch.float32, device=sample.device)
    if timestep.device != sample.device or timestep.dtype != torch.float32:
        return timestep.to(device=sample.device, dtype=torch.float32)
    return timestep


def forget_compiled_code() -> None:
    """After `torch._dynamo.reset()` (which drops the compiled code of every model, not only the
    one fast mode was removed from): every other fast-mode model compiles again on its next
    call, so it must announce that again ("Compiling … for W×H") rather than hang silently."""
    for call in list(_LIVE_CALLS):
        call.seen.clear()
        call.state.compiled.clear()


class _CompiledCall:
    """Calls a compiled function; announces first compiles, falls back to eager on failure.

    A compile or CUDA-graph failure (missing compiler discovered late, an unsupported op, a
    graph break under fullgraph) is logged, told to the user through `on_load`, and the call
    and all later ones run eager: the job still finishes.
    """

    def __init__(self, name: str, eager: Any, compiled: Any, state: FastModeState,
                 sdpa_backend: str, cuda_graphs: bool) -> None:
        self.name, self.eager, self.compiled, self.state = name, eager, compiled, state
        self.sdpa_backend, self.cuda_graphs = sdpa_backend, cuda_graphs
        self.seen: set[tuple[Any, ...]] = set()
        self.failed = False
        _LIVE_CALLS.add(self)

    def __call__(self, size: Shape, *args: Any, **kwargs: Any) -> Any:
        import torch

        if self.failed:
            return self.eager(*args, **kwargs)
        key = (size, *_signature(args), *_signature(kwargs.values()))
        progress = self._announce(size) if key not in self.seen else None
        try:
            if self.cuda_graphs:
                torch.compiler.cudagraph_mark_step_begin()  # type: ignore[no-untyped-call]
            # A first call compiles: hundreds of thousands of new long-lived objects, so full
            # collections wait until it is done (collector.py: GUI stalls).
            with contextlib.ExitStack() as stack:
                if progress is not None:
                    stack.enter_context(collector.long_lived_work())
                    stack.enter_context(progress)
                stack.enter_context(_sdpa_context(self.sdpa_backend))
                out = self.compiled(*args, **kwargs)
        except Exception as exc:
            self._fail(exc)
            return self.eager(*args, **kwargs)
        if progress is not None:
            self.seen.add(key)
            self._finished(size, progress)
        return out

    def _announce(self, size: Shape) -> _CompileProgress:
        """Say that a compile starts and what it should take; the returned context keeps the
        progress moving while it runs."""
        state = self.state
        cached = fast_mode_cache.was_compiled(state.cache_dir, state.arch_key, self.name, size)
        known = fast_mode_cache.warm_seconds(state.cache_dir, state.arch_key, self.name, size)
        expected = known if cached and known else EXPECTED_S.get((self.name, cached), 60.0)
        if not cached and self.name == UNET:
            hint = "first time ~1–2 min"
        else:
            hint = f"{'cached' if cached else 'first time'}, about {max(1, round(expected))} s"
        stage = f"Compiling {self.name} for {_for(size)} ({hint})"
        state.notify(stage, 0.0, holds_cancel=True)
        return _CompileProgress(state, stage, expected, cached)

    def _finished(self, size: Shape, progress: _CompileProgress) -> None:
        seconds = progress.seconds()
        label = f"{self.name} {size[0]}×{size[1]}×{size[2]}{_longer_prompt(size, ', ')}"
        self.state.compile_seconds[label] = seconds
        if self.name == UNET:
            self.state.compiled.add(size)
        log.info("Fast mode: compiled %s in %.1f s", label, seconds)
        fast_mode_cache.record_compiled(self.state.cache_dir, self.state.arch_key, self.name, size,
                                        seconds if progress.cached else None)
        fast_mode_cache.save_mega_cache(self.state.cache_dir)
        self.state.notify(f"Compiled {self.name} for {_for(size)} in {seconds:.0f} s", 1.0)

    def _fail(self, exc: Exception) -> None:
        self.failed = True
        root: BaseException = exc
        while (inner := getattr(root, "inner_exception", None) or root.__cause__) is not None:
            root = inner
        text = str(root).strip().splitlines()
        message = f"{type(root).__name__}: {text[0][:200]}" if text else type(root).__name__
        log.warning("Fast mode: compiling the %s failed; running it eager", self.name,
                    exc_info=exc)
        if self.name == UNET:
            self.state.active = False
        self.state.reason = f"Compiling the {self.name} failed ({message}); it runs normally."
        self.state.notify(f"Fast mode: {self.state.reason}", 1.0)


def _for(size: Shape) -> str:
    """"512×512", or "512×512 and prompts of up to 150 tokens" for a longer prompt's shape
    (the number the prompt editor's token counter shows)."""
    return f"{size[0]}×{size[1]}{_longer_prompt(size, ' and ')}"


def _longer_prompt(size: Shape, joint: str) -> str:
    tokens = size[3] if len(size) > 3 else 0
    if tokens <= PROMPT_WINDOW:
        return ""
    return f"{joint}prompts of up to {tokens // PROMPT_WINDOW * CHUNK_LENGTH} tokens"


class _CompileProgress:
    """The context a compile runs in: a daemon thread sends `stage` with the seconds so far
    every COMPILE_TICK_S, as a fraction of `expected` (at most MAX_TICK_FRACTION), so that the
    progress bar moves during a compile that blocks the worker for up to two minutes. Leaving
    the context stops the thread before anything else is said (the end, or the failure)."""

    def __init__(self, state: FastModeState, stage: str, expected: float, cached: bool) -> None:
        self.state, self.stage, self.expected, self.cached = state, stage, expected, cached
        self.started = time.perf_counter()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._tick, name="compile-progress", daemon=True)

    def seconds(self) -> float:
        return time.perf_counter() - self.started

    def __enter__(self) -> _CompileProgress:
        self._thread.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self._stop.set()
        self._thread.join()

    def _tick(self) -> None:
        while not self._stop.wait(COMPILE_TICK_S):
            seconds = self.seconds()
            try:
                self.state.notify(f"{self.stage}: {seconds:.0f} s",
                                  min(MAX_TICK_FRACTION, seconds / self.expected),
                                  holds_cancel=True)
            except Exception:  # a progress message must never end the compile's job
                log.warning("Compile progress could not be reported", exc_info=True)
                return


def _signature(values: Any) -> tuple[Any, ...]:
    """Shapes and dtypes of the tensors in `values` (containers flattened): a recompile key."""
    import torch

    out: list[Any] = []
    for value in values:
        if torch.is_tensor(value):
            out.append((tuple(value.shape), str(value.dtype)))
        elif isinstance(value, dict):
            out.extend(_signature(value.values()))
        elif isinstance(value, (list, tuple)):
            out.extend(_signature(value))
        else:
            out.append(type(value).__name__)
    return tuple(out)


def _sdpa_context(backend: str) -> Any:
    if backend == "auto":
        return contextlib.nullcontext()
    from torch.nn.attention import SDPBackend, sdpa_kernel

    names = {"flash": SDPBackend.FLASH_ATTENTION, "efficient": SDPBackend.EFFICIENT_ATTENTION,
             "cudnn": SDPBackend.CUDNN_ATTENTION, "math": SDPBackend.MATH}
    return sdpa_kernel([names[backend], SDPBackend.MATH] if backend != "math" else [names[backend]])
