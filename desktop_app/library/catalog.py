"""The model catalog: shipped `models.toml` merged with the user's, validated, torch-free.

The shipped file (`paths.models_toml()`) is read-only and must be valid: a problem there is a
bug and raises. The user's file (`paths.config_dir() / "models.toml"`) is merged over it table
by table; a broken user file or entry is skipped and described in `Catalog.problems`, so a typo
never stops the app from starting. The schema is documented at the top of `models.toml`.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from desktop_app import paths
from desktop_app.errors import ErrorKind, UserError, bad_input
from desktop_app.pipeline.api import (
    CFG_RANGE,
    CLIP_SKIP_RANGE,
    SAMPLER_NAMES,
    SIZE_MULTIPLE,
    SIZE_RANGE,
    STEPS_RANGE,
    ModelFamily,
)

SCHEMA_VERSION = 1
USER_FILE_NAME = "models.toml"
KINDS = ("checkpoint", "vae", "taesd")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_T = TypeVar("_T")


@dataclass(frozen=True)
class FamilyPreset:
    """Generation defaults for one model family (what the GUI applies when a model is chosen)."""

    id: str
    label: str
    config: str
    width: int
    height: int
    steps: int
    cfg_scale: float
    sampler: str
    clip_skip: int
    prediction_type: str
    sizes: tuple[tuple[int, int], ...]
    buckets: tuple[tuple[int, int], ...] = ()

    @property
    def family(self) -> ModelFamily:
        return ModelFamily(self.id)

    def request_defaults(self) -> dict[str, object]:
        """Keyword arguments for `GenerationRequest.replace(...)` / the parameter panel."""
        return {"width": self.width, "height": self.height, "steps": self.steps,
                "cfg_scale": self.cfg_scale, "sampler": self.sampler,
                "clip_skip": self.clip_skip}

    def nearest_bucket(self, width: int, height: int) -> tuple[int, int]:
        """The preset (SDXL: training bucket) whose aspect ratio is closest to width/height."""
        choices = self.buckets or self.sizes or ((self.width, self.height),)
        aspect = width / height
        return min(choices, key=lambda wh: abs(wh[0] / wh[1] - aspect))


@dataclass(frozen=True)
class CatalogEntry:
    """A file that can be downloaded on request: where from, what it must hash to, its licence.

    `sha256` is None for unverified user entries: those download only with an explicit hash.
    """

    id: str
    kind: str
    family: str | None
    title: str
    description: str
    urls: tuple[str, ...]
    filename: str
    sha256: str | None
    size: int | None
    license: str
    license_url: str

    @property
    def verified(self) -> bool:
        return self.sha256 is not None


@dataclass(frozen=True)
class LibraryConfig:
    """Where downloaded/copied models go and which extra folders are adopted in place."""

    root: Path
    subfolders: Mapping[str, str]
    folders: tuple[Path, ...] = ()

    def folder_for(self, kind: str) -> Path:
        """The library folder for files of `kind` ("checkpoint", "vae", "taesd")."""
        return self.root / self.subfolders.get(kind, kind)


@dataclass(frozen=True)
class Catalog:
    """Merged catalog: families, downloadable entries, library folders, user-file problems."""

    families: Mapping[str, FamilyPreset]
    entries: Mapping[str, CatalogEntry]
    library: LibraryConfig
    problems: tuple[str, ...] = field(default=())

    def family(self, family: ModelFamily | str) -> FamilyPreset:
        """Preset for a family; raises UserError for an unknown one."""
        key = family.value if isinstance(family, ModelFamily) else family
        try:
            return self.families[key]
        except KeyError:
            raise bad_input(f"Unknown model family {key!r}.",
                            "Known: " + ", ".join(sorted(self.families))) from None

    def entry(self, entry_id: str) -> CatalogEntry:
        """A downloadable entry by id; raises UserError listing the known ids."""
        try:
            return self.entries[entry_id]
        except KeyError:
            raise bad_input(f"No catalog entry named {entry_id!r}.",
                            "Known: " + ", ".join(sorted(self.entries))) from None

    def find_by_sha256(self, sha256: str) -> CatalogEntry | None:
        """The catalog entry a file with this full sha256 is (e.g. to name a found file)."""
        digest = sha256.lower()
        return next((e for e in self.entries.values() if e.sha256 == digest), None)


def user_catalog_path() -> Path:
    """The user's models.toml (may not exist)."""
    return paths.config_dir() / USER_FILE_NAME


