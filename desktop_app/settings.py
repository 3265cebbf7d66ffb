"""Typed, versioned user settings, written atomically.

The file is JSON in `paths.config_dir()/settings.json` with a `version` field. Unknown keys are
kept out, values of the wrong type fall back to their default with a log line, and a file that
cannot be parsed is moved aside (`settings.json.bad`) instead of silently overwritten, so a
person can recover it. Writes go to a temporary file in the same folder that is flushed, synced
and renamed over the old one: a crash mid-write leaves the previous file intact.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from desktop_app import paths
from desktop_app.fileio import atomic_write_text, keep_aside_if_possible

log = logging.getLogger(__name__)

SETTINGS_VERSION = 1
FILE_NAME = "settings.json"


@dataclass
class Settings:
    """What the app remembers between runs.

    `parameters` is the last parameter panel state (`ParametersState.to_dict()`), the Qt blobs
    are base64 text from `saveGeometry()` / `saveState()`.
    """

    version: int = SETTINGS_VERSION
    parameters: dict[str, Any] = field(default_factory=dict)
    window_geometry: str = ""
    window_state: str = ""
    splitters: dict[str, str] = field(default_factory=dict)
    side_tab: str = ""
    theme: str = "system"  # "system", "light" or "dark"
    fast_mode: bool = False  # compiled kernels on NVIDIA GPUs (pipeline/backend/fast_mode.py)

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=2, sort_keys=True)

    @classmethod
    def from_data(cls, data: object) -> Settings:
        """Build settings from parsed JSON, keeping only known keys of the right type."""
        settings = cls()
        if not isinstance(data, dict):
            log.warning("Settings file is not a JSON object; using defaults")
            return settings
        data = _migrate(data)
        for f in dataclasses.fields(cls):
            if f.name not in data or f.name == "version":
                continue
            value, default = data[f.name], getattr(settings, f.name)
            if type(value) is not type(default):
                log.warning("Setting %r has the wrong type (%s); using the default",
                            f.name, type(value).__name__)
                continue
            setattr(settings, f.name, value)
        if settings.theme not in ("system", "light", "dark"):
            settings.theme = "system"
        return settings


def _migrate(data: dict[str, Any]) -> dict[str, Any]:
    """Bring older files up to SETTINGS_VERSION (version 1 is the first; nothing to do yet)."""
    version = data.get("version", SETTINGS_VERSION)
    if isinstance(version, int) and version > SETTINGS_VERSION:
        log.warning("Settings were written by a newer version (%s); reading what is known", version)
    return data


def settings_path() -> Path:
    """Where the settings file lives."""
    return paths.config_dir() / FILE_NAME


def load_settings(path: Path | None = None) -> Settings:
    """Read the settings; a missing file gives defaults, a corrupt one is kept aside as `.bad`."""
    path = path or settings_path()
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return Settings()
    except OSError as exc:
        log.warning("Cannot read settings %s: %s", path, exc)
        return Settings()
    try:
        data = json.loads(text)
    except ValueError as exc:
        bad = keep_aside_if_possible(path, "bad")  # read-only folder: defaults, file stays
        log.warning("Settings %s are corrupt (%s); kept as %s", path, exc, bad)
        return Settings()
    return Settings.from_data(data)


def save_settings(settings: Settings, path: Path | None = None) -> None:
    """Write the settings atomically."""
    atomic_write_text(path or settings_path(), settings.to_json())
