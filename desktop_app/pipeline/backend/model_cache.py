"""An LRU cache of loaded pipelines kept in RAM, so switching back to a model is near-instant.

The worker asks `ModelCache.get_or_load(key, loader)`: a hit returns the pipeline object that is
already built (moving it back to the GPU if it was parked in RAM); a miss calls `loader()` and
evicts least-recently-used pipelines until the total stays within the byte budget (default: half
of the RAM available when the cache was made, via psutil). The active pipeline lives on its
device; the others are parked on the CPU (in RAM), never reloaded from disk.

The cached value is whatever the loader returns (the backend caches `loading.LoadedModel`);
its pipeline is `value.pipe` (or the value itself). VAE changes are applied to the cached value
with `loading.swap_vae`, which keeps the checkpoint's own VAE aside, so the UNet and text
encoders are never reloaded.
"""

from __future__ import annotations

import logging
import os
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger(__name__)

RAM_FRACTION = 0.5
DEFAULT_MAX_ENTRIES = 4


@dataclass(frozen=True)
class ModelKey:
    """Identifies a loaded pipeline: the file (with its stat signature) and how it was built."""

    path: str
    size: int
    mtime_ns: int
    model_config: str | None = None
    prediction_type: str | None = None
    device: str = "cpu"
    dtype: str = "float32"

    @classmethod
    def for_file(cls, path: str, *, model_config: str | None = None,
                 prediction_type: str | None = None, device: str = "cpu",
                 dtype: str = "float32") -> ModelKey:
        """Key for a model path; a changed file (size/mtime) gets a new key."""
        st = os.stat(path)
        return cls(os.path.realpath(path), st.st_size, st.st_mtime_ns, model_config,
                   prediction_type, device, dtype)


@dataclass
class CachedModel:
    """One cached model (the loader's value) and its memory state. Worker thread only."""

    key: ModelKey
    value: Any
    nbytes: int
    plan: Any = None  # the MemoryPlan last applied (None: apply everything next time)
    load_seconds: float = 0.0
    extras: dict[str, Any] = field(default_factory=dict)  # the backend's per-model state

    @property
    def pipe(self) -> Any:
        return pipe_of(self.value)


def pipe_of(value: Any) -> Any:
    """The diffusers pipeline of a cached value (a LoadedModel or a bare pipeline)."""
    return getattr(value, "pipe", value)


def pipeline_nbytes(pipe: Any) -> int:
    """Bytes of all parameters and buffers of a pipeline's torch modules."""
    import torch

    total, seen = 0, set()
    for component in getattr(pipe, "components", {}).values():
        if not isinstance(component, torch.nn.Module):
            continue
        for tensor in [*component.parameters(), *component.buffers()]:
            if id(tensor) not in seen:
                seen.add(id(tensor))
                total += tensor.numel() * tensor.element_size()
    return total


def default_budget_bytes() -> int:
    """Half of the RAM available now (the cache holds parked pipelines in RAM)."""
    import psutil

    return int(psutil.virtual_memory().available * RAM_FRACTION)


