"""`desktop-app models list/add/download/convert` through the same parser the CLI builds."""

from __future__ import annotations

import argparse
import functools
import hashlib
import http.server
import json
import threading
from pathlib import Path

import pytest

from desktop_app.errors import UserError
from desktop_app.library import commands
from tests.fixtures.tiny_models import build_tiny_vae


def _run(*argv: str) -> int:
    parser = argparse.ArgumentParser()
    commands.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(list(argv))
    return int(args.func(args))


@pytest.fixture(scope="module")
def vae(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_vae(tmp_path_factory.mktemp("cli-vae") / "tiny.vae.safetensors")


def test_add_a_folder_then_list_json_with_hashes(tmp_path: Path, vae: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    comfy = tmp_path / "ComfyUI" / "models"
    (comfy / "vae").mkdir(parents=True)
    (comfy / "vae" / "v.safetensors").write_bytes(vae.read_bytes())
    (comfy / "checkpoints").mkdir()
    (comfy / "checkpoints" / "broken.safetensors").write_bytes(b"\x00" * 5)
    assert _run("models", "add", str(comfy)) == 0
    assert "2 files (1 usable, 1 not)" in capsys.readouterr().out

    assert _run("models", "list", "--json", "--hash") == 0
    listed = {Path(o["path"]).name: o for o in json.loads(capsys.readouterr().out)}
    assert set(listed) == {"v.safetensors", "broken.safetensors"}
    good = listed["v.safetensors"]
    assert (good["kind"], good["status"]) == ("vae", "ok")
    assert good["sha256"] == hashlib.sha256(vae.read_bytes()).hexdigest()
    assert good["hash"] == good["sha256"][:10]
    bad = listed["broken.safetensors"]
    assert bad["status"] == "corrupt" and bad["reason"]


def test_plain_list_mentions_status_and_reason(tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "empty.safetensors").write_bytes(b"")
    _run("models", "add", str(tmp_path / "m"))
    capsys.readouterr()
    assert _run("models", "list") == 0
    out = capsys.readouterr().out
    assert "corrupt" in out and "0 bytes" in out


def test_add_a_missing_path_is_a_user_error(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="not found"):
        _run("models", "add", str(tmp_path / "nope.safetensors"))


def test_download_needs_a_source_and_lists_the_catalog(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(UserError, match="Name what to download"):
        _run("models", "download")
    assert _run("models", "download", "--list") == 0
    assert "sdxl-vae-fp16-fix" in capsys.readouterr().out


def test_download_a_url_with_sha256_into_the_library(tmp_path: Path, vae: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    served = tmp_path / "served"
    served.mkdir()
    (served / "net.vae.safetensors").write_bytes(vae.read_bytes())
    handler = functools.partial(_QuietHandler, directory=str(served))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        url = f"http://127.0.0.1:{httpd.server_address[1]}/net.vae.safetensors"
        digest = hashlib.sha256(vae.read_bytes()).hexdigest()
        assert _run("models", "download", url, "--sha256", digest) == 0
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(5)
    captured = capsys.readouterr()
    path = Path(captured.out.strip().splitlines()[-1])
    assert path.read_bytes() == vae.read_bytes() and "100.0%" in captured.err
    capsys.readouterr()
    _run("models", "list", "--json")
    assert str(path.resolve()) in {o["path"] for o in json.loads(capsys.readouterr().out)}


def test_convert_refuses_files_that_need_no_conversion(tmp_path: Path, vae: Path) -> None:
    with pytest.raises(UserError, match="not a pickle"):
        _run("models", "convert", str(vae))
    with pytest.raises(UserError, match="not found"):
        _run("models", "convert", str(tmp_path / "x.ckpt"))


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


def test_convert_a_ckpt_adds_the_safetensors_to_the_library(
        tmp_path: Path, vae: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import torch
    from safetensors.torch import load_file

    state = load_file(str(vae))
    ckpt = tmp_path / "old.vae.ckpt"
    torch.save({"state_dict": state}, ckpt)
    assert _run("models", "convert", str(ckpt)) == 0
    out = Path(capsys.readouterr().out.strip())
    assert out == tmp_path / "old.vae.safetensors" and out.is_file()
    _run("models", "list", "--json")
    listed = {o["path"]: o for o in json.loads(capsys.readouterr().out)}
    assert listed[str(out.resolve())]["kind"] == "vae"
