"""Model hashes (A1111/Civitai) and their persistent cache."""

from __future__ import annotations

import hashlib
import json
import os
import struct
import threading
from pathlib import Path

import pytest

from desktop_app import paths
from desktop_app.errors import ErrorKind, UserError
from desktop_app.library import hashing
from desktop_app.library.hashing import HashCache, addnet_hash, sha256_file, short_hash


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def _rewrite_keeping_stat(path: Path, data: bytes) -> None:
    """Change the content but keep size and mtime: only a cache can still remember the old hash."""
    st = path.stat()
    assert len(data) == st.st_size
    path.write_bytes(data)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))


def test_sha256_covers_the_whole_file_across_blocks(tmp_path: Path) -> None:
    data = os.urandom(2 * hashing.BLOCK_SIZE + 12345)
    path = _write(tmp_path / "m.safetensors", data)
    assert sha256_file(path) == hashlib.sha256(data).hexdigest()


def test_short_hash_is_the_first_ten_hex_digits() -> None:
    full = hashlib.sha256(b"x").hexdigest()
    assert short_hash(full) == full[:10] and len(short_hash(full)) == 10


def test_addnet_hash_skips_the_safetensors_header(tmp_path: Path) -> None:
    body = json.dumps({"__metadata__": {"a": "b"}}).encode()
    tensors = os.urandom(5000)
    path = _write(tmp_path / "l.safetensors", struct.pack("<Q", len(body)) + body + tensors)
    assert addnet_hash(path) == hashlib.sha256(tensors).hexdigest()


def test_progress_reports_reach_the_file_size(tmp_path: Path) -> None:
    path = _write(tmp_path / "m.bin", os.urandom(3 * hashing.BLOCK_SIZE))
    seen: list[tuple[int, int]] = []
    sha256_file(path, lambda done, total: seen.append((done, total)))
    assert seen[-1] == (3 * hashing.BLOCK_SIZE, 3 * hashing.BLOCK_SIZE)


def test_missing_file_is_a_user_error(tmp_path: Path) -> None:
    for call in (sha256_file, HashCache(tmp_path / "c.json").sha256):
        with pytest.raises(UserError) as info:
            call(tmp_path / "nope.safetensors")
        assert info.value.kind is ErrorKind.missing_file


def test_cache_returns_the_stored_hash_while_size_and_mtime_are_unchanged(tmp_path: Path) -> None:
    path = _write(tmp_path / "m.safetensors", b"a" * 100)
    cache = HashCache(tmp_path / "cache.json")
    first = cache.sha256(path)
    _rewrite_keeping_stat(path, b"b" * 100)
    assert cache.sha256(path) == first  # served from the cache, not re-read


def test_cache_invalidates_when_mtime_changes(tmp_path: Path) -> None:
    path = _write(tmp_path / "m.safetensors", b"a" * 100)
    cache = HashCache(tmp_path / "cache.json")
    cache.sha256(path)
    _rewrite_keeping_stat(path, b"b" * 100)
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    assert cache.sha256(path) == hashlib.sha256(b"b" * 100).hexdigest()


def test_cache_invalidates_when_size_changes(tmp_path: Path) -> None:
    path = _write(tmp_path / "m.safetensors", b"a" * 100)
    cache = HashCache(tmp_path / "cache.json")
    cache.sha256(path)
    st = path.stat()
    path.write_bytes(b"a" * 101)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert cache.sha256(path) == hashlib.sha256(b"a" * 101).hexdigest()


def test_cache_persists_across_instances_and_lives_in_the_cache_dir(tmp_path: Path) -> None:
    path = _write(tmp_path / "m.safetensors", b"a" * 100)
    first = hashing.default_cache().sha256(path)
    assert (paths.cache_dir() / hashing.CACHE_FILE_NAME).is_file()
    _rewrite_keeping_stat(path, b"c" * 100)
    assert HashCache(paths.cache_dir() / hashing.CACHE_FILE_NAME).sha256(path) == first


def test_sha256_and_addnet_are_cached_side_by_side(tmp_path: Path) -> None:
    body = b"{}"
    path = _write(tmp_path / "m.safetensors", struct.pack("<Q", 2) + body + b"t" * 50)
    cache = HashCache(tmp_path / "cache.json")
    full, addnet = cache.sha256(path), cache.addnet(path)
    entry = json.loads((tmp_path / "cache.json").read_text())["entries"][str(path.absolute())]
    assert (entry["sha256"], entry["addnet"]) == (full, addnet)
    assert full != addnet


def test_damaged_cache_file_is_ignored_and_replaced(tmp_path: Path) -> None:
    cache_file = _write(tmp_path / "cache.json", b"\x00garbage{")
    path = _write(tmp_path / "m.safetensors", b"a" * 10)
    assert HashCache(cache_file).sha256(path) == hashlib.sha256(b"a" * 10).hexdigest()
    assert json.loads(cache_file.read_text())["version"] == hashing.CACHE_VERSION


def test_cache_writes_leave_no_temporary_files(tmp_path: Path) -> None:
    folder = tmp_path / "cache"
    cache = HashCache(folder / "cache.json")
    for i in range(3):
        cache.sha256(_write(tmp_path / f"{i}.bin", bytes([i]) * 10))
    assert sorted(p.name for p in folder.iterdir()) == ["cache.json"]


def test_concurrent_hashing_keeps_every_entry(tmp_path: Path) -> None:
    cache = HashCache(tmp_path / "cache.json")
    files = [_write(tmp_path / f"{i}.bin", os.urandom(50_000)) for i in range(12)]
    errors: list[BaseException] = []

    def work(path: Path) -> None:
        try:
            cache.sha256(path)
        except BaseException as exc:  # collected and re-raised in the test thread
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(f,)) for f in files]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert errors == []
    stored = json.loads((tmp_path / "cache.json").read_text())["entries"]
    assert {str(f.absolute()): hashlib.sha256(f.read_bytes()).hexdigest() for f in files} == {
        k: v["sha256"] for k, v in stored.items()}


def test_entries_written_by_another_process_are_kept(tmp_path: Path) -> None:
    a, b = HashCache(tmp_path / "cache.json"), HashCache(tmp_path / "cache.json")
    first = _write(tmp_path / "1.bin", b"one")
    second = _write(tmp_path / "2.bin", b"two")
    a.sha256(first)  # a's in-memory view is now loaded
    b.sha256(second)
    a.sha256(_write(tmp_path / "3.bin", b"three"))  # a's write must not drop b's entry
    stored = json.loads((tmp_path / "cache.json").read_text())["entries"]
    assert {str(first.absolute()), str(second.absolute())} <= stored.keys()