def load_catalog(shipped: Path | None = None, user: Path | None = None) -> Catalog:
    """Load, validate and merge the shipped and the user's catalog.

    Raises UserError if the shipped file is missing or invalid (a packaging bug); problems in
    the user file are collected in `Catalog.problems` and the faulty parts ignored.
    """
    shipped = shipped or paths.models_toml()
    user = user if user is not None else user_catalog_path()
    base = _read_toml(shipped)
    problems: list[str] = []
    overlay: dict[str, Any] = {}
    if user.is_file():
        try:
            overlay = _read_toml(user)
        except UserError as exc:
            problems.append(str(exc))
    families = _validated(base, overlay, "families", "family", _family, problems, shipped)
    entries = _validated(base, overlay, "models", "entry", _entry, problems, shipped)
    library = _library(base, overlay, problems, shipped)
    return Catalog(families, entries, library, tuple(problems))


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as fh:
            data = tomllib.load(fh)
    except FileNotFoundError:
        raise UserError(ErrorKind.missing_file, f"Model catalog not found: {path}",
                        "Reinstall the app, or remove the broken file.") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise bad_input(f"{path.name}: not valid TOML ({exc}).",
                        f"Fix or delete {path}.") from None
    version = data.get("schema_version", SCHEMA_VERSION)
    if version != SCHEMA_VERSION:
        raise bad_input(f"{path.name}: schema_version {version!r} is not supported.",
                        f"This app reads schema_version = {SCHEMA_VERSION}.")
    return data


def _merged_tables(base: dict[str, Any], overlay: dict[str, Any], key: str,
                   problems: list[str]) -> tuple[dict[str, Any], set[str]]:
    """Per-id merge of `[key.<id>]` tables; returns the merged tables and the user's ids."""
    merged = {k: dict(v) for k, v in base.get(key, {}).items()}
    user_tables = overlay.get(key, {})
    if not isinstance(user_tables, dict):
        problems.append(f"user models.toml: [{key}] must be a table; ignored.")
        return merged, set()
    for ident, table in user_tables.items():
        if not isinstance(table, dict):
            problems.append(f"user models.toml: [{key}.{ident}] must be a table; ignored.")
            continue
        merged[ident] = {**merged.get(ident, {}), **table}
    return merged, set(user_tables)


def _validated(base: dict[str, Any], overlay: dict[str, Any], key: str, what: str,
               build: Callable[[str, dict[str, Any]], _T], problems: list[str],
               shipped: Path) -> dict[str, _T]:
    """Build each merged `[key.<id>]` table; a broken user table falls back to the shipped one."""
    tables, user_ids = _merged_tables(base, overlay, key, problems)
    result: dict[str, _T] = {}
    for ident, table in tables.items():
        try:
            result[ident] = build(ident, table)
        except UserError as exc:
            if ident not in user_ids:
                raise bad_input(f"{shipped.name}: {exc.message}") from None
            problems.append(f"user models.toml: {exc.message}; {what} ignored.")
            fallback = base.get(key, {}).get(ident)
            if fallback is not None:
                result[ident] = build(ident, fallback)
    return result


def _library(base: dict[str, Any], overlay: dict[str, Any], problems: list[str],
             shipped: Path) -> LibraryConfig:
    table = dict(base.get("library", {}))
    user_table = overlay.get("library", {})
    if isinstance(user_table, dict):
        table.update(user_table)
    else:
        problems.append("user models.toml: [library] must be a table; ignored.")
    root = Path(str(table.get("root", "models"))).expanduser()
    if not root.is_absolute():
        root = paths.data_dir() / root
    subfolders = {kind: str(table.get(kind, kind)) for kind in KINDS}
    folders_value = table.get("folders", [])
    if not isinstance(folders_value, list) or not all(isinstance(f, str) for f in folders_value):
        problems.append("user models.toml: [library] folders must be a list of paths; ignored.")
        folders_value = []
    folders = tuple(Path(f).expanduser() for f in folders_value)
    return LibraryConfig(root, subfolders, folders)


def _get(table: dict[str, Any], where: str, key: str, kind: type | tuple[type, ...]) -> Any:
    value = table.get(key)
    if value is None:
        raise bad_input(f"{where}: missing '{key}'")
    if isinstance(value, bool) or not isinstance(value, kind):
        names = kind.__name__ if isinstance(kind, type) else "/".join(k.__name__ for k in kind)
        raise bad_input(f"{where}: '{key}' must be {names} (got {value!r})")
    return value


