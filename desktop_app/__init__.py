"""desktop_app: a native, offline desktop studio for local Stable Diffusion."""

from __future__ import annotations

__version__ = "0.1.0"
APP_NAME = "desktop-app"
