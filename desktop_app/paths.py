"""Where the app keeps its data: platformdirs locations, or all under $DESKTOP_APP_HOME.

Setting DESKTOP_APP_HOME makes a portable install (and is what tests use): outputs, config,
cache and logs then live in sub-folders of that one directory.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import platformdirs

APP_DIR_NAME = "desktop-app"
HOME_ENV = "DESKTOP_APP_HOME"


def _home() -> Path | None:
    value = os.environ.get(HOME_ENV, "").strip()
    return Path(value).expanduser() if value else None


def _ensure(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


def config_dir() -> Path:
    """User settings, the user's models.toml, the persisted job queue."""
    home = _home()
    if home is not None:
        return _ensure(home / "config")
    return _ensure(Path(platformdirs.user_config_dir(APP_DIR_NAME, appauthor=False)))


def data_dir() -> Path:
    """Long-lived app data: gallery index, library database."""
    home = _home()
    if home is not None:
        return _ensure(home / "data")
    return _ensure(Path(platformdirs.user_data_dir(APP_DIR_NAME, appauthor=False)))


def cache_dir() -> Path:
    """Disposable data: thumbnails, hash cache, converted checkpoints, compile caches."""
    home = _home()
    if home is not None:
        return _ensure(home / "cache")
    return _ensure(Path(platformdirs.user_cache_dir(APP_DIR_NAME, appauthor=False)))


def log_dir() -> Path:
    """Log files."""
    home = _home()
    if home is not None:
        return _ensure(home / "logs")
    return _ensure(Path(platformdirs.user_log_dir(APP_DIR_NAME, appauthor=False)))


def outputs_dir() -> Path:
    """Default folder for generated images (configurable in settings)."""
    home = _home()
    if home is not None:
        return _ensure(home / "outputs")
    return _ensure(Path(platformdirs.user_pictures_dir()) / APP_DIR_NAME)


def resource_root() -> Path:
    """The folder holding shipped resources (configs, tokenizers, demo model, icons).

    The one place that knows where resources live: next to the package in a source checkout or
    an installed wheel's data, or inside a PyInstaller bundle (`sys._MEIPASS`).
    """
    bundle = getattr(sys, "_MEIPASS", None)
    if bundle is not None:
        return Path(bundle) / "resources"
    return Path(__file__).resolve().parent.parent / "resources"


def resource(*parts: str) -> Path:
    """Path of a shipped resource, e.g. `resource("configs", "sd15")`."""
    return resource_root().joinpath(*parts)


def models_toml() -> Path:
    """The shipped, read-only model catalog."""
    bundle = getattr(sys, "_MEIPASS", None)
    if bundle is not None:
        return Path(bundle) / "models.toml"
    return Path(__file__).resolve().parent.parent / "models.toml"
