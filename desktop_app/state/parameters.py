"""The parameter panel's state: what the next request will be, without any widget."""

from __future__ import annotations

import logging
from typing import Any

from PySide6.QtCore import QObject, Signal

from desktop_app.errors import UserError
from desktop_app.pipeline import api
from desktop_app.pipeline.api import GenerationRequest

log = logging.getLogger(__name__)

# Request fields the panel edits, with their defaults (taken from the request itself).
_DEFAULTS = GenerationRequest(prompt="")
FIELDS: tuple[str, ...] = (
    "prompt", "negative_prompt", "model", "vae", "sampler", "steps", "cfg_scale", "seed",
    "width", "height", "batch_count", "batch_size", "clip_skip",
)
# Panel-only values that are remembered but are not part of a request.
EXTRA_DEFAULTS: dict[str, Any] = {"aspect_locked": False}
_OPTIONAL_TEXT = ("model", "vae")


def _coerce(name: str, value: Any) -> Any:
    """Convert a stored or restored value to the field's type; raise ValueError when impossible."""
    if name in _OPTIONAL_TEXT:
        return None if value in (None, "") else str(value)
    default = getattr(_DEFAULTS, name) if name in FIELDS else EXTRA_DEFAULTS[name]
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise ValueError(f"{name} must be true or false")
        return value
    if isinstance(default, int):
        if isinstance(value, bool) or not isinstance(value, int | float | str):
            raise ValueError(f"{name} must be a whole number")
        number = float(value)
        if number != int(number):
            raise ValueError(f"{name} must be a whole number")
        return int(number)
    if isinstance(default, float):
        if isinstance(value, bool) or not isinstance(value, int | float | str):
            raise ValueError(f"{name} must be a number")
        return float(value)
    if not isinstance(value, str):
        raise ValueError(f"{name} must be text")
    return value


class ParametersState(QObject):
    """Current generation parameters; the single source for requests built by the window.

    Signals:
        value_changed(str, object): a parameter changed (name, new value).
        last_seed_changed(int): the seed of the last finished image changed (-1: none yet).
    """

    value_changed = Signal(str, object)
    last_seed_changed = Signal(object)  # seeds go up to 2**32-1: too big for a C int

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._values: dict[str, Any] = {name: getattr(_DEFAULTS, name) for name in FIELDS}
        self._values.update(EXTRA_DEFAULTS)
        self._last_seed = api.RANDOM_SEED

    def value(self, name: str) -> Any:
        """The current value of `name` (a request field or an EXTRA_DEFAULTS key)."""
        return self._values[name]

    def set_value(self, name: str, value: Any) -> None:
        """Set one value; emits value_changed only when it actually changes."""
        if name not in self._values:
            raise KeyError(name)
        value = _coerce(name, value)
        if self._values[name] == value:
            return
        self._values[name] = value
        self.value_changed.emit(name, value)

    def to_dict(self) -> dict[str, Any]:
        """All values, suitable for settings.json."""
        return dict(self._values)

    def restore_parameters(self, data: dict[str, Any]) -> list[str]:
        """Apply the known keys of `data` (settings, or "use these parameters" from the gallery).

        Values that do not fit are skipped with a log line; returns the names that were applied.
        Restoring the model to the bundled one is spelled `model: None`.
        """
        applied = []
        for name, raw in data.items():
            if name not in self._values:
                continue
            try:
                self.set_value(name, raw)
            except ValueError as exc:
                log.warning("Not restoring %s=%r: %s", name, raw, exc)
                continue
            applied.append(name)
        return applied

    def build_request(self) -> GenerationRequest:
        """The request for the current values; raises UserError (bad_input) when they do not fit."""
        fields = {name: self._values[name] for name in FIELDS}
        return GenerationRequest(**fields)

    def check(self) -> UserError | None:
        """The validation error the current values would produce, or None."""
        try:
            self.build_request()
        except UserError as exc:
            return exc
        return None

    @property
    def last_seed(self) -> int:
        return self._last_seed

    def set_last_seed(self, seed: int) -> None:
        """Remember the seed of the last finished image, for "reuse last seed"."""
        if seed != self._last_seed:
            self._last_seed = seed
            self.last_seed_changed.emit(seed)

    def reuse_last_seed(self) -> bool:
        """Put the last used seed into the seed field; False when nothing was generated yet."""
        if self._last_seed == api.RANDOM_SEED:
            return False
        self.set_value("seed", self._last_seed)
        return True

    def randomize_seed(self) -> None:
        """Back to a fresh random seed for every run (-1)."""
        self.set_value("seed", api.RANDOM_SEED)

    def swap_size(self) -> None:
        """Exchange width and height."""
        width, height = self._values["width"], self._values["height"]
        self.set_value("width", height)
        self.set_value("height", width)

    def set_dimension(self, name: str, value: int) -> None:
        """Set width or height; with the aspect lock on, the other side follows (multiple of 8)."""
        if name not in ("width", "height"):
            raise KeyError(name)
        other = "height" if name == "width" else "width"
        old, old_other = self._values[name], self._values[other]
        self.set_value(name, value)
        if self._values["aspect_locked"] and old > 0:
            low, high = api.SIZE_RANGE
            follow = round(value * old_other / old / api.SIZE_MULTIPLE) * api.SIZE_MULTIPLE
            self.set_value(other, min(high, max(low, follow)))
