"""Downloads against a real HTTP server on 127.0.0.1: good, wrong hash, truncated, resumed,
cancelled, dropped connection, Hub-advertised hash. Nothing partial may enter the library."""

from __future__ import annotations

import hashlib
import http.server
import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from desktop_app.errors import ErrorKind, UserError
from desktop_app.library.catalog import load_catalog
from desktop_app.library.downloads import (
    DownloadSource,
    download,
    part_paths,
    resolve_source,
)
from desktop_app.pipeline.api import CancelToken

PAYLOAD = os.urandom(3 * (1 << 20) + 12345)  # a bit over 3 chunks
SHA = hashlib.sha256(PAYLOAD).hexdigest()


@dataclass
class Server:
    base: str
    ranges: list[str | None] = field(default_factory=list)


class _Handler(http.server.BaseHTTPRequestHandler):
    ranges: list[str | None]

    def log_message(self, format: str, *args: object) -> None:  # keep test output clean
        pass

    def do_GET(self) -> None:
        self.ranges.append(self.headers.get("Range"))
        route = self.path.split("?")[0]
        if route == "/hub/redirect":
            self.send_response(302)
            self.send_header("Location", "/file")
            self.send_header("X-Linked-ETag", f'"{SHA}"')
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        if route == "/missing":
            self.send_error(404)
            return
        body, start = PAYLOAD, 0
        if route == "/truncated":
            body = PAYLOAD[: len(PAYLOAD) // 2]
        if route == "/other":
            body = PAYLOAD[::-1]
        rng = self.headers.get("Range")
        if rng and route in ("/file", "/drop"):
            start = int(rng.removeprefix("bytes=").rstrip("-"))
            if start >= len(body):
                self.send_response(416)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
        else:
            self.send_response(200)
        chunk = body[start:]
        self.send_header("Content-Length", str(len(chunk)))
        self.end_headers()
        if route == "/drop" and not rng:
            self.wfile.write(chunk[: len(chunk) // 2])  # announce all, send half, hang up
            self.close_connection = True
            return
        self.wfile.write(chunk)


@pytest.fixture()
def server() -> Iterator[Server]:
    ranges: list[str | None] = []
    handler = type("Handler", (_Handler,), {"ranges": ranges})
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield Server(f"http://127.0.0.1:{httpd.server_address[1]}", ranges)
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


def _source(url: str, sha: str | None = SHA, size: int | None = len(PAYLOAD)) -> DownloadSource:
    return DownloadSource((url,), "model.safetensors", "checkpoint", "sd15", sha, size)


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def test_good_download_lands_verified_with_progress(server: Server, tmp_path: Path) -> None:
    seen: list[tuple[int, int | None]] = []
    path = download(_source(server.base + "/file"), tmp_path / "lib",
                    on_progress=lambda d, t: seen.append((d, t)))
    assert path.read_bytes() == PAYLOAD
    assert _leftovers(tmp_path / "lib") == ["model.safetensors"]
    assert seen[-1] == (len(PAYLOAD), len(PAYLOAD)) and len(seen) >= 3


def test_wrong_hash_is_rejected_and_nothing_is_left(server: Server, tmp_path: Path) -> None:
    with pytest.raises(UserError) as info:
        download(_source(server.base + "/other"), tmp_path / "lib")
    assert info.value.kind is ErrorKind.corrupt_file and "sha256" in info.value.message
    assert _leftovers(tmp_path / "lib") == []


def test_truncated_file_is_rejected_and_nothing_is_left(server: Server, tmp_path: Path) -> None:
    with pytest.raises(UserError, match="truncated") as info:
        download(_source(server.base + "/truncated"), tmp_path / "lib")
    assert info.value.kind is ErrorKind.corrupt_file
    assert _leftovers(tmp_path / "lib") == []


def test_truncated_file_without_known_size_fails_the_hash(server: Server, tmp_path: Path) -> None:
    with pytest.raises(UserError, match="sha256"):
        download(_source(server.base + "/truncated", size=None), tmp_path / "lib")
    assert _leftovers(tmp_path / "lib") == []


def test_cancel_keeps_the_part_and_a_rerun_resumes_with_range(server: Server,
                                                               tmp_path: Path) -> None:
    token = CancelToken()
    lib = tmp_path / "lib"

    def cancel_after_first_chunk(done: int, total: int | None) -> None:
        token.cancel()

    with pytest.raises(UserError) as info:
        download(_source(server.base + "/file"), lib, on_progress=cancel_after_first_chunk,
                 cancel=token)
    assert info.value.kind is ErrorKind.cancelled
    part, sidecar = part_paths(lib / "model.safetensors")
    kept = part.stat().st_size
    assert 0 < kept < len(PAYLOAD) and sidecar.exists()
    assert not (lib / "model.safetensors").exists()

    path = download(_source(server.base + "/file"), lib)
    assert path.read_bytes() == PAYLOAD
    assert server.ranges[-1] == f"bytes={kept}-"
    assert _leftovers(lib) == ["model.safetensors"]


def test_dropped_connection_keeps_the_part_and_resumes(server: Server, tmp_path: Path) -> None:
    lib = tmp_path / "lib"
    with pytest.raises(UserError) as info:
        download(_source(server.base + "/drop"), lib)
    assert info.value.kind is ErrorKind.network and "resume" in info.value.hint
    part, _ = part_paths(lib / "model.safetensors")
    assert 0 < part.stat().st_size < len(PAYLOAD)
    assert download(_source(server.base + "/drop"), lib).read_bytes() == PAYLOAD
    assert server.ranges[-1] is not None


def test_a_complete_part_is_finished_without_refetching(server: Server, tmp_path: Path) -> None:
    lib = tmp_path / "lib"
    lib.mkdir()
    part, sidecar = part_paths(lib / "model.safetensors")
    part.write_bytes(PAYLOAD)
    sidecar.write_text(f'{{"url": "{server.base}/file", "sha256": "{SHA}"}}', encoding="utf-8")
    assert download(_source(server.base + "/file"), lib).read_bytes() == PAYLOAD
    assert server.ranges == [f"bytes={len(PAYLOAD)}-"]


def test_a_stale_part_from_another_url_is_not_resumed(server: Server, tmp_path: Path) -> None:
    lib = tmp_path / "lib"
    lib.mkdir()
    part, sidecar = part_paths(lib / "model.safetensors")
    part.write_bytes(b"garbage")
    sidecar.write_text('{"url": "http://127.0.0.1:1/elsewhere", "sha256": "x"}', encoding="utf-8")
    assert download(_source(server.base + "/file"), lib).read_bytes() == PAYLOAD
    assert server.ranges == [None]


def test_hub_advertised_hash_is_used_when_none_was_given(server: Server, tmp_path: Path) -> None:
    path = download(_source(server.base + "/hub/redirect", sha=None, size=None), tmp_path / "lib")
    assert path.read_bytes() == PAYLOAD


def test_existing_different_file_is_never_overwritten(server: Server, tmp_path: Path) -> None:
    lib = tmp_path / "lib"
    lib.mkdir()
    (lib / "model.safetensors").write_bytes(b"the user's own file")
    with pytest.raises(UserError, match="already exists"):
        download(_source(server.base + "/file"), lib)
    assert (lib / "model.safetensors").read_bytes() == b"the user's own file"


def test_http_errors_become_network_errors(server: Server, tmp_path: Path) -> None:
    with pytest.raises(UserError, match="HTTP 404") as info:
        download(_source(server.base + "/missing"), tmp_path / "lib")
    assert info.value.kind is ErrorKind.network
    with pytest.raises(UserError, match="connect"):
        download(_source("http://127.0.0.1:9/file"), tmp_path / "lib", timeout=2)
    assert _leftovers(tmp_path / "lib") == []


def test_resolve_source_from_catalog_ids_urls_and_shorthand() -> None:
    catalog = load_catalog()
    sdxl_vae = resolve_source("sdxl-vae-fp16-fix", catalog)
    assert sdxl_vae.kind == "vae" and sdxl_vae.sha256 and sdxl_vae.size == 334641162
    short = resolve_source("madebyollin/taesd/diffusion_pytorch_model.safetensors", catalog)
    assert short.urls == ("https://huggingface.co/madebyollin/taesd/resolve/main/"
                          "diffusion_pytorch_model.safetensors",)
    assert short.sha256 is None  # the Hub's own LFS hash will be checked
    blob = resolve_source("https://huggingface.co/a/b/blob/main/x.safetensors", catalog)
    assert blob.urls[0].endswith("/a/b/resolve/main/x.safetensors")
    plain = resolve_source("https://example.org/dl/m.safetensors?x=1", catalog, sha256=SHA.upper())
    assert plain.filename == "m.safetensors" and plain.sha256 == SHA


@pytest.mark.parametrize(
    ("text", "sha", "message"),
    [
        ("https://example.org/m.safetensors", None, "needs the file's sha256"),
        ("http://example.org/m.safetensors", SHA, "Only https"),
        ("ftp://example.org/m.safetensors", SHA, "Unsupported URL"),
        ("nonsense", None, "neither a catalog id"),
        ("a/../b", None, "neither a catalog id"),
        ("sd15", "0" * 64, "does not match the catalog"),
        ("sd15", "xyz", "not a sha256"),
    ],
)
def test_resolve_source_rejects_bad_input(text: str, sha: str | None, message: str) -> None:
    with pytest.raises(UserError, match=message) as info:
        resolve_source(text, load_catalog(), sha256=sha)
    assert info.value.kind is ErrorKind.bad_input
