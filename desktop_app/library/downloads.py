"""Verified, resumable downloads of model files — only ever when the user asks.

Nothing here runs at start-up. A download streams into `<name>.part` (with a small
`<name>.part.json` sidecar recording the URL and the expected hash), hashing as it goes; the
file enters the library (an atomic rename to `<name>`) only after its sha256 (and size, when
known) match.

What is left behind when it does not finish:
- cancelled by the user, or the connection dropped mid-transfer → the `.part` file and its
  sidecar stay, so running the same download again resumes with an HTTP Range request;
- the transfer completed but the size or the sha256 is wrong (a truncated or substituted file)
  → the `.part` and sidecar are deleted: nothing partial remains.
`.part` files are never listed by the library scanner.

Sources: a catalog id, a Hugging Face URL (`https://huggingface.co/<repo>/resolve/<rev>/<file>`
or `/blob/`, or the `<owner>/<repo>/<file>` shorthand), or any HTTPS URL. Plain http:// is
accepted only for loopback hosts (local mirrors and tests). A source without a verified sha256
needs an explicit one (`--sha256`), except that a Hugging Face LFS file's sha256 advertised by
the Hub (`X-Linked-ETag`) is used and reported when no hash was given.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import re
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from desktop_app.errors import ErrorKind, UserError, bad_input
from desktop_app.fileio import fsync_dir, fsync_file
from desktop_app.library.catalog import Catalog

CHUNK = 1 << 20
TIMEOUT_S = 30.0
USER_AGENT = "desktop-app-model-download/1"
_SHA256 = re.compile(r"^[0-9a-fA-F]{64}$")
_HF_HOST = "huggingface.co"
_LOOPBACK = ("127.", "localhost", "[::1]", "::1")

ProgressCallback = Callable[[int, int | None], None]


class Cancellable(Protocol):
    @property
    def cancelled(self) -> bool: ...


@dataclass(frozen=True)
class DownloadSource:
    """What to fetch and what it must hash to; `sha256` None means "trust the Hub's LFS hash"."""

    urls: tuple[str, ...]
    filename: str
    kind: str = "checkpoint"
    family: str | None = None
    sha256: str | None = None
    size: int | None = None
    entry_id: str | None = None


def resolve_source(id_or_url: str, catalog: Catalog, sha256: str | None = None,
                   kind: str = "checkpoint") -> DownloadSource:
    """Turn what the user typed (catalog id, URL or HF shorthand) into a DownloadSource.

    Raises UserError (bad_input) for unusable input or a source without any hash to check.
    """
    text = id_or_url.strip()
    expected = _checked_sha(sha256) if sha256 else None
    if text in catalog.entries:
        entry = catalog.entries[text]
        if expected and entry.sha256 and expected != entry.sha256:
            raise bad_input(f"--sha256 does not match the catalog's hash for {text!r}.",
                            "Leave --sha256 out to use the catalog's verified hash.")
        if not (entry.sha256 or expected):
            raise bad_input(f"Catalog entry {text!r} has no verified sha256.",
                            "Pass --sha256 with the hash published by the model's author.")
        return DownloadSource(entry.urls, entry.filename, entry.kind, entry.family,
                              entry.sha256 or expected, entry.size, entry.id)
    url = _normalise_url(text)
    filename = _filename_from_url(url)
    if expected is None and not _is_hf(url):
        raise bad_input("A download from a plain URL needs the file's sha256.",
                        "Pass --sha256 HEX (the hash published with the file), "
                        "or use a catalog id (`desktop-app models download --list`).")
    return DownloadSource((url,), filename, kind, None, expected)


def _checked_sha(value: str) -> str:
    if not _SHA256.match(value.strip()):
        raise bad_input(f"{value!r} is not a sha256 (64 hexadecimal digits).")
    return value.strip().lower()


def _normalise_url(text: str) -> str:
    if "://" not in text:
        parts = text.strip("/").split("/")
        if len(parts) < 3 or any(p in ("", ".", "..") for p in parts):
            raise bad_input(f"{text!r} is neither a catalog id nor a URL.",
                            "Use a catalog id, an https:// URL or owner/repo/file.safetensors.")
        repo, file = "/".join(parts[:2]), "/".join(parts[2:])
        return f"https://{_HF_HOST}/{repo}/resolve/main/{urllib.parse.quote(file)}"
    parsed = urllib.parse.urlsplit(text)
    host = (parsed.hostname or "").lower()
    if parsed.scheme == "http" and not host.startswith(_LOOPBACK):
        raise bad_input("Only https:// downloads are allowed.", "Use the https:// address.")
    if parsed.scheme not in ("http", "https") or not host:
        raise bad_input(f"Unsupported URL {text!r}.", "Use an https:// address.")
    if host == _HF_HOST and "/blob/" in parsed.path:
        parsed = parsed._replace(path=parsed.path.replace("/blob/", "/resolve/", 1))
    return urllib.parse.urlunsplit(parsed)


def _filename_from_url(url: str) -> str:
    name = urllib.parse.unquote(urllib.parse.urlsplit(url).path.rsplit("/", 1)[-1])
    if not name or name in (".", "..") or "/" in name or "\\" in name:
        raise bad_input(f"Cannot tell the file name from {url!r}.")
    return name


def _is_hf(url: str) -> bool:
    return (urllib.parse.urlsplit(url).hostname or "").lower() == _HF_HOST


def part_paths(dest: Path) -> tuple[Path, Path]:
    """The in-progress file and its sidecar for a final destination."""
    return dest.with_name(dest.name + ".part"), dest.with_name(dest.name + ".part.json")


def download(source: DownloadSource, dest_dir: Path, *, on_progress: ProgressCallback | None = None,
             cancel: Cancellable | None = None, timeout: float = TIMEOUT_S) -> Path:
    """Fetch `source` into `dest_dir`, verified; returns the final path.

    Raises UserError: cancelled (kind cancelled; .part kept), network (.part kept for resume),
    corrupt_file (wrong size/hash; nothing left behind), bad_input (destination taken).
    """
    dest_dir.mkdir(parents=True, exist_ok=True)
    dest = dest_dir / source.filename
    if dest.exists():
        return _existing(dest, source)
    errors: list[UserError] = []
    for url in source.urls:
        try:
            return _download_one(url, source, dest, on_progress, cancel, timeout)
        except UserError as exc:
            if exc.kind is not ErrorKind.network:
                raise
            errors.append(exc)
    raise errors[-1]


def _existing(dest: Path, source: DownloadSource) -> Path:
    if source.sha256 and _file_sha256(dest) == source.sha256:
        return dest
    raise bad_input(f"{dest} already exists and is a different file.",
                    "Move or rename it first; the app never overwrites your files.")


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while block := fh.read(CHUNK):
            digest.update(block)
    return digest.hexdigest()


class _LinkedHeaders(urllib.request.HTTPRedirectHandler):
    """Remembers the Hub's X-Linked-ETag / X-Linked-Size seen on any redirect hop."""

    def __init__(self) -> None:
        self.seen: dict[str, str] = {}

    def http_error_302(self, req: Any, fp: Any, code: int, msg: str, headers: Any) -> Any:
        self._remember(headers)
        return super().http_error_302(req, fp, code, msg, headers)

    http_error_301 = http_error_303 = http_error_307 = http_error_308 = http_error_302

    def _remember(self, headers: Any) -> None:
        for key in ("X-Linked-ETag", "X-Linked-Size"):
            value = headers.get(key)
            if value:
                self.seen[key] = value.strip().strip('"')


