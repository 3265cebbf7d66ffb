"""The diffusers backend end to end on tiny random models (CPU, 64×64, 2–4 steps)."""

from __future__ import annotations

import errno
import json
import os
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from desktop_app.errors import ErrorKind, UserError
from desktop_app.gallery import png_encode
from desktop_app.gallery.metadata import read_image_metadata
from desktop_app.pipeline.api import CancelToken, GenerationCancelled, LoadUpdate, StepUpdate
from desktop_app.pipeline.backend import diffusers_backend
from desktop_app.pipeline.backend.diffusers_backend import DiffusersBackend, to_decoded
from desktop_app.pipeline.backend.text_encoding import _apply_emphasis, encode_prompts
from tests.pipeline.engine_helpers import SIZE, images_of, pixels, request, run
from tests.unit.test_png_encode import record_filtering

LONG_PROMPT = ", ".join(f"word{i} red blue green" for i in range(60))  # > 4 chunks


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def backend() -> Iterator[DiffusersBackend]:
    yield DiffusersBackend(previews=True)


@pytest.fixture
def sd15(tiny_sd15_file: Path, tiny_sd15_config: Path) -> dict[str, Any]:
    return {"model": tiny_sd15_file, "config": tiny_sd15_config}


def test_sd15_single_file_generates_a_png(backend: DiffusersBackend, sd15: dict[str, Any],
                                          app_home: Path) -> None:
    result, updates = run(backend, request(**sd15))
    assert len(result.images) == 1
    path = Path(result.images[0].path)
    assert path.is_file() and path.is_relative_to(app_home / "outputs")
    assert pixels(path).shape == (SIZE, SIZE, 3)
    assert pixels(path).std() > 0  # not a blank image
    assert [u.step for u in updates] == [1, 2] and updates[-1].total == 2
    assert result.request.seed == 1234 and result.model_hash == backend.loaded.sha256


def test_sdxl_generates(backend: DiffusersBackend, tiny_sdxl_file: Path,
                        tiny_sdxl_config: Path) -> None:
    result, _ = run(backend, request(tiny_sdxl_file, tiny_sdxl_config,
                                     negative_prompt="blurry"))
    image = images_of(result)[0]
    assert image.shape == (SIZE, SIZE, 3) and image.std() > 0


def test_diffusers_folder_generates(backend: DiffusersBackend, tiny_sd15_dir: Path) -> None:
    result, _ = run(backend, request(tiny_sd15_dir))
    assert images_of(result)[0].shape == (SIZE, SIZE, 3)


def test_same_seed_same_pixels_other_seed_different(backend: DiffusersBackend,
                                                     sd15: dict[str, Any]) -> None:
    first = images_of(run(backend, request(**sd15, seed=7))[0])[0]
    again = images_of(run(backend, request(**sd15, seed=7))[0])[0]
    other = images_of(run(backend, request(**sd15, seed=8))[0])[0]
    assert np.array_equal(first, again)
    assert not np.array_equal(first, other)


def test_random_seed_is_resolved_and_recorded(backend: DiffusersBackend,
                                              sd15: dict[str, Any]) -> None:
    result, _ = run(backend, request(**sd15, seed=-1))
    assert result.request.seed >= 0
    meta = read_image_metadata(Path(result.images[0].path))
    assert meta is not None and meta.seed == result.request.seed == result.images[0].seed


@pytest.mark.parametrize("sampler", ["Euler a", "DPM++ SDE Karras"])
def test_batch_image_i_equals_single_run_with_seed_plus_i(
        backend: DiffusersBackend, sd15: dict[str, Any], sampler: str) -> None:
    batch, _ = run(backend, request(**sd15, seed=100, batch_size=2, batch_count=2,
                                    sampler=sampler))
    assert [i.seed for i in batch.images] == [100, 101, 102, 103]
    batch_pixels = images_of(batch)
    for index in (1, 3):
        single = images_of(run(backend, request(**sd15, seed=100 + index, sampler=sampler))[0])
        # Batched convolutions may round differently from single ones by a level or so.
        assert np.abs(batch_pixels[index] - single[0]).max() <= 2


def test_variation_strength_one_reaches_the_variation_seed(
        backend: DiffusersBackend, sd15: dict[str, Any]) -> None:
    base = images_of(run(backend, request(**sd15, seed=5))[0])[0]
    target = images_of(run(backend, request(**sd15, seed=6))[0])[0]
    half = images_of(run(backend, request(**sd15, seed=5, variation_seed=6,
                                          variation_strength=0.5))[0])[0]
    full = images_of(run(backend, request(**sd15, seed=5, variation_seed=6,
                                          variation_strength=1.0))[0])[0]
    assert np.abs(full - target).max() <= 2
    assert not np.array_equal(half, base) and not np.array_equal(half, target)


