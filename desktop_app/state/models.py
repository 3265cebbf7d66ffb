"""Which models and VAEs the parameter panel offers: a small provider interface.

The library (desktop_app.library) will supply the real catalog; until it is wired in,
`BuiltinModelProvider` offers the bundled demo model plus checkpoint files found in the user's
models folder. Nothing here loads a model or imports torch.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from desktop_app import paths
from desktop_app.pipeline.api import ModelFamily

CHECKPOINT_SUFFIXES = (".safetensors", ".ckpt")
DEMO_MODEL_NAME = "Demo model (bundled)"


@dataclass(frozen=True)
class ModelChoice:
    """One entry of the model picker. `path` None means the bundled demo model."""

    name: str
    path: str | None
    family: ModelFamily = ModelFamily.sd15
    default_size: int | None = None  # None: the family's native size

    @property
    def native_size(self) -> int:
        return self.default_size or self.family.native_size


@dataclass(frozen=True)
class VaeChoice:
    """One entry of the VAE picker. `path` None means the VAE inside the model."""

    name: str
    path: str | None


BUILTIN_VAE = VaeChoice("Built into the model", None)


class ModelProvider(Protocol):
    """Where the pickers get their entries; the library panel provides one later."""

    def models(self) -> list[ModelChoice]: ...

    def vaes(self) -> list[VaeChoice]: ...


def user_models_dir() -> Path:
    """Folder scanned for checkpoint files until the library takes over."""
    return paths.data_dir() / "models"


def guess_family(path: Path) -> ModelFamily:
    """A name-based guess used only by the built-in provider (the library reads the header)."""
    name = path.name.lower()
    if "xl" in name:
        return ModelFamily.sdxl
    if "768" in name and ("v2" in name or "sd2" in name):
        return ModelFamily.sd2_768_v
    return ModelFamily.sd15


def demo_choice() -> ModelChoice:
    """The bundled demo model's picker entry, with the size it was trained at (64×64)."""
    from desktop_app.library.detect import folder_native_size

    size = folder_native_size(paths.resource("models", "demo"))
    return ModelChoice(DEMO_MODEL_NAME, None, ModelFamily.sd15, default_size=size)


class BuiltinModelProvider:
    """The demo model plus `*.safetensors`/`*.ckpt` files in `user_models_dir()`."""

    def __init__(self, folder: Path | None = None) -> None:
        self._folder = folder

    def models(self) -> list[ModelChoice]:
        """The demo model first, then files sorted by name."""
        choices = [demo_choice()]
        folder = self._folder or user_models_dir()
        try:
            files = sorted(p for p in folder.iterdir() if p.suffix.lower() in CHECKPOINT_SUFFIXES)
        except OSError:
            files = []
        choices += [ModelChoice(p.stem, str(p), guess_family(p)) for p in files
                    if "vae" not in p.stem.lower()]
        return choices

    def vaes(self) -> list[VaeChoice]:
        """The built-in VAE, then files whose name contains "vae"."""
        folder = self._folder or user_models_dir()
        try:
            files = sorted(p for p in folder.iterdir() if p.suffix.lower() in CHECKPOINT_SUFFIXES
                           and "vae" in p.stem.lower())
        except OSError:
            files = []
        return [BUILTIN_VAE, *(VaeChoice(p.stem, str(p)) for p in files)]


SD1_SIZES = (512, 576, 640, 704, 768)
SDXL_BUCKETS: tuple[tuple[int, int], ...] = (
    (1024, 1024), (1152, 896), (896, 1152), (1216, 832), (832, 1216), (1344, 768), (768, 1344),
)


def size_presets(family: ModelFamily, native_size: int | None = None) -> list[tuple[int, int]]:
    """Width×height presets that the family was trained around."""
    if family is ModelFamily.sdxl:
        return list(SDXL_BUCKETS)
    if family is ModelFamily.sd2_768_v:
        return [(768, 768), (896, 768), (768, 896), (1024, 768), (768, 1024)]
    presets = [(s, s) for s in SD1_SIZES] + [(768, 512), (512, 768), (640, 512), (512, 640)]
    if native_size and (native_size, native_size) not in presets:
        presets.insert(0, (native_size, native_size))
    return presets
