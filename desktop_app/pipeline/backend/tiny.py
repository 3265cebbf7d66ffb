"""A tiny random-weight SD1-layout model, built at run time for `desktop-app --self-test`.

The packaged app cannot rely on tests/ (tests/fixtures/tiny_models.py has the full set of
builders for the test suite). This writes a complete diffusers folder with the same topology
as that fixture's SD1 model (4 UNet blocks, 4 VAE blocks, the real CLIP tokenizer, the shipped
SD1 scheduler config), so the self-test exercises the real loading and generation path when
the bundled demo model is not available. No downloads.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from desktop_app import paths

SD15_SCALING = 0.18215


def build_tiny_sd15_folder(dest: Path, seed: int = 0) -> Path:
    """Write the tiny model as a diffusers folder at `dest` (created); returns `dest`."""
    import diffusers as diffusers_module
    import torch
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    diffusers: Any = diffusers_module  # untyped library: keep mypy out of its signatures

    torch.manual_seed(seed)
    unet = diffusers.UNet2DConditionModel(
        block_out_channels=(32, 32, 32, 32), layers_per_block=2, sample_size=8,
        down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
        up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
        attention_head_dim=8, cross_attention_dim=32, norm_num_groups=8,
    )
    vae = diffusers.AutoencoderKL(
        block_out_channels=(32, 32, 32, 32), layers_per_block=1, latent_channels=4,
        down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
        norm_num_groups=8, sample_size=64, scaling_factor=SD15_SCALING, force_upcast=False,
    )
    text_encoder = CLIPTextModel(CLIPTextConfig(
        vocab_size=49408, hidden_size=32, intermediate_size=64, num_hidden_layers=4,
        num_attention_heads=4, max_position_embeddings=77, hidden_act="quick_gelu",
        projection_dim=32, bos_token_id=49406, eos_token_id=49407, pad_token_id=49407,
    ))
    tokenizer = CLIPTokenizer.from_pretrained(str(paths.resource("tokenizer")))
    scheduler_dir = paths.resource("configs", "sd15", "scheduler")
    config = json.loads((scheduler_dir / "scheduler_config.json").read_text(encoding="utf-8"))
    scheduler_cls = getattr(diffusers, config["_class_name"])
    scheduler = scheduler_cls.from_pretrained(str(scheduler_dir.parent), subfolder="scheduler")
    pipe = diffusers.StableDiffusionPipeline(
        vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet, scheduler=scheduler,
        safety_checker=None, feature_extractor=None, requires_safety_checker=False,
    )
    dest.mkdir(parents=True, exist_ok=True)
    pipe.save_pretrained(str(dest), safe_serialization=True)
    return dest