def test_variation_seed_is_recorded(backend: DiffusersBackend, sd15: dict[str, Any]) -> None:
    result, _ = run(backend, request(**sd15, seed=5, variation_seed=9, variation_strength=0.3,
                                     batch_size=2))
    assert [(i.seed, i.variation_seed) for i in result.images] == [(5, 9), (5, 10)]
    meta = read_image_metadata(Path(result.images[1].path))
    assert meta is not None
    assert (meta.seed, meta.variation_seed, meta.variation_strength) == (5, 10, 0.3)


def test_long_prompt_runs_and_differs_from_its_truncation(
        backend: DiffusersBackend, sd15: dict[str, Any]) -> None:
    run(backend, request(**sd15))  # make sure the model is loaded
    conditioning = encode_prompts(backend.loaded.pipe, LONG_PROMPT, "")
    assert conditioning.chunks > 3
    assert conditioning.negative_prompt_embeds.shape == conditioning.prompt_embeds.shape
    truncated = backend.loaded.pipe.tokenizer.decode(
        backend.loaded.pipe.tokenizer(LONG_PROMPT, add_special_tokens=False)["input_ids"][:75])
    full = images_of(run(backend, request(**sd15, prompt=LONG_PROMPT))[0])[0]
    short = images_of(run(backend, request(**sd15, prompt=truncated))[0])[0]
    assert not np.array_equal(full, short)


def test_long_negative_prompt_pads_the_positive(backend: DiffusersBackend,
                                                sd15: dict[str, Any]) -> None:
    result, _ = run(backend, request(**sd15, negative_prompt=LONG_PROMPT))
    assert len(result.images) == 1


def test_emphasis_changes_the_embedding_of_its_tokens_only(
        backend: DiffusersBackend, sd15: dict[str, Any]) -> None:
    run(backend, request(**sd15))
    pipe = backend.loaded.pipe
    plain = encode_prompts(pipe, "a photo of a cat", "").prompt_embeds
    weighted = encode_prompts(pipe, "a photo of a (cat:1.5)", "").prompt_embeds
    changed = (plain - weighted).abs().amax(dim=-1)[0]
    assert changed[5] > 0  # BOS + "a photo of a" → "cat" is position 5
    image_plain = images_of(run(backend, request(**sd15))[0])[0]
    image_weighted = images_of(run(backend, request(**sd15, prompt="a photo of a (cat:1.5)"))[0])
    assert not np.array_equal(image_plain, image_weighted[0])


def test_emphasis_restores_the_chunk_mean_like_a1111_original() -> None:
    torch.manual_seed(0)
    hidden = torch.randn(2, 77, 8) + 0.5
    weights = torch.ones(2, 77)
    weights[0, 3] = 1.5
    weights[1, 4] = 0.5
    out = _apply_emphasis(hidden, weights)
    assert torch.allclose(out.mean(dim=(1, 2)), hidden.mean(dim=(1, 2)), atol=1e-5)
    ratio = out[0, 3] / out[0, 2] / (hidden[0, 3] / hidden[0, 2])
    assert torch.allclose(ratio, torch.full_like(ratio, 1.5), atol=1e-4)


def test_clip_skip_2_differs_from_1(backend: DiffusersBackend, sd15: dict[str, Any]) -> None:
    one = images_of(run(backend, request(**sd15, clip_skip=1))[0])[0]
    two = images_of(run(backend, request(**sd15, clip_skip=2))[0])[0]
    assert not np.array_equal(one, two)


def test_clip_skip_deeper_than_the_encoder_is_a_clean_error(
        backend: DiffusersBackend, sd15: dict[str, Any]) -> None:
    with pytest.raises(UserError) as info:
        run(backend, request(**sd15, clip_skip=12))
    assert info.value.kind is ErrorKind.bad_input


