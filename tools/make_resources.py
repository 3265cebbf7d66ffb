"""Regenerate the shipped configs and CLIP tokenizer in resources/, fully offline but for PyPI.

    python tools/make_resources.py            # writes resources/tokenizer and resources/configs

The tokenizer is derived from the MIT-licensed BPE merges file inside the `open_clip_torch`
wheel (downloaded with `pip download --no-deps`, never imported). The vocabulary is a pure
function of the merges list (OpenAI's SimpleTokenizer construction). The pipeline configs are
written from the published architecture parameters of SD 1.x, SD 2.x (512 epsilon, 768
v-prediction) and SDXL base, built on the meta device so no weights are allocated.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

ROOT = Path(__file__).resolve().parent.parent
OPEN_CLIP_WHEEL = "open_clip_torch==3.3.0"
BPE_MEMBER = "open_clip/bpe_simple_vocab_16e6.txt.gz"
BPE_SHA256 = "924691ac288e54409236115652ad4aa250f48203de50a9e4722a6ecd48d6804a"
CHECK_TEXT = "a photo of a cat"
CHECK_IDS = [49406, 320, 1125, 539, 320, 2368, 49407]

SCHED_COMMON = dict(
    beta_start=0.00085,
    beta_end=0.012,
    beta_schedule="scaled_linear",
    num_train_timesteps=1000,
    steps_offset=1,
    trained_betas=None,
)
VAE = dict(
    block_out_channels=[128, 256, 512, 512],
    layers_per_block=2,
    latent_channels=4,
    in_channels=3,
    out_channels=3,
    norm_num_groups=32,
    down_block_types=["DownEncoderBlock2D"] * 4,
    up_block_types=["UpDecoderBlock2D"] * 4,
)
UNET_SD1 = dict(
    sample_size=64,
    in_channels=4,
    out_channels=4,
    block_out_channels=[320, 640, 1280, 1280],
    layers_per_block=2,
    down_block_types=["CrossAttnDownBlock2D"] * 3 + ["DownBlock2D"],
    up_block_types=["UpBlock2D"] + ["CrossAttnUpBlock2D"] * 3,
    attention_head_dim=8,
    cross_attention_dim=768,
)
UNET_SD2 = {
    **UNET_SD1,
    "attention_head_dim": [5, 10, 20, 20],
    "cross_attention_dim": 1024,
    "use_linear_projection": True,
}
UNET_SDXL = dict(
    sample_size=128,
    in_channels=4,
    out_channels=4,
    block_out_channels=[320, 640, 1280],
    layers_per_block=2,
    down_block_types=["DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"],
    up_block_types=["CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"],
    transformer_layers_per_block=[1, 2, 10],
    attention_head_dim=[5, 10, 20],
    use_linear_projection=True,
    addition_embed_type="text_time",
    addition_time_embed_dim=256,
    projection_class_embeddings_input_dim=2816,
    cross_attention_dim=2048,
)
CLIP_COMMON = dict(
    vocab_size=49408, max_position_embeddings=77, bos_token_id=0, eos_token_id=2, pad_token_id=1
)
CLIP_L = dict(
    CLIP_COMMON,
    hidden_size=768,
    intermediate_size=3072,
    num_hidden_layers=12,
    num_attention_heads=12,
    hidden_act="quick_gelu",
    projection_dim=768,
)
OPENCLIP_H = dict(
    CLIP_COMMON,
    hidden_size=1024,
    intermediate_size=4096,
    num_hidden_layers=23,
    num_attention_heads=16,
    hidden_act="gelu",
    projection_dim=512,
)
OPENCLIP_BIGG = dict(
    CLIP_COMMON,
    hidden_size=1280,
    intermediate_size=5120,
    num_hidden_layers=32,
    num_attention_heads=20,
    hidden_act="gelu",
    projection_dim=1280,
)

FAMILIES: dict[str, dict[str, object]] = {
    "sd15": dict(
        pipeline="StableDiffusionPipeline",
        unet=UNET_SD1,
        text=[("CLIPTextModel", CLIP_L)],
        vae_size=512,
        scaling=0.18215,
        scheduler=dict(
            SCHED_COMMON,
            _class_name="PNDMScheduler",
            skip_prk_steps=True,
            set_alpha_to_one=False,
            clip_sample=False,
        ),
    ),
    "sd2-512": dict(
        pipeline="StableDiffusionPipeline",
        unet=UNET_SD2,
        text=[("CLIPTextModel", OPENCLIP_H)],
        vae_size=512,
        scaling=0.18215,
        scheduler=dict(
            SCHED_COMMON,
            _class_name="DDIMScheduler",
            clip_sample=False,
            set_alpha_to_one=False,
            prediction_type="epsilon",
        ),
    ),
    "sd2-768-v": dict(
        pipeline="StableDiffusionPipeline",
        unet={**UNET_SD2, "sample_size": 96, "upcast_attention": True},
        text=[("CLIPTextModel", OPENCLIP_H)],
        vae_size=768,
        scaling=0.18215,
        scheduler=dict(
            SCHED_COMMON,
            _class_name="DDIMScheduler",
            clip_sample=False,
            set_alpha_to_one=False,
            prediction_type="v_prediction",
        ),
    ),
    "sdxl": dict(
        pipeline="StableDiffusionXLPipeline",
        unet=UNET_SDXL,
        text=[("CLIPTextModel", CLIP_L), ("CLIPTextModelWithProjection", OPENCLIP_BIGG)],
        vae_size=1024,
        scaling=0.13025,
        force_upcast=True,
        scheduler=dict(
            SCHED_COMMON,
            _class_name="EulerDiscreteScheduler",
            interpolation_type="linear",
            timestep_spacing="leading",
            use_karras_sigmas=False,
            prediction_type="epsilon",
        ),
    ),
}


def bytes_to_unicode() -> dict[int, str]:
    """GPT-2/CLIP's reversible byte → printable-unicode table."""
    bs = (
        list(range(ord("!"), ord("~") + 1))
        + list(range(ord("¡"), ord("¬") + 1))
        + list(range(ord("®"), ord("ÿ") + 1))
    )
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, (chr(c) for c in cs), strict=True))


