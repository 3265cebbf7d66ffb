"""Python's cyclic garbage collector around the engine's big one-off allocations. Torch-free.

A full collection walks every tracked object while holding the GIL, so the GUI thread waits for
it. Two things in the worker create hundreds of thousands of long-lived objects at once: the
first import of torch and diffusers (~716 000) and each `torch.compile` of fast mode (~400 000
for the test UNet on the CPU). Left alone, the collector walks them again and again while they
are made (stalls growing to 200+ ms, `benchmarks/gui_stall.py`, `benchmarks/compile_stall.py`)
and every full collection afterwards costs as much (350 ms on dev-cpu after one compile).

So: `first_import` keeps the collector off during the first import and `gc.freeze()`s what it
made (no model exists yet); `long_lived_work` holds back full collections during a compile,
then collects once and freezes the survivors, so later collections walk only newer objects.
Frozen objects are still freed by their reference counts; only cycles among them stay. A
compile's freeze takes in the models loaded at that time, so `free` is called after dropping a
model: a model that reference counting did not free (a cycle) is collected, unfreezing first if
a compile froze it.
"""

from __future__ import annotations

import gc
import logging
import sys
import threading
import weakref
from collections.abc import Iterable, Iterator
from contextlib import contextmanager, suppress
from typing import Any

log = logging.getLogger(__name__)

# A gen-2 threshold no compile reaches: full collections wait until the work is done.
HELD_THRESHOLD = 1 << 30

_lock = threading.Lock()
_held = 0  # nesting depth of long_lived_work (any thread)
_saved_threshold: tuple[int, int, int] = (700, 10, 10)
_models_frozen = False  # a compile's freeze may have taken in loaded models


@contextmanager
def first_import() -> Iterator[None]:
    """Keep the collector out of the first import of torch and diffusers, then freeze.

    A full collection after the imports took 220 ms on dev-cpu, 4 ms once they are frozen; the
    cycles among the imports' own garbage stay (~12 000 objects, a few MB). Only the first call
    in a process (diffusers not imported yet) does anything. A caller that switched the
    collector off keeps it off.
    """
    with _lock:
        first = "diffusers" not in sys.modules
        was_enabled = gc.isenabled()
        if first:
            gc.disable()
        try:
            yield
        finally:
            if first:
                gc.freeze()
                if was_enabled:
                    gc.enable()


@contextmanager
def long_lived_work() -> Iterator[None]:
    """Hold back full collections while the body runs (a compile); afterwards collect once and
    freeze the survivors (dynamo's caches and graphs: they live as long as the process).

    Young collections go on, so short-lived garbage is still freed. Measured on dev-cpu with
    the test UNet (`benchmarks/compile_stall.py`): one collection of 350–430 ms at the end
    instead of ~10 during the compile growing to 220 ms, and every later full collection
    0.1–0.2 ms instead of 330–360 ms. With the collector switched off by the caller, nothing
    is collected or frozen.
    """
    global _held, _saved_threshold
    with _lock:
        _held += 1
        if _held == 1:
            _saved_threshold = gc.get_threshold()
            gc.set_threshold(_saved_threshold[0], _saved_threshold[1], HELD_THRESHOLD)
    try:
        yield
    finally:
        with _lock:
            _held -= 1
            if _held == 0:
                gc.set_threshold(*_saved_threshold)
                if gc.isenabled():
                    _collect_and_freeze()


def _collect_and_freeze() -> None:
    global _models_frozen
    gc.collect()
    gc.freeze()
    _models_frozen = True


def weak_refs(objects: Iterable[Any]) -> list[weakref.ref[Any]]:
    """Weak references to those of `objects` that allow them (for `free`)."""
    refs = []
    for obj in objects:
        with suppress(TypeError):  # ints, strings (tests cache plain values)
            refs.append(weakref.ref(obj))
    return refs


def free(refs: Iterable[weakref.ref[Any]]) -> bool:
    """Make sure the objects behind `refs`, whose last strong references the caller dropped, are
    gone; True when they are. Cheap when reference counting already freed them (the usual case
    for a pipeline: it has no cycles once fast mode is detached)."""
    refs = list(refs)
    if all(ref() is None for ref in refs):
        return True
    gc.collect()
    if _models_frozen and any(ref() is not None for ref in refs):
        log.info("A dropped model was frozen by a compile; collecting everything once")
        collect_all()
    alive = sum(ref() is not None for ref in refs)
    if alive:
        log.warning("%d dropped object(s) are still referenced and stay in memory", alive)
    return alive == 0


def collect_all() -> None:
    """A full collection that also reaches the objects compiles froze, for after their owner
    dropped them: `torch._dynamo.reset()` when fast mode is switched off (whatever of dynamo's
    or the CUDA-graph trees' sits in a reference cycle would stay otherwise, with the GPU
    memory it holds). Walks every object once (`benchmarks/compile_stall.py` times it)."""
    with _lock:
        if _models_frozen:
            gc.unfreeze()
            _collect_and_freeze()
        else:
            gc.collect()
