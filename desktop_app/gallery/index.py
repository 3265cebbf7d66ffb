"""The gallery's SQLite index: a disposable cache of what the image files say.

- `gallery.sqlite3` (in `paths.data_dir()`, WAL) holds one row per image file under the
  gallery roots plus an FTS5 table over prompt, negative prompt, model, sampler and seed.
  It is ONLY an index: delete it (or let it be corrupted) and `GalleryIndex` rebuilds it
  from the files. `scan()` is incremental: files whose path, size and mtime are unchanged
  are not read again; files added or removed outside the app are picked up.
- `gallery_state.sqlite3` (same folder, attached as `state`) holds what the files cannot:
  favourites and extra root folders (`gallery import DIR`). It survives index rebuilds.
  Favourites are keyed by the image's absolute path; moving a file outside the app drops
  its star (the file itself is never modified to store one).
"""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
import stat
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from desktop_app import paths, sqlite_util
from desktop_app.errors import ErrorKind, UserError
from desktop_app.gallery import storage
from desktop_app.gallery.index_schema import (
    COLUMNS,
    KEYSET,
    ORDER,
    SCHEMA,
    STATE_SCHEMA,
    UPSERT,
    SortOrder,
    fts_expression,
)
from desktop_app.gallery.metadata import ImageMetadata, read_image_metadata

log = logging.getLogger(__name__)

__all__ = ["GalleryEntry", "GalleryIndex", "GalleryQuery", "ScanStats", "SortOrder",
           "fts_expression"]

INDEX_NAME = "gallery.sqlite3"
STATE_NAME = "gallery_state.sqlite3"
SCHEMA_VERSION = 2
# Above this many FTS matches, walking the sort index and probing the match set beats
# fetching and sorting every match (measured at 100 000 images: benchmarks/gallery_scale.py).
SCAN_PLAN_MIN_MATCHES = 2000
BATCH = 500


@dataclass(frozen=True)
class GalleryQuery:
    """Search text (FTS, every word must match as a prefix), filters and sort order.

    Dates are Unix timestamps (inclusive); `model` matches the model name exactly.
    """

    search: str = ""
    model: str | None = None
    date_from: float | None = None
    date_to: float | None = None
    favourites_only: bool = False
    sort: SortOrder = SortOrder.newest


@dataclass(frozen=True)
class GalleryEntry:
    """One indexed image, as the grid and the CLI show it."""

    id: int
    path: str
    prompt: str
    negative_prompt: str
    model: str
    sampler: str
    seed: int | None
    steps: int | None
    cfg: float | None
    width: int | None
    height: int | None
    created: float
    size: int
    source: str
    mtime_ns: int = 0
    favourite: bool = False

    def to_json(self) -> dict[str, object]:
        """The object `gallery list --json` prints."""
        size = f"{self.width}x{self.height}" if self.width and self.height else None
        return {"path": self.path, "prompt": self.prompt,
                "negative_prompt": self.negative_prompt, "seed": self.seed,
                "steps": self.steps, "sampler": self.sampler, "cfg": self.cfg,
                "width": self.width, "height": self.height, "size": size,
                "model": self.model, "source": self.source, "favourite": self.favourite,
                "created": datetime.fromtimestamp(self.created).isoformat(timespec="seconds")}


@dataclass(frozen=True)
class ScanStats:
    """What a scan changed."""

    added: int = 0
    updated: int = 0
    removed: int = 0
    unchanged: int = 0


def _created(meta: ImageMetadata | None, mtime: float) -> float:
    if meta is not None and meta.created:
        with contextlib.suppress(ValueError, OverflowError, OSError):
            return datetime.fromisoformat(meta.created).timestamp()
    return mtime


def _row(path: str, root: str, st: os.stat_result,
         meta: ImageMetadata | None) -> tuple[object, ...]:
    m = meta or ImageMetadata(source="")
    seed = m.seed if m.seed is None or -(2**63) <= m.seed < 2**63 else None
    return (path, root, st.st_size, st.st_mtime_ns, _created(meta, st.st_mtime),
            m.prompt, m.negative_prompt, m.model_name, m.sampler, seed, m.steps,
            m.cfg_scale, m.width, m.height, m.source if meta is not None else "")