class ModelCache:
    """LRU of CachedModel entries within a byte budget (see the module docstring)."""

    def __init__(self, budget_bytes: int | None = None,
                 max_entries: int = DEFAULT_MAX_ENTRIES,
                 measure: Callable[[Any], int] | None = None,
                 on_drop: Callable[[Any], None] | None = None) -> None:
        self.on_drop = on_drop  # told of each value leaving the cache, before it is freed
        self.budget_bytes = budget_bytes if budget_bytes is not None else default_budget_bytes()
        self.max_entries = max(1, max_entries)
        self._measure = measure or (lambda value: pipeline_nbytes(pipe_of(value)))
        self._entries: OrderedDict[ModelKey, CachedModel] = OrderedDict()
        self._active: ModelKey | None = None
        self.hits = 0
        self.misses = 0
        self.evictions = 0

    def __contains__(self, key: object) -> bool:
        return key in self._entries

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def total_bytes(self) -> int:
        return sum(e.nbytes for e in self._entries.values())

    def keys(self) -> list[ModelKey]:
        """Keys from least to most recently used."""
        return list(self._entries)

    def get_or_load(self, key: ModelKey, loader: Callable[[], Any]) -> CachedModel:
        """The cached entry for `key` (made active), loading it with `loader()` on a miss."""
        entry = self._entries.get(key)
        if entry is not None:
            self.hits += 1
            self._entries.move_to_end(key)
            self._activate(entry)
            return entry
        self.misses += 1
        self._park_active()
        started = time.perf_counter()
        value = loader()
        entry = CachedModel(key, value, self._measure(value),
                            load_seconds=time.perf_counter() - started)
        self._entries[key] = entry
        self._active = key
        self._evict_to_budget(keep=key)
        return entry

    def discard(self, key: ModelKey) -> None:
        """Drop one entry (e.g. after a failure left it in an unknown state)."""
        if key in self._entries:
            self._drop([key])

    def clear(self) -> None:
        self._drop(list(self._entries))

    def _evict_to_budget(self, keep: ModelKey) -> None:
        while len(self._entries) > 1 and (len(self._entries) > self.max_entries
                                          or self.total_bytes > self.budget_bytes):
            oldest = next(k for k in self._entries if k != keep)
            log.info("model cache: evicting %s (%.0f MB)", oldest.path,
                     self._entries[oldest].nbytes / 1e6)
            self._drop([oldest])
            self.evictions += 1
        if self.total_bytes > self.budget_bytes:
            log.warning("model cache: %s alone exceeds the RAM budget", keep.path)

    def _drop(self, keys: list[ModelKey]) -> None:
        """Remove entries and make sure their pipelines leave memory (see collector.free)."""
        from desktop_app.pipeline import collector

        values = [self._entries.pop(key).value for key in keys]
        if self._active in keys:
            self._active = None
        refs = collector.weak_refs(map(pipe_of, values))
        if self.on_drop is not None:
            list(map(self.on_drop, values))  # (a for loop's variable would keep the last alive)
        del values  # the last references (the switcher and backend let go before loading)
        collector.free(refs)

    def _park_active(self) -> None:
        if self._active is None or self._active not in self._entries:
            return
        entry = self._entries[self._active]
        if entry.key.device != "cpu" and not getattr(entry.plan, "cpu_offload", False):
            entry.pipe.to("cpu")  # keep it in RAM, free the GPU for the next model
        self._active = None

    def _activate(self, entry: CachedModel) -> None:
        if self._active == entry.key:
            return
        self._park_active()
        if entry.key.device != "cpu" and not getattr(entry.plan, "cpu_offload", False):
            entry.pipe.to(entry.key.device)
        self._active = entry.key


def _detach_dropped(value: Any) -> None:
    """A pipeline leaving the cache: break its fast-mode cycles so it is freed at once."""
    from desktop_app.pipeline.backend.fast_mode import detach_fast_mode

    detach_fast_mode(pipe_of(value))


@dataclass
class ActiveModel:
    """What a job needs from the switcher: the loaded model and its per-model helpers."""

    loaded: Any  # loading.LoadedModel
    scheduler_config: dict[str, Any]
    previewer: Any
    plan: Any  # memory.MemoryPlan applied for this job
    cache_hit: bool


