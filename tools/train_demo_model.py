"""Train the bundled demo model: a tiny text-to-image latent diffusion model on procedural shapes.

The committed weights in resources/models/demo/ are exactly what this command produces:

    .venv/bin/python tools/train_demo_model.py --out resources/models/demo

(1 CPU thread for stages 1-2, 2 for stages 3-4, all options at their defaults). Stages, each
fully determined by --seed:
1. VAE (AutoencoderKL, x8 downsampling, 4 latent channels) on 32x32 crops of rendered images;
2. encode a fixed pool of rendered training images to latents, scaling_factor = 1 / latent std;
3. UNet2DConditionModel + CLIPTextModel (real CLIP tokenizer) jointly, epsilon prediction on the
   standard SD schedule (scaled_linear 0.00085-0.012, 1000 steps), 10 % caption dropout so
   classifier-free guidance works, offset noise for flat colours, min-SNR weighting, the
   latent pixels under the shape weighted 1 + 3x (--shape-weight: small shapes cover ~5 of the
   64 latent pixels and were drawn in the wrong colour), EMA weights;
4. save a StableDiffusionPipeline folder in fp16 safetensors, tokenizer = resources/tokenizer,
   plus latent_preview.json: the least-squares latent -> RGB map the engine's previews use.

`--stop-after vae|pool` ends after a stage (its checkpoint stays in --work, and a later run
resumes there); `--device cuda` trains on a GPU (deterministic kernels; `--fast-kernels` lets
torch choose faster, not bit-reproducible ones); `--probe N` times N UNet steps and stops.

Every random draw of step k comes from generators seeded with (seed, stage, k), so a run that
resumes from a checkpoint in --work gives the same weights as an uninterrupted one.
Held-out (shape, colour, background) triples (tools/demo_data.py) are never rendered in training.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import shutil
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
import demo_data

ROOT = Path(__file__).resolve().parent.parent
TOKENIZER_DIR = ROOT / "resources" / "tokenizer"
BETAS = {"beta_start": 0.00085, "beta_end": 0.012, "beta_schedule": "scaled_linear"}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--out", type=Path, default=ROOT / "resources" / "models" / "demo")
    p.add_argument("--work", type=Path, default=ROOT / "build" / "demo_train",
                   help="checkpoints and logs (resumed when present)")
    p.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    p.add_argument("--threads", type=int, default=1,
                   help="torch CPU threads for stages 1-2 (VAE, latent pool)")
    p.add_argument("--unet-threads", type=int, default=2,
                   help="torch CPU threads for stages 3-4 (UNet + text encoder, export); the "
                        "thread count changes the sums' order, so it is part of the recipe")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--vae-steps", type=int, default=4000)
    p.add_argument("--vae-batch", type=int, default=8)
    p.add_argument("--pool", type=int, default=40000, help="rendered images encoded for stage 3")
    p.add_argument("--unet-steps", type=int, default=1400)
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--shape-weight", type=float, default=3.0,
                   help="extra loss weight on the latent pixels the shape covers (0 = plain "
                        "loss); small shapes cover ~5 of the 64 latent pixels")
    p.add_argument("--checkpoint-every", type=int, default=250)
    p.add_argument("--export-only", action="store_true",
                   help="write --out from the checkpoints in --work (EMA weights) and stop")
    p.add_argument("--stop-after", choices=("vae", "pool"),
                   help="stop after this stage (its checkpoint stays in --work for a later run)")
    p.add_argument("--fast-kernels", action="store_true",
                   help="CUDA: let torch pick its fastest kernels (not bit-reproducible)")
    p.add_argument("--probe", type=int, metavar="STEPS", default=0,
                   help="time STEPS UNet training steps on random latents, print JSON, stop")
    return p.parse_args(argv)


def make_vae() -> torch.nn.Module:
    # One norm group: a GroupNorm of few channels per group maps any flat colour to the same
    # normalised features, so the decoder could not tell one background colour from another.
    from diffusers import AutoencoderKL

    return AutoencoderKL(
        in_channels=3, out_channels=3, latent_channels=4,
        down_block_types=["DownEncoderBlock2D"] * 4, up_block_types=["UpDecoderBlock2D"] * 4,
        block_out_channels=[16, 32, 64, 64], layers_per_block=1, norm_num_groups=1,
        sample_size=demo_data.IMAGE_SIZE, mid_block_add_attention=False,
    )


def make_text_encoder() -> torch.nn.Module:
    from transformers import CLIPTextConfig, CLIPTextModel

    config = CLIPTextConfig(
        vocab_size=49408, hidden_size=96, intermediate_size=384, num_hidden_layers=3,
        num_attention_heads=4, max_position_embeddings=77, hidden_act="quick_gelu",
        bos_token_id=49406, eos_token_id=49407, pad_token_id=49407, projection_dim=96,
    )
    return CLIPTextModel(config)


def make_unet() -> torch.nn.Module:
    from diffusers import UNet2DConditionModel

    return UNet2DConditionModel(
        sample_size=demo_data.IMAGE_SIZE // 8, in_channels=4, out_channels=4,
        block_out_channels=(48, 96, 144), layers_per_block=1,
        down_block_types=("CrossAttnDownBlock2D",) * 3, up_block_types=("CrossAttnUpBlock2D",) * 3,
        cross_attention_dim=96, attention_head_dim=4, norm_num_groups=4,
    )


def make_scheduler() -> object:
    from diffusers import DPMSolverMultistepScheduler

    return DPMSolverMultistepScheduler(
        num_train_timesteps=1000, **BETAS, prediction_type="epsilon", steps_offset=1,
        timestep_spacing="linspace", algorithm_type="dpmsolver++", solver_order=2,
    )


def step_rng(seed: int, stage: int, step: int) -> tuple[random.Random, torch.Generator]:
    key = (seed * 1_000_003 + stage) * 10_000_019 + step
    return random.Random(key), torch.Generator().manual_seed(key)


def to_tensor(images: list) -> torch.Tensor:
    arr = np.stack([np.asarray(im, dtype=np.float32) for im in images]) / 127.5 - 1.0
    return torch.from_numpy(arr).permute(0, 3, 1, 2).contiguous()


def shape_crop(image: torch.Tensor, box: tuple[float, ...], crop: int, rng: random.Random
               ) -> torch.Tensor:
    """A crop that mostly holds (part of) the shape: small shapes would be rare otherwise."""
    limit = demo_data.IMAGE_SIZE - crop
    if rng.random() < 0.25:
        ox, oy = rng.randint(0, limit), rng.randint(0, limit)
    else:
        ox, oy = (min(limit, max(0, round((box[i] + box[i + 2]) / 2 - crop / 2
                                          + rng.uniform(-10, 10)))) for i in (0, 1))
    return image[:, oy:oy + crop, ox:ox + crop]


def sync(args: argparse.Namespace) -> None:
    if args.device.startswith("cuda"):
        torch.cuda.synchronize()


def lr_at(step: int, total: int, base: float, warmup: int) -> float:
    if step < warmup:
        return base * (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return base * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))


def save_checkpoint(path: Path, **state: object) -> None:
    tmp = path.with_suffix(".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)


def train_vae(args: argparse.Namespace, triples: list) -> torch.nn.Module:
    vae = make_vae().to(args.device)
    opt = torch.optim.AdamW(vae.parameters(), lr=1e-3, betas=(0.9, 0.99), weight_decay=0.0)
    ckpt, start = args.work / "vae.pt", 0
    if ckpt.exists():
        state = torch.load(ckpt, map_location=args.device)
        vae.load_state_dict(state["model"])
        opt.load_state_dict(state["opt"])
        start = int(state["step"])
    vae.train()
    crop, t0, avg = 32, time.time(), None
    for step in range(start, args.vae_steps):
        rng, gen = step_rng(args.seed, 1, step)
        scenes = [demo_data.random_scene(rng, triples) for _ in range(args.vae_batch)]
        x = torch.stack([shape_crop(img, scene.box, crop, rng) for img, scene in zip(
            to_tensor([demo_data.render(s) for s in scenes]), scenes, strict=True)])
        x = x.to(args.device)
        posterior = vae.encode(x).latent_dist
        z = posterior.mean + posterior.std * torch.randn(
            posterior.mean.shape, generator=gen).to(args.device)
        rec = vae.decode(z).sample
        kl = posterior.kl().mean() / z[0].numel()
        loss = F.l1_loss(rec, x) + F.mse_loss(rec, x) + 1e-4 * kl
        for group in opt.param_groups:
            group["lr"] = lr_at(step, args.vae_steps, 1e-3, 50)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(vae.parameters(), 1.0)
        opt.step()
        avg = loss.item() if avg is None else 0.98 * avg + 0.02 * loss.item()
        if (step + 1) % 25 == 0:
            print(f"vae step {step + 1}/{args.vae_steps} loss {avg:.4f} kl {kl.item():.2f} "
                  f"{time.time() - t0:.0f}s", flush=True)
        if (step + 1) % args.checkpoint_every == 0 or step + 1 == args.vae_steps:
            save_checkpoint(ckpt, model=vae.state_dict(), opt=opt.state_dict(), step=step + 1,
                            loss=avg)
    vae.eval()
    return vae


@torch.no_grad()
def encode_pool(args: argparse.Namespace, vae: torch.nn.Module, triples: list
                ) -> tuple[list[demo_data.Scene], torch.Tensor, float]:
    """Render and encode the fixed training pool; returns scenes, scaled latents, scale."""
    path = args.work / "pool.pt"
    if path.exists():
        state = torch.load(path, weights_only=False)  # our own file: holds Scene objects
        return state["scenes"], state["latents"], state["scale"]
    rng = random.Random(args.seed * 7919 + 2)
    scenes = [demo_data.random_scene(rng, triples) for _ in range(args.pool)]
    latents = []
    for i in range(0, len(scenes), 100):
        x = to_tensor([demo_data.render(s) for s in scenes[i:i + 100]]).to(args.device)
        latents.append(vae.encode(x).latent_dist.mean.cpu())
    lat = torch.cat(latents)
    scale = float(1.0 / lat.std())
    print(f"pool: {len(scenes)} images, latent mean {lat.mean():.3f} std {lat.std():.3f} "
          f"-> scaling_factor {scale:.5f}", flush=True)
    torch.save({"scenes": scenes, "latents": lat * scale, "scale": scale}, path)
    return scenes, lat * scale, scale


class Tokens:
    """Caption -> token ids, exactly what StableDiffusionPipeline does with a prompt (pad to 77
    with <|endoftext|>), memoised: captions repeat, and tokenizing 256 of them costs ~12 ms."""

    def __init__(self, tokenizer: object) -> None:
        self.tokenizer, self.cache = tokenizer, {}  # type: dict[str, torch.Tensor]

    def __call__(self, captions: list[str]) -> torch.Tensor:
        new = sorted({c for c in captions if c not in self.cache})
        if new:
            ids = self.tokenizer(new, padding="max_length", max_length=77,  # type: ignore[operator]
                                 truncation=True, return_tensors="pt").input_ids
            self.cache.update(zip(new, ids, strict=True))
        return torch.stack([self.cache[c] for c in captions])


def setup_device(args: argparse.Namespace) -> None:
    """CUDA: deterministic kernels where torch has them (warnings name any that are not), and
    the math attention kernel, whose backward is deterministic (the fused ones are not)."""
    if not args.device.startswith("cuda"):
        return
    print(f"device {torch.cuda.get_device_name(args.device)}, torch {torch.__version__}, "
          f"{'fast' if args.fast_kernels else 'deterministic'} kernels", flush=True)
    if args.fast_kernels:
        torch.backends.cudnn.benchmark = True
        return
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.backends.cudnn.benchmark = False
    torch.backends.cudnn.deterministic = True
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.backends.cuda.enable_flash_sdp(False)
    torch.backends.cuda.enable_mem_efficient_sdp(False)
    torch.backends.cuda.enable_cudnn_sdp(False)


def shape_coverage(scenes: list, size: int) -> torch.Tensor:
    """(N, 1, size, size): the fraction of each latent pixel that the shape's box covers."""
    cell = demo_data.IMAGE_SIZE / size
    edges = np.arange(size) * cell
    boxes = np.array([s.box for s in scenes], dtype=np.float64)

    def overlap(lo: np.ndarray, hi: np.ndarray) -> np.ndarray:  # (N, size)
        return np.clip(np.minimum(hi[:, None], edges + cell) - np.maximum(lo[:, None], edges),
                       0.0, cell) / cell

    rows, cols = overlap(boxes[:, 1], boxes[:, 3]), overlap(boxes[:, 0], boxes[:, 2])
    cover = rows[:, :, None] * cols[:, None, :]
    return torch.from_numpy(cover.astype(np.float32))[:, None]


