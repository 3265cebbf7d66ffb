"""Headless commands on the same engine as the GUI.

Each sub-system contributes its commands through a module with
`register(subparsers) -> None`; parsers set `func(args) -> int` as their handler.
Exit codes: 0 success, 2 bad input, 1 runtime failure; failures print one clear line on
stderr (the traceback only with --verbose).
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
import traceback

from desktop_app import __version__
from desktop_app.errors import UserError, friendly_error

# Modules that add sub-commands; each has register(subparsers).
COMMAND_MODULES: tuple[str, ...] = (
    "desktop_app.pipeline.commands",
    "desktop_app.library.commands",
    "desktop_app.gallery.commands",
)
COMMANDS = frozenset({"generate", "info", "samplers", "models", "gallery"})

EXIT_OK, EXIT_FAILURE, EXIT_BAD_INPUT = 0, 1, 2


def is_cli_invocation(args: list[str]) -> bool:
    """True when the first non-option argument names a headless command."""
    for arg in args:
        if arg.startswith("-"):
            continue
        return arg in COMMANDS
    return False


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="desktop-app", description="Local Stable Diffusion, offline, from the command line."
    )
    parser.add_argument("--version", action="version", version=f"desktop-app {__version__}")
    parser.add_argument("--verbose", action="store_true", help="show tracebacks and debug logs")
    subparsers = parser.add_subparsers(dest="command", required=True)
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(subparsers)
    return parser


def main(args: list[str]) -> int:
    parser = build_parser()
    verbose = "--verbose" in args
    if verbose:
        args = [a for a in args if a != "--verbose"]
    try:
        ns = parser.parse_args(args)
    except SystemExit as exc:  # argparse: 2 on bad usage, 0 on --help
        return int(exc.code or 0)
    ns.verbose = verbose or ns.verbose
    logging.basicConfig(
        level=logging.DEBUG if ns.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    try:
        return int(ns.func(ns))
    except KeyboardInterrupt:
        print("Interrupted.", file=sys.stderr)
        return EXIT_FAILURE
    except Exception as exc:  # every failure becomes one clear line
        error = friendly_error(exc)
        if ns.verbose:
            traceback.print_exc()
        print(f"error: {error}", file=sys.stderr)
        if isinstance(exc, UserError) and exc.is_input_error:
            return EXIT_BAD_INPUT
        return EXIT_FAILURE
