"""Cheap checks of the packaging recipes (the real frozen build runs in packaging/ci_smoke.sh).

Covers: the spec parses and bundles resources where `paths.resource` looks for them in a frozen
app; the diffusers hook collects the lazily imported families we use and not the others, and
copies the package metadata diffusers reads; the prune rules never drop a file the app loads;
the entry script sends output to a log file when the process has no stdout/stderr and switches
the Hub libraries offline; the AppImage recipe assembles a runnable AppDir; icons, the .desktop
file and the Inno Setup script are consistent.
"""

from __future__ import annotations

import ast
import configparser
import importlib.util
import os
import subprocess
import sys
import types
import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from desktop_app import paths

ROOT = Path(__file__).resolve().parents[2]
PACKAGING = ROOT / "packaging"
ICONS = ROOT / "resources" / "icons"


def _load(path: Path, name: str) -> types.ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def prune() -> types.ModuleType:
    return _load(PACKAGING / "prune.py", "desktop_app_packaging_prune")


# --- spec and resource locations -----------------------------------------------------------


def test_spec_is_valid_python_with_optimize_zero_and_our_hooks() -> None:
    source = (PACKAGING / "desktop-app.spec").read_text("utf-8")
    tree = ast.parse(source)
    calls = {
        node.func.id: {kw.arg: kw.value for kw in node.keywords}
        for node in ast.walk(tree)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
    }
    analysis = calls["Analysis"]
    assert ast.literal_eval(analysis["optimize"]) == 0  # -OO breaks torch/diffusers docstrings
    assert "hooks" in ast.unparse(analysis["hookspath"])
    assert ast.literal_eval(calls["EXE"]["contents_directory"]) == "_internal"
    assert calls["EXE"]["exclude_binaries"].value is True  # one-folder, not one-file
    assert (PACKAGING / "entry.py").is_file()


def test_spec_puts_resources_and_catalog_where_paths_looks_in_a_bundle() -> None:
    source = (PACKAGING / "desktop-app.spec").read_text("utf-8")
    assert '(str(ROOT / "resources"), "resources")' in source
    assert '(str(ROOT / "models.toml"), ".")' in source