def train_unet(args: argparse.Namespace, scenes: list, latents: torch.Tensor) -> tuple:
    from diffusers import DDPMScheduler
    from transformers import CLIPTokenizer

    tokenizer = CLIPTokenizer.from_pretrained(TOKENIZER_DIR)
    tokenize = Tokens(tokenizer)
    unet, te = make_unet().to(args.device), make_text_encoder().to(args.device)
    params = list(unet.parameters()) + list(te.parameters())
    ema = [p.detach().clone() for p in params]
    opt = torch.optim.AdamW(params, lr=args.lr, weight_decay=0.01)
    ckpt, start = args.work / "unet.pt", 0
    if ckpt.exists():
        state = torch.load(ckpt, map_location=args.device)
        unet.load_state_dict(state["unet"])
        te.load_state_dict(state["te"])
        opt.load_state_dict(state["opt"])
        ema = [t.to(args.device) for t in state["ema"]]
        start = int(state["step"])
    noise_sched = DDPMScheduler(num_train_timesteps=1000, **BETAS)
    alphas = noise_sched.alphas_cumprod.to(args.device)
    snr_all = alphas / (1 - alphas)
    # Per-pixel loss weights, normalised per image: with --shape-weight the few latent pixels
    # of a small shape count as much as the background around it.
    pixel_weight = 1.0 + args.shape_weight * shape_coverage(scenes, latents.shape[-1])
    pixel_weight = pixel_weight / pixel_weight.mean(dim=(2, 3), keepdim=True)
    unet.train()
    te.train()
    t0, avg = time.time(), None
    for step in range(start, args.unet_steps):
        rng, gen = step_rng(args.seed, 3, step)
        idx = [rng.randrange(len(scenes)) for _ in range(args.batch)]
        caps = ["" if rng.random() < 0.1 else demo_data.caption(scenes[i], rng) for i in idx]
        x0 = latents[idx].to(args.device)
        noise = torch.randn(x0.shape, generator=gen) + 0.1 * torch.randn(
            (x0.shape[0], x0.shape[1], 1, 1), generator=gen)
        t = torch.randint(0, 1000, (x0.shape[0],), generator=gen)
        noise, t = noise.to(args.device), t.to(args.device)
        xt = noise_sched.add_noise(x0, noise, t)
        cond = te(tokenize(caps).to(args.device))[0]
        pred = unet(xt, t, cond).sample
        snr = snr_all[t]
        weight = torch.clamp(snr, max=5.0) / snr
        per_image = (pixel_weight[idx].to(args.device) * (pred - noise) ** 2).mean(dim=(1, 2, 3))
        loss = (weight * per_image).mean()
        for group in opt.param_groups:
            group["lr"] = lr_at(step, args.unet_steps, args.lr, 200)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        decay = min(0.995, (1 + step) / (10 + step))
        with torch.no_grad():
            torch._foreach_mul_(ema, decay)
            torch._foreach_add_(ema, [p.detach() for p in params], alpha=1 - decay)
        avg = loss.item() if avg is None else 0.99 * avg + 0.01 * loss.item()
        if (step + 1) % 50 == 0:
            print(f"unet step {step + 1}/{args.unet_steps} loss {avg:.4f} "
                  f"{time.time() - t0:.0f}s", flush=True)
        if args.probe and step + 1 == start + 10:
            sync(args)
            probe_t0 = time.perf_counter()
        if args.probe and step + 1 == start + args.probe:
            sync(args)
            per_step = (time.perf_counter() - probe_t0) / (args.probe - 10)
            print(json.dumps({"probe_s_per_step": round(per_step, 5), "batch": args.batch,
                              "fast_kernels": args.fast_kernels}))
            raise SystemExit(0)
        if (step + 1) % args.checkpoint_every == 0 or step + 1 == args.unet_steps:
            save_checkpoint(ckpt, unet=unet.state_dict(), te=te.state_dict(),
                            opt=opt.state_dict(), ema=ema, step=step + 1, loss=avg)
    with torch.no_grad():
        for e, p in zip(ema, params, strict=True):
            p.copy_(e)
    return unet.eval(), te.eval(), tokenizer


