"""The library index: what is known about each model file, persisted in SQLite.

One database (`paths.data_dir() / "library.sqlite3"`) holds the adopted folders, one row per
file (stat signature, detected kind/family/status, modelspec title/description, the sha256 once
the background hasher has computed it) and the user's per-model choices (display name, VAE,
hidden). It is an index: every row can be rebuilt from the files, except those choices.

Thread-safe: one connection guarded by a lock, so the GUI thread, the scanner and the hasher
thread can share a store.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from desktop_app import paths, sqlite_util
from desktop_app.errors import ErrorKind, UserError
from desktop_app.fileio import keep_aside
from desktop_app.library.hashing import short_hash

log = logging.getLogger(__name__)

DB_NAME = "library.sqlite3"
SCHEMA_VERSION = 1
VAE_BAKED = "baked"
VAE_AUTO = "auto"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS roots (
    path TEXT PRIMARY KEY, layout TEXT NOT NULL, added REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS files (
    path TEXT PRIMARY KEY, root TEXT, size INTEGER NOT NULL, mtime_ns INTEGER NOT NULL,
    kind TEXT NOT NULL, family TEXT, status TEXT NOT NULL, reason TEXT NOT NULL DEFAULT '',
    title TEXT NOT NULL DEFAULT '', description TEXT NOT NULL DEFAULT '',
    has_thumbnail INTEGER NOT NULL DEFAULT 0, sha256 TEXT,
    display_name TEXT, vae TEXT NOT NULL DEFAULT 'auto', hidden INTEGER NOT NULL DEFAULT 0,
    added REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS files_root ON files(root);
CREATE TABLE IF NOT EXISTS thumbnails (path TEXT PRIMARY KEY, data BLOB NOT NULL);
"""
_COLUMNS = ("path", "root", "size", "mtime_ns", "kind", "family", "status", "reason", "title",
            "description", "has_thumbnail", "sha256", "display_name", "vae", "hidden")


@dataclass(frozen=True)
class LibraryItem:
    """One model file as the library knows it (immutable; safe to hand to the GUI thread).

    `status` is "ok", "unsupported", "corrupt" or "missing"; `reason` says why when not ok.
    `root` is the adopted folder the file was found in, or None for a file added on its own.
    `vae` is "baked", "auto" or the path of a VAE file.
    """

    path: str
    root: str | None
    size: int
    mtime_ns: int
    kind: str
    family: str | None
    status: str
    reason: str
    title: str
    description: str
    has_thumbnail: bool
    sha256: str | None
    display_name: str | None
    vae: str
    hidden: bool

    @property
    def name(self) -> str:
        """What to show: the user's name, else the modelspec title, else the file name."""
        return self.display_name or self.title or Path(self.path).stem

    @property
    def short_hash(self) -> str | None:
        """A1111's "Model hash" / Civitai AutoV2: the first 10 hex digits of the sha256."""
        return short_hash(self.sha256) if self.sha256 else None

    def to_json(self) -> dict[str, object]:
        """The `models list --json` object."""
        return {"path": self.path, "name": self.name, "kind": self.kind, "family": self.family,
                "status": self.status, "reason": self.reason, "size": self.size,
                "title": self.title, "sha256": self.sha256, "hash": self.short_hash,
                "vae": self.vae, "root": self.root}


@dataclass(frozen=True)
class Scanned:
    """What the scanner learned about a file (without loading weights)."""

    size: int
    mtime_ns: int
    kind: str
    family: str | None
    status: str
    reason: str = ""
    title: str = ""
    description: str = ""
    thumbnail: bytes | None = None


