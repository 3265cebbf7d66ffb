"""Shared test setup: headless Qt, offline Hugging Face, user data under tmp_path."""

from __future__ import annotations

import os

# Before any Qt / Hugging Face import anywhere in the test session.
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# Tiny test models are dominated by per-op overhead: one intra-op thread is faster on a 2-core
# CI box and far cheaper when other processes compete for the cores.
os.environ.setdefault("OMP_NUM_THREADS", "1")

from pathlib import Path

import pytest

pytest_plugins = ["tests.fixtures.tiny_models"]


@pytest.fixture(autouse=True)
def app_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test gets its own DESKTOP_APP_HOME, so nothing touches the real user folders."""
    home = tmp_path / "app-home"
    home.mkdir()
    monkeypatch.setenv("DESKTOP_APP_HOME", str(home))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg-config"))
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg-data"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg-cache"))
    _point_send2trash_at(tmp_path / "xdg-data", monkeypatch)
    return home


def _point_send2trash_at(data_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """send2trash reads XDG_DATA_HOME once, at import: follow each test's folder explicitly."""
    import sys

    plat = sys.modules.get("send2trash.plat_other")
    if plat is None:
        return
    trash = os.fsencode(data_home / "Trash")
    monkeypatch.setattr(plat, "XDG_DATA_HOME", os.fsencode(data_home))
    monkeypatch.setattr(plat, "HOMETRASH_B", trash)
    monkeypatch.setattr(plat, "HOMETRASH", os.fsdecode(trash))
