"""What the frozen app leaves out, in one place (used by the spec, build.py and the tests).

Two levels:

* `EXCLUDED_MODULES` never enter the analysis (Python packages the app never imports, unused Qt
  bindings, tools that only matter for torch.compile or training).
* `PRUNED_PATTERNS` drop collected files by their path inside the bundle: C/C++ headers, static
  and import libraries, torch's C++ test binaries and test libraries, type stubs, Qt translations
  and QML. Every pattern names something no code path of the app loads at run time.

Paths use forward slashes and are relative to the bundle's contents folder (`_internal/`).
"""

from __future__ import annotations

import contextlib
import fnmatch
import importlib.util
import os
from collections.abc import Iterable
from pathlib import Path

EXCLUDED_MODULES: tuple[str, ...] = (
    # GUI toolkits, notebooks and plotting the app never uses.
    "tkinter",
    "_tkinter",
    "turtle",
    "matplotlib",
    "IPython",
    "ipykernel",
    "jupyter_client",
    "notebook",
    # Test and developer tools that happen to live in the build environment.
    "pytest",
    "_pytest",
    "pytestqt",
    "hypothesis",
    "mypy",
    "pip",
    # Training/compile-only parts of the ML stack. torch.compile needs a C compiler and Python
    # headers at run time, which a frozen app does not have, so Triton is useless in the bundle.
    "torch.utils.tensorboard",
    "tensorboard",
    "caffe2",
    "triton",
    "hf_xet",  # Hub downloads only; the app is offline
    "pyarrow",  # crashes non-AVX2 CPUs and is unused
    # diffusers: the modular-pipeline framework and CLI are unused (pipelines: see below).
    "diffusers.modular_pipelines",
    "diffusers.experimental",
    "diffusers.commands",
    "diffusers.pipelines.auto_pipeline",  # imports every pipeline family at module level
    "transformers.commands",
    "pandas",
    "torchvision",
    "torchaudio",
    # Qt modules outside PySide6-Essentials or unused by the app (QML pulls ~60 MB).
    "PySide6.QtQml",
    "PySide6.QtQuick",
    "PySide6.QtQuickWidgets",
    "PySide6.QtQuickControls2",
    "PySide6.QtQuickTest",
    "PySide6.QtQuick3D",
    "PySide6.QtWebEngineCore",
    "PySide6.QtWebEngineWidgets",
    "PySide6.QtWebEngineQuick",
    "PySide6.QtWebChannel",
    "PySide6.QtWebSockets",
    "PySide6.Qt3DCore",
    "PySide6.Qt3DRender",
    "PySide6.Qt3DInput",
    "PySide6.Qt3DLogic",
    "PySide6.Qt3DAnimation",
    "PySide6.Qt3DExtras",
    "PySide6.QtCharts",
    "PySide6.QtDataVisualization",
    "PySide6.QtGraphs",
    "PySide6.QtMultimedia",
    "PySide6.QtMultimediaWidgets",
    "PySide6.QtPdf",
    "PySide6.QtPdfWidgets",
    "PySide6.QtDesigner",
    "PySide6.QtHelp",
    "PySide6.QtUiTools",
    "PySide6.QtTest",
    "PySide6.QtSql",
    "PySide6.QtBluetooth",
    "PySide6.QtNfc",
    "PySide6.QtPositioning",
    "PySide6.QtLocation",
    "PySide6.QtSerialPort",
    "PySide6.QtRemoteObjects",
    "PySide6.QtScxml",
    "PySide6.QtSensors",
    "PySide6.QtTextToSpeech",
    "PySide6.QtHttpServer",
    "PySide6.QtNetworkAuth",
    "PySide6.QtNetwork",  # the app never goes online; also drops OpenSSL and the TLS plugins
    "PyQt5",
    "PyQt6",
    "PySide2",
)

# diffusers' and transformers' `__init__` name every pipeline and model for type checkers, so the
# import scan would collect all of them (~60 MB of Python). Only these sub-packages are kept: the
# SD 1.x/2.x/SDXL pipelines and the transformers models they (and their static imports) use.
KEPT_SUBPACKAGES: dict[str, tuple[str, ...]] = {
    "diffusers.pipelines": ("stable_diffusion", "stable_diffusion_xl"),
    "transformers.models": ("auto", "clip", "siglip", "dpt", "beit", "encoder_decoder"),
}

