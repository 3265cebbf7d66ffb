"""The diffusers backend: the only package that imports torch, diffusers and transformers.

Importing it first fixes the environment those libraries read at import time: never reach the
Hugging Face Hub (offline, no telemetry) and let MPS fall back to the CPU for missing ops.
"""

from __future__ import annotations

import os

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"
os.environ.setdefault("PYTORCH_ENABLE_MPS_FALLBACK", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