def test_resource_uses_meipass_when_frozen(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(sys, "_MEIPASS", str(tmp_path), raising=False)
    assert paths.resource("configs", "sd15") == tmp_path / "resources" / "configs" / "sd15"
    assert paths.resource_root() == tmp_path / "resources"
    assert paths.models_toml() == tmp_path / "models.toml"


def test_resource_uses_the_checkout_when_not_frozen(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delattr(sys, "_MEIPASS", raising=False)
    vocab = paths.resource("tokenizer", "vocab.json")
    assert vocab == ROOT / "resources" / "tokenizer" / "vocab.json"
    assert vocab.is_file()


# --- the diffusers hook ---------------------------------------------------------------------


def _module_names(package: str) -> list[str]:
    """Every module name under an installed package, from its files (nothing is imported)."""
    top = package.partition(".")[0]
    spec = importlib.util.find_spec(top)
    assert spec is not None and spec.submodule_search_locations
    base = Path(next(iter(spec.submodule_search_locations))).parent
    folder = base.joinpath(*package.split("."))
    names = [package]
    for file in folder.rglob("*.py"):
        parts = file.relative_to(base).with_suffix("").parts
        names.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return names


def _run_hook(missing: frozenset[str] = frozenset()) -> tuple[dict[str, Any], list[str]]:
    """Execute hook-diffusers.py with PyInstaller's helpers replaced by file-based fakes."""
    copied: list[str] = []

    def collect_submodules(
        package: str, filter: Callable[[str], bool] = lambda n: True  # PyInstaller's keyword
    ) -> list[str]:
        return [n for n in _module_names(package) if filter(n)]

    def copy_metadata(dist: str) -> list[tuple[str, str]]:
        if dist in missing:
            raise RuntimeError(f"No package metadata was found for {dist}")
        copied.append(dist)
        return [(f"/site-packages/{dist}.dist-info", f"{dist}.dist-info")]

    fake = types.ModuleType("PyInstaller.utils.hooks")
    fake.collect_submodules = collect_submodules  # type: ignore[attr-defined]
    fake.copy_metadata = copy_metadata  # type: ignore[attr-defined]
    fake.logger = types.SimpleNamespace(info=lambda *a: None)  # type: ignore[attr-defined]
    namespace: dict[str, Any] = {"__name__": "hook-diffusers"}
    source = (PACKAGING / "hooks" / "hook-diffusers.py").read_text("utf-8")
    saved = sys.modules.get("PyInstaller.utils.hooks")
    sys.modules["PyInstaller.utils.hooks"] = fake
    try:
        exec(compile(source, "hook-diffusers.py", "exec"), namespace)
    finally:
        if saved is None:
            del sys.modules["PyInstaller.utils.hooks"]
        else:
            sys.modules["PyInstaller.utils.hooks"] = saved
    return namespace, copied


def test_diffusers_hook_collects_the_families_we_load_and_not_the_rest() -> None:
    namespace, _ = _run_hook()
    hidden = set(namespace["hiddenimports"])
    for needed in (
        "diffusers.pipelines.stable_diffusion.pipeline_stable_diffusion",
        "diffusers.pipelines.stable_diffusion_xl.pipeline_stable_diffusion_xl",
        "diffusers.schedulers.scheduling_dpmsolver_multistep",
        "diffusers.schedulers.scheduling_lms_discrete",
        "diffusers.schedulers.scheduling_dpmsolver_sde",
        "diffusers.models.unets.unet_2d_condition",
        "diffusers.models.autoencoders.autoencoder_kl",
        "diffusers.models.autoencoders.autoencoder_tiny",
        "diffusers.loaders.single_file",
        "transformers.models.clip.modeling_clip",
        "transformers.models.clip.tokenization_clip",
    ):
        assert needed in hidden, needed
    assert not any(".flux" in n or n.endswith("_flax") or ".deprecated" in n for n in hidden)
    assert not any(n.startswith("diffusers.pipelines.kandinsky") for n in hidden)


def test_diffusers_hook_copies_the_metadata_diffusers_reads() -> None:
    _, copied = _run_hook()
    for dist in ("diffusers", "torch", "transformers", "safetensors", "huggingface-hub",
                 "accelerate", "tokenizers", "numpy", "tqdm", "regex", "requests", "filelock",
                 "packaging", "PyYAML", "scipy", "torchsde"):
        assert dist in copied, dist


def test_diffusers_hook_fails_the_build_when_required_metadata_is_missing() -> None:
    with pytest.raises(RuntimeError, match="transformers"):
        _run_hook(missing=frozenset({"transformers"}))


def test_diffusers_hook_tolerates_a_missing_optional_sampler_dependency() -> None:
    namespace, copied = _run_hook(missing=frozenset({"torchsde"}))
    assert "torchsde" not in copied
    assert namespace["hiddenimports"]


# --- what is left out ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    [
        "torch/include/ATen/ATen.h",
        "torch/share/cmake/Torch/TorchConfig.cmake",
        "torch/test/c10_small_vector_test",
        "torch/bin/test_jit",
        "torch/bin/protoc-3.13.0.0",
        "torch/lib/libtorchbind_test.so",
        "torch/lib/libjitbackend_test.so",
        "torch/lib/dnnl.lib",
        "numpy/core/lib/libnpymath.a",
        "PySide6/Qt/translations/qtbase_de.qm",
        "PySide6/Qt/plugins/platforms/libqvnc.so",
        "PySide6/Qt/plugins/platformthemes/libqgtk3.so",
        "PySide6/QtCore.pyi",
        "libcudart.so",
    ],
)
def test_prune_drops_build_time_and_test_files(prune: types.ModuleType, path: str) -> None:
    assert prune.is_pruned(path)


@pytest.mark.parametrize(
    "path",
    [
        "torch/lib/libtorch_cpu.so",
        "torch/lib/torch_cpu.dll",
        "torch/lib/libc10.dylib",
        "torch/lib/libgomp.so.1",
        "torch/bin/torch_shm_manager",
        "torch/_C.cpython-311-x86_64-linux-gnu.so",
        "torch/nn/functional.py",
        "PySide6/Qt/lib/libQt6Core.so.6",
        "PySide6/Qt/plugins/platforms/libqxcb.so",
        "PySide6/Qt/plugins/platforms/libqwayland.so",
        "PySide6/Qt/plugins/platforms/libqoffscreen.so",
        "PySide6/Qt/plugins/platforms/qwindows.dll",
        "PySide6/Qt/plugins/imageformats/libqjpeg.so",
        "PySide6/Qt/plugins/iconengines/libqsvgicon.so",
        "resources/tokenizer/vocab.json",
        "resources/configs/sdxl/unet/config.json",
        "resources/icons/desktop-app.png",
        "models.toml",
        "transformers-5.24.0.dist-info/METADATA",
        "nvidia/cudnn/lib/libcudnn.so.9",
    ],
)
def test_prune_keeps_what_the_app_loads(prune: types.ModuleType, path: str) -> None:
    assert not prune.is_pruned(path)
    assert not prune.is_pruned(path.replace("/", "\\"))


