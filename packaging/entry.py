"""Entry script of the frozen app (PyInstaller runs this instead of `python -m desktop_app`).

Before anything else it makes the process safe to run from a read-only install folder with no
console: the Hugging Face libraries are switched to offline mode before they can be imported,
no bytecode is written next to the bundle, and when the OS gives the process no stdout/stderr
(windowed builds on Windows, apps started from Finder) they are pointed at a log file in the
user's log folder, so `print`, logging handlers and tqdm progress bars never write to None.
HTTPS (the model library's downloads) trusts the CA bundle shipped in the app.

`desktop-app --bundle-check` runs the packaging probe (`bundle_check.py`) instead of the app.
"""

from __future__ import annotations

import io
import os
import sys
from pathlib import Path

CONSOLE_LOG = "console.log"
CONSOLE_LOG_MAX_BYTES = 5 * 1024 * 1024


def _offline_environment() -> None:
    # Forced, not defaulted: the packaged app never talks to a model hub.
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TRANSFORMERS_OFFLINE"] = "1"
    os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"
    os.environ.setdefault("HF_HUB_DISABLE_IMPLICIT_TOKEN", "1")
    sys.dont_write_bytecode = True


def _ca_certificates() -> None:
    """HTTPS model downloads: trust certifi's CA bundle, shipped inside the app.

    The bundled OpenSSL looks for CA certificates where the build machine keeps them, which is
    wrong on other Linux distributions (and Python on macOS has no system store at all).
    """
    if not getattr(sys, "frozen", False) or "SSL_CERT_FILE" in os.environ:
        return
    bundle = Path(getattr(sys, "_MEIPASS", "")) / "certifi" / "cacert.pem"
    if bundle.is_file():
        os.environ["SSL_CERT_FILE"] = str(bundle)


def _attach_parent_console() -> io.TextIOBase | None:
    """On Windows, a windowed exe started from a terminal can still print there."""
    if sys.platform != "win32":
        return None
    import ctypes

    attach_parent_process = -1
    if not ctypes.windll.kernel32.AttachConsole(attach_parent_process):
        return None
    try:
        return open("CONOUT$", "w", encoding="utf-8", errors="backslashreplace", buffering=1)
    except OSError:
        return None


def _log_stream() -> io.TextIOBase:
    """A line-buffered text file in the user's log folder (never the install folder)."""
    from desktop_app import paths

    log_file = Path(paths.log_dir()) / CONSOLE_LOG
    mode = "a"
    if log_file.exists() and log_file.stat().st_size > CONSOLE_LOG_MAX_BYTES:
        mode = "w"
    return open(log_file, mode, encoding="utf-8", errors="backslashreplace", buffering=1)


def _fix_missing_streams() -> None:
    if sys.stdout is not None and sys.stderr is not None:
        return
    stream: io.TextIOBase | None = None
    if len(sys.argv) > 1:  # command-line use: show the output where the user typed
        stream = _attach_parent_console()
    if stream is None:
        try:
            stream = _log_stream()
        except OSError:
            stream = open(os.devnull, "w", encoding="utf-8")  # noqa: SIM115 - lives as long as the process
    if sys.stdout is None:
        sys.stdout = stream
    if sys.stderr is None:
        sys.stderr = stream


def main() -> int:
    import multiprocessing

    # A frozen app re-executes itself for multiprocessing children (spawn on Windows/macOS).
    multiprocessing.freeze_support()
    _offline_environment()
    _ca_certificates()
    _fix_missing_streams()
    if sys.argv[1:] == ["--bundle-check"]:
        import bundle_check

        return bundle_check.main()
    from desktop_app.__main__ import main as app_main

    return app_main(sys.argv[1:])


if __name__ == "__main__":
    sys.exit(main())