def test_previews_arrive_every_step_at_one_eighth_size(backend: DiffusersBackend,
                                                       sd15: dict[str, Any]) -> None:
    _, updates = run(backend, request(**sd15, steps=3))
    assert [u.step for u in updates] == [1, 2, 3]
    for update in updates:
        assert update.preview is not None
        assert (update.preview.width, update.preview.height) == (SIZE // 8, SIZE // 8)
        assert len(update.preview.rgb) == (SIZE // 8) ** 2 * 3


def test_cancel_at_step_k_writes_nothing_and_the_next_job_works(
        backend: DiffusersBackend, sd15: dict[str, Any], app_home: Path) -> None:
    run(backend, request(**sd15))  # loaded
    decodes: list[int] = []
    evaluations: list[int] = []
    vae, unet = backend.loaded.pipe.vae, backend.loaded.pipe.unet
    original, forward = vae.decode, unet.forward
    vae.decode = lambda *a, **k: decodes.append(1) or original(*a, **k)
    unet.forward = lambda *a, **k: evaluations.append(1) or forward(*a, **k)
    cancel = CancelToken()
    seen: list[int] = []

    def cancel_at_two(update: StepUpdate) -> None:
        seen.append(update.step)
        if update.step == 2:
            cancel.cancel()

    before = sorted((app_home / "outputs").rglob("*.png"))
    try:
        with pytest.raises(GenerationCancelled):
            run(backend, request(**sd15, steps=4), cancel_at_two, cancel)
        assert seen == [1, 2] and len(evaluations) == 2 and decodes == []
        assert sorted((app_home / "outputs").rglob("*.png")) == before
        result, _ = run(backend, request(**sd15, steps=2))
        assert Path(result.images[0].path).is_file() and decodes == [1]
    finally:
        del vae.decode, unet.forward


def test_metadata_round_trips(backend: DiffusersBackend, sd15: dict[str, Any]) -> None:
    req = request(**sd15, prompt="a (cat:1.2)", negative_prompt="dog", cfg_scale=5.5,
                  sampler="DPM++ 2M Karras", seed=42, clip_skip=2)
    result, _ = run(backend, req)
    meta = read_image_metadata(Path(result.images[0].path))
    assert meta is not None
    assert (meta.prompt, meta.negative_prompt, meta.steps, meta.sampler, meta.cfg_scale,
            meta.seed, meta.width, meta.height, meta.clip_skip) == (
        "a (cat:1.2)", "dog", 2, "DPM++ 2M Karras", 5.5, 42, SIZE, SIZE, 2)
    assert meta.model_hash == backend.loaded.sha256 and len(meta.model_hash) == 64
    assert meta.model_name == Path(sd15["model"]).stem


def test_vae_swap_keeps_the_unet_and_changes_the_image(
        backend: DiffusersBackend, sd15: dict[str, Any], tiny_vae_file: Path) -> None:
    base = images_of(run(backend, request(**sd15))[0])[0]
    unet = backend.loaded.pipe.unet
    swapped_result, _ = run(backend, request(**sd15, vae=str(tiny_vae_file)))
    assert backend.loaded.pipe.unet is unet
    assert not np.array_equal(images_of(swapped_result)[0], base)
    meta = read_image_metadata(Path(swapped_result.images[0].path))
    assert meta is not None and meta.vae_name == tiny_vae_file.stem and meta.vae_hash
    back = images_of(run(backend, request(**sd15))[0])[0]
    assert np.array_equal(back, base)


def test_out_of_memory_becomes_a_user_error_and_the_next_job_works(
        backend: DiffusersBackend, sd15: dict[str, Any]) -> None:
    run(backend, request(**sd15))
    unet = backend.loaded.pipe.unet

    def exhausted(*args: Any, **kwargs: Any) -> Any:
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")

    unet.forward = exhausted
    try:
        with pytest.raises(UserError) as info:
            run(backend, request(**sd15))
    finally:
        del unet.forward
    assert info.value.kind is ErrorKind.out_of_memory and info.value.hint
    assert len(run(backend, request(**sd15))[0].images) == 1


def before_each_save(monkeypatch: pytest.MonkeyPatch, before: Callable[[Path], None]) -> None:
    """Run `before(path)` ahead of every PNG the backend writes (on its writer threads)."""
    from desktop_app.pipeline.backend import diffusers_backend

    real_save = diffusers_backend.save_png

    def save(image: Any, path: Path, meta: Any, **options: Any) -> Path:
        before(path)
        return real_save(image, path, meta, **options)

    monkeypatch.setattr(diffusers_backend, "save_png", save)


def test_images_are_written_in_the_background_and_all_on_disk_when_the_job_returns(
        sd15: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    writers: set[str] = set()

    def slow(_path: Path) -> None:
        writers.add(threading.current_thread().name)
        time.sleep(0.2)

    before_each_save(monkeypatch, slow)
    backend = DiffusersBackend(tmp_path, previews=False)
    result, _ = run(backend, request(**sd15, seed=5, batch_size=2, batch_count=2))
    names = [Path(i.path).name for i in result.images]
    assert names == ["00001-5.png", "00002-6.png", "00003-7.png", "00004-8.png"]
    assert [i.seed for i in result.images] == [5, 6, 7, 8]
    assert all(Path(i.path).stat().st_size > 0 for i in result.images)
    assert writers and all(name.startswith("image-writer") for name in writers)
    assert not list(tmp_path.glob(".*"))  # no reservation or temp litter


def test_a_failed_save_is_a_clear_error_and_the_other_images_are_kept(
        sd15: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def disk_full_for_the_second(path: Path) -> None:
        if path.name.startswith("00002-"):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    before_each_save(monkeypatch, disk_full_for_the_second)
    backend = DiffusersBackend(tmp_path, previews=False)
    with pytest.raises(UserError) as info:
        run(backend, request(**sd15, seed=5, batch_count=3))
    assert "Could not save 00002-6.png" in info.value.message
    assert os.strerror(errno.ENOSPC) in info.value.message and "free space" in info.value.hint
    # Image 3 may or may not have been made (the job stops at the first batch that starts after
    # the failure is known); whatever was made is complete, and nothing half-written is left.
    names = sorted(p.name for p in tmp_path.glob("*.png"))
    assert names in (["00001-5.png"], ["00001-5.png", "00003-7.png"])
    assert all(pixels(tmp_path / name).shape == (SIZE, SIZE, 3) for name in names)
    assert not list(tmp_path.glob("*.tmp")) and not list(tmp_path.glob(".*.tmp"))
    monkeypatch.undo()
    assert len(run(backend, request(**sd15, seed=9))[0].images) == 1  # the backend goes on


def test_an_output_folder_that_cannot_be_made_is_a_clear_error(sd15: dict[str, Any],
                                                               tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the output folder should go")
    backend = DiffusersBackend(blocker / "images", previews=False)
    with pytest.raises(UserError) as info:
        run(backend, request(**sd15))
    assert info.value.message.startswith(f"Could not save the image in {blocker / 'images'}: ")
    assert "writable" in info.value.hint
    assert blocker.read_text() == "a file where the output folder should go"


def test_cancel_in_a_later_batch_keeps_the_images_of_earlier_batches(
        sd15: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    before_each_save(monkeypatch, lambda _path: time.sleep(0.5))  # writing when cancel comes
    cancel = CancelToken()

    def cancel_in_second_batch(update: StepUpdate) -> None:
        if update.batch_index == 1:
            cancel.cancel()

    backend = DiffusersBackend(tmp_path, previews=False)
    with pytest.raises(GenerationCancelled):
        run(backend, request(**sd15, seed=5, batch_count=2), cancel_in_second_batch, cancel)
    assert [p.name for p in tmp_path.glob("*.png")] == ["00001-5.png"]  # complete, on disk
    assert pixels(tmp_path / "00001-5.png").shape == (SIZE, SIZE, 3)


def test_output_to_an_explicit_png_path(sd15: dict[str, Any], tmp_path: Path) -> None:
    backend = DiffusersBackend(tmp_path / "out.png", previews=False)
    result, updates = run(backend, request(**sd15, batch_size=2))
    assert [Path(i.path).name for i in result.images] == ["out.png", "out-1.png"]
    assert all(u.preview is None for u in updates)
    assert not list(tmp_path.glob(".*"))  # no reservation or temp litter


def save_tiny_taesd(folder: Path) -> None:
    """A small random-weight TAESD where the engine looks for one (`folder/taesd`)."""
    from diffusers import AutoencoderTiny

    AutoencoderTiny(encoder_block_out_channels=(8, 8, 8, 8),
                    decoder_block_out_channels=(8, 8, 8, 8), num_encoder_blocks=(1, 1, 1, 1),
                    num_decoder_blocks=(1, 1, 1, 1)).save_pretrained(str(folder / "taesd"))


def test_taesd_previews_are_full_size(sd15: dict[str, Any], tmp_path: Path) -> None:
    save_tiny_taesd(tmp_path)
    backend = DiffusersBackend(tmp_path / "img", taesd_folder=tmp_path)
    _, updates = run(backend, request(**sd15))
    assert updates[-1].preview is not None
    assert (updates[-1].preview.width, updates[-1].preview.height) == (SIZE, SIZE)


def test_a_broken_taesd_file_gives_linear_previews_warns_once_and_a_good_one_replaces_it(
        sd15: dict[str, Any], tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    folder = tmp_path / "decoders"
    folder.mkdir()
    (folder / "taesd_decoder.safetensors").write_bytes(b"not a safetensors file")
    backend = DiffusersBackend(tmp_path / "img", taesd_folder=folder)
    for _ in range(2):
        result, updates = run(backend, request(**sd15))
        assert len(result.images) == 1  # the image is made all the same
        assert updates[-1].preview is not None and updates[-1].preview.width == SIZE // 8
    assert caplog.text.count("Could not load TAESD weights") == 1  # not again every job
    (folder / "taesd_decoder.safetensors").unlink()
    save_tiny_taesd(folder)
    _, updates = run(backend, request(**sd15))
    assert updates[-1].preview is not None and updates[-1].preview.width == SIZE


def test_a_taesd_added_or_removed_while_running_is_used_from_the_next_job(
        sd15: dict[str, Any], tmp_path: Path) -> None:
    """Downloading TAESD from the library panel must not need an app restart."""
    backend = DiffusersBackend(tmp_path / "img", taesd_folder=tmp_path / "decoders")

    def preview_width() -> int:
        _, updates = run(backend, request(**sd15))
        assert updates[-1].preview is not None
        return updates[-1].preview.width

    assert preview_width() == SIZE // 8  # no TAESD yet: the linear map, 1/8 size
    save_tiny_taesd(tmp_path / "decoders")
    assert preview_width() == SIZE
    shutil.rmtree(tmp_path / "decoders" / "taesd")
    assert preview_width() == SIZE // 8


def _folder_with_preview_map(tiny_sd15_dir: Path, tmp_path: Path, text: str) -> Path:
    folder = tmp_path / "own-vae-model"
    shutil.copytree(tiny_sd15_dir, folder)
    (folder / "latent_preview.json").write_text(text, encoding="utf-8")
    return folder


def test_a_models_own_preview_map_wins_over_the_standard_map_and_taesd(
        tiny_sd15_dir: Path, tmp_path: Path) -> None:
    save_tiny_taesd(tmp_path)
    # All-zero factors and a red bias: every preview pixel must come out pure red.
    folder = _folder_with_preview_map(tiny_sd15_dir, tmp_path, json.dumps(
        {"factors": [[0, 0, 0]] * 4, "bias": [1, -1, -1]}))
    backend = DiffusersBackend(tmp_path / "img", taesd_folder=tmp_path)
    _, updates = run(backend, request(folder, steps=2))
    for update in updates:
        assert update.preview is not None
        assert (update.preview.width, update.preview.height) == (SIZE // 8, SIZE // 8)
        assert update.preview.rgb == bytes((255, 0, 0)) * (SIZE // 8) ** 2


def test_a_model_can_ask_for_previews_from_its_own_vae(tiny_sd15_dir: Path,
                                                      tmp_path: Path) -> None:
    folder = _folder_with_preview_map(tiny_sd15_dir, tmp_path, json.dumps(
        {"factors": [[0, 0, 0]] * 4, "bias": [1, -1, -1], "decoder": "vae"}))
    backend = DiffusersBackend(tmp_path / "img")
    result, updates = run(backend, request(folder, steps=3))
    previews = [u.preview for u in updates if u.preview is not None]
    # Paced by the decode's measured cost (previews.PREVIEW_BUDGET); the last step always has
    # one.
    assert updates[-1].preview is not None
    for preview in previews:  # full size, decoded by the model's VAE (not the red linear map)
        assert (preview.width, preview.height) == (SIZE, SIZE)
        assert preview.rgb != bytes((255, 0, 0)) * SIZE**2
    # The last preview is the decoded image itself (same VAE, same final latents).
    final = np.frombuffer(updates[-1].preview.rgb, np.uint8).reshape(SIZE, SIZE, 3)
    assert np.abs(final.astype(int) - images_of(result)[0].astype(int)).mean() < 3
    # The same previewer serves the next job, so its measured cost keeps pacing the previews.
    first = backend._previewer
    run(backend, request(folder, steps=3, seed=2))
    assert backend._previewer is first


def test_a_models_own_vae_previews_pause_while_a_library_vae_is_swapped_in(
        tiny_sd15_dir: Path, tiny_vae_file: Path, tmp_path: Path) -> None:
    from desktop_app.pipeline.backend.previews import LinearPreviewer, VaePreviewer

    folder = _folder_with_preview_map(tiny_sd15_dir, tmp_path, json.dumps(
        {"factors": [[0, 0, 0]] * 4, "bias": [1, -1, -1], "decoder": "vae"}))
    backend = DiffusersBackend(tmp_path / "img", taesd_folder=tmp_path / "no-taesd")
    run(backend, request(folder, steps=2))
    own = backend._previewer
    assert isinstance(own, VaePreviewer) and own.vae is backend.loaded.pipe.vae
    _, updates = run(backend, request(folder, steps=2, vae=str(tiny_vae_file)))
    assert isinstance(backend._previewer, LinearPreviewer)  # the map fits only the own VAE
    assert updates[-1].preview is not None and updates[-1].preview.width == SIZE // 8
    _, updates = run(backend, request(folder, steps=2))
    assert isinstance(backend._previewer, VaePreviewer)
    assert backend._previewer.vae is backend.loaded.pipe.vae  # the own VAE again
    assert updates[-1].preview is not None and updates[-1].preview.width == SIZE


@pytest.mark.parametrize("text", ["{not json", '{"factors": [[1, 2]], "bias": [0, 0, 0]}',
                                  '{"bias": [0, 0, 0]}', '[]',
                                  '{"factors": [[0, 0, 0]], "bias": [0, 0, 0], "decoder": 3}'])
def test_a_broken_preview_map_falls_back_to_the_standard_map(
        tiny_sd15_dir: Path, tmp_path: Path, text: str, caplog: pytest.LogCaptureFixture) -> None:
    folder = _folder_with_preview_map(tiny_sd15_dir, tmp_path, text)
    result, updates = run(DiffusersBackend(tmp_path / "img"), request(folder, steps=2))
    assert len(result.images) == 1
    assert all(u.preview is not None and u.preview.rgb != bytes((255, 0, 0)) * (SIZE // 8) ** 2
               for u in updates)
    assert "latent_preview.json" in caplog.text and "standard map" in caplog.text


def test_taesd_original_decoder_file_loads_with_shifted_layer_indices(tmp_path: Path) -> None:
    from diffusers import AutoencoderTiny
    from safetensors.torch import save_file

    from desktop_app.pipeline.backend.previews import load_taesd

    torch.manual_seed(0)
    reference = AutoencoderTiny().eval()
    # The original decoder file is nn.Sequential(Clamp(), conv, …): indices one above ours.
    original = {f"{int(k.split('.')[2]) + 1}.{k.split('.', 3)[3]}": v.contiguous()
                for k, v in reference.state_dict().items() if k.startswith("decoder.layers.")}
    save_file(original, str(tmp_path / "taesd_decoder.safetensors"))
    loaded = load_taesd(is_xl=False, folder=tmp_path)
    assert loaded is not None and load_taesd(is_xl=True, folder=tmp_path) is None
    latent = torch.randn(1, 4, 8, 8)
    with torch.no_grad():
        assert torch.allclose(loaded.decode(latent).sample, reference.decode(latent).sample)


def test_plain_prompt_encodes_exactly_like_diffusers(backend: DiffusersBackend,
                                                     sd15: dict[str, Any]) -> None:
    run(backend, request(**sd15, steps=1))
    pipe = backend.loaded.pipe
    ours = encode_prompts(pipe, "a photo of a cat", "ugly, blurry")
    positive, negative = pipe.encode_prompt("a photo of a cat", "cpu", 1, True, "ugly, blurry")
    assert torch.allclose(ours.prompt_embeds, positive, atol=1e-6)
    assert torch.allclose(ours.negative_prompt_embeds, negative, atol=1e-6)


def test_sdxl_encoding_matches_diffusers_and_zeroes_an_empty_negative(
        backend: DiffusersBackend, tiny_sdxl_file: Path, tiny_sdxl_config: Path) -> None:
    run(backend, request(tiny_sdxl_file, tiny_sdxl_config, steps=1))
    pipe = backend.loaded.pipe
    ours = encode_prompts(pipe, "a photo of a cat", "ugly")
    reference = pipe.encode_prompt("a photo of a cat", negative_prompt="ugly", device="cpu")
    for mine, theirs in zip((ours.prompt_embeds, ours.negative_prompt_embeds,
                             ours.pooled_prompt_embeds, ours.negative_pooled_prompt_embeds),
                            reference, strict=True):
        assert mine is not None and torch.allclose(mine, theirs, atol=1e-6)
    empty = encode_prompts(pipe, "word, " * 60, "")  # 2 chunks against an empty negative
    assert empty.prompt_embeds.shape == empty.negative_prompt_embeds.shape
    assert empty.negative_prompt_embeds[:, :77].abs().sum() == 0  # A1111/diffusers: zeros
    assert empty.negative_prompt_embeds[:, 77:].abs().sum() > 0  # padded with the "" encoding
    assert empty.negative_pooled_prompt_embeds is not None
    assert empty.negative_pooled_prompt_embeds.abs().sum() == 0
    skip2 = encode_prompts(pipe, "a photo of a cat", "ugly", clip_skip=2)
    assert not torch.allclose(skip2.prompt_embeds, ours.prompt_embeds)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32])
def test_pil_conversion_matches_diffusers_postprocess_pixel_for_pixel(dtype: torch.dtype) -> None:
    from diffusers.image_processor import VaeImageProcessor

    generator = torch.Generator().manual_seed(0)
    decoded = torch.randn(2, 3, 33, 47, generator=generator) * 1.2  # some values clip at ±1
    # Values whose 8-bit level lies on a rounding boundary: k/255 - 0.5/255, in [-1, 1].
    levels = torch.arange(256, dtype=torch.float64)
    decoded[0, 0, 0, :47] = ((levels[:47] + 0.5) / 255 * 2 - 1).float()
    decoded = decoded.to(dtype)
    ours = to_decoded(decoded)
    theirs = VaeImageProcessor(vae_scale_factor=8).postprocess(decoded, output_type="pil")
    assert len(ours) == len(theirs) == 2
    for (mine, scanlines), reference in zip(ours, theirs, strict=True):
        assert mine.mode == reference.mode == "RGB" and mine.size == (47, 33)
        assert np.array_equal(np.asarray(mine), np.asarray(reference))
        assert scanlines is None  # asked for on CUDA only
    grey = to_decoded(decoded[:, :1], denormalize=False)[0].image
    assert grey.mode == "L" and grey.size == (47, 33)


@pytest.mark.parametrize("channels", [3, 1])
def test_scanlines_filtered_where_the_image_was_decoded_are_the_encoders(channels: int) -> None:
    decoded = torch.randn(2, channels, 29, 41, generator=torch.Generator().manual_seed(1))
    for one in to_decoded(decoded, scanlines=True):
        assert one.scanlines is not None
        pixels = np.asarray(one.image).reshape(29, 41 * channels)
        assert np.array_equal(one.scanlines, png_encode.filter_rows(pixels, 0, 29, channels))


def decode_as_on_cuda(monkeypatch: pytest.MonkeyPatch) -> None:
    """The backend's decodes filter the PNG rows where the image is, as they do on CUDA."""
    real = diffusers_backend.to_decoded

    def decoded(image: torch.Tensor, **options: Any) -> Any:
        return real(image, **{**options, "scanlines": True})

    monkeypatch.setattr(diffusers_backend, "to_decoded", decoded)


def test_a_job_whose_decode_filtered_the_scanlines_writes_the_same_png(
        sd15: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """On CUDA the decode filters the PNG rows; here (CPU) that is forced: the encoder gets
    them, filters nothing itself, and the file's image data is the one it makes alone."""
    plain = DiffusersBackend(tmp_path / "plain", previews=False)
    expected = run(plain, request(**sd15, seed=9, batch_size=2))[0].images
    decode_as_on_cuda(monkeypatch)
    filtered = record_filtering(monkeypatch)
    backend = DiffusersBackend(tmp_path / "gpu", previews=False)
    got = run(backend, request(**sd15, seed=9, batch_size=2))[0].images
    assert not filtered
    for ours, reference in zip(got, expected, strict=True):
        mine, theirs = Path(ours.path).read_bytes(), Path(reference.path).read_bytes()
        assert _idat(mine) == _idat(theirs) and len(_idat(mine)) > 1000
        assert np.array_equal(pixels(Path(ours.path)), pixels(Path(reference.path)))


def test_a_failed_gpu_filtering_leaves_it_to_the_encoder_and_keeps_the_image(
        sd15: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    plain = DiffusersBackend(tmp_path / "plain", previews=False)
    expected = run(plain, request(**sd15, seed=4))[0].images[0]
    decode_as_on_cuda(monkeypatch)

    def out_of_memory(pixels: torch.Tensor, bpp: int) -> torch.Tensor:
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(diffusers_backend, "filtered_scanlines", out_of_memory)
    backend = DiffusersBackend(tmp_path / "gpu", previews=False)
    with caplog.at_level("WARNING"):
        got = run(backend, request(**sd15, seed=4))[0].images[0]
    assert "Filtering the PNG rows on cpu failed" in caplog.text
    assert _idat(Path(got.path).read_bytes()) == _idat(Path(expected.path).read_bytes())


def _idat(data: bytes) -> bytes:
    """The image data of a PNG: every IDAT chunk's body (the text chunks hold dates)."""
    out, pos = [], 8
    while pos < len(data):
        length = int.from_bytes(data[pos:pos + 4], "big")
        if data[pos + 4:pos + 8] == b"IDAT":
            out.append(data[pos + 8:pos + 8 + length])
        pos += 12 + length
    return b"".join(out)


def test_the_same_prompts_are_encoded_once_and_give_the_same_pixels(
        sd15: dict[str, Any]) -> None:
    backend = DiffusersBackend(previews=False)
    run(backend, request(**sd15, seed=3))
    assert backend.loaded is not None
    calls: list[int] = []
    hook = backend.loaded.pipe.text_encoder.register_forward_hook(lambda *_: calls.append(1))
    try:
        cached = images_of(run(backend, request(**sd15, seed=5))[0])[0]
        assert calls == []  # same prompt, negative and clip skip: the last job's embeddings
        run(backend, request(**sd15, seed=5, negative_prompt="blurry"))
        assert (after_negative := len(calls)) > 0
        run(backend, request(**sd15, seed=5, negative_prompt="blurry", clip_skip=2))
        assert len(calls) > after_negative
    finally:
        hook.remove()
    fresh = images_of(run(DiffusersBackend(previews=False), request(**sd15, seed=5))[0])[0]
    assert np.array_equal(cached, fresh)


def test_the_prompt_cache_never_serves_another_pipeline(monkeypatch: pytest.MonkeyPatch) -> None:
    from desktop_app.pipeline.backend import text_encoding

    encoded: list[str] = []

    def fake_encode(pipe: object, prompt: str, negative: str, clip_skip: int = 1) -> Any:
        encoded.append(prompt)  # not the pipe: the cache alone may keep it (weakly)
        return object()

    class Pipe:
        pass

    monkeypatch.setattr(text_encoding, "encode_prompts", fake_encode)
    monkeypatch.setattr(text_encoding, "execution_device", lambda pipe: "cpu")
    cache = text_encoding.PromptCache()
    first, second = Pipe(), Pipe()
    value = cache.encode(first, "cat", "")
    assert cache.encode(first, "cat", "") is value and len(encoded) == 1
    assert cache.encode(second, "cat", "") is not value and len(encoded) == 2  # another model
    assert cache.encode(first, "cat", "") is not value and len(encoded) == 3
    del first
    assert cache._value is None  # the pipeline is gone, and its embeddings with it


def test_a_model_loaded_ahead_makes_the_first_job_start_at_once_with_the_same_image(
        sd15: dict[str, Any], tmp_path: Path) -> None:
    req = request(**sd15)
    ahead = DiffusersBackend(tmp_path / "ahead")
    loading: list[LoadUpdate] = []
    assert ahead.preload(req, loading.append) == Path(sd15["model"]).stem
    assert loading and loading[-1].stage == "Model ready"
    assert ahead.loaded is not None
    loading.clear()
    result = ahead.generate(req, CancelToken(), lambda _update: None, loading.append)
    assert loading == []  # nothing left to load
    fresh, _ = run(DiffusersBackend(tmp_path / "fresh"), req)
    assert np.array_equal(images_of(result)[0], images_of(fresh)[0])


def test_a_model_that_cannot_be_loaded_ahead_says_why_and_the_backend_goes_on(
        sd15: dict[str, Any], tmp_path: Path) -> None:
    backend = DiffusersBackend(tmp_path / "img")
    with pytest.raises(UserError) as caught:
        backend.preload(request(tmp_path / "gone.safetensors", sd15["config"]))
    assert caught.value.kind is ErrorKind.missing_file and caught.value.hint
    result, _ = run(backend, request(**sd15))
    assert len(result.images) == 1


def test_a_damaged_model_loaded_ahead_fails_as_its_job_would(
        sd15: dict[str, Any], tmp_path: Path) -> None:
    damaged = tmp_path / "cut.safetensors"
    data = Path(sd15["model"]).read_bytes()
    damaged.write_bytes(data[: len(data) - 1000])
    backend = DiffusersBackend(tmp_path / "img")
    with pytest.raises(UserError) as ahead:
        backend.preload(request(damaged, sd15["config"]))
    with pytest.raises(UserError) as job:
        run(backend, request(damaged, sd15["config"]))
    assert ahead.value.kind is job.value.kind is ErrorKind.corrupt_file
    assert str(ahead.value) == str(job.value) and ahead.value.hint
    assert len(run(backend, request(**sd15))[0].images) == 1


def test_out_of_memory_while_loading_ahead_says_so_and_the_next_job_works(
        sd15: dict[str, Any], tmp_path: Path) -> None:
    backend = DiffusersBackend(tmp_path / "img")
    backend.preload(request(**sd15))
    encoder = backend.loaded.pipe.text_encoder

    def exhausted(*args: Any, **kwargs: Any) -> Any:
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    encoder.forward = exhausted
    try:
        with pytest.raises(UserError) as info:  # a new prompt: its embeddings are computed
            backend.preload(request(**sd15, prompt="a lighthouse at dusk"))
    finally:
        del encoder.forward
    assert info.value.kind is ErrorKind.out_of_memory and info.value.hint
    assert len(run(backend, request(**sd15, prompt="a lighthouse at dusk"))[0].images) == 1
