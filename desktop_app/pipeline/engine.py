"""The one way to get a generation engine; torch-free until called.

The GUI worker and the CLI both call `create_backend()`; torch, diffusers and transformers are
imported only then (in the worker thread, after the window is shown), never at app start-up.
"""

from __future__ import annotations

from pathlib import Path

from desktop_app.pipeline import collector
from desktop_app.pipeline.api import Backend


def create_backend(output: str | Path | None = None, *, previews: bool = True,
                   fast_mode: bool = False) -> Backend:
    """A new diffusers backend. `output`: None → the gallery, else a folder or a `.png` path.

    Importing the backend is the slow part (a few seconds: torch, diffusers, and the classes a
    first job needs); the model itself is loaded by the first `generate` call and kept for the
    next ones.
    """
    with collector.first_import():  # no GUI stalls from the collector (collector.py)
        from desktop_app.pipeline.backend.diffusers_backend import DiffusersBackend
        from desktop_app.pipeline.backend.loading import import_generation_modules

        import_generation_modules()
    return DiffusersBackend(output, previews=previews, fast_mode=fast_mode)
