"""The diffusers backend: the only package that imports torch, diffusers and transformers.

Importing it first fixes the environment those libraries read at import time: never reach the
Hugging Face Hub (offline, no telemetry), let MPS fall back to the CPU for missing ops, and keep
OpenMP threads from spin-waiting.
"""

from __future__ import annotations

import os

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"
os.environ.setdefault("PYTORCH_ENABLE_MPS_FALLBACK", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# OpenMP worker threads that spin-wait between parallel regions collapse when anything else wants
# the CPU: measured on the 2-core dev machine with one other busy process, the demo model went
# from 0.75 s to 39 s per image (benchmarks/demo_speed.py). Sleeping waits cost little on an idle
# machine and avoid that cliff; set OMP_WAIT_POLICY yourself to override.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
