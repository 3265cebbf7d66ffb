"""Tiny random-weight SD1-layout models, built at run time. No downloads.

`desktop-app --self-test` writes `build_tiny_sd15_folder` when the bundled demo model is not
available, so the self-test exercises the real loading and generation path. The packaged app
cannot rely on tests/, so the builders live here and the test suite builds through them
(tests/fixtures/tiny_models.py adds SD2/SDXL layouts and the LDM single-file export). The model
keeps the real SD1 topology (4 UNet blocks, 4 VAE blocks, a 4-layer CLIP text encoder) with tiny
widths, the real CLIP tokenizer and the shipped SD1 scheduler config.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from desktop_app import paths

SD15_SCALING = 0.18215
TEXT_LAYERS = 4


def _diffusers() -> Any:
    import diffusers

    return diffusers  # untyped library: keep mypy out of its signatures


def clip_tokenizer(pad_bang: bool = False) -> Any:
    """The real CLIP tokenizer from resources/ (`pad_bang`: pad with "!", as SD2 and SDXL's 2nd)."""
    from transformers import CLIPTokenizer

    kwargs: dict[str, Any] = {"pad_token": "!"} if pad_bang else {}
    return CLIPTokenizer.from_pretrained(str(paths.resource("tokenizer")), **kwargs)


def tiny_text_config(hidden: int, layers: int, act: str, projection: int | None = None) -> Any:
    """A CLIP text encoder config with the real vocabulary and 77 positions, `hidden` wide."""
    from transformers import CLIPTextConfig

    return CLIPTextConfig(
        vocab_size=49408, hidden_size=hidden, intermediate_size=hidden * 2,
        num_hidden_layers=layers, num_attention_heads=4, max_position_embeddings=77,
        hidden_act=act, projection_dim=projection or hidden,
        bos_token_id=49406, eos_token_id=49407, pad_token_id=49407,
    )


def tiny_vae(scaling: float, force_upcast: bool) -> Any:
    """A 4-block AutoencoderKL, 32 channels wide (×8 downsampling like the real ones)."""
    return _diffusers().AutoencoderKL(
        block_out_channels=(32, 32, 32, 32), layers_per_block=1, latent_channels=4,
        down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
        norm_num_groups=8, sample_size=64, scaling_factor=scaling, force_upcast=force_upcast,
    )


def shipped_scheduler(family: str) -> Any:
    """The scheduler of resources/configs/<family>, built from its shipped config."""
    folder = paths.resource("configs", family, "scheduler")
    config = json.loads((folder / "scheduler_config.json").read_text(encoding="utf-8"))
    cls = getattr(_diffusers(), config["_class_name"])
    return cls.from_pretrained(str(folder.parent), subfolder="scheduler")


def make_tiny_sd15_pipeline(seed: int = 0) -> Any:
    """An SD1-layout StableDiffusionPipeline with random weights (about 2 M parameters)."""
    import torch
    from transformers import CLIPTextModel

    diffusers = _diffusers()
    torch.manual_seed(seed)
    unet = diffusers.UNet2DConditionModel(
        block_out_channels=(32, 32, 32, 32), layers_per_block=2, sample_size=8,
        down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
        up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
        attention_head_dim=8, cross_attention_dim=32, norm_num_groups=8,
    )
    vae = tiny_vae(SD15_SCALING, force_upcast=False)
    text_encoder = CLIPTextModel(tiny_text_config(32, TEXT_LAYERS, "quick_gelu"))
    return diffusers.StableDiffusionPipeline(
        vae=vae, text_encoder=text_encoder, tokenizer=clip_tokenizer(), unet=unet,
        scheduler=shipped_scheduler("sd15"), safety_checker=None, feature_extractor=None,
        requires_safety_checker=False,
    )


def make_tiny_sd15_pipeline_small_unet() -> Any:
    """The tiny SD1 pipeline with a 2-block UNet (seed 3), so a torch.compile stays short.

    Fast mode's CPU tests and the compile-cache benchmark use it; progress bars are off.
    """
    import torch

    pipe = make_tiny_sd15_pipeline()
    torch.manual_seed(3)
    pipe.unet = _diffusers().UNet2DConditionModel(
        block_out_channels=(32, 64), layers_per_block=1, sample_size=8,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        attention_head_dim=8, cross_attention_dim=32, norm_num_groups=8,
    ).eval()
    pipe.set_progress_bar_config(disable=True)
    return pipe


def build_tiny_sd15_folder(dest: Path, seed: int = 0) -> Path:
    """Write the tiny SD1 model as a diffusers folder at `dest` (created); returns `dest`."""
    pipe = make_tiny_sd15_pipeline(seed)
    dest.mkdir(parents=True, exist_ok=True)
    pipe.save_pretrained(str(dest), safe_serialization=True)
    return dest


def save_random_taesd(folder: Path, is_xl: bool = False, device: str = "cpu") -> Path:
    """A TAESD (TAESDXL) decoder of the real default architecture with random weights, saved
    where the engine looks for one (`folder/taesd` or `folder/taesdxl`, a diffusers folder):
    what a user who downloaded TAESD previews with, for the benchmarks. Returns `folder`."""
    import torch

    target = folder / ("taesdxl" if is_xl else "taesd")
    if not target.exists():
        with torch.device(device):
            torch.manual_seed(0)
            _diffusers().AutoencoderTiny().save_pretrained(str(target), safe_serialization=True)
    return folder
