"""PyInstaller hook for the app itself.

The CLI imports its command modules by name (`cli.COMMAND_MODULES`) and the worker imports the
torch backend lazily, after the window is shown; collecting every submodule makes sure none of
them is missed by the import scan.
"""

from __future__ import annotations

from PyInstaller.utils.hooks import collect_submodules

hiddenimports = collect_submodules("desktop_app")