class ModelSwitcher:
    """The backend's model manager: LRU cache + VAE swaps + memory plan, one call per job.

    `ensure(request)` returns the model for a request: a cache hit reuses the loaded pipeline
    (a changed VAE is swapped in without touching the UNet); a changed low-VRAM flag or image
    size only re-applies the memory plan in place. Lives in the worker thread.
    """

    def __init__(self, cache: ModelCache | None = None, *, previews: bool = True,
                 taesd_folder: Any = None) -> None:
        self.cache = cache if cache is not None else ModelCache()  # (an empty one is falsy)
        if self.cache.on_drop is None:
            self.cache.on_drop = _detach_dropped
        self.previews = previews
        self.taesd_folder = taesd_folder
        # Per family (SDXL or not): the previewer and the TAESD files it was made from.
        self._previewers: dict[bool, tuple[tuple[object, ...], Any]] = {}
        self.current: CachedModel | None = None

    def key_for(self, request: Any) -> ModelKey:
        """Cache key of a request's model (device resolved now; file stat signature)."""
        from desktop_app.pipeline.backend.device import plan_device
        from desktop_app.pipeline.backend.loading import default_model_path

        plan = plan_device(request.device)
        path = str(request.model) if request.model else str(default_model_path())
        dtype = str(plan.dtype).removeprefix("torch.")
        try:
            return ModelKey.for_file(os.path.expanduser(path), model_config=request.model_config,
                                     prediction_type=request.prediction_type,
                                     device=plan.device, dtype=dtype)
        except OSError:  # let the loader report the missing file with its own message
            return ModelKey(path, -1, -1, request.model_config, request.prediction_type,
                            plan.device, dtype)

    def ensure(self, request: Any, on_load: Any = None) -> ActiveModel:
        """Load or reuse the request's model, apply its VAE and memory plan."""
        from desktop_app.pipeline.api import ModelFamily
        from desktop_app.pipeline.backend.loading import load_model, swap_vae
        from desktop_app.pipeline.backend.memory import apply_plan, plan_memory, probe_memory

        key = self.key_for(request)
        hits = self.cache.hits

        def load() -> Any:
            loaded = load_model(request.model, model_config=request.model_config,
                                vae=request.vae, prediction_type=request.prediction_type,
                                device=request.device, low_vram=False, on_load=on_load)
            loaded.pipe.set_progress_bar_config(disable=True)
            return loaded

        self.current = None  # no reference left to a model the load below may evict
        entry = self.cache.get_or_load(key, load)
        loaded = entry.value
        entry.extras.setdefault("scheduler_config", dict(loaded.pipe.scheduler.config))
        entry.extras.setdefault("vae", request.vae)
        if entry.extras["vae"] != request.vae:
            swap_vae(loaded, request.vae)
            entry.extras["vae"] = request.vae
            entry.plan = None
        plan = plan_memory(probe_memory(key.device), loaded.family or ModelFamily.sd15,
                           request.width, request.height, request.batch_size,
                           force_low_vram=request.low_vram, dtype=key.dtype)
        apply_plan(loaded.pipe, plan, previous=entry.plan)
        entry.plan = plan
        self.current = entry
        return ActiveModel(loaded, entry.extras["scheduler_config"],
                           self._previewer(loaded, entry.extras), plan, self.cache.hits > hits)

    def _previewer(self, loaded: Any, extras: dict[str, Any]) -> Any:
        """The model's own previewer, else TAESD when its weights are there, else the linear
        map. A TAESD downloaded (or removed) while the app runs is picked up by the next job.
        Previewers live as long as their inputs, so that their measured costs (which pace the
        previews) carry over from job to job."""
        if not self.previews:
            return None
        from desktop_app.pipeline.backend.previews import (
            make_previewer,
            model_previewer,
            taesd_signature,
        )

        is_xl = getattr(loaded.pipe, "text_encoder_2", None) is not None
        # The model's own previews fit only its own VAE (not one swapped in from the library).
        own = None
        if loaded.vae_name:
            extras.pop("own_previewer", None)  # it holds the model's own VAE
        else:
            vae, own = extras.get("own_previewer", (None, None))
            if vae is not loaded.pipe.vae:
                own = model_previewer(loaded.path, is_xl, loaded.pipe.vae)
                extras["own_previewer"] = (loaded.pipe.vae, own)
        if own is not None:
            return own
        files = taesd_signature(is_xl, self.taesd_folder)
        made = self._previewers.get(is_xl)
        if made is None or made[0] != files:
            made = self._previewers[is_xl] = (files, make_previewer(is_xl, self.taesd_folder))
        return made[1]

    def out_of_memory(self) -> Any:
        """Clean up after an out-of-memory failure; the UserError to raise (hint: low VRAM)."""
        from desktop_app.pipeline.backend.memory import out_of_memory_error, recover_from_oom

        plan = None
        if self.current is not None:
            recover_from_oom(self.current.pipe)
            plan = self.current.plan
        return out_of_memory_error(plan)