def test_prune_drops_symlinks_to_pruned_libraries_and_counts_bytes(
    prune: types.ModuleType, tmp_path: Path
) -> None:
    header = tmp_path / "ATen.h"
    header.write_bytes(b"x" * 1000)
    kept_lib = tmp_path / "libQt6Core.so.6"
    kept_lib.write_bytes(b"y")
    toc = [
        ("torch/include/ATen/ATen.h", str(header), "DATA"),
        ("PySide6/Qt/lib/libQt6Core.so.6", str(kept_lib), "BINARY"),
        ("libQt6Core.so.6", "PySide6/Qt/lib/libQt6Core.so.6", "SYMLINK"),
        ("libQt6EglFsKmsSupport.so.6", "PySide6/Qt/lib/libQt6EglFsKmsSupport.so.6", "SYMLINK"),
    ]
    kept, dropped = prune.split_toc(toc)
    assert [entry[0] for entry in kept] == ["PySide6/Qt/lib/libQt6Core.so.6", "libQt6Core.so.6"]
    assert dropped == 1000


def test_prune_tree_deletes_pruned_files_and_empty_folders(
    prune: types.ModuleType, tmp_path: Path
) -> None:
    (tmp_path / "torch" / "include" / "c10").mkdir(parents=True)
    (tmp_path / "torch" / "include" / "c10" / "macros.h").write_bytes(b"h" * 10)
    (tmp_path / "torch" / "lib").mkdir()
    (tmp_path / "torch" / "lib" / "libtorch_cpu.so").write_bytes(b"so")
    assert prune.prune_tree(tmp_path) == 10
    assert not (tmp_path / "torch" / "include").exists()
    assert (tmp_path / "torch" / "lib" / "libtorch_cpu.so").is_file()


def test_excluded_modules_keep_the_families_the_engine_uses(prune: types.ModuleType) -> None:
    excluded = set(prune.excluded_modules())
    assert "transformers.models.whisper" in excluded
    assert "diffusers.pipelines.flux" in excluded
    assert "PySide6.QtWebEngineCore" in excluded
    for needed in (
        "transformers.models.clip",
        "transformers.models.auto",
        "diffusers.pipelines.stable_diffusion",
        "diffusers.pipelines.stable_diffusion_xl",
        "torch",
        "PySide6.QtWidgets",
        "PySide6.QtSvg",
        "scipy",
        "torchsde",
    ):
        assert needed not in excluded, needed


def test_transformers_models_follow_what_diffusers_imports_at_module_level(
    prune: types.ModuleType,
) -> None:
    used = prune.transformers_models_used(ROOT / "desktop_app")
    # CLIP for every SD pipeline; dinov2_with_registers because diffusers' autoencoders package
    # imports it at module level; beit because dpt (depth2img) imports it.
    assert {"clip", "auto", "dinov2_with_registers", "dpt", "beit", "siglip"} <= used
    assert "whisper" not in used and "t5" not in used


# --- the entry script -----------------------------------------------------------------------


@pytest.mark.skipif(sys.platform == "win32", reason="closes file descriptors with a POSIX shell")
def test_entry_redirects_missing_streams_to_the_log_folder_and_goes_offline(tmp_path: Path) -> None:
    home = tmp_path / "home"
    code = (
        "import os, sys; sys.path.insert(0, sys.argv[1]); import entry; "
        "entry._offline_environment(); entry._fix_missing_streams(); "
        "print('stdout-line', os.environ['HF_HUB_OFFLINE'], os.environ['TRANSFORMERS_OFFLINE']); "
        "print('stderr-line', file=sys.stderr)"
    )
    env = dict(os.environ, DESKTOP_APP_HOME=str(home), HF_HUB_OFFLINE="0")
    # Closed stdout/stderr make Python set sys.stdout/sys.stderr to None, as in windowed apps.
    result = subprocess.run(
        ["sh", "-c", 'exec "$0" -c "$1" "$2" >&- 2>&-', sys.executable, code, str(PACKAGING)],
        env=env,
        cwd=ROOT,
        timeout=60,
    )
    assert result.returncode == 0
    log = (home / "logs" / "console.log").read_text("utf-8")
    assert "stdout-line 1 1" in log
    assert "stderr-line" in log


