"""Where fast mode keeps its compiled kernels between app runs, and what it has compiled before.

`paths.cache_dir()/torch_compile/` holds:
* `inductor/` — TORCHINDUCTOR_CACHE_DIR: inductor's FX graph cache, the AOTAutograd cache and
  (under `triton/`) the Triton kernels. These caches are keyed by graph, input shapes, torch and
  Triton versions and the GPU, so a second start at the same size skips code generation and
  kernel builds (dynamo still traces the model, some seconds).
* `mega/<env>/<session>.bin` — torch.compiler's portable "mega-cache" (save_cache_artifacts /
  load_cache_artifacts, torch ≥ 2.6), one file per app session that compiled something; loaded
  back at the first fast-mode use. Redundant with `inductor/` on one machine, but it survives a
  wiped temp dir or a moved cache and is what one would ship to another machine.
* `compiled.json` — which (architecture, function, size) were compiled, so the progress message
  can say "cached, about 15 s" instead of "first time ~1–2 min", and how long the last compile
  from the cache took (the re-trace), for the next one's progress.
All of it is disposable: deleting the folder only costs a recompile.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import uuid
from pathlib import Path
from typing import Any

from desktop_app import paths
from desktop_app.fileio import atomic_write_bytes, atomic_write_text
from desktop_app.pipeline.tokens import CHUNK_LENGTH

log = logging.getLogger(__name__)

DIR_NAME = "torch_compile"
MAX_MEGA_FILES = 8
PROMPT_WINDOW = CHUNK_LENGTH + 2  # a prompt chunk's embeddings: 75 tokens, BOS and EOS
_SESSION = uuid.uuid4().hex[:12]
_mega_loaded: set[Path] = set()


def compile_cache_dir() -> Path:
    """`paths.cache_dir()/torch_compile` (created)."""
    folder = paths.cache_dir() / DIR_NAME
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def configure_compile_cache() -> Path:
    """Point inductor's on-disk caches into our cache folder; call before the first compile.

    Inductor reads TORCHINDUCTOR_CACHE_DIR each time it needs the folder (and puts Triton's
    cache under it unless TRITON_CACHE_DIR is set), so setting the variable here, in the worker,
    before `torch.compile` runs is enough. Both persistent caches are on by default in torch ≥ 2.6;
    they are switched on explicitly in case a user's environment turned them off.
    """
    import torch._functorch.config as functorch_config
    import torch._inductor.config as inductor_config

    root = compile_cache_dir()
    inductor_dir = root / "inductor"
    inductor_dir.mkdir(exist_ok=True)
    os.environ["TORCHINDUCTOR_CACHE_DIR"] = str(inductor_dir)
    os.environ["TORCHINDUCTOR_FX_GRAPH_CACHE"] = "1"
    os.environ["TORCHINDUCTOR_AUTOGRAD_CACHE"] = "1"
    inductor_config.fx_graph_cache = True
    functorch_config.enable_autograd_cache = True
    log.info("torch.compile cache: %s", inductor_dir)
    return root


def env_tag() -> str:
    """torch version + device, the part of the cache key a mega-cache file must match."""
    import torch

    device = torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu"
    return re.sub(r"[^A-Za-z0-9_.+-]+", "_", f"torch{torch.__version__}-{device}")


def _mega_dir(root: Path) -> Path:
    return root / "mega" / env_tag()


def load_mega_cache(root: Path) -> int:
    """Hot-load this environment's mega-cache files into inductor's caches; returns how many."""
    import torch

    loader = getattr(torch.compiler, "load_cache_artifacts", None)
    folder = _mega_dir(root)
    if loader is None or not folder.is_dir():
        return 0
    loaded = 0
    for path in sorted(folder.glob("*.bin")):
        if path in _mega_loaded:
            continue
        _mega_loaded.add(path)
        try:
            loader(path.read_bytes())
            loaded += 1
        except Exception as exc:
            log.warning("Ignoring unusable compile cache %s: %s", path, exc)
            path.unlink(missing_ok=True)
    if loaded:
        log.info("Loaded %d torch.compile cache file(s) from %s", loaded, folder)
    return loaded


def save_mega_cache(root: Path | None) -> Path | None:
    """Write everything this session compiled to `mega/<env>/<session>.bin` (atomic)."""
    import torch

    saver = getattr(torch.compiler, "save_cache_artifacts", None)
    if root is None or saver is None:
        return None
    try:
        result = saver()
    except Exception as exc:
        log.warning("Could not serialise the torch.compile cache: %s", exc)
        return None
    if result is None:
        return None
    folder = _mega_dir(root)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{_SESSION}.bin"
    atomic_write_bytes(path, result[0])
    _mega_loaded.add(path)
    for old in sorted(folder.glob("*.bin"), key=lambda p: p.stat().st_mtime)[:-MAX_MEGA_FILES]:
        old.unlink(missing_ok=True)
    return path


def arch_key(unet_config: Any, placement: str) -> str:
    """A short hash of the UNet architecture and its device/dtype (the weights do not matter)."""
    # Private keys ("_use_default_values", "_name_or_path") vary between runs: leave them out.
    items = {k: v for k, v in dict(unet_config).items() if not k.startswith("_")}
    blob = json.dumps(items, sort_keys=True, default=str) + placement
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _record_path(root: Path) -> Path:
    return root / "compiled.json"


def _entry(arch: str, name: str, size: tuple[int, ...]) -> str:
    """One line of the record. `size` is (width, height, batch), for the UNet followed by the
    prompt embeddings' length in tokens; one window's (77) is left out, so that records written
    before the length was kept still match."""
    extra = "".join(f"x{tokens}t" for tokens in size[3:] if tokens != PROMPT_WINDOW)
    return f"{env_tag()}|{arch}|{name}|{size[0]}x{size[1]}x{size[2]}{extra}"


def was_compiled(root: Path | None, arch: str, name: str, size: tuple[int, ...]) -> bool:
    """Whether an earlier run compiled this function at this size (so the cache should hit)."""
    if root is None:
        return False
    return _entry(arch, name, size) in _read_record(root)[0]


def warm_seconds(root: Path | None, arch: str, name: str, size: tuple[int, ...]
                 ) -> float | None:
    """How long the last compile of this function at this size took when the cache already
    held it (a later run's re-trace), or None when that is not known."""
    if root is None:
        return None
    return _read_record(root)[1].get(_entry(arch, name, size))


def record_compiled(root: Path | None, arch: str, name: str, size: tuple[int, ...],
                    seconds_from_cache: float | None = None) -> None:
    """Remember that this (architecture, function, size) has been compiled and, for a compile
    that found it in the cache, how long that took."""
    if root is None:
        return
    entries, seconds = _read_record(root)
    entry = _entry(arch, name, size)
    if entry in entries and seconds_from_cache is None:
        return
    if entry not in entries:
        entries.append(entry)
    if seconds_from_cache is not None:
        seconds[entry] = round(seconds_from_cache, 1)
    atomic_write_text(_record_path(root), json.dumps(
        {"version": 1, "compiled": entries, "warm_seconds": seconds}, indent=1))


def _read_record(root: Path) -> tuple[list[str], dict[str, float]]:
    """The compiled entries and the known re-trace seconds; empty when the file is missing or
    unreadable (then the next record rewrites it)."""
    try:
        data = json.loads(_record_path(root).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return [], {}
    except (OSError, ValueError) as exc:
        log.warning("Ignoring unreadable %s: %s", _record_path(root), exc)
        return [], {}
    if not isinstance(data, dict):
        return [], {}
    entries = data.get("compiled", [])
    seconds = data.get("warm_seconds", {})
    return ([e for e in entries if isinstance(e, str)] if isinstance(entries, list) else [],
            {k: float(v) for k, v in seconds.items()
             if isinstance(v, (int, float)) and v > 0} if isinstance(seconds, dict) else {})