def fetch_bpe(workdir: Path) -> bytes:
    """Download the open_clip wheel (no dependencies, never imported) and read the BPE member."""
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--quiet",
            "-d",
            str(workdir),
            OPEN_CLIP_WHEEL,
        ],
        check=True,
    )
    wheel = next(workdir.glob("open_clip_torch-*.whl"))
    archive = zipfile.ZipFile(wheel)
    data = archive.read(BPE_MEMBER)
    license_name = next(n for n in archive.namelist() if n.endswith("licenses/LICENSE"))
    (workdir / "LICENSE").write_bytes(archive.read(license_name))
    digest = hashlib.sha256(data).hexdigest()
    if digest != BPE_SHA256:
        raise SystemExit(f"unexpected BPE file hash {digest}")
    return data


def write_tokenizer(bpe_gz: bytes, out: Path) -> None:
    merges_all = gzip.decompress(bpe_gz).decode("utf-8").split("\n")
    merges = merges_all[1 : 49152 - 256 - 2 + 1]
    symbols = list(bytes_to_unicode().values())
    vocab = symbols + [s + "</w>" for s in symbols]
    vocab += ["".join(m.split()) for m in merges]
    vocab += ["<|startoftext|>", "<|endoftext|>"]
    assert len(vocab) == 49408
    raw = out / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    (raw / "vocab.json").write_text(
        json.dumps({t: i for i, t in enumerate(vocab)}, ensure_ascii=False), encoding="utf-8"
    )
    (raw / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n", encoding="utf-8")
    from transformers import CLIPTokenizer

    tok = CLIPTokenizer.from_pretrained(str(raw), model_max_length=77)
    ids = tok(CHECK_TEXT)["input_ids"]
    if ids != CHECK_IDS:
        raise SystemExit(f"tokenizer check failed: {ids}")
    final = out / "tokenizer"
    if final.exists():
        shutil.rmtree(final)
    final.mkdir(parents=True)
    for name in ("vocab.json", "merges.txt"):
        shutil.copy(raw / name, final / name)
    config = {
        "tokenizer_class": "CLIPTokenizer",
        "model_max_length": 77,
        "bos_token": "<|startoftext|>",
        "eos_token": "<|endoftext|>",
        "unk_token": "<|endoftext|>",
        "pad_token": "<|endoftext|>",
        "do_lower_case": True,
        "clean_up_tokenization_spaces": True,
    }
    (final / "tokenizer_config.json").write_text(json.dumps(config, indent=2) + "\n")
    shutil.copy(out / "LICENSE", final / "LICENSE")
    reloaded = CLIPTokenizer.from_pretrained(str(final))
    assert reloaded(CHECK_TEXT)["input_ids"] == CHECK_IDS
    print(f"tokenizer OK: {CHECK_TEXT!r} -> {CHECK_IDS}")


def _dump(path: Path, data: dict[str, object]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")


def write_configs(out: Path) -> None:
    import torch
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig

    for family, spec in FAMILIES.items():
        folder = out / family
        if folder.exists():
            shutil.rmtree(folder)
        with torch.device("meta"):
            unet = UNet2DConditionModel(**spec["unet"])  # type: ignore[arg-type]
            vae_kwargs = dict(
                VAE,
                sample_size=spec["vae_size"],
                scaling_factor=spec["scaling"],
                force_upcast=bool(spec.get("force_upcast", False)),
            )
            vae = AutoencoderKL(**vae_kwargs)  # type: ignore[arg-type]
        unet.save_config(folder / "unet")
        vae.save_config(folder / "vae")
        index: dict[str, object] = {
            "_class_name": spec["pipeline"],
            "_diffusers_version": "0.42.1",
            "unet": ["diffusers", "UNet2DConditionModel"],
            "vae": ["diffusers", "AutoencoderKL"],
            "scheduler": ["diffusers", spec["scheduler"]["_class_name"]],  # type: ignore[index]
            "safety_checker": [None, None],
            "feature_extractor": [None, None],
        }
        for i, (cls_name, kwargs) in enumerate(spec["text"]):  # type: ignore[misc]
            suffix = "" if i == 0 else f"_{i + 1}"
            cfg = CLIPTextConfig(**kwargs)
            cfg.architectures = [cls_name]
            cfg.save_pretrained(folder / f"text_encoder{suffix}")
            index[f"text_encoder{suffix}"] = ["transformers", cls_name]
            index[f"tokenizer{suffix}"] = ["transformers", "CLIPTokenizer"]
        if family == "sdxl":
            index["force_zeros_for_empty_prompt"] = True
            index["image_encoder"] = [None, None]
        else:
            index["requires_safety_checker"] = False
            index["image_encoder"] = [None, None]
        _dump(folder / "model_index.json", index)
        _dump(folder / "scheduler" / "scheduler_config.json", dict(spec["scheduler"]))  # type: ignore[arg-type]
        print(f"configs OK: {family}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=ROOT / "resources")
    parser.add_argument("--skip-tokenizer", action="store_true")
    args = parser.parse_args()
    if not args.skip_tokenizer:
        with tempfile.TemporaryDirectory() as tmp:
            bpe = fetch_bpe(Path(tmp))
            write_tokenizer(bpe, Path(tmp))
            shutil.rmtree(args.out / "tokenizer", ignore_errors=True)
            shutil.copytree(Path(tmp) / "tokenizer", args.out / "tokenizer")
    write_configs(args.out / "configs")
    return 0


if __name__ == "__main__":
    sys.exit(main())
