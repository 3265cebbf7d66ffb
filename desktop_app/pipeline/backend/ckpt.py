"""Pickle checkpoints (.ckpt/.pt/.pth/.bin), read without ever running code from them.

`torch.load(weights_only=True)` unpickles only tensors and plain containers; any other global a
pickle names is refused before it could run. Many 2022-era SD checkpoints also pickle their
PyTorch-Lightning training callbacks
(`pytorch_lightning.callbacks.model_checkpoint.ModelCheckpoint`), which would make them
unloadable; exactly those Lightning callback names are mapped to an inert stub that ignores its
state. Everything else (e.g. `os.system`, `pathlib.Path.touch`) is refused
with UserError(unsafe_file) — nothing from the file is executed.

Loading such a file for generation converts it once to safetensors (`convert_ckpt_to_safetensors`)
and loads that.
"""

from __future__ import annotations

import logging
import mmap
import pickle
import pickletools
import re
import struct
import warnings
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any, cast

import torch

from desktop_app.errors import ErrorKind, UserError
from desktop_app.fileio import atomic_path

log = logging.getLogger(__name__)

# Lightning callback classes: training bookkeeping, no weights. Only these become a stub.
_LIGHTNING_CALLBACK = re.compile(
    r"^(pytorch_lightning|lightning\.pytorch|lightning)\.callbacks(\.[A-Za-z_][A-Za-z0-9_]*)+$")
_UNSAFE_HINT = ("Use the .safetensors version of this model, or convert the file with a tool you "
                "trust. Only load checkpoints from sources you trust.")


class InertLightningObject:
    """Stand-in for pickled Lightning callbacks: built without running any of their code."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        pass

    def __setstate__(self, state: object) -> None:
        pass  # the callback's state is training bookkeeping: dropped


def is_allowed_stub_global(name: str) -> bool:
    """True for the Lightning callback globals that are replaced by the inert stub."""
    return bool(_LIGHTNING_CALLBACK.match(name))


def _unsafe(path: Path, names: list[str]) -> UserError:
    shown = ", ".join(names[:4]) + (" …" if len(names) > 4 else "")
    return UserError(ErrorKind.unsafe_file,
                     f"{path.name} contains code references ({shown}); loading it was refused, "
                     "never executed.", _UNSAFE_HINT)


def _corrupt(path: Path, what: str) -> UserError:
    return UserError(ErrorKind.corrupt_file, f"{path.name} is not a readable checkpoint: {what}.",
                     "The file is damaged or incomplete: download it again.")


# What torch's loaders raise on damaged bytes (found by fuzzing real checkpoints: the pre-zip
# loader asserts on unknown storage keys and unpacks short buffers; zip readers index past ends).
_DAMAGED = (RuntimeError, EOFError, ValueError, zipfile.BadZipFile, OSError, KeyError,
            AttributeError, TypeError, IndexError, AssertionError, struct.error)


def _unsafe_globals(path: Path) -> list[str]:
    """Globals a zip checkpoint's pickle names beyond torch's weights-only allow-list."""
    try:
        return list(torch.serialization.get_unsafe_globals_in_checkpoint(str(path)))
    except (pickle.UnpicklingError, *_DAMAGED) as exc:
        raise _corrupt(path, f"damaged archive ({exc.__class__.__name__})") from None


_UNSUPPORTED_GLOBAL = re.compile(r"Unsupported global: GLOBAL ([\w.]+)")


_INERT_MODULES = ("torch.", "collections.OrderedDict")
_STRING_OPS = {"SHORT_BINUNICODE", "BINUNICODE", "UNICODE", "BINUNICODE8", "SHORT_BINSTRING",
               "BINSTRING", "STRING"}


def _scan_pickle_globals(path: Path, max_pickles: int = 4) -> list[str]:
    """Globals named by the (non-zip) pickles at the start of a file — read, never executed."""
    names: list[str] = []
    try:
        # mmap: a garbage length field reads what the file has, instead of allocating gigabytes.
        with open(path, "rb") as file, mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ) as f:
            for _ in range(max_pickles):
                strings: list[str] = []
                for op, arg, _pos in pickletools.genops(cast("IO[bytes]", f)):
                    if op.name in _STRING_OPS and isinstance(arg, str):
                        strings = [*strings[-1:], arg]
                    elif op.name == "GLOBAL" and isinstance(arg, str):
                        names.append(arg.replace(" ", "."))
                    elif op.name == "STACK_GLOBAL":  # module/name may be memo refs: best effort
                        names.append(".".join(strings) if len(strings) == 2 else
                                     "…." + (strings[-1] if strings else "?"))
                        strings = []
    except (ValueError, EOFError, UnicodeDecodeError, OSError, struct.error):
        pass  # end of the pickles, or not a pickle at all
    return list(dict.fromkeys(names))


# torch.save's pre-zip format starts with this number, pickled (protocol 2 by default).
_LEGACY_MAGIC = tuple(pickle.dumps(0x1950A86A20F9469CFC6C, protocol=p) for p in range(2, 6))


def _check_legacy_pickle(path: Path) -> None:
    """A non-zip file must be torch.save's pre-zip format before torch.load may parse it:
    unpickling arbitrary bytes fails in arbitrary ways (IndexError, a multi-GB allocation).
    A modern pickle that is not a checkpoint is refused as unsafe when it names code."""
    with open(path, "rb") as f:
        head = f.read(64)
    if head.startswith(_LEGACY_MAGIC):
        return
    if head[:1] == b"\x80" and head[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05"):
        found = [n for n in _scan_pickle_globals(path) if not n.startswith(_INERT_MODULES)]
        if found:
            raise _unsafe(path, found)
    raise _corrupt(path, "it is not a PyTorch checkpoint")


def _is_zip(path: Path) -> bool:
    """torch.save's zip format? A damaged end record makes `is_zipfile` raise, not say False."""
    try:
        return zipfile.is_zipfile(path)
    except (zipfile.BadZipFile, ValueError) as exc:
        raise _corrupt(path, f"damaged archive ({exc})") from None


