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
import re
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
# import scan would collect all of them (~60 MB of Python). Only the SD 1.x/2.x/SDXL pipelines are
# kept, and the transformers models that the kept diffusers code and the app import by name
# (found by `transformers_models_used`, so a diffusers update that imports a new model at module
# level keeps working), plus these.
KEPT_DIFFUSERS_PIPELINES = ("stable_diffusion", "stable_diffusion_xl")
KEPT_TRANSFORMERS_MODELS = ("auto", "clip")

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
    package = _package_dir(top)
    if package is None:
        return []
    folder = package.joinpath(*rest.split("."))
    kept = set(keep)
    return sorted(
        f"{parent}.{child.name}"
        for child in folder.iterdir()
        if child.is_dir() and (child / "__init__.py").is_file() and child.name not in kept
    )


def _package_dir(name: str) -> Path | None:
    spec = importlib.util.find_spec(name)  # top-level only: nothing is imported
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


_FROM_TRANSFORMERS = re.compile(r"from transformers import\s*(\([^)]*\)|[^\n]*)")
_CLASS_DEF = re.compile(r"^class (\w+)", re.MULTILINE)
_SIBLING_MODEL = re.compile(r"from \.\.(\w+)")


def _imported_transformers_names(sources: Iterable[Path]) -> set[str]:
    names: set[str] = set()
    for source in sources:
        for match in _FROM_TRANSFORMERS.finditer(source.read_text("utf-8", errors="replace")):
            for item in match.group(1).strip("()").replace("\\", "").split(","):
                name = item.split("#")[0].split(" as ")[0].strip()
                if name.isidentifier():
                    names.add(name)
    return names


def _kept_diffusers_sources(diffusers_dir: Path) -> list[Path]:
    skipped = {f"{m.split('.', 1)[1].replace('.', '/')}" for m in EXCLUDED_MODULES
               if m.startswith("diffusers.")}
    pipelines = diffusers_dir / "pipelines"
    sources = []
    for file in diffusers_dir.rglob("*.py"):
        relative = file.relative_to(diffusers_dir).with_suffix("").as_posix()
        if any(relative == s or relative.startswith(s + "/") for s in skipped):
            continue
        if file.parent != pipelines and pipelines in file.parents:
            family = file.relative_to(pipelines).parts[0]
            if family not in KEPT_DIFFUSERS_PIPELINES:
                continue
        sources.append(file)
    return sources


def transformers_models_used(app_dir: Path | None = None) -> set[str]:
    """transformers.models sub-packages that kept diffusers code or the app import by name."""
    transformers_dir = _package_dir("transformers")
    diffusers_dir = _package_dir("diffusers")
    if transformers_dir is None:
        return set(KEPT_TRANSFORMERS_MODELS)
    sources = _kept_diffusers_sources(diffusers_dir) if diffusers_dir else []
    if app_dir is not None:
        sources += list(app_dir.rglob("*.py"))
    wanted = _imported_transformers_names(sources)
    models_dir = transformers_dir / "models"
    defined_in: dict[str, str] = {}
    for file in models_dir.glob("*/*.py"):
        for name in _CLASS_DEF.findall(file.read_text("utf-8", errors="replace")):
            defined_in.setdefault(name, file.parent.name)
    used = {defined_in[n] for n in wanted if n in defined_in} | set(KEPT_TRANSFORMERS_MODELS)
    pending = list(used)
    while pending:  # models import sibling models (dpt → beit, auto → encoder_decoder)
        for file in (models_dir / pending.pop()).glob("*.py"):
            for sibling in _SIBLING_MODEL.findall(file.read_text("utf-8", errors="replace")):
                if sibling not in used and (models_dir / sibling / "__init__.py").is_file():
                    used.add(sibling)
                    pending.append(sibling)
    return used


def excluded_modules(app_dir: Path | None = None) -> list[str]:
    """Everything the analysis must ignore: `EXCLUDED_MODULES` plus the unused sub-packages."""
    names = list(EXCLUDED_MODULES)
    names += subpackage_excludes("diffusers.pipelines", KEPT_DIFFUSERS_PIPELINES)
    names += subpackage_excludes("transformers.models", transformers_models_used(app_dir))
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
