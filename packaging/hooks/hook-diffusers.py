"""PyInstaller hook for diffusers (pyinstaller-hooks-contrib ships none).

Two things break a frozen diffusers without it:

* diffusers decides which backends exist by reading package metadata
  (`importlib.metadata.version` in `diffusers.utils.import_utils`). PyInstaller's automatic
  metadata detection does not see those calls (the module is aliased and the names are passed in
  variables), and a missing dist-info silently turns every pipeline into a `DummyObject` that
  fails with "requires the transformers library". So the metadata is copied explicitly.
* diffusers and transformers are `_LazyModule`s: pipelines, schedulers, models and the
  transformers classes named in `model_index.json` are imported by name at run time, which
  PyInstaller's import scan cannot follow. Only the families the app loads are collected
  (SD 1.x/2.x/SDXL pipelines, every scheduler for the sampler list, the UNet/VAE/TAESD models,
  CLIP), not all of diffusers' hundreds of pipelines.
"""

from __future__ import annotations

from PyInstaller.utils.hooks import collect_submodules, copy_metadata, logger

# Distributions whose version diffusers/transformers/huggingface_hub read at import or load time.
REQUIRED_METADATA = (
    "diffusers",
    "torch",
    "transformers",
    "tokenizers",
    "huggingface-hub",
    "safetensors",
    "accelerate",
    "numpy",
    "Pillow",
    "tqdm",
    "regex",
    "requests",
    "filelock",
    "packaging",
    "PyYAML",
    "fsspec",
)
# Optional: the samplers that need them report a clear error when they are absent.
OPTIONAL_METADATA = ("scipy", "torchsde", "psutil")

# Sub-packages imported lazily by name; a submodule is kept when its name starts with one of these.
LAZY_PACKAGES = (
    "diffusers.schedulers",  # the sampler table maps to many schedulers
    "diffusers.pipelines.stable_diffusion",  # SD 1.x / 2.x (txt2img, img2img, inpaint)
    "diffusers.pipelines.stable_diffusion_xl",
    "diffusers.pipelines.pipeline_utils",
    "diffusers.pipelines.pipeline_loading_utils",
    "diffusers.models.unets",
    "diffusers.models.autoencoders",  # AutoencoderKL and AutoencoderTiny (TAESD previews)
    "diffusers.models.embeddings",
    "diffusers.models.attention_processor",
    "diffusers.models.modeling_utils",
    "diffusers.loaders",  # single-file checkpoints, LoRA, textual inversion
    "diffusers.image_processor",
)
# diffusers' pipeline loader imports transformers classes by the names in model_index.json;
# SD 1.x/2.x/SDXL only ever name CLIP text encoders, tokenizers and the CLIP safety checker.
TRANSFORMERS_PACKAGES = ("transformers.models.clip",)


def _wanted(name: str) -> bool:
    if name.endswith("_flax") or ".deprecated" in name:  # JAX variants and removed pipelines
        return False
    return any(name == p or name.startswith(p + ".") for p in LAZY_PACKAGES)


def _metadata() -> list[tuple[str, str]]:
    found: list[tuple[str, str]] = []
    for dist in REQUIRED_METADATA:
        found += copy_metadata(dist)  # raises when missing: a broken bundle must not build
    for dist in OPTIONAL_METADATA:
        try:
            found += copy_metadata(dist)
        except Exception:  # not installed: the bundle simply lacks that optional feature
            logger.info("hook-diffusers: optional distribution %s not installed", dist)
    return found


datas = _metadata()
hiddenimports = collect_submodules("diffusers", filter=_wanted)
for package in TRANSFORMERS_PACKAGES:
    hiddenimports += collect_submodules(package)