def _size_list(where: str, key: str, value: object) -> tuple[tuple[int, int], ...]:
    if not isinstance(value, list):
        raise bad_input(f"{where}: '{key}' must be a list of [width, height] pairs")
    sizes = []
    for pair in value:
        if (not isinstance(pair, list) or len(pair) != 2
                or not all(isinstance(v, int) and not isinstance(v, bool) for v in pair)):
            raise bad_input(f"{where}: '{key}' entry {pair!r} is not [width, height]")
        _check_size(where, pair[0], pair[1])
        sizes.append((pair[0], pair[1]))
    return tuple(sizes)


def _check_size(where: str, width: int, height: int) -> None:
    for value in (width, height):
        if not SIZE_RANGE[0] <= value <= SIZE_RANGE[1] or value % SIZE_MULTIPLE:
            raise bad_input(f"{where}: size {width}x{height} must be multiples of "
                            f"{SIZE_MULTIPLE} within {SIZE_RANGE[0]}–{SIZE_RANGE[1]}")


def _in_range(where: str, key: str, value: float, bounds: tuple[float, float]) -> None:
    if not bounds[0] <= value <= bounds[1]:
        raise bad_input(f"{where}: '{key}' {value} is outside {bounds[0]:g}–{bounds[1]:g}")


def _family(ident: str, table: dict[str, Any]) -> FamilyPreset:
    where = f"[families.{ident}]"
    try:
        ModelFamily(ident)
    except ValueError:
        known = ", ".join(f.value for f in ModelFamily)
        raise bad_input(f"{where}: unknown family (known: {known})") from None
    width, height = _get(table, where, "width", int), _get(table, where, "height", int)
    _check_size(where, width, height)
    steps = _get(table, where, "steps", int)
    _in_range(where, "steps", steps, STEPS_RANGE)
    cfg = float(_get(table, where, "cfg_scale", (int, float)))
    _in_range(where, "cfg_scale", cfg, CFG_RANGE)
    clip_skip = _get(table, where, "clip_skip", int)
    _in_range(where, "clip_skip", clip_skip, CLIP_SKIP_RANGE)
    sampler = _get(table, where, "sampler", str)
    if sampler not in SAMPLER_NAMES:
        raise bad_input(f"{where}: unknown sampler {sampler!r}")
    prediction = _get(table, where, "prediction_type", str)
    if prediction not in ("epsilon", "v_prediction"):
        raise bad_input(f"{where}: prediction_type must be 'epsilon' or 'v_prediction'")
    return FamilyPreset(
        id=ident, label=_get(table, where, "label", str), config=_get(table, where, "config", str),
        width=width, height=height, steps=steps, cfg_scale=cfg, sampler=sampler,
        clip_skip=clip_skip, prediction_type=prediction,
        sizes=_size_list(where, "sizes", table.get("sizes", [])),
        buckets=_size_list(where, "buckets", table.get("buckets", [])),
    )


def _entry(ident: str, table: dict[str, Any]) -> CatalogEntry:
    where = f"[models.{ident}]"
    kind = _get(table, where, "kind", str)
    if kind not in KINDS:
        raise bad_input(f"{where}: kind must be one of {', '.join(KINDS)}")
    family = table.get("family")
    if family is not None and family not in {f.value for f in ModelFamily}:
        raise bad_input(f"{where}: unknown family {family!r}")
    urls = _get(table, where, "urls", list)
    if not urls or not all(isinstance(u, str) and u.startswith("https://") for u in urls):
        raise bad_input(f"{where}: 'urls' must be a non-empty list of https:// URLs")
    filename = _get(table, where, "filename", str)
    if Path(filename).name != filename or filename in ("", ".", ".."):
        raise bad_input(f"{where}: 'filename' must be a plain file name")
    sha256 = table.get("sha256")
    if sha256 is not None and (not isinstance(sha256, str) or not _SHA256.match(sha256.lower())):
        raise bad_input(f"{where}: 'sha256' must be 64 hexadecimal digits")
    size = table.get("size")
    if size is not None and (isinstance(size, bool) or not isinstance(size, int) or size <= 0):
        raise bad_input(f"{where}: 'size' must be a positive number of bytes")
    return CatalogEntry(
        id=ident, kind=kind, family=family, title=str(table.get("title", ident)),
        description=str(table.get("description", "")), urls=tuple(urls), filename=filename,
        sha256=sha256.lower() if sha256 else None, size=size,
        license=str(table.get("license", "")), license_url=str(table.get("license_url", "")),
    )
