"""The one way to get a generation engine; torch-free until called.

The GUI worker and the CLI both call `create_backend()`; torch, diffusers and transformers are
imported only then (in the worker thread, after the window is shown), never at app start-up.
"""

from __future__ import annotations

import gc
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from desktop_app.pipeline.api import Backend

_collector_lock = threading.Lock()


def create_backend(output: str | Path | None = None, *, previews: bool = True,
                   fast_mode: bool = False) -> Backend:
    """A new diffusers backend. `output`: None → the gallery, else a folder or a `.png` path.

    Importing the backend is the slow part (a few seconds: torch, diffusers, and the classes a
    first job needs); the model itself is loaded by the first `generate` call and kept for the
    next ones.
    """
    with _first_heavy_import():
        from desktop_app.pipeline.backend.diffusers_backend import DiffusersBackend
        from desktop_app.pipeline.backend.loading import import_generation_modules

        import_generation_modules()
    return DiffusersBackend(output, previews=previews, fast_mode=fast_mode)


@contextmanager
def _first_heavy_import() -> Iterator[None]:
    """Keep Python's cyclic collector out of the first import of torch and diffusers.

    Those imports create about 700 000 long-lived objects. With the collector on, each full
    collection they trigger walks all of them while holding the GIL, so the GUI thread froze
    for 100–300 ms at a time while the worker imported (`benchmarks/gui_stall.py`). So the
    collector is off during the import, and afterwards `gc.freeze()` moves everything that
    exists into the permanent generation: later full collections (while loading, generating
    or compiling) walk only newer objects, 4 ms instead of 220 ms on dev-cpu. No model is
    loaded yet, so none is frozen; frozen objects are still freed by their reference counts,
    only cycles among them stay (the imports leave ~12 000 such objects, a few MB). Only the
    first call in a process does this; later ones import nothing.
    """
    with _collector_lock:
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
