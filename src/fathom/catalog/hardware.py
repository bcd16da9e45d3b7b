"""The hardware catalog: devices (``data/gpus``) and systems (``data/systems``) by name, or a user's file.

Every number lives in the YAML files with its source; this module only finds, merges and validates them, so a
bad value is reported once, on one line, naming the file and the field.

A user file passed as a gpu is either a full device or ``base: <catalog gpu>`` plus the fields to change
(``peak_tflops`` and ``efficiency`` merge key by key). It may also carry ``system:``, a mapping of system
fields applied on top of the chosen system. A system file works the same way, with ``base: <system>``.
"""

from __future__ import annotations

import functools
import operator
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from fathom.errors import FathomInputError, read_user_file, unknown_name_error
from fathom.specs.hardware import Cluster, DeviceSpec, SystemSpec, validate_or_explain

_KINDS = {"gpu": "gpus", "system": "systems"}


def _parse_yaml(text: str, where: str) -> dict[str, Any]:
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or type(exc).__name__
        raise FathomInputError(f"{where}: invalid YAML{at}: {problem}") from None
    if not isinstance(data, dict):
        raise FathomInputError(f"{where}: expected a mapping of fields, got {type(data).__name__}")
    return data


@functools.cache
def _catalog(kind: str) -> dict[str, dict[str, Any]]:
    """Raw YAML of every packaged file of one kind, keyed by its (lower-case) name."""
    folder = resources.files("fathom") / "catalog" / "data" / _KINDS[kind]
    out: dict[str, dict[str, Any]] = {}
    for entry in sorted(folder.iterdir(), key=lambda e: e.name):
        if not entry.name.endswith(".yaml"):
            continue
        where = f"{kind} catalog file {entry.name}"
        data = _parse_yaml(entry.read_text(encoding="utf-8"), where)
        if str(data.get("name", "")).lower() != entry.name[: -len(".yaml")]:
            raise FathomInputError(f"{where} field name: {data.get('name')!r} does not match the file name")
        out[entry.name[: -len(".yaml")]] = data
    return out


def list_gpus() -> list[str]:
    """Canonical names of the packaged devices."""
    return sorted(_catalog("gpu"))


def list_systems() -> list[str]:
    """Canonical names of the packaged systems."""
    return sorted(_catalog("system"))


def _validate(kind: str, data: dict[str, Any], where: str) -> DeviceSpec | SystemSpec:
    """Validate into a spec: the models check every range and key (finite numbers, fractions in (0, 1], known
    precisions and kernel classes, PUE >= 1), reported on one line naming the file and the field."""
    return validate_or_explain(SystemSpec if kind == "system" else DeviceSpec, data, where)  # type: ignore[return-value]


@functools.cache
def _validated(kind: str, key: str) -> DeviceSpec | SystemSpec:
    return _validate(kind, _catalog(kind)[key], f"{kind} catalog file {key}.yaml")


def _catalog_spec(kind: str, name: str) -> DeviceSpec | SystemSpec:
    key = name.strip().lower()
    if key not in _catalog(kind):
        raise unknown_name_error(kind, name, _catalog(kind))
    return _validated(kind, key)


def _is_path(name_or_path: str) -> bool:
    if isinstance(name_or_path, Path):
        return True
    if not isinstance(name_or_path, str):  # an API caller's None, dict or number: one line, not an AttributeError
        raise FathomInputError(f"gpu: expected a catalog name or a device YAML path, got {name_or_path!r}")
    return name_or_path.lower().endswith((".yaml", ".yml")) or "/" in name_or_path or "\\" in name_or_path


def _read_file(path: Path, kind: str) -> dict[str, Any]:
    where = f"{kind} file {path}"
    return _parse_yaml(read_user_file(path, where), where)