def _torch_load_once(path: Path, stubs: list[str], zip_format: bool) -> Any:
    safe: list[Callable[..., Any] | tuple[Callable[..., Any], str]] = [
        (InertLightningObject, name) for name in stubs]
    # torch warns about pickle protocols it did not write; log it rather than show it.
    with warnings.catch_warnings(record=True) as caught, \
            torch.serialization.safe_globals(safe):
        warnings.simplefilter("always")
        # mmap (zip checkpoints only): tensors stay file-backed until cloned, halving peak RAM.
        data = torch.load(str(path), map_location="cpu", weights_only=True,
                          mmap=zip_format)
    for w in caught:
        log.info("torch.load(%s): %s", path.name, w.message)
    return data


def _torch_load(path: Path, stubs: list[str], zip_format: bool) -> Any:
    """torch.load(weights_only=True); legacy pickles reveal their Lightning globals one by one."""
    stubs = list(stubs)
    for _ in range(32):
        try:
            return _torch_load_once(path, stubs, zip_format)
        except pickle.UnpicklingError as exc:
            found = _UNSUPPORTED_GLOBAL.findall(str(exc))
            if not found:
                found = [n for n in _scan_pickle_globals(path) if not n.startswith(_INERT_MODULES)]
                if found:  # a plain pickle that names code: refuse it as unsafe
                    raise _unsafe(path, found) from None
                raise _corrupt(path, "it is not a PyTorch checkpoint") from None
            if not all(is_allowed_stub_global(n) for n in found) or set(found) <= set(stubs):
                raise _unsafe(path, found) from None
            stubs += found
        except _DAMAGED as exc:
            first = str(exc).splitlines()[0][:160] if str(exc) else ""
            raise _corrupt(path, f"{exc.__class__.__name__} {first}".strip()) from None
    raise _unsafe(path, stubs[-3:])


def load_ckpt_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """The tensors of a pickle checkpoint (its `state_dict` entry when it has one).

    Raises UserError: missing_file, corrupt_file (empty/truncated/random bytes, no tensors) or
    unsafe_file (the pickle names anything but tensors, containers and Lightning callbacks).
    """
    path = Path(path)
    if not path.is_file():
        raise UserError(ErrorKind.missing_file, f"File not found: {path}",
                        "Check the path, or pick the model again in the library.")
    if path.stat().st_size == 0:
        raise _corrupt(path, "the file is empty (0 bytes)")
    zip_format = _is_zip(path)
    if zip_format:
        names = _unsafe_globals(path)
    else:  # legacy (non-zip) pickle: torch.load(weights_only=True) refuses unsafe globals itself
        _check_legacy_pickle(path)
        names = []
    refused = [n for n in names if not is_allowed_stub_global(n)]
    if refused:
        raise _unsafe(path, refused)
    data = _torch_load(path, names, zip_format)
    if isinstance(data, dict) and isinstance(data.get("state_dict"), dict):
        data = data["state_dict"]
    if not isinstance(data, dict):
        raise _corrupt(path, "it holds no state dict")
    tensors = {str(k): v for k, v in data.items() if isinstance(v, torch.Tensor)}
    if not tensors:
        raise _corrupt(path, "it holds no tensors")
    return tensors


def convert_ckpt_to_safetensors(src: str | Path, dst: str | Path) -> Path:
    """Convert a pickle checkpoint to .safetensors at `dst` (written atomically); returns `dst`.

    Tensors are cloned (pickles often share storage between tensors, which safetensors
    refuses). Raises the same UserErrors as `load_ckpt_state_dict`.
    """
    from safetensors.torch import save_file

    src, dst = Path(src), Path(dst)
    state = load_ckpt_state_dict(src)
    tensors = {k: v.detach().contiguous().clone() for k, v in state.items()}
    del state
    try:
        with atomic_path(dst) as tmp:
            save_file(tensors, str(tmp),
                      metadata={"format": "pt", "converted_from": src.name[:200]})
    except OSError as exc:
        raise UserError(ErrorKind.runtime, f"Could not write {dst}: {exc.strerror or exc}.",
                        "Check free disk space and permissions of the cache folder.") from None
    log.info("Converted %s to %s (%d tensors)", src, dst, len(tensors))
    return dst