def _open(url: str, offset: int, timeout: float) -> tuple[Any, _LinkedHeaders]:
    linked = _LinkedHeaders()
    opener = urllib.request.build_opener(linked)
    request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT})
    if offset:
        request.add_header("Range", f"bytes={offset}-")
    try:
        response = opener.open(request, timeout=timeout)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and offset:
            return None, linked
        raise UserError(ErrorKind.network, f"The server refused the download (HTTP {exc.code}).",
                        _http_hint(exc.code)) from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise UserError(ErrorKind.network, f"Could not connect: {reason}.",
                        "Check the network connection and the address, then try again.") from None
    linked._remember(response.headers)
    return response, linked


def _http_hint(code: int) -> str:
    if code in (401, 403):
        return "The file needs a login or licence acceptance on the website; download it there."
    if code == 404:
        return "Check the address; the file may have moved."
    return "Try again later."


def _download_one(url: str, source: DownloadSource, dest: Path,
                  on_progress: ProgressCallback | None, cancel: Cancellable | None,
                  timeout: float) -> Path:
    part, sidecar = part_paths(dest)
    offset = _resumable_offset(part, sidecar, url, source)
    response, linked = _open(url, offset, timeout)
    expected = source.sha256 or _hub_sha(linked)
    if expected is None:
        _close(response)
        raise bad_input("The server did not publish a sha256 for this file.",
                        "Pass --sha256 HEX with the hash published by the model's author.")
    if response is None:  # 416: the .part already holds the whole file
        return _finish(part, sidecar, dest, source, expected, _sha_of_part(part, offset))
    with response:
        if offset and (response.status != 206 or _range_start(response) != offset):
            offset = 0  # the server ignored Range (or answered another one): start over
            if response.status == 206:
                _discard(part, sidecar)
                raise UserError(ErrorKind.network, "The server answered a different range.",
                                "Start the download again; it will restart from zero.")
        total = _total_size(response, offset, source, linked)
        announced = _announced(response, offset)
        sidecar.write_text(json.dumps({"url": url, "sha256": expected}), encoding="utf-8")
        digest = _sha_of_part(part, offset)
        done = _stream(response, part, offset, digest, total, on_progress, cancel)
    if announced is not None and done < announced:  # the connection ended early
        raise UserError(ErrorKind.network, "The connection was lost before the end of the file.",
                        "Start the same download again to resume.")
    if total is not None and done < total:
        _discard(part, sidecar)
        raise UserError(ErrorKind.corrupt_file,
                        f"The download is truncated ({done:,} of {total:,} bytes).",
                        "Nothing was kept; try again, or pick another mirror.")
    return _finish(part, sidecar, dest, source, expected, digest)