def test_entry_points_https_at_the_bundled_ca_file_only_when_frozen(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    entry = _load(PACKAGING / "entry.py", "desktop_app_packaging_entry")
    (tmp_path / "certifi").mkdir()
    (tmp_path / "certifi" / "cacert.pem").write_text("-----BEGIN CERTIFICATE-----\n", "utf-8")
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    monkeypatch.setattr(sys, "_MEIPASS", str(tmp_path), raising=False)
    monkeypatch.delattr(sys, "frozen", raising=False)
    entry._ca_certificates()
    assert "SSL_CERT_FILE" not in os.environ  # a source checkout uses the system's store
    monkeypatch.setattr(sys, "frozen", True, raising=False)
    entry._ca_certificates()
    assert os.environ["SSL_CERT_FILE"] == str(tmp_path / "certifi" / "cacert.pem")
    monkeypatch.setenv("SSL_CERT_FILE", "/etc/ssl/mine.pem")
    entry._ca_certificates()
    assert os.environ["SSL_CERT_FILE"] == "/etc/ssl/mine.pem"  # the user's choice wins


# --- installers, icons, desktop integration ---------------------------------------------------


@pytest.mark.skipif(sys.platform == "win32", reason="AppImage recipe is Linux-only")
def test_appimage_recipe_assembles_a_runnable_appdir(tmp_path: Path) -> None:
    dist = tmp_path / "desktop-app"
    dist.mkdir()
    (dist / "_internal").mkdir()
    exe = dist / "desktop-app"
    exe.write_text('#!/bin/sh\necho "frozen app ran with: $*"\n', "utf-8")
    exe.chmod(0o755)
    out = tmp_path / "out"
    out.mkdir()
    subprocess.run(
        ["bash", str(PACKAGING / "linux" / "build_appimage.sh"), "--appdir-only", dist, out],
        check=True,
        capture_output=True,
        timeout=60,
    )
    appdir = out / "DesktopApp.AppDir"
    for name in ("AppRun", "desktop-app.desktop", "desktop-app.png", ".DirIcon",
                 "usr/lib/desktop-app/_internal", "usr/bin/desktop-app",
                 "usr/share/icons/hicolor/scalable/apps/desktop-app.svg"):
        assert (appdir / name).exists(), name
    ran = subprocess.run([str(appdir / "AppRun"), "--self-test"], capture_output=True, text=True,
                         timeout=30, check=True)
    assert ran.stdout.strip() == "frozen app ran with: --self-test"


def test_desktop_file_names_the_installed_command_and_icon() -> None:
    parser = configparser.ConfigParser(interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read(PACKAGING / "linux" / "desktop-app.desktop", encoding="utf-8")
    entry = parser["Desktop Entry"]
    assert entry["Type"] == "Application"
    assert entry["Exec"].split()[0] == "desktop-app"
    assert entry["Icon"] == "desktop-app"
    assert entry["Categories"].endswith(";")
    assert entry["Terminal"] == "false"


def test_icons_exist_in_every_format_the_recipes_use() -> None:
    from PIL import Image

    with Image.open(ICONS / "desktop-app.png") as png:
        assert png.size == (512, 512) and png.mode == "RGBA"
    with Image.open(ICONS / "desktop-app.ico") as ico:
        assert (256, 256) in ico.info["sizes"]
    with Image.open(ICONS / "desktop-app.icns") as icns:
        assert icns.format == "ICNS"
    svg = ET.parse(ICONS / "desktop-app.svg").getroot()
    assert svg.tag.endswith("svg") and svg.get("viewBox") == "0 0 512 512"


def test_inno_setup_script_reads_the_build_output_and_keeps_slices_under_2_gib() -> None:
    text = (PACKAGING / "windows" / "desktop-app.iss").read_text("utf-8")
    setup = dict(
        line.split("=", 1)
        for line in text.split("[Setup]", 1)[1].split("\n[", 1)[0].splitlines()
        if "=" in line and not line.startswith(";")
    )
    assert int(setup["DiskSliceSize"]) < 2**31
    assert setup["DiskSpanning"] == "{#DiskSpan}"
    source_dir = text.split('#define SourceDir "', 1)[1].split('"', 1)[0]
    resolved = (PACKAGING / "windows" / source_dir.replace("\\", "/")).resolve()
    assert resolved == ROOT / "dist" / "desktop-app"
    assert (PACKAGING / "windows" / setup["SetupIconFile"].replace("\\", "/")).resolve().is_file()