class LibraryStore:
    """SQLite-backed library index. See the module docstring."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = path or paths.data_dir() / DB_NAME
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()
        self._db = self._open()

    def _connect(self) -> sqlite3.Connection:
        db = sqlite_util.connect(self.path)
        try:
            version = db.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise UserError(
                    ErrorKind.unsupported,
                    f"The model library {self.path} was written by a newer version of "
                    f"desktop_app (library schema {version}; this version reads "
                    f"{SCHEMA_VERSION}).",
                    "Update desktop_app, or move that file aside to start an empty library "
                    "(your model files are not touched).")
            db.executescript(_SCHEMA)
            db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
        except BaseException:
            db.close()
            raise
        return db

    def _open(self) -> sqlite3.Connection:
        """Open the index; a damaged file is kept aside (it holds the user's choices) and a
        fresh index starts, since every other row is rebuilt by the next scan."""
        try:
            return self._connect()
        except sqlite3.DatabaseError as exc:
            if not sqlite_util.is_corruption(exc):  # locked, read-only, full: not ours to move
                raise UserError(ErrorKind.runtime,
                                f"Cannot open the model library {self.path}: {exc}",
                                "Check that the app's data folder is writable and not full; "
                                "your model files are not touched.") from exc
            aside = keep_aside(self.path, f"damaged-{int(time.time())}")
            for suffix in ("-wal", "-shm"):
                Path(f"{self.path}{suffix}").unlink(missing_ok=True)
            log.warning("model library %s unreadable (%s); kept it as %s and started a new one",
                        self.path, exc, aside.name)
            return self._connect()

    def close(self) -> None:
        with self._lock:
            self._db.close()

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        with self._lock, sqlite_util.transaction(self._db) as db:
            yield db

    # ---- roots ---------------------------------------------------------------------------

    def add_root(self, path: str, layout: str) -> None:
        with self._tx() as db:
            db.execute("INSERT OR REPLACE INTO roots VALUES (?, ?, ?)", (path, layout, time.time()))

    def remove_root(self, path: str) -> None:
        """Forget an adopted folder and its rows (the files themselves are untouched)."""
        with self._tx() as db:
            db.execute("DELETE FROM roots WHERE path = ?", (path,))
            db.execute("DELETE FROM thumbnails WHERE path IN "
                       "(SELECT path FROM files WHERE root = ?)", (path,))
            db.execute("DELETE FROM files WHERE root = ?", (path,))

    def roots(self) -> list[tuple[str, str]]:
        with self._lock:
            return list(self._db.execute("SELECT path, layout FROM roots ORDER BY path"))

    # ---- files ---------------------------------------------------------------------------

    def items(self, include_hidden: bool = False) -> list[LibraryItem]:
        """All known files, sorted by name; no file system access."""
        where = "" if include_hidden else " WHERE hidden = 0"
        with self._lock:
            rows = self._db.execute(f"SELECT {', '.join(_COLUMNS)} FROM files{where}").fetchall()
        return sorted((_item(r) for r in rows), key=lambda i: (i.name.lower(), i.path))

    def get(self, path: str) -> LibraryItem | None:
        with self._lock:
            row = self._db.execute(f"SELECT {', '.join(_COLUMNS)} FROM files WHERE path = ?",
                                   (path,)).fetchone()
        return _item(row) if row else None

    def signatures(self, root: str | None) -> dict[str, tuple[int, int, str]]:
        """path → (size, mtime_ns, status) for the rows of one root (None: single files)."""
        with self._lock:
            rows = self._db.execute(
                "SELECT path, size, mtime_ns, status FROM files WHERE root IS ?", (root,))
            return {r[0]: (r[1], r[2], r[3]) for r in rows}

    def upsert_many(self, root: str | None, scanned: Iterable[tuple[str, Scanned]]) -> None:
        """Store fresh scan results; a changed file loses its old hash (kept choices stay)."""
        with self._tx() as db:
            for path, s in scanned:
                db.execute(
                    "INSERT INTO files (path, root, size, mtime_ns, kind, family, status, reason,"
                    " title, description, has_thumbnail, sha256, added)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, NULL, ?)"
                    " ON CONFLICT(path) DO UPDATE SET root=excluded.root, size=excluded.size,"
                    " mtime_ns=excluded.mtime_ns, kind=excluded.kind, family=excluded.family,"
                    " status=excluded.status, reason=excluded.reason, title=excluded.title,"
                    " description=excluded.description, has_thumbnail=excluded.has_thumbnail,"
                    " sha256=NULL",
                    (path, root, s.size, s.mtime_ns, s.kind, s.family, s.status, s.reason,
                     s.title, s.description, int(s.thumbnail is not None), time.time()))
                db.execute("DELETE FROM thumbnails WHERE path = ?", (path,))
                if s.thumbnail is not None:
                    db.execute("INSERT INTO thumbnails VALUES (?, ?)", (path, s.thumbnail))

    def mark_missing(self, paths_: Iterable[str], reason: str) -> None:
        with self._tx() as db:
            for path in paths_:
                db.execute("UPDATE files SET status = 'missing', reason = ? WHERE path = ?",
                           (reason, path))

    def delete_rows(self, paths_: Iterable[str]) -> None:
        with self._tx() as db:
            for path in paths_:
                db.execute("DELETE FROM files WHERE path = ?", (path,))
                db.execute("DELETE FROM thumbnails WHERE path = ?", (path,))

    def set_hash(self, path: str, size: int, mtime_ns: int, sha256: str) -> bool:
        """Record a hash if the row still has this stat signature; False if the file changed."""
        with self._tx() as db:
            cur = db.execute("UPDATE files SET sha256 = ? WHERE path = ? AND size = ?"
                             " AND mtime_ns = ?", (sha256, path, size, mtime_ns))
            return cur.rowcount == 1

    def unhashed(self) -> list[LibraryItem]:
        """Rows still waiting for the background hasher (readable files only)."""
        return [i for i in self.items(include_hidden=True)
                if i.sha256 is None and i.status in ("ok", "unsupported")]

    def set_display_name(self, path: str, name: str | None) -> None:
        with self._tx() as db:
            db.execute("UPDATE files SET display_name = ? WHERE path = ?",
                       ((name or "").strip() or None, path))

    def set_vae(self, path: str, choice: str) -> None:
        """"baked", "auto" or a VAE file path."""
        with self._tx() as db:
            db.execute("UPDATE files SET vae = ? WHERE path = ?", (choice or VAE_AUTO, path))

    def set_hidden(self, path: str, hidden: bool) -> None:
        with self._tx() as db:
            db.execute("UPDATE files SET hidden = ? WHERE path = ?", (int(hidden), path))

    def thumbnail(self, path: str) -> bytes | None:
        with self._lock:
            row = self._db.execute("SELECT data FROM thumbnails WHERE path = ?",
                                   (path,)).fetchone()
        return bytes(row[0]) if row else None


def _item(row: tuple[object, ...]) -> LibraryItem:
    values = dict(zip(_COLUMNS, row, strict=True))
    values["has_thumbnail"] = bool(values["has_thumbnail"])
    values["hidden"] = bool(values["hidden"])
    return LibraryItem(**values)  # type: ignore[arg-type]
