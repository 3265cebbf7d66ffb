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
from dataclasses import dataclass
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
                 measure: Callable[[Any], int] | None = None) -> None:
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
        if self._entries.pop(key, None) is not None and self._active == key:
            self._active = None

    def clear(self) -> None:
        self._entries.clear()
        self._active = None

    def _evict_to_budget(self, keep: ModelKey) -> None:
        while len(self._entries) > 1 and (len(self._entries) > self.max_entries
                                          or self.total_bytes > self.budget_bytes):
            oldest = next(k for k in self._entries if k != keep)
            evicted = self._entries.pop(oldest)
            self.evictions += 1
            log.info("model cache: evicted %s (%.0f MB)", oldest.path, evicted.nbytes / 1e6)
        if self.total_bytes > self.budget_bytes:
            log.warning("model cache: %s alone exceeds the RAM budget", keep.path)

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