PRUNED_PATTERNS: tuple[str, ...] = (
    # Headers, CMake files, static and import libraries: only for compiling against torch/Qt.
    "*.h",
    "*.hpp",
    "*.cuh",
    "*.a",
    "*.lib",
    "*.cmake",
    "*.pyi",
    "torch/include/*",
    "torch/share/*",
    "PySide6/include/*",
    "PySide6/typesystems/*",
    "PySide6/glue/*",
    # torch's C++ unit tests, test models and test-only libraries.
    "torch/test/*",
    "torch/bin/test_*",
    "torch/bin/*Test",
    "torch/bin/*.pt",
    "torch/bin/*.ptl",
    "torch/bin/protoc*",
    "torch/lib/*_test.*",
    "torch/lib/libbackend_with_compiler.*",
    "torch/lib/backend_with_compiler.*",
    "torch/lib/libaoti_custom_ops.*",
    "torch/lib/aoti_custom_ops.*",
    # The build machine's CUDA runtime, found through a ctypes probe in transformers: never
    # right for the CPU build, and CUDA builds use the one in torch's nvidia-* packages.
    "libcudart.so*",
    # Qt platform plugins for embedded/kiosk use (eglfs, linuxfb, vnc, KMS) and their input
    # plugins; the app runs on xcb, wayland, Windows, Cocoa (and offscreen/minimal in CI).
    "PySide6/Qt/plugins/egldeviceintegrations/*",
    "PySide6/Qt/plugins/generic/*",
    "PySide6/Qt/plugins/platforms/libqeglfs.so",
    "PySide6/Qt/plugins/platforms/libqlinuxfb.so",
    "PySide6/Qt/plugins/platforms/libqminimalegl.so",
    "PySide6/Qt/plugins/platforms/libqvkkhrdisplay.so",
    "PySide6/Qt/plugins/platforms/libqvnc.so",
    "PySide6/Qt/lib/libQt6EglFSDeviceIntegration.so*",
    "PySide6/Qt/lib/libQt6EglFsKmsSupport.so*",
    "PySide6/Qt/plugins/networkinformation/*",
    "PySide6/Qt/plugins/tls/*",
    # The GTK3 platform theme would drag the build machine's GTK stack in; without it Qt uses
    # the XDG desktop portal (native file dialogs and the dark/light setting on GNOME and KDE).
    "PySide6/Qt/plugins/platformthemes/libqgtk3.so",
    # Qt translations (the app is English-only) and QML.
    "PySide6/Qt/translations/*",
    "PySide6/translations/*",
    "PySide6/Qt/qml/*",
    "PySide6/qml/*",
)


def _normalise(dest: str) -> str:
    return dest.replace(os.sep, "/").replace("\\", "/")


def is_pruned(dest: str) -> bool:
    """True when a file at this bundle path is never needed at run time."""
    path = _normalise(dest)
    name = path.rsplit("/", 1)[-1]
    for pattern in PRUNED_PATTERNS:
        if "/" in pattern:
            if fnmatch.fnmatchcase(path, pattern):
                return True
        elif fnmatch.fnmatchcase(name, pattern):
            return True
    return False


def subpackage_excludes(parent: str, keep: Iterable[str]) -> list[str]:
    """Module names of `parent`'s sub-packages other than `keep`, found without importing."""
    top, _, rest = parent.partition(".")
    spec = importlib.util.find_spec(top)
    if spec is None or not spec.submodule_search_locations:
        return []
    folder = Path(next(iter(spec.submodule_search_locations))).joinpath(*rest.split("."))
    kept = set(keep)
    return sorted(
        f"{parent}.{child.name}"
        for child in folder.iterdir()
        if child.is_dir() and (child / "__init__.py").is_file() and child.name not in kept
    )


def excluded_modules() -> list[str]:
    """Everything the analysis must ignore: `EXCLUDED_MODULES` plus the unused sub-packages."""
    names = list(EXCLUDED_MODULES)
    for parent, keep in KEPT_SUBPACKAGES.items():
        names += subpackage_excludes(parent, keep)
    return names


def split_toc(entries: Iterable[tuple[str, str, str]]) -> tuple[list[tuple[str, str, str]], int]:
    """Keep the TOC entries that are needed; return them and the bytes left out.

    A symbolic link is dropped with its target (PyInstaller links shared libraries kept in
    package folders into the top level).
    """
    kept: list[tuple[str, str, str]] = []
    dropped_bytes = 0
    for entry in entries:
        dest, source, kind = entry[0], entry[1], entry[2]
        if kind == "SYMLINK":
            if is_pruned(dest) or is_pruned(source):
                continue
        elif is_pruned(dest):
            with contextlib.suppress(OSError):
                dropped_bytes += os.path.getsize(source)
            continue
        kept.append(entry)
    return kept, dropped_bytes


def prune_tree(contents: Path) -> int:
    """Delete pruned files still present in a built bundle; return the bytes freed."""
    freed = 0
    for path in sorted(contents.rglob("*")):
        if path.is_symlink() or not path.is_file():
            continue
        if is_pruned(path.relative_to(contents).as_posix()):
            freed += path.stat().st_size
            path.unlink()
    for folder in sorted((p for p in contents.rglob("*") if p.is_dir()), reverse=True):
        if not any(folder.iterdir()):
            folder.rmdir()
    return freed


def tree_size(folder: Path) -> int:
    """Bytes of the regular files under a folder (symlinks counted once, as links)."""
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file() and not p.is_symlink())
