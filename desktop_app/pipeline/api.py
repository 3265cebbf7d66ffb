"""The engine's torch-free surface: requests, results, step updates, cancel tokens, backends.

Everything here is importable without torch, so the GUI, the worker and the CLI can build and
validate requests, list samplers and talk about results before (or without) loading the
diffusion stack. Values that cross threads are frozen dataclasses holding plain data.
"""

from __future__ import annotations

import dataclasses
import enum
import secrets
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from desktop_app.errors import ErrorKind, UserError, bad_input

# A1111 sampler names, in the order A1111 lists them. The backend maps each to a diffusers
# scheduler built from the model's own scheduler config (desktop_app/pipeline/samplers.py).
SAMPLER_NAMES: tuple[str, ...] = (
    "DPM++ 2M",
    "DPM++ 2M Karras",
    "DPM++ SDE Karras",
    "DPM++ 2M SDE",
    "DPM++ 2M SDE Karras",
    "Euler a",
    "Euler",
    "LMS",
    "LMS Karras",
    "Heun",
    "DPM2",
    "DPM2 a",
    "DPM2 Karras",
    "DPM2 a Karras",
    "DDIM",
    "PLMS",
    "UniPC",
    "LCM",
)
DEFAULT_SAMPLER = "DPM++ 2M Karras"


def split_sampler_name(name: str) -> tuple[str, str | None]:
    """A1111 ≥1.9 writes "Sampler: DPM++ 2M, Schedule type: Karras": split our combined names."""
    if name.endswith(" Karras"):
        return name[: -len(" Karras")], "Karras"
    return name, None


def join_sampler_name(sampler: str, schedule_type: str | None) -> str:
    """Inverse of split_sampler_name; unknown schedule types keep the bare sampler name."""
    if schedule_type and schedule_type.lower() == "karras":
        combined = f"{sampler} Karras"
        if combined in SAMPLER_NAMES:
            return combined
    return sampler

STEPS_RANGE = (1, 150)
CFG_RANGE = (1.0, 30.0)
SIZE_RANGE = (64, 2048)
SIZE_MULTIPLE = 8
BATCH_SIZE_RANGE = (1, 16)
BATCH_COUNT_RANGE = (1, 100)
CLIP_SKIP_RANGE = (1, 12)
MAX_SEED = 2**32 - 1
RANDOM_SEED = -1

DEVICES = ("auto", "cuda", "mps", "cpu")


class ModelFamily(enum.Enum):
    """Architectures the engine knows how to load from a single file."""

    sd15 = "sd15"
    sd2_512 = "sd2-512"
    sd2_768_v = "sd2-768-v"
    sdxl = "sdxl"

    @property
    def is_xl(self) -> bool:
        return self is ModelFamily.sdxl

    @property
    def native_size(self) -> int:
        return {"sd15": 512, "sd2-512": 512, "sd2-768-v": 768, "sdxl": 1024}[self.value]

    @property
    def label(self) -> str:
        return {"sd15": "SD 1.x", "sd2-512": "SD 2.x 512", "sd2-768-v": "SD 2.x 768-v",
                "sdxl": "SDXL"}[self.value]


def _check_range(name: str, value: float, bounds: tuple[float, float], hint: str = "") -> None:
    low, high = bounds
    if not low <= value <= high:
        raise bad_input(f"{name} must be between {low:g} and {high:g} (got {value:g}).", hint)


def _check_size(name: str, value: int) -> None:
    _check_range(name, value, SIZE_RANGE)
    if value % SIZE_MULTIPLE:
        lower = value - value % SIZE_MULTIPLE
        upper = lower + SIZE_MULTIPLE
        raise bad_input(
            f"{name} {value} is not a multiple of {SIZE_MULTIPLE}.",
            f"Use {lower} or {upper}: the image is built from 8×8-pixel latent cells.",
        )