def _deep_merge(base: dict[str, Any], top: dict[str, Any]) -> dict[str, Any]:
    """``top`` over ``base``; nested mappings (``peak_tflops``, ``efficiency.gemm``) merge key by key."""
    out = dict(base)
    for key, value in top.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def _from_file(path: Path, kind: str) -> tuple[DeviceSpec | SystemSpec, dict[str, Any]]:
    """A spec from a user file (full, or ``base:`` + overrides) and a gpu file's ``system:`` fields."""
    data = _read_file(path, kind)
    where = f"{kind} file {path}"
    system_patch = data.pop("system", None) if kind == "gpu" else None
    if kind == "gpu":  # `fathom profile`'s record of the machine and its raw measurements (fathom check reads it)
        record = data.pop("profile", None)
        if record is not None and not isinstance(record, dict):
            raise FathomInputError(f"{where} field profile: expected the mapping fathom profile writes, got "
                                   f"{type(record).__name__}")  # fmt: skip
    if system_patch is not None and not isinstance(system_patch, dict):
        raise FathomInputError(f"{where} field system: expected a mapping of system fields")
    base_name = data.pop("base", None)
    if base_name is not None:
        if not isinstance(base_name, str):
            raise FathomInputError(f"{where} field base: expected a catalog {kind} name")
        if base_name.strip().lower() not in _catalog(kind):
            raise FathomInputError(f"{where} field base: {unknown_name_error(kind, base_name, _catalog(kind))}")
        base = _catalog_spec(kind, base_name)
        merged = _deep_merge(base.model_dump(), data)
        merged["name"] = data.get("name", path.stem)
        if "source" not in data:  # provenance: say what was changed and where
            changed = ", ".join(sorted(data)) or "nothing"
            merged["source"] = f"{base.source} [{changed} overridden by {path.name}]"
        if isinstance(base, DeviceSpec) and isinstance(data.get("efficiency"), dict):
            if "source" not in data["efficiency"]:
                merged["efficiency"]["source"] = f"{base.efficiency.source} [overridden by {path.name}]"
        data = merged
    data.setdefault("name", path.stem)
    return _validate(kind, data, where), system_patch or {}


def get_device(name_or_path: str) -> DeviceSpec:
    """A catalog device by name (case-insensitive), or a device YAML file (``system:`` is ignored here)."""
    if _is_path(name_or_path):
        return _from_file(Path(name_or_path), "gpu")[0]  # type: ignore[return-value]
    return _catalog_spec("gpu", name_or_path)  # type: ignore[return-value]


def get_system(name_or_path: str) -> SystemSpec:
    """A catalog system by name (case-insensitive), or a system YAML file."""
    if _is_path(name_or_path):
        return _from_file(Path(name_or_path), "system")[0]  # type: ignore[return-value]
    return _catalog_spec("system", name_or_path)  # type: ignore[return-value]


def _patch_system(data: dict[str, Any], patch: dict[str, Any], where: str) -> dict[str, Any]:
    """Apply system field overrides; unknown fields and a device change (the gpu owns it) are errors."""
    fields = set(SystemSpec.model_fields)
    for key in patch:
        if key not in fields:
            raise unknown_name_error(where, str(key), fields)
        if key == "device" and patch[key] != data["device"]:
            raise FathomInputError(f"{where} field device: set by the gpu, not by a system override")
    merged = {**data, **patch}
    validate_or_explain(SystemSpec, merged, where)  # scaleup_domain vs gpus_per_node included
    return merged


def resolve_cluster(
    gpu: str, num_gpus: int, system: str | None = None, overrides: dict[str, Any] | None = None
) -> Cluster:
    """The hardware of an estimate: ``num_gpus`` devices of ``gpu`` wired as ``system``.

    ``system`` defaults to the device's ``default_system``. If a system built for another device is chosen,
    the chosen gpu wins: the system keeps its fabric (links, efficiencies, node size) and its ``device``
    becomes the gpu's name. A gpu file's ``system:`` fields apply next, then ``overrides`` (any SystemSpec
    field but ``device``), each validated with a one-line error naming the field.
    """
    try:
        count = operator.index(num_gpus)
    except TypeError:
        count = 0
    if isinstance(num_gpus, bool) or count < 1:
        raise FathomInputError(f"num_gpus: expected a positive integer, got {num_gpus!r}")
    if _is_path(gpu):
        device, file_patch = _from_file(Path(gpu), "gpu")
    else:
        device, file_patch = _catalog_spec("gpu", gpu), {}
    assert isinstance(device, DeviceSpec)
    system_name = system or device.default_system
    if system_name is None:
        choices = ", ".join(list_systems())
        raise FathomInputError(f"system: gpu {device.name!r} has no default_system; choose one of {choices}")
    data = get_system(system_name).model_dump()
    data["device"] = device.name
    if file_patch:
        data = _patch_system(data, file_patch, f"gpu file {gpu} system")
    if overrides:
        data = _patch_system(data, dict(overrides), "system override")
    return Cluster(device=device, system=SystemSpec.model_validate(data), num_gpus=count)