def _range_start(response: Any) -> int | None:
    match = re.match(r"bytes (\d+)-", response.headers.get("Content-Range", ""))
    return int(match.group(1)) if match else None


def _hub_sha(linked: _LinkedHeaders) -> str | None:
    value = linked.seen.get("X-Linked-ETag", "")
    return value.lower() if _SHA256.match(value) else None


def _close(response: Any) -> None:
    if response is not None:
        response.close()


def _resumable_offset(part: Path, sidecar: Path, url: str, source: DownloadSource) -> int:
    """Bytes already in a matching .part (same URL and hash), else 0 (stale parts removed)."""
    if not part.exists():
        sidecar.unlink(missing_ok=True)
        return 0
    try:
        meta = json.loads(sidecar.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        meta = {}
    if meta.get("url") == url and (source.sha256 is None or meta.get("sha256") == source.sha256):
        return part.stat().st_size
    _discard(part, sidecar)
    return 0


def _total_size(response: Any, offset: int, source: DownloadSource,
                linked: _LinkedHeaders) -> int | None:
    if source.size is not None:
        return source.size
    length = response.headers.get("Content-Length")
    if length and length.isdigit():
        return offset + int(length)
    linked_size = linked.seen.get("X-Linked-Size", "")
    return int(linked_size) if linked_size.isdigit() else None


def _announced(response: Any, offset: int) -> int | None:
    length = response.headers.get("Content-Length")
    return offset + int(length) if length and length.isdigit() else None


def _sha_of_part(part: Path, offset: int) -> Any:
    digest = hashlib.sha256()
    if offset:
        with part.open("rb") as fh:
            while block := fh.read(CHUNK):
                digest.update(block)
    return digest


def _stream(response: Any, part: Path, offset: int, digest: Any, total: int | None,
            on_progress: ProgressCallback | None, cancel: Cancellable | None) -> int:
    done = offset
    with part.open("ab" if offset else "wb") as out:
        while True:
            if cancel is not None and cancel.cancelled:
                raise UserError(ErrorKind.cancelled, "Download cancelled.",
                                "Start the same download again to resume where it stopped.")
            try:
                block = response.read(CHUNK)
            except (http.client.IncompleteRead, OSError) as exc:
                raise UserError(ErrorKind.network, f"The connection was lost ({exc}).",
                                "Start the same download again to resume.") from None
            if not block:
                break
            out.write(block)
            digest.update(block)
            done += len(block)
            if total is not None and done > total:
                break
            if on_progress is not None:
                on_progress(done, total)
    return done


def _finish(part: Path, sidecar: Path, dest: Path, source: DownloadSource, expected: str,
            digest: Any) -> Path:
    size = part.stat().st_size
    if source.size is not None and size != source.size:
        _discard(part, sidecar)
        raise UserError(ErrorKind.corrupt_file,
                        f"The download has the wrong size ({size:,} bytes, expected "
                        f"{source.size:,}).", "Nothing was kept; try again later.")
    actual = digest.hexdigest()
    if actual != expected:
        _discard(part, sidecar)
        raise UserError(ErrorKind.corrupt_file,
                        f"The downloaded file's sha256 {actual[:12]}… does not match the "
                        f"expected {expected[:12]}….",
                        "Nothing was kept. The file may have changed upstream or been "
                        "tampered with; check the hash with its publisher.")
    if dest.exists():
        _discard(part, sidecar)
        return _existing(dest, source)
    # Durable before it becomes visible: a power cut must not leave a truncated model that the
    # library would trust (its hash was checked on the bytes we received, not on the disk).
    fsync_file(part)
    os.replace(part, dest)
    fsync_dir(dest.parent)
    sidecar.unlink(missing_ok=True)
    return dest


def _discard(part: Path, sidecar: Path) -> None:
    part.unlink(missing_ok=True)
    sidecar.unlink(missing_ok=True)


def destination_dir(source: DownloadSource, catalog: Catalog) -> Path:
    """The library folder a download of this kind goes to."""
    return catalog.library.folder_for(source.kind)
