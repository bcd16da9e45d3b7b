"""Model presets: one YAML file per model under ``fathom/catalog/data/models``.

``get_model`` also accepts a path, so a user can point at a Hugging Face ``config.json`` (or the checkpoint folder
holding it) or at a YAML file of ModelSpec fields without registering anything. Every failure is a one-line
``FathomInputError`` that names the file or the unknown name.
"""

from __future__ import annotations

from functools import cache, lru_cache
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any

import yaml

from fathom.errors import FathomInputError, read_user_file, unknown_name_error
from fathom.specs.model import ModelSpec

_SPEC_SUFFIXES = (".yaml", ".yml")


def _presets_dir() -> Traversable:
    return resources.files("fathom.catalog").joinpath("data").joinpath("models")


@lru_cache(maxsize=1)
def _preset_files() -> dict[str, Traversable]:
    """Preset name (the file stem, lowercase) -> its YAML file; read once per process."""
    files = {}
    for entry in _presets_dir().iterdir():
        if entry.is_file() and entry.name.endswith(_SPEC_SUFFIXES):
            files[entry.name.rsplit(".", 1)[0].lower()] = entry
    return files


def list_models() -> list[str]:
    """Names of the built-in presets, sorted."""
    return sorted(_preset_files())


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def _yaml_error(origin: str, exc: yaml.YAMLError) -> FathomInputError:
    """YAML errors span several lines; keep the problem and where it is."""
    problem = getattr(exc, "problem", None) or type(exc).__name__
    mark = getattr(exc, "problem_mark", None)
    where = f" at line {mark.line + 1} column {mark.column + 1}" if mark is not None else ""
    return FathomInputError(f"{origin}: malformed YAML: {_one_line(problem)}{where}")


def _spec_from_mapping(origin: str, data: Any, default_name: str) -> ModelSpec:
    """Validate a dict of ModelSpec fields, naming the file in any error."""
    if not isinstance(data, dict):
        raise FathomInputError(f"{origin}: expected a mapping of model fields, got {type(data).__name__}")
    data = {"name": default_name, **data}
    try:
        return ModelSpec.from_dict(data)
    except FathomInputError as exc:
        raise FathomInputError(f"{origin}: {_one_line(str(exc))}") from None


@cache
def _load_preset(name: str) -> ModelSpec:
    entry = _preset_files()[name]
    origin = f"model preset {entry.name}"
    try:
        data = yaml.safe_load(entry.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise _yaml_error(origin, exc) from None
    return _spec_from_mapping(origin, data, name)


def load_model_file(path: str | Path) -> ModelSpec:
    """``.json``: a Hugging Face config (or ModelSpec fields); ``.yaml`` / ``.yml``: ModelSpec fields."""
    path = Path(path)
    text = read_user_file(path)
    if path.suffix.lower() == ".json":
        from fathom.importers.hf_config import parse_json

        data = parse_json(text, str(path))
        if isinstance(data, dict) and "model_type" not in data and "num_layers" in data:
            return _spec_from_mapping(str(path), data, path.stem)
        from fathom.importers.hf_config import model_from_hf_config

        return model_from_hf_config(path)  # re-reads the file so the name can come from its folder
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise _yaml_error(str(path), exc) from None
    return _spec_from_mapping(str(path), data, path.stem)


def get_model(name_or_path: str | Path | ModelSpec) -> ModelSpec:
    """A preset by name (case-insensitive), a model loaded from a ``.json`` / ``.yaml`` path, or a checkpoint
    folder's ``config.json`` (what ``huggingface-cli download`` leaves). Presets win over a folder of the same
    name, so a preset name means the same model wherever the command runs. A ``ModelSpec`` (an API caller's own,
    or one built by ``from_hf_config``) is taken as it is."""
    if isinstance(name_or_path, ModelSpec):
        return name_or_path
    if not isinstance(name_or_path, str | Path):
        raise FathomInputError(f"model: expected a preset name, a file path or a ModelSpec, got {name_or_path!r}")
    key = str(name_or_path).strip()
    if key.lower() in _preset_files():
        return _load_preset(key.lower())
    path = Path(key)
    if path.suffix.lower() in (".json", *_SPEC_SUFFIXES):
        return load_model_file(key)
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise FathomInputError(f"model: directory {key} has no config.json (a Hugging Face checkpoint folder has)")
        return load_model_file(path / "config.json")
    if "/" in key or "\\" in key:  # meant as a path, not a preset name: close matches would mislead
        raise FathomInputError(
            f"model: {key}: no such file or directory (give a preset name, a config.json or ModelSpec YAML file, "
            "or a folder holding config.json)"
        )
    raise unknown_name_error("model", key, list_models())