def fit_preview_map(scenes: list, latents: torch.Tensor, count: int = 2000) -> dict:
    """Least-squares latent -> RGB map (4 factors + bias per colour) for the engine's cheap
    per-step previews: scaled latents of the pool against their images averaged to 1/8 size."""
    count = min(count, len(scenes))
    images = F.avg_pool2d(to_tensor([demo_data.render(s) for s in scenes[:count]]), 8)
    x = latents[:count].float().permute(0, 2, 3, 1).reshape(-1, 4).double()
    y = images.permute(0, 2, 3, 1).reshape(-1, 3).double()
    design = torch.cat([x, torch.ones(len(x), 1, dtype=x.dtype)], 1)
    coef = torch.linalg.lstsq(design, y).solution  # (5, 3): four channel rows, then the bias
    fitted = design @ coef
    rms = float(((fitted - y) ** 2).mean().sqrt())
    print(f"preview map: rms error {rms:.3f} (RGB in -1..1)", flush=True)
    # The linear fit is rough for this VAE (rms ~0.5): the engine decodes previews with the
    # model's own VAE ("decoder": "vae", ~13 ms per preview on one CPU core) and keeps the map
    # as the fallback for a standard-map world.
    return {"decoder": "vae", "factors": [[round(float(v), 4) for v in row] for row in coef[:4]],
            "bias": [round(float(v), 4) for v in coef[4]], "fit_rms": round(rms, 4),
            "source": "tools/train_demo_model.py fit_preview_map"}


