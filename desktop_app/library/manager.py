"""One facade over the library pieces, shared by the CLI and the GUI's view-model.

`Library` owns the catalog, the SQLite store, the scanner and the background hasher. It never
touches the network (downloads are separate, explicit calls) and never deletes a user's file
(removing hides the row; deleting a file is a separate call that the GUI confirms first).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from pathlib import Path

from desktop_app.errors import ErrorKind, UserError
from desktop_app.library.catalog import Catalog, load_catalog
from desktop_app.library.downloads import Cancellable, DownloadSource, ProgressCallback
from desktop_app.library.scan import BackgroundHasher, Inspector, Scanner, ScanReport
from desktop_app.library.store import LibraryItem, LibraryStore

log = logging.getLogger(__name__)


class Library:
    """Catalog + store + scanner + hasher (see the module docstring)."""

    def __init__(self, catalog: Catalog | None = None, store: LibraryStore | None = None,
                 inspect: Inspector | None = None) -> None:
        self.catalog = catalog or load_catalog()
        self.store = store or LibraryStore()
        self.scanner = Scanner(self.store, inspect)
        self._hasher: BackgroundHasher | None = None

    def close(self) -> None:
        self.stop_hashing()
        self.store.close()

    def items(self) -> list[LibraryItem]:
        """Everything known, instantly (from the index; no file system access)."""
        return self.store.items()

    def refresh(self) -> ScanReport:
        """Re-stat all adopted folders, the app's own library folders and single files."""
        root = self.catalog.library.root
        own = tuple(root / sub for sub in self.catalog.library.subfolders.values())
        for folder in own:
            folder.mkdir(parents=True, exist_ok=True)
        report = self.scanner.scan_all(extra_folders=own + self.catalog.library.folders)
        self.wake_hasher()
        return report

    def add(self, path: Path, copy: bool = False) -> tuple[str, ScanReport | LibraryItem]:
        """Add a file (in place, or copied into the library) or adopt a folder in place.

        Returns ("folder", report) or ("file", item).
        """
        path = path.expanduser()
        if path.is_dir() and not (path / "model_index.json").is_file():
            if copy:
                raise UserError(ErrorKind.bad_input, "Folders are adopted in place, not copied.",
                                "Add the folder without --copy.")
            report = self.scanner.adopt(path)
            self.wake_hasher()
            return "folder", report
        copy_to = None
        if copy:
            kind = self._kind_of(path)
            copy_to = self.catalog.library.folder_for(kind)
        added = self.scanner.add_file(path, copy_to=copy_to)
        self.wake_hasher()
        item = self.store.get(str(added))
        assert item is not None
        return "file", item

    def _kind_of(self, path: Path) -> str:
        from desktop_app.library.scan import _inspect_default, scanned_from_info

        if not path.exists():
            raise UserError(ErrorKind.missing_file, f"File not found: {path}",
                          "It was moved or deleted outside the app; rescan the library.")
        kind = scanned_from_info(_inspect_default(path), 0, 0, None).kind
        return kind if kind in self.catalog.library.subfolders else "checkpoint"

    def download(self, source: DownloadSource, on_progress: ProgressCallback | None = None,
                 cancel: Cancellable | None = None) -> Path:
        """Download (verified) into the library folder of its kind and index it.

        A pasted URL's kind is only known after the download: the file is then moved to the
        folder of the kind its header shows (VAE, preview decoder) before it is indexed.
        """
        from desktop_app.library.downloads import download

        path = download(source, self.catalog.library.folder_for(source.kind),
                        on_progress=on_progress, cancel=cancel)
        if source.entry_id is None:
            path = self._refile(path)
        self.scanner.add_file(path)
        self.wake_hasher()
        return path

    def _refile(self, path: Path) -> Path:
        try:
            kind = self._kind_of(path)
        except UserError:  # verified but not a model we know: stays, listed with its reason
            return path
        target = self.catalog.library.folder_for(kind) / path.name
        if target.parent == path.parent or target.exists():
            return path
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(path, target)
        return target

    def remove(self, path: str) -> None:
        """Remove from the library only: the row is hidden, the file stays where it is."""
        item = self.store.get(path)
        if item is None:
            return
        if item.root is None:
            self.store.delete_rows([path])
        else:
            self.store.set_hidden(path, True)  # a rescan of its folder must not bring it back

    def delete_file(self, path: str) -> None:
        """Move the user's file to the trash (only after the GUI's explicit confirmation)."""
        from send2trash import send2trash

        target = Path(path)
        if not target.exists():
            raise UserError(ErrorKind.missing_file, f"File not found: {path}",
                          "It was moved or deleted outside the app; rescan the library.")
        send2trash(str(target))
        self.store.delete_rows([path])

    def start_hashing(self, on_hashed: Callable[[str, str], None] | None = None) -> None:
        """Start the background hasher (idempotent)."""
        if self._hasher is None:
            self._hasher = BackgroundHasher(self.store, on_hashed)
        self._hasher.start()

    def wake_hasher(self) -> None:
        if self._hasher is not None:
            self._hasher.wake()

    def stop_hashing(self) -> None:
        if self._hasher is not None:
            self._hasher.stop()
            self._hasher = None

    @property
    def hasher(self) -> BackgroundHasher | None:
        return self._hasher
