"""The torch boundary: only the diffusers backend may import torch/diffusers/transformers."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "desktop_app"
HEAVY = ("torch", "diffusers", "transformers", "accelerate", "safetensors.torch")
# Modules allowed to import the heavy stack (all inside pipeline/backend/ or explicitly listed).
ALLOWED_PREFIXES = ("pipeline/backend/",)


def _heavy_imports(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found = []
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module]
        found += [n for n in names if n == "torch" or n.split(".")[0] in HEAVY[1:4]
                  or n.startswith(("torch.", "safetensors.torch"))]
    return found


def test_only_the_backend_imports_torch_diffusers_transformers() -> None:
    offenders = {}
    for path in PACKAGE.rglob("*.py"):
        rel = path.relative_to(PACKAGE).as_posix()
        if rel.startswith(ALLOWED_PREFIXES):
            continue
        heavy = _heavy_imports(path)
        if heavy:
            offenders[rel] = heavy
    assert offenders == {}


def test_nothing_but_app_imports_ui() -> None:
    offenders = []
    for path in PACKAGE.rglob("*.py"):
        rel = path.relative_to(PACKAGE).as_posix()
        if rel.startswith("ui/") or rel in ("app.py",):
            continue
        text = path.read_text(encoding="utf-8")
        if "desktop_app.ui" in text or "from desktop_app import ui" in text:
            offenders.append(rel)
    assert offenders == []


def test_importing_the_api_and_cli_loads_no_heavy_module() -> None:
    code = (
        "import sys, desktop_app.pipeline.api, desktop_app.cli, desktop_app.errors;"
        "heavy=[m for m in ('torch','diffusers','transformers') if m in sys.modules];"
        "print(','.join(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