def save_pipeline(args: argparse.Namespace, vae: torch.nn.Module, unet: torch.nn.Module,
                  te: torch.nn.Module, tokenizer: object, scale: float,
                  preview_map: dict) -> None:
    from diffusers import StableDiffusionPipeline

    vae.register_to_config(scaling_factor=round(scale, 5))
    pipe = StableDiffusionPipeline(
        vae=vae, text_encoder=te, tokenizer=tokenizer, unet=unet, scheduler=make_scheduler(),
        safety_checker=None, feature_extractor=None, requires_safety_checker=False,
    )
    pipe.to("cpu", torch.float16)
    if args.out.exists():
        shutil.rmtree(args.out)
    pipe.save_pretrained(args.out, safe_serialization=True)
    # The tokenizer is the project's CLIP tokenizer, byte for byte.
    shutil.rmtree(args.out / "tokenizer")
    shutil.copytree(TOKENIZER_DIR, args.out / "tokenizer")
    # The engine's linear previews for this VAE (desktop_app/pipeline/backend/previews.py).
    (args.out / "latent_preview.json").write_text(json.dumps(preview_map) + "\n")


def export_checkpoint(args: argparse.Namespace) -> int:
    """Save the pipeline from the latest checkpoints (for looking at a run in progress)."""
    from transformers import CLIPTokenizer

    vae, unet, te = make_vae(), make_unet(), make_text_encoder()
    vae.load_state_dict(torch.load(args.work / "vae.pt")["model"])
    state = torch.load(args.work / "unet.pt")
    params = list(unet.parameters()) + list(te.parameters())
    with torch.no_grad():
        for e, p in zip(state["ema"], params, strict=True):
            p.copy_(e)
    pool = torch.load(args.work / "pool.pt", weights_only=False)  # our own file (Scene objects)
    save_pipeline(args, vae.eval(), unet.eval(), te.eval(),
                  CLIPTokenizer.from_pretrained(TOKENIZER_DIR), pool["scale"],
                  fit_preview_map(pool["scenes"], pool["latents"]))
    print(f"exported step {state['step']} (loss {state['loss']:.4f}) to {args.out}")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    args.work.mkdir(parents=True, exist_ok=True)
    triples = demo_data.train_triples()
    if args.export_only:
        torch.set_num_threads(args.unet_threads)  # as in stage 4
        return export_checkpoint(args)
    setup_device(args)
    if args.probe:
        if args.probe <= 10:
            raise SystemExit("--probe needs more than 10 steps (10 warm-up steps are not timed)")
        args.unet_steps = max(args.unet_steps, args.probe + 1)
        rng = random.Random(1)
        scenes = [demo_data.random_scene(rng, triples) for _ in range(512)]
        args.work = args.work / "probe"
        shutil.rmtree(args.work, ignore_errors=True)
        args.work.mkdir(parents=True)
        train_unet(args, scenes, torch.randn(len(scenes), 4, *(2 * [demo_data.IMAGE_SIZE // 8])))
    t0 = time.time()
    vae = train_vae(args, triples)
    if args.stop_after == "vae":
        return 0
    for p in vae.parameters():
        p.requires_grad_(False)
    t1 = time.time()
    scenes, latents, scale = encode_pool(args, vae, triples)
    if args.stop_after == "pool":
        return 0
    t2 = time.time()
    torch.set_num_threads(args.unet_threads)
    unet, te, tokenizer = train_unet(args, scenes, latents)
    t3 = time.time()
    save_pipeline(args, vae, unet, te, tokenizer, scale, fit_preview_map(scenes, latents))
    vae_loss = torch.load(args.work / "vae.pt")["loss"]
    unet_loss = torch.load(args.work / "unet.pt")["loss"]
    summary = {
        "out": str(args.out), "seed": args.seed, "device": args.device, "threads": args.threads,
        "unet_threads": args.unet_threads, "shape_weight": args.shape_weight,
        "vae_steps": args.vae_steps, "unet_steps": args.unet_steps, "batch": args.batch,
        "scaling_factor": round(scale, 5), "vae_loss": round(vae_loss, 5),
        "unet_loss": round(unet_loss, 5), "vae_s": round(t1 - t0), "encode_s": round(t2 - t1),
        "unet_s": round(t3 - t2), "total_s": round(time.time() - t0),
        "size_bytes": sum(f.stat().st_size for f in args.out.rglob("*") if f.is_file()),
    }
    (args.work / "summary.json").write_text(json.dumps(summary, indent=2))
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
