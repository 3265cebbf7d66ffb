"""`desktop-app generate / info / samplers`: in-process through cli.main, and once as a process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from desktop_app import cli
from desktop_app.pipeline.api import SAMPLER_NAMES

ROOT = Path(__file__).resolve().parents[2]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture
def model_args(tiny_sd15_file: Path, tiny_sd15_config: Path) -> list[str]:
    return ["--model", str(tiny_sd15_file), "--model-config", str(tiny_sd15_config),
            "--steps", "2", "--width", "64", "--height", "64", "--sampler", "Euler",
            "--device", "cpu"]


def cli_run(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = cli.main(args)
    out, err = capsys.readouterr()
    return code, out, err


def test_samplers_prints_every_name_one_a_line(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = cli_run(["samplers"], capsys)
    assert code == 0 and out.splitlines() == list(SAMPLER_NAMES)


def test_generate_prints_each_written_path(model_args: list[str], tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    out_dir = tmp_path / "images"
    code, out, err = cli_run(["generate", "a red (cat:1.2)", *model_args, "--seed", "11",
                              "--batch", "2", "--out", str(out_dir)], capsys)
    assert code == 0, err
    written = [Path(line) for line in out.splitlines()]
    assert len(written) == 2 and all(p.is_file() and p.parent == out_dir for p in written)
    assert "2/2 steps" in err

    code, out, _ = cli_run(["info", str(written[1])], capsys)
    assert code == 0
    assert out.startswith("a red (cat:1.2)\n")
    assert "Steps: 2, Sampler: Euler" in out and "Seed: 12" in out and "Size: 64x64" in out

    code, out, _ = cli_run(["info", str(written[0]), "--json"], capsys)
    data = json.loads(out)
    assert code == 0 and data["seed"] == 11 and len(data["model_sha256"]) == 64
    assert data["request"]["prompt"] == "a red (cat:1.2)"


def test_generate_to_a_png_path_in_the_gallery_by_default(
        model_args: list[str], app_home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = cli_run(["generate", "a cat", *model_args], capsys)
    assert code == 0, err
    path = Path(out.strip())
    assert path.is_file() and path.is_relative_to(app_home / "outputs")


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--steps", "0"], "Steps must be between 1 and 150"),
        (["--width", "100"], "Width 100 is not a multiple of 8"),
        (["--sampler", "Euler Z"], "Unknown sampler"),
        (["--cfg", "99"], "CFG scale must be between"),
        (["--model", "/nonexistent/model.safetensors"], "Model not found"),
    ],
)
def test_bad_input_exits_2_with_one_line(model_args: list[str], flags: list[str], message: str,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = cli_run(["generate", "a cat", *model_args, *flags], capsys)
    assert code == 2 and out == ""
    assert len(err.strip().splitlines()) == 1 and message in err


def test_missing_vae_exits_2(model_args: list[str], tmp_path: Path,
                             capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = cli_run(["generate", "a cat", *model_args, "--vae",
                            str(tmp_path / "none.safetensors")], capsys)
    assert code == 2 and "VAE not found" in err


@pytest.mark.parametrize("content", [b"", os.urandom(4096)], ids=["empty", "random"])
def test_corrupt_model_file_exits_1_with_a_message(
        tmp_path: Path, content: bytes, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "broken.safetensors"
    bad.write_bytes(content)
    code, out, err = cli_run(["generate", "a cat", "--model", str(bad), "--steps", "2",
                              "--width", "64", "--height", "64"], capsys)
    assert code == 1 and out == ""
    assert len(err.strip().splitlines()) == 1 and err.startswith("error: ")
    assert "Traceback" not in err


def test_info_without_metadata_and_missing_image_exit_2(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from PIL import Image

    plain = tmp_path / "plain.png"
    Image.new("RGB", (8, 8)).save(plain)
    code, _, err = cli_run(["info", str(plain)], capsys)
    assert code == 2 and "no generation parameters" in err
    code, _, err = cli_run(["info", str(tmp_path / "missing.png")], capsys)
    assert code == 2 and "Image not found" in err


def test_generate_as_a_subprocess(tiny_sd15_file: Path, tiny_sd15_config: Path,
                                  tmp_path: Path) -> None:
    target = tmp_path / "one.png"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1",
           "DESKTOP_APP_HOME": str(tmp_path / "home"), "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(
        [sys.executable, "-m", "desktop_app", "generate", "a cat", "--model",
         str(tiny_sd15_file), "--model-config", str(tiny_sd15_config), "--steps", "2",
         "--width", "64", "--height", "64", "--seed", "3", "--out", str(target)],
        capture_output=True, text=True, env=env, timeout=300, cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == [str(target)] and target.is_file()
    bad = subprocess.run([sys.executable, "-m", "desktop_app", "generate", "x", "--steps", "0"],
                         capture_output=True, text=True, env=env, timeout=120, cwd=ROOT)
    assert bad.returncode == 2 and bad.stderr.startswith("error: Steps must be between")


def test_progress_bar_redraws_in_place_on_a_terminal() -> None:
    import io

    from desktop_app.pipeline.api import StepUpdate
    from desktop_app.pipeline.commands import ProgressBar

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    stream = Terminal()
    bar = ProgressBar(stream)
    for step in (1, 2, 3):
        bar.step(StepUpdate(step, 3, 0, 2))
    text = stream.getvalue()
    assert text.count("\r[") == 3 and text.endswith("3/3 batch 1/2\n")


def test_no_model_without_the_demo_model_exits_2_with_a_hint(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    from desktop_app.pipeline.backend import loading

    monkeypatch.setattr(loading, "default_model_path", lambda: tmp_path / "no-demo")
    code, _, err = cli_run(["generate", "a cat", "--steps", "2", "--width", "64",
                            "--height", "64"], capsys)
    assert code == 2 and "demo model is not installed" in err
