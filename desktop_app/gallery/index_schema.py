"""SQL of the gallery index: schema, sort orders, FTS query building (see gallery.index)."""

from __future__ import annotations

import enum

SCHEMA = """
CREATE TABLE IF NOT EXISTS images (
    id INTEGER PRIMARY KEY, path TEXT NOT NULL UNIQUE, root TEXT NOT NULL,
    size INTEGER NOT NULL, mtime_ns INTEGER NOT NULL, created REAL NOT NULL,
    prompt TEXT NOT NULL DEFAULT '', negative_prompt TEXT NOT NULL DEFAULT '',
    model TEXT NOT NULL DEFAULT '', sampler TEXT NOT NULL DEFAULT '', seed INTEGER,
    steps INTEGER, cfg REAL, width INTEGER, height INTEGER, source TEXT NOT NULL DEFAULT '');
CREATE INDEX IF NOT EXISTS images_created ON images(created);
-- DESC/ASC so that a backward scan yields ORDER BY model ASC, created DESC, id DESC.
CREATE INDEX IF NOT EXISTS images_model ON images(model DESC, created ASC);
CREATE INDEX IF NOT EXISTS images_seed ON images(seed);
CREATE INDEX IF NOT EXISTS images_root ON images(root);
CREATE VIRTUAL TABLE IF NOT EXISTS images_fts USING fts5(
    prompt, negative_prompt, model, sampler, seed, content='images', content_rowid='id');
CREATE TRIGGER IF NOT EXISTS images_ai AFTER INSERT ON images BEGIN
    INSERT INTO images_fts(rowid, prompt, negative_prompt, model, sampler, seed)
    VALUES (new.id, new.prompt, new.negative_prompt, new.model, new.sampler, new.seed); END;
CREATE TRIGGER IF NOT EXISTS images_ad AFTER DELETE ON images BEGIN
    INSERT INTO images_fts(images_fts, rowid, prompt, negative_prompt, model, sampler, seed)
    VALUES ('delete', old.id, old.prompt, old.negative_prompt, old.model, old.sampler,
            old.seed); END;
CREATE TRIGGER IF NOT EXISTS images_au AFTER UPDATE ON images BEGIN
    INSERT INTO images_fts(images_fts, rowid, prompt, negative_prompt, model, sampler, seed)
    VALUES ('delete', old.id, old.prompt, old.negative_prompt, old.model, old.sampler,
            old.seed);
    INSERT INTO images_fts(rowid, prompt, negative_prompt, model, sampler, seed)
    VALUES (new.id, new.prompt, new.negative_prompt, new.model, new.sampler, new.seed); END;
"""
STATE_SCHEMA = """
CREATE TABLE IF NOT EXISTS state.favourites (path TEXT PRIMARY KEY, added REAL NOT NULL);
CREATE TABLE IF NOT EXISTS state.roots (path TEXT PRIMARY KEY, added REAL NOT NULL);
"""
COLUMNS = ("id, path, prompt, negative_prompt, model, sampler, seed, steps, cfg, width, "
           "height, created, size, source, mtime_ns")


class SortOrder(enum.Enum):
    """How the grid is ordered."""

    newest = "newest"
    oldest = "oldest"
    model = "model"
    seed = "seed"


ORDER = {
    SortOrder.newest: "created DESC, id DESC",
    SortOrder.oldest: "created ASC, id ASC",
    SortOrder.model: "model ASC, created DESC, id DESC",
    SortOrder.seed: "seed ASC, id ASC",
}

KEYSET = {
    SortOrder.newest: "(created, id) < (?, ?)",
    SortOrder.oldest: "(created, id) > (?, ?)",
}


def fts_expression(text: str) -> str:
    """User words → an FTS5 query: each word quoted (no syntax errors) and prefix-matched."""
    words = [w.replace('"', '""') for w in text.split() if w.strip('"')]
    return " AND ".join(f'"{w}"*' for w in words[:32])


UPSERT = """INSERT INTO images (path, root, size, mtime_ns, created, prompt, negative_prompt,
    model, sampler, seed, steps, cfg, width, height, source)
    VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
    ON CONFLICT(path) DO UPDATE SET root=excluded.root, size=excluded.size,
    mtime_ns=excluded.mtime_ns, created=excluded.created, prompt=excluded.prompt,
    negative_prompt=excluded.negative_prompt, model=excluded.model, sampler=excluded.sampler,
    seed=excluded.seed, steps=excluded.steps, cfg=excluded.cfg, width=excluded.width,
    height=excluded.height, source=excluded.source"""
