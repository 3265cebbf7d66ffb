"""Delete with undo: images first go to a hidden `.trash` folder in their gallery root, and
to the OS trash (send2trash) only when the undo window closes.

Why not undo straight from the OS trash: restoring from it is not portable (Windows Recycle
Bin, macOS Finder and freedesktop trash each need their own code). A rename within the same
root is atomic and instant, and the holding folder is hidden, so the index never lists it.
Anything left in a holding folder after a crash is sent to the OS trash at the next start
(`purge_leftovers`), so nothing is ever deleted outright.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path

from desktop_app.errors import ErrorKind, UserError

log = logging.getLogger(__name__)

HOLD_DIR = ".trash"


@dataclass(frozen=True)
class TrashedImage:
    """A deleted image that can still be restored. `held` is "" when it went to the OS trash
    at once (holding folder unusable); such an item cannot be undone."""

    original: str
    held: str
    favourite: bool = False

    @property
    def undoable(self) -> bool:
        return bool(self.held)


def _send_to_os_trash(path: str) -> None:
    from send2trash import send2trash

    send2trash(path)


def move_to_trash(path: Path | str, root: Path | str, favourite: bool = False) -> TrashedImage:
    """Take `path` out of the gallery, keeping it restorable (see module docstring)."""
    source = Path(path)
    if not source.exists():
        raise UserError(ErrorKind.missing_file, f"{source.name} no longer exists.",
                        "It was moved or deleted outside the app; press Rescan.")
    hold = Path(root) / HOLD_DIR
    target = hold / f"{time.time_ns()}-{source.name}"
    try:
        hold.mkdir(exist_ok=True)
        os.replace(source, target)
    except OSError as exc:  # read-only root, other device…: straight to the OS trash
        log.info("cannot hold %s for undo (%s); sending it to the trash", source, exc)
        _send_to_os_trash(str(source))
        return TrashedImage(str(source), "", favourite)
    return TrashedImage(str(source), str(target), favourite)


def restore(item: TrashedImage) -> Path:
    """Put a held image back where it was."""
    original = Path(item.original)
    if not item.held or not Path(item.held).exists():
        raise UserError(ErrorKind.missing_file, f"{original.name} cannot be restored any more.",
                        "Look for it in the system trash.")
    if original.exists():
        raise UserError(ErrorKind.bad_input, f"{original.name} exists again; not overwriting it.",
                        f"The deleted copy is in {Path(item.held).parent}.")
    os.replace(item.held, original)
    return original


def purge(item: TrashedImage) -> None:
    """The undo window closed: hand the held file to the OS trash."""
    if item.held and Path(item.held).exists():
        _send_to_os_trash(item.held)


def purge_leftovers(roots: list[str]) -> int:
    """Send images held by a previous (crashed) session to the OS trash."""
    count = 0
    for root in roots:
        hold = Path(root) / HOLD_DIR
        if not hold.is_dir():
            continue
        for entry in hold.iterdir():
            try:
                _send_to_os_trash(str(entry))
                count += 1
            except OSError as exc:
                log.warning("could not move %s to the trash: %s", entry, exc)
    return count
