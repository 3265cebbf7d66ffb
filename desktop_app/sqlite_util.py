"""The SQLite connection settings the gallery index and the model library share.

Both open one autocommit connection (transactions are explicit, see `transaction`) that may be
used from another thread than the one that opened it, in WAL mode with synchronous=NORMAL:
readers never block the one writer, and a crash loses at most the last commits, never the
database.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def connect(path: Path, *, timeout: float = 5.0) -> sqlite3.Connection:
    """Open `path` in autocommit mode with WAL and synchronous=NORMAL (closed again on failure).

    `timeout`: seconds to wait for another writer's lock before raising.
    """
    conn = sqlite3.connect(path, timeout=timeout, isolation_level=None, check_same_thread=False)
    try:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
    except BaseException:
        conn.close()
        raise
    return conn


def is_corruption(exc: sqlite3.Error) -> bool:
    """Whether an error means the file is damaged or not ours (rather than locked, read-only
    or full): only then may a rebuildable database be set aside and started afresh."""
    text = str(exc).lower()
    return any(word in text for word in ("malformed", "not a database", "no such table",
                                         "no such column", "corrupt"))


@contextmanager
def transaction(conn: sqlite3.Connection, begin: str = "BEGIN") -> Iterator[sqlite3.Connection]:
    """Run the block in one transaction: COMMIT when it succeeds, ROLLBACK when it raises.

    `begin` may be "BEGIN IMMEDIATE" to take the write lock up front (no upgrade deadlock).
    """
    conn.execute(begin)
    try:
        yield conn
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")
