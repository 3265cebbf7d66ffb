"""Atomic replacement: the old file or the whole new one, never half, never temp litter."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from desktop_app import fileio
from desktop_app.gallery import storage


def test_atomic_write_replaces_the_file_and_leaves_no_temp(tmp_path: Path) -> None:
    target = tmp_path / "new" / "settings.json"
    fileio.atomic_write_text(target, "first")
    fileio.atomic_write_text(target, "second ✓")
    fileio.atomic_write_bytes(tmp_path / "new" / "blob.bin", b"\x00\x01")
    assert target.read_text(encoding="utf-8") == "second ✓"
    assert (tmp_path / "new" / "blob.bin").read_bytes() == b"\x00\x01"
    assert sorted(p.name for p in target.parent.iterdir()) == ["blob.bin", "settings.json"]


def test_a_failing_writer_keeps_the_old_file_and_removes_its_temp(tmp_path: Path) -> None:
    target = tmp_path / "state" / "queue.json"
    target.parent.mkdir()
    target.write_text("old", encoding="utf-8")
    with pytest.raises(RuntimeError), fileio.atomic_path(target) as tmp:
        tmp.write_text("half", encoding="utf-8")
        raise RuntimeError("disk full")
    assert target.read_text(encoding="utf-8") == "old"
    assert [p.name for p in target.parent.iterdir()] == ["queue.json"]


def test_the_temp_file_is_hidden_litter_the_gallery_ignores(tmp_path: Path) -> None:
    target = tmp_path / "outputs" / "00001-42.png"
    with fileio.atomic_path(target, durable=False) as tmp:
        assert tmp.parent == target.parent and tmp.name.startswith(".00001-42.png.")
        assert storage.is_litter(tmp.name) and not storage.is_image_name(tmp.name)
        tmp.write_bytes(b"png")
    assert target.read_bytes() == b"png"


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX permission bits")
def test_the_new_file_gets_the_permissions_a_plain_write_would(tmp_path: Path) -> None:
    plain = tmp_path / "plain.txt"
    plain.write_text("x", encoding="utf-8")
    atomic = tmp_path / "atomic.txt"
    fileio.atomic_write_text(atomic, "x")
    assert os.stat(atomic).st_mode == os.stat(plain).st_mode


def test_keep_aside_never_overwrites_an_earlier_copy(tmp_path: Path) -> None:
    target = tmp_path / "settings.json"
    kept = []
    for text in ("{first", "{second", "{third"):
        target.write_text(text)
        kept.append(fileio.keep_aside(target, "bad"))
    assert [p.name for p in kept] == ["settings.json.bad", "settings.json.bad-2",
                                      "settings.json.bad-3"]
    assert [p.read_text() for p in kept] == ["{first", "{second", "{third"]
    assert not target.exists()
    with pytest.raises(FileNotFoundError):
        fileio.keep_aside(target, "bad")
