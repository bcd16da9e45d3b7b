"""Build a ``ModelSpec`` from a Hugging Face ``config.json``.

Each ``model_type`` names its sizes differently (``n_embd`` vs ``hidden_size``), and leaves some out when they
equal the library default (``num_key_value_heads``, ``tie_word_embeddings``). The per-family adapters in
``hf_families`` know those names and defaults; this module reads the file, dispatches on ``model_type`` and
turns every problem into a one-line ``FathomInputError`` that names the file, the field and the model type.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from fathom.errors import FathomInputError, read_user_file, unknown_name_error
from fathom.specs.model import ModelSpec

_MISSING: Any = object()


class HFConfig:
    """Checked access to one config dict: missing or malformed fields raise one-line errors."""

    def __init__(self, data: dict[str, Any], origin: str, model_type: str) -> None:
        self.data, self.origin, self.model_type = data, origin, model_type

    def error(self, message: str) -> FathomInputError:
        return FathomInputError(f"{self.origin}: {message} (model_type {self.model_type})")

    def get(self, *keys: str, default: Any = _MISSING) -> Any:
        """The first of ``keys`` (aliases) set and not null, else ``default``, else a missing-field error."""
        for key in keys:
            if self.data.get(key) is not None:
                return self.data[key]
        if default is _MISSING:
            msg = f"missing field {keys[0]!r} for model_type {self.model_type}"
            raise FathomInputError(f"{self.origin}: {msg}")
        return default

    def _key(self, keys: tuple[str, ...]) -> str:
        return next((k for k in keys if self.data.get(k) is not None), keys[0])

    def size(self, *keys: str, default: Any = _MISSING, minimum: int = 1) -> int:
        """An integer size, at least ``minimum`` (1 unless the field may be zero)."""
        value = self.get(*keys, default=default)
        ok = isinstance(value, int | float) and not isinstance(value, bool) and float(value).is_integer()
        if not ok or value < minimum:
            kind = "a positive integer" if minimum >= 1 else "a non-negative integer"
            raise self.error(f"field {self._key(keys)!r} must be {kind}, got {value!r}")
        return int(value)

    def flag(self, *keys: str, default: bool) -> bool:
        value = self.get(*keys, default=default)
        if not isinstance(value, bool):
            raise self.error(f"field {self._key(keys)!r} must be true or false, got {value!r}")
        return value

    def prob(self, *keys: str) -> bool:
        """Whether a dropout-probability field is set above zero (absent = no dropout)."""
        value = self.get(*keys, default=0.0)
        if not isinstance(value, int | float) or isinstance(value, bool) or not 0 <= value <= 1:
            raise self.error(f"field {self._key(keys)!r} must be a probability, got {value!r}")
        return value > 0

    def int_list(self, key: str) -> list[int]:
        value = self.get(key, default=[])
        if not isinstance(value, list) or not all(type(v) is int for v in value):
            raise self.error(f"field {key!r} must be a list of layer indices, got {value!r}")
        return value


def _read(config: dict[str, Any] | str | Path, origin: str | None) -> tuple[dict[str, Any], str, Path | None]:
    if isinstance(config, dict):
        return config, origin or "config.json", None
    path = Path(config)
    where = origin or str(path)
    text = read_user_file(path, where)
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        msg = f"malformed JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
        raise FathomInputError(f"{where}: {msg}") from None
    if not isinstance(data, dict):
        raise FathomInputError(f"{where}: expected a JSON object, got {type(data).__name__}")
    return data, where, path


def _default_name(data: dict[str, Any], model_type: str, path: Path | None) -> str:
    """``_name_or_path``'s last part, else the folder holding ``config.json``, else ``hf-<model_type>``."""
    name = data.get("_name_or_path")
    if isinstance(name, str) and name.strip("/"):
        return name.rstrip("/").rsplit("/", 1)[-1].lower()
    if path is not None:
        stem = path.stem if path.stem != "config" else path.resolve().parent.name
        if stem:
            return stem.lower()
    return f"hf-{model_type}"


def supported_model_types() -> list[str]:
    """The ``model_type`` values an adapter exists for, sorted."""
    from fathom.importers.hf_families import ADAPTERS

    return sorted(ADAPTERS)


def model_from_hf_config(
    config: dict[str, Any] | str | Path, name: str | None = None, *, origin: str | None = None
) -> ModelSpec:
    """A ``ModelSpec`` from a config dict or a path to ``config.json``; ``origin`` names it in errors."""
    from fathom.importers.hf_families import ADAPTERS

    data, where, path = _read(config, origin)
    model_type = data.get("model_type")
    if not isinstance(model_type, str) or not model_type:
        raise FathomInputError(f"{where}: missing field 'model_type'")
    adapter = ADAPTERS.get(model_type) or ADAPTERS.get(model_type.lower())
    if adapter is None:
        raise FathomInputError(f"{where}: {unknown_name_error('model_type', model_type, ADAPTERS)}")
    fields = adapter(HFConfig(data, where, model_type))
    fields.update(
        name=name or _default_name(data, model_type, path),
        family=model_type.lower(),
        source=f"imported from Hugging Face config {where} (model_type {model_type})",
    )
    try:
        return ModelSpec.from_dict(fields)
    except FathomInputError as exc:
        raise FathomInputError(f"{where}: {exc} (model_type {model_type})") from None