class _StaleIndex(Exception):
    """The index file was written by another schema version."""


def _cannot_open(path: Path, exc: BaseException) -> UserError:
    return UserError(ErrorKind.runtime, f"Cannot open the gallery index {path}: {exc}",
                     "Check that the app's data folder is writable and not full; images "
                     "are safe in their folders either way.")


def _entry(row: tuple[object, ...]) -> GalleryEntry:
    values = list(row)
    values[-1] = bool(values[-1])
    return GalleryEntry(*values)  # type: ignore[arg-type]


def _norm(path: Path | str) -> str:
    return os.path.normpath(os.path.abspath(os.fspath(path)))


class GalleryIndex:
    """The index over all gallery roots (the outputs folder plus imported folders).

    One instance per thread (SQLite connections are not shared); WAL lets a scanning
    thread write while the GUI reads.
    """

    def __init__(self, folder: Path | None = None, default_root: Path | None = None) -> None:
        self.folder = Path(folder) if folder is not None else paths.data_dir()
        self.folder.mkdir(parents=True, exist_ok=True)
        self.default_root = _norm(default_root if default_root is not None
                                  else paths.outputs_dir())
        self.db_path = self.folder / INDEX_NAME
        self.conn = self._open()
        self._fts_counts: dict[str, int] = {}  # per search text; reset by every write

    # -- connection -------------------------------------------------------------------------
    def _connect(self) -> sqlite3.Connection:
        conn = sqlite_util.connect(self.db_path, timeout=30)
        try:
            conn.execute("ATTACH DATABASE ? AS state", (str(self.folder / STATE_NAME),))
            conn.execute("PRAGMA state.journal_mode=WAL")
            conn.executescript(STATE_SCHEMA)
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            if version not in (0, SCHEMA_VERSION):
                raise _StaleIndex(f"index schema {version}")
            if version == 0:
                conn.executescript(SCHEMA)
                conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
            conn.execute("SELECT count(*) FROM images_fts WHERE images_fts MATCH 'x'").fetchone()
        except BaseException:
            conn.close()
            raise
        return conn

    def _open(self) -> sqlite3.Connection:
        try:
            return self._connect()
        except sqlite3.OperationalError as exc:
            if not sqlite_util.is_corruption(exc):  # locked, read-only, full: not ours to delete
                raise _cannot_open(self.db_path, exc) from exc
            failure: Exception = exc
        except (sqlite3.DatabaseError, _StaleIndex) as exc:
            failure = exc
        # Unreadable, corrupt or older index: it is only a cache, so start a fresh one.
        log.warning("gallery index %s unusable (%s); rebuilding it", self.db_path, failure)
        self._discard_files()
        try:
            return self._connect()
        except sqlite3.Error as exc:
            raise _cannot_open(self.db_path, exc) from exc

    def _discard_files(self) -> None:
        for suffix in ("", "-wal", "-shm"):
            Path(f"{self.db_path}{suffix}").unlink(missing_ok=True)

    def close(self) -> None:
        self.conn.close()

    def _transaction(self) -> contextlib.AbstractContextManager[sqlite3.Connection]:
        return sqlite_util.transaction(self.conn, "BEGIN IMMEDIATE")

    # -- roots ------------------------------------------------------------------------------
    def roots(self) -> list[str]:
        """The outputs folder first, then imported folders, in import order."""
        extra = [r for (r,) in self.conn.execute("SELECT path FROM state.roots ORDER BY added")]
        return [self.default_root, *[r for r in extra if r != self.default_root]]

    def add_root(self, folder: Path) -> str:
        """Index `folder` in place from now on (call scan() afterwards)."""
        root = _norm(folder)
        self.conn.execute("INSERT OR IGNORE INTO state.roots VALUES (?, ?)", (root, time.time()))
        return root

    def entry_root(self, path: Path | str) -> str:
        """The gallery root folder an image belongs to (its folder if under none)."""
        return self._root_of(_norm(path))

    def _root_of(self, path: str) -> str:
        matches = [r for r in self.roots() if path.startswith(r.rstrip(os.sep) + os.sep)]
        return max(matches, key=len) if matches else os.path.dirname(path)

    # -- scanning ---------------------------------------------------------------------------
    def _walk(self, root: str, skip: set[str]) -> Iterator[tuple[str, os.stat_result]]:
        for folder, dirs, files in os.walk(root):
            dirs[:] = [d for d in dirs
                       if not d.startswith(".") and os.path.join(folder, d) not in skip]
            for name in files:
                if storage.is_image_name(name):
                    full = os.path.join(folder, name)
                    try:
                        st = os.stat(full)
                    except OSError:
                        continue
                    if stat.S_ISREG(st.st_mode):  # a FIFO named x.png must not block us
                        yield full, st

    def scan(self, progress: Callable[[int], None] | None = None,
             cancelled: Callable[[], bool] | None = None) -> ScanStats:
        """Bring the index in line with the files under every root (incremental)."""
        added = updated = removed = unchanged = 0
        roots = self.roots()
        self.conn.execute(f"DELETE FROM images WHERE root NOT IN ({','.join('?' * len(roots))})",
                          roots)
        for root in roots:
            known = {p: (s, m) for p, s, m in self.conn.execute(
                "SELECT path, size, mtime_ns FROM images WHERE root = ?", (root,))}
            others = {r for r in roots if r != root and r.startswith(root + os.sep)}
            pending: list[tuple[object, ...]] = []
            seen: set[str] = set()
            for path, st in self._walk(root, others):
                if cancelled is not None and cancelled():
                    break
                seen.add(path)
                previous = known.get(path)
                if previous == (st.st_size, st.st_mtime_ns):
                    unchanged += 1
                    continue
                pending.append(_row(path, root, st, read_image_metadata(Path(path))))
                added, updated = (added + 1, updated) if previous is None else (added, updated + 1)
                if len(pending) >= BATCH:
                    self._write(pending)
                    if progress is not None:
                        progress(added + updated + unchanged)
            self._write(pending)
            if cancelled is not None and cancelled():
                break
            gone = [(p,) for p in known if p not in seen]
            with self._transaction() as conn:
                conn.executemany("DELETE FROM images WHERE path = ?", gone)
            removed += len(gone)
        return ScanStats(added, updated, removed, unchanged)

    def _write(self, rows: list[tuple[object, ...]]) -> None:
        self._fts_counts.clear()
        if rows:
            with self._transaction() as conn:
                conn.executemany(UPSERT, rows)
            rows.clear()

    def rebuild(self) -> ScanStats:
        """Forget every row and index the files again (favourites are kept).

        Rows are deleted rather than the file, so other open connections stay valid.
        """
        with self._transaction() as conn:
            conn.execute("DELETE FROM images")
            conn.execute("INSERT INTO images_fts(images_fts) VALUES ('rebuild')")
        return self.scan()

    def add_file(self, path: Path | str) -> GalleryEntry | None:
        """Index one image now (a freshly generated one); None if it is not a readable file."""
        full = _norm(path)
        try:
            st = os.stat(full)
        except OSError:
            return None
        row = _row(full, self._root_of(full), st, read_image_metadata(Path(full)))
        self._write([row])
        return self.entry(full)

    def remove_path(self, path: Path | str) -> None:
        """Forget one image (after it was deleted or moved away)."""
        self._fts_counts.clear()
        self.conn.execute("DELETE FROM images WHERE path = ?", (_norm(path),))

    # -- favourites -------------------------------------------------------------------------
    def set_favourite(self, path: Path | str, favourite: bool) -> None:
        """Star or unstar an image (kept in the state file, survives rebuilds)."""
        if favourite:
            self.conn.execute("INSERT OR IGNORE INTO state.favourites VALUES (?, ?)",
                              (_norm(path), time.time()))
        else:
            self.conn.execute("DELETE FROM state.favourites WHERE path = ?", (_norm(path),))

    def is_favourite(self, path: Path | str) -> bool:
        row = self.conn.execute("SELECT 1 FROM state.favourites WHERE path = ?", (_norm(path),))
        return row.fetchone() is not None

    # -- queries ----------------------------------------------------------------------------
    def _fts_count(self, expression: str, fresh: bool = False) -> int:
        """Matches of an FTS expression; cached for choosing query plans (another thread's
        writes may make it stale, which only affects speed), fresh for `count`."""
        cached = None if fresh else self._fts_counts.get(expression)
        if cached is None:
            cached = int(self.conn.execute(
                "SELECT count(*) FROM images_fts WHERE images_fts MATCH ?",
                (expression,)).fetchone()[0])
            if len(self._fts_counts) > 64:
                self._fts_counts.clear()
            self._fts_counts[expression] = cached
        return cached

    def _where(self, query: GalleryQuery) -> tuple[str, list[object]]:
        clauses: list[str] = []
        args: list[object] = []
        expression = fts_expression(query.search)
        if expression:
            # "+id" stops SQLite from driving the query by the match set: for common words,
            # walking the sort order's index and probing the matches stops after one page.
            many = self._fts_count(expression) > SCAN_PLAN_MIN_MATCHES
            column = "+id" if many else "id"
            clauses.append(f"{column} IN (SELECT rowid FROM images_fts WHERE images_fts MATCH ?)")
            args.append(expression)
        if query.model is not None:
            clauses.append("model = ?")
            args.append(query.model)
        if query.date_from is not None:
            clauses.append("created >= ?")
            args.append(query.date_from)
        if query.date_to is not None:
            clauses.append("created <= ?")
            args.append(query.date_to)
        if query.favourites_only:
            clauses.append("path IN (SELECT path FROM state.favourites)")
        return (" WHERE " + " AND ".join(clauses)) if clauses else "", args

    def query(self, query: GalleryQuery, limit: int = 200, offset: int = 0,
              after: GalleryEntry | None = None) -> list[GalleryEntry]:
        """One page of matching images in the query's sort order.

        Pass the last entry of the previous page as `after` to page by key (constant time per
        page at any depth, for the date orders) instead of by `offset`.
        """
        where, args = self._where(query)
        keyset = KEYSET.get(query.sort) if after is not None else None
        if keyset is not None and after is not None:
            where += (" AND " if where else " WHERE ") + keyset
            args += [after.created, after.id]
            offset = 0
        sql = (f"SELECT {COLUMNS}, path IN (SELECT path FROM state.favourites) FROM images"
               f"{where} ORDER BY {ORDER[query.sort]} LIMIT ? OFFSET ?")
        return [_entry(row) for row in self.conn.execute(sql, [*args, limit, offset])]

    def count(self, query: GalleryQuery) -> int:
        """How many images match."""
        expression = fts_expression(query.search)
        if expression and query == GalleryQuery(search=query.search, sort=query.sort):
            return self._fts_count(expression, fresh=True)
        where, args = self._where(query)
        return int(self.conn.execute(f"SELECT count(*) FROM images{where}", args).fetchone()[0])

    def entry(self, path: Path | str) -> GalleryEntry | None:
        """The indexed record of one file."""
        full = _norm(path)
        row = self.conn.execute(
            f"SELECT {COLUMNS}, path IN (SELECT path FROM state.favourites) FROM images "
            "WHERE path = ?", (full,)).fetchone()
        return _entry(row) if row else None

    def models(self) -> list[str]:
        """Distinct model names, for the filter box."""
        return [m for (m,) in self.conn.execute(
            "SELECT DISTINCT model FROM images WHERE model != '' ORDER BY model")]

    def snapshot(self) -> list[tuple[object, ...]]:
        """Every row without ids (tests compare a live index with a rebuilt one)."""
        return sorted(self.conn.execute(
            "SELECT path, root, size, mtime_ns, created, prompt, negative_prompt, model, sampler,"
            " seed, steps, cfg, width, height, source FROM images"))
