"""Build the one-folder app: `python packaging/build.py` → dist/desktop-app/desktop-app[.exe].

Runs PyInstaller on packaging/desktop-app.spec (which leaves out the modules and files listed in
packaging/prune.py), removes any pruned file that still reached the output folder, and prints
the output folder, the executable, the size before and after pruning and the build time. The
last line is a JSON summary for scripts.

    python packaging/build.py                 # incremental (reuses build/pyinstaller)
    python packaging/build.py --clean         # from scratch
    python packaging/build.py --no-prune      # keep everything (to measure pruning)
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

import prune  # noqa: E402  (packaging/prune.py, next to this file)

APP_NAME = "desktop-app"
SPEC = HERE / "desktop-app.spec"
MIB = 1024 * 1024


def executable_name() -> str:
    return APP_NAME + (".exe" if sys.platform == "win32" else "")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clean", action="store_true", help="discard PyInstaller's cache first")
    parser.add_argument("--no-prune", action="store_true", help="keep every collected file")
    parser.add_argument("--console", action="store_true", help="console exe on Windows/macOS")
    parser.add_argument("--distpath", type=Path, default=ROOT / "dist")
    parser.add_argument("--workpath", type=Path, default=ROOT / "build" / "pyinstaller")
    return parser.parse_args(argv)


def run_pyinstaller(args: argparse.Namespace, report: Path) -> None:
    command = [
        sys.executable,
        "-m",
        "PyInstaller",
        "--noconfirm",
        "--log-level=WARN",
        f"--distpath={args.distpath}",
        f"--workpath={args.workpath}",
    ]
    if args.clean:
        command.append("--clean")
    command.append(str(SPEC))
    env = dict(os.environ, DESKTOP_APP_BUILD_REPORT=str(report))
    # The analysis imports every torch submodule; their deprecation notices are only noise here.
    env.setdefault("PYTHONWARNINGS", "ignore::DeprecationWarning,ignore::FutureWarning")
    if args.no_prune:
        env["DESKTOP_APP_NO_PRUNE"] = "1"
    if args.console:
        env["DESKTOP_APP_CONSOLE"] = "1"
    subprocess.run(command, check=True, cwd=ROOT, env=env)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.monotonic()
    with tempfile.TemporaryDirectory() as tmp:
        report_file = Path(tmp) / "report.json"
        try:
            run_pyinstaller(args, report_file)
        except subprocess.CalledProcessError as exc:
            print(f"error: PyInstaller failed with exit code {exc.returncode}", file=sys.stderr)
            return 1
        report = json.loads(report_file.read_text("utf-8")) if report_file.exists() else {}
    folder = args.distpath / APP_NAME
    exe = folder / executable_name()
    if not exe.is_file():
        print(f"error: {exe} was not built", file=sys.stderr)
        return 1
    pruned = int(report.get("toc_pruned_bytes", 0))
    if not args.no_prune:
        pruned += prune.prune_tree(folder / "_internal")
    size = prune.tree_size(folder)
    seconds = time.monotonic() - started
    print(f"output folder: {folder}")
    print(f"executable:    {exe}")
    print(f"size:          {size / MIB:.0f} MiB (pruned {pruned / MIB:.0f} MiB, "
          f"{(size + pruned) / MIB:.0f} MiB before pruning)")
    print(f"build time:    {seconds:.0f} s")
    summary = {
        "folder": str(folder),
        "executable": str(exe),
        "size_bytes": size,
        "pruned_bytes": pruned,
        "seconds": round(seconds, 1),
    }
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
