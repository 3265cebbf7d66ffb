"""An LRU cache of loaded pipelines kept in RAM, so switching back to a model is near-instant.

The worker asks `ModelCache.get_or_load(key, loader)`: a hit returns the pipeline object that is
already built (moving it back to the GPU if it was parked in RAM); a miss calls `loader()` and
evicts least-recently-used pipelines until the total stays within the byte budget (default: half
of the RAM available when the cache was made, via psutil). The active pipeline lives on its
device; the others are parked on the CPU (in RAM), never reloaded from disk.

VAE choices are applied on the cached entry (`set_vae`): the checkpoint's own ("baked") VAE is
kept aside, standalone VAEs are loaded once per entry, and switching between them only assigns
`pipe.vae` — the UNet and text encoders are untouched (same objects).
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

VAE_BAKED = "baked"
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
    """One cached pipeline and its VAE state. Mutated only by the worker thread."""

    key: ModelKey
    pipe: Any
    nbytes: int
    baked_vae: Any
    vae_key: str = VAE_BAKED
    vaes: dict[str, Any] = field(default_factory=dict)
    plan: Any = None  # the MemoryPlan last applied (None: apply everything next time)
    load_seconds: float = 0.0


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
                 measure: Callable[[Any], int] = pipeline_nbytes) -> None:
        self.budget_bytes = budget_bytes if budget_bytes is not None else default_budget_bytes()
        self.max_entries = max(1, max_entries)
        self._measure = measure
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
        pipe = loader()
        entry = CachedModel(key, pipe, self._measure(pipe), getattr(pipe, "vae", None),
                            load_seconds=time.perf_counter() - started)
        self._entries[key] = entry
        self._active = key
        self._evict_to_budget(keep=key)
        return entry

    def set_vae(self, entry: CachedModel, vae_key: str, loader: Callable[[], Any]) -> bool:
        """Use VAE `vae_key` ("baked" or a file's key) on `entry`; True if pipe.vae changed.

        `loader()` builds the standalone VAE (on the pipeline's device and dtype) the first time
        it is needed; the UNet and text encoders are never touched.
        """
        if vae_key == entry.vae_key:
            return False
        if vae_key == VAE_BAKED:
            vae = entry.baked_vae
        else:
            vae = entry.vaes.get(vae_key)
            if vae is None:
                vae = loader()
                entry.vaes[vae_key] = vae
                entry.nbytes += self._module_bytes(vae)
        entry.pipe.vae = vae
        entry.vae_key = vae_key
        entry.plan = None  # tiling/offload hooks must be re-applied to the new VAE
        return True

    def discard(self, key: ModelKey) -> None:
        """Drop one entry (e.g. after a failure left it in an unknown state)."""
        if self._entries.pop(key, None) is not None and self._active == key:
            self._active = None

    def clear(self) -> None:
        self._entries.clear()
        self._active = None

    def _module_bytes(self, module: Any) -> int:
        try:
            return sum(t.numel() * t.element_size()
                       for t in [*module.parameters(), *module.buffers()])
        except AttributeError:
            return 0

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