@dataclass(frozen=True)
class GenerationRequest:
    """Everything that determines an image; validated at construction, immutable afterwards.

    `model` is a path (single file or diffusers folder) or None for the bundled demo model.
    `seed` -1 means random: call `resolved()` to fix it before generating, so the seed used is
    recorded. Width and height must be multiples of 8 between 64 and 2048; other values are
    rejected with the two nearest valid sizes in the hint (never silently rounded).
    """

    prompt: str
    negative_prompt: str = ""
    model: str | None = None
    model_config: str | None = None
    vae: str | None = None
    sampler: str = DEFAULT_SAMPLER
    steps: int = 25
    cfg_scale: float = 7.0
    seed: int = RANDOM_SEED
    width: int = 512
    height: int = 512
    batch_size: int = 1
    batch_count: int = 1
    clip_skip: int = 1
    variation_seed: int | None = None
    variation_strength: float = 0.0
    prediction_type: str | None = None
    device: str = "auto"
    low_vram: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.prompt, str) or not isinstance(self.negative_prompt, str):
            raise bad_input("The prompt must be text.")
        if self.sampler not in SAMPLER_NAMES:
            raise bad_input(
                f"Unknown sampler {self.sampler!r}.",
                "Run `desktop-app samplers` to list the available ones.",
            )
        for name, value in (("Steps", self.steps), ("Seed", self.seed), ("Width", self.width),
                            ("Height", self.height), ("Batch size", self.batch_size),
                            ("Batch count", self.batch_count), ("Clip skip", self.clip_skip)):
            if isinstance(value, bool) or not isinstance(value, int):
                raise bad_input(f"{name} must be a whole number (got {value!r}).")
        _check_range("Steps", self.steps, STEPS_RANGE, "20–30 steps suit most samplers.")
        _check_range("CFG scale", self.cfg_scale, CFG_RANGE, "6–9 is the usual sweet spot.")
        if self.seed != RANDOM_SEED:
            _check_range("Seed", self.seed, (0, MAX_SEED), "Use -1 for a random seed.")
        _check_size("Width", self.width)
        _check_size("Height", self.height)
        _check_range("Batch size", self.batch_size, BATCH_SIZE_RANGE)
        _check_range("Batch count", self.batch_count, BATCH_COUNT_RANGE)
        _check_range("Clip skip", self.clip_skip, CLIP_SKIP_RANGE, "1 = last layer, 2 = common.")
        _check_range("Variation strength", self.variation_strength, (0.0, 1.0))
        if self.variation_seed is not None:
            _check_range("Variation seed", self.variation_seed, (RANDOM_SEED, MAX_SEED))
        if self.prediction_type not in (None, "epsilon", "v_prediction"):
            raise bad_input(
                f"Unknown prediction type {self.prediction_type!r}.",
                "Use 'epsilon' or 'v_prediction'.",
            )
        if self.device not in DEVICES:
            choices = ", ".join(DEVICES)
            raise bad_input(f"Unknown device {self.device!r}.", f"Use one of: {choices}.")

    def resolved(self) -> GenerationRequest:
        """A copy with random seeds (-1) replaced by concrete ones."""
        changes: dict[str, Any] = {}
        if self.seed == RANDOM_SEED:
            changes["seed"] = secrets.randbelow(MAX_SEED + 1)
        if self.variation_seed == RANDOM_SEED:
            changes["variation_seed"] = secrets.randbelow(MAX_SEED + 1)
        return dataclasses.replace(self, **changes) if changes else self

    def replace(self, **changes: object) -> GenerationRequest:
        """A validated copy with some fields changed."""
        return dataclasses.replace(self, **changes)  # type: ignore[arg-type]

    def to_dict(self) -> dict[str, object]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, object]) -> GenerationRequest:
        """Rebuild a request from `to_dict()` output, ignoring unknown keys (older/newer files)."""
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})  # type: ignore[arg-type]

    @property
    def image_count(self) -> int:
        return self.batch_size * self.batch_count

    def seed_for(self, index: int) -> int:
        """Seed of image `index` (0-based over all batches): seed+i, as A1111 does.

        With a variation strength above 0 every image keeps the main seed and the variation seed
        increments instead (A1111 behaviour).
        """
        if self.seed == RANDOM_SEED:
            raise ValueError("resolve the request first")
        if self.variation_strength > 0 and self.variation_seed is not None:
            return self.seed
        return (self.seed + index) % (MAX_SEED + 1)

    def variation_seed_for(self, index: int) -> int | None:
        if self.variation_seed is None or self.variation_strength <= 0:
            return None
        return (self.variation_seed + index) % (MAX_SEED + 1)


@dataclass(frozen=True)
class PreviewImage:
    """A small RGB preview (8-bit, row-major, no padding) that can cross threads."""

    width: int
    height: int
    rgb: bytes


@dataclass(frozen=True)
class StepUpdate:
    """Progress of one job: model evaluation `step` of `total`, for image batch `batch_index`.

    `preview` is None when the backend skipped the preview for this step.
    """

    step: int
    total: int
    batch_index: int = 0
    batch_total: int = 1
    preview: PreviewImage | None = None


@dataclass(frozen=True)
class LoadUpdate:
    """Progress while a model is being loaded (`fraction` 0..1, `stage` in words).

    `holds_cancel`: a step runs that cannot be interrupted (fast mode's compile, up to two
    minutes): a cancel takes effect when it ends.
    """

    stage: str
    fraction: float
    holds_cancel: bool = False


@dataclass(frozen=True)
class GeneratedImage:
    """One saved image: where it is and the seed that made it."""

    path: str
    seed: int
    width: int
    height: int
    variation_seed: int | None = None


@dataclass(frozen=True)
class GenerationResult:
    """What a finished job produced."""

    request: GenerationRequest
    images: tuple[GeneratedImage, ...]
    device: str
    seconds: float
    model_name: str = ""
    model_hash: str = ""


@dataclass(frozen=True)
class DeviceInfo:
    """The device the backend runs on, reported to the user."""

    name: str  # "cuda", "mps", "cpu"
    description: str  # e.g. "NVIDIA GeForce RTX 4090 (24.0 GiB), float16"
    dtype: str
    total_memory_bytes: int | None = None


@dataclass(frozen=True)
class TokenCount:
    """How many CLIP tokens a prompt uses and how many 75-token chunks it spans ("82/150")."""

    tokens: int
    chunks: int

    @property
    def limit(self) -> int:
        return max(1, self.chunks) * 75

    def __str__(self) -> str:
        return f"{self.tokens}/{self.limit}"


class GenerationCancelled(Exception):
    """Raised inside a job when its cancel token is set; no image is produced."""


class CancelToken:
    """Set from any thread (the GUI thread directly, never via a queued slot); checked each step."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def cancel(self) -> None:
        self._event.set()

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()

    def raise_if_cancelled(self) -> None:
        if self._event.is_set():
            raise GenerationCancelled()


StepCallback = Callable[[StepUpdate], None]
LoadCallback = Callable[[LoadUpdate], None]


class Backend(Protocol):
    """What the worker and the CLI need from an engine. One instance lives in one thread.

    `generate` raises UserError for problems a person can fix and GenerationCancelled when the
    token was set; after either, the backend stays usable for the next call.
    """

    def generate(
        self,
        request: GenerationRequest,
        cancel: CancelToken,
        on_step: StepCallback,
        on_load: LoadCallback | None = None,
    ) -> GenerationResult: ...

    def device_info(self) -> DeviceInfo: ...


@runtime_checkable
class SupportsFastMode(Protocol):
    """A backend with an optional fast mode (compiled kernels on NVIDIA GPUs), set between jobs."""

    fast_mode: bool


@runtime_checkable
class SupportsPreload(Protocol):
    """A backend that can load a request's model ahead of its first job (at start-up, while
    the person writes a prompt). Returns the model's name; raises UserError like `generate`."""

    def preload(self, request: GenerationRequest, on_load: LoadCallback | None = None) -> str: ...


@dataclass(frozen=True)
class JobFailure:
    """A failed job, as the worker reports it."""

    error: UserError
    request: GenerationRequest | None = None
    details: str = field(default="", compare=False)


def cancelled_error() -> UserError:
    return UserError(ErrorKind.cancelled, "Cancelled.")
