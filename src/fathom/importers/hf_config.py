"""Build a ``ModelSpec`` from a Hugging Face ``config.json``.

Each ``model_type`` names its sizes differently (``n_embd`` vs ``hidden_size``), and leaves some out when they
equal the library default (``num_key_value_heads``, ``tie_word_embeddings``). The per-family adapters in
``hf_families`` know those names and defaults; this module reads the file, dispatches on ``model_type`` and
turns every problem into a one-line ``FathomInputError`` that names the file, the field and the model type.

Multimodal configs (LLaVA, Mistral 3, Gemma 3, Qwen2-VL) wrap a language model in ``text_config``: that part is
imported and the vision tower is left out, since fathom models decoder-only language models.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from fathom.errors import FathomInputError, read_user_file, unknown_name_error
from fathom.specs.model import MAX_SIZE, ModelSpec

_MISSING: Any = object()

# Multimodal types whose language-model fields sit at the top level, next to ``vision_config`` (Qwen2-VL and
# Qwen2.5-VL as published); newer saves nest them in ``text_config`` of the type on the right.
_FLAT_MULTIMODAL = {"qwen2_vl": "qwen2_vl_text", "qwen2_5_vl": "qwen2_5_vl_text"}


def shown(value: Any) -> str:
    """``repr`` for an error line, shortened: a 400-digit integer would make a 400-character message."""
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) >= 10**15:
        digits = int(abs(value).bit_length() * math.log10(2)) + 1
        return f"an integer of about {digits} digits"
    text = repr(value)
    return text if len(text) <= 60 else text[:50] + "..."


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


class HFConfig:
    """Checked access to one config dict: missing or malformed fields raise one-line errors.

    ``prefix`` names a nested object (``text_config.``) so an error points at the field the user must fix."""

    def __init__(self, data: dict[str, Any], origin: str, model_type: str, prefix: str = "", label: str = "") -> None:
        self.data, self.origin, self.model_type = data, origin, model_type
        self.prefix, self.label = prefix, label or model_type

    def error(self, message: str) -> FathomInputError:
        return FathomInputError(f"{self.origin}: {message} (model_type {self.label})")

    def name(self, key: str) -> str:
        """A field's name as the user sees it in the file."""
        return self.prefix + key

    def get(self, *keys: str, default: Any = _MISSING) -> Any:
        """The first of ``keys`` (aliases) set and not null, else ``default``, else a missing-field error."""
        for key in keys:
            if self.data.get(key) is not None:
                return self.data[key]
        if default is _MISSING:
            msg = f"missing field {self.name(keys[0])!r} for model_type {self.label}"
            raise FathomInputError(f"{self.origin}: {msg}")
        return default

    def _key(self, keys: tuple[str, ...]) -> str:
        return self.name(next((k for k in keys if self.data.get(k) is not None), keys[0]))

    def size(self, *keys: str, default: Any = _MISSING, minimum: int = 1) -> int:
        """An integer size from ``minimum`` (1 unless the field may be zero) to 2**31: no real model comes near
        the bound, and anything past it would overflow the float and int64 arithmetic of the cost model."""
        value = self.get(*keys, default=default)
        if isinstance(value, float) and math.isfinite(value) and value.is_integer():
            value = int(value)
        if type(value) is not int or not minimum <= value <= MAX_SIZE:
            kind = "a positive integer" if minimum >= 1 else "a non-negative integer"
            raise self.error(f"field {self._key(keys)!r} must be {kind} at most 2**31, got {shown(value)}")
        return value

    def number(self, key: str, value: Any, maximum: float) -> float:
        """A positive finite number up to ``maximum`` (``value`` already read: it may come from a nested object)."""
        if not _is_number(value) or not 0 < value <= maximum:
            bound = "2**31" if maximum == MAX_SIZE else f"{maximum:.0e}".replace("e+0", "e").replace("e+", "e")
            raise self.error(f"field {self.name(key)!r} must be a positive number at most {bound}, got {shown(value)}")
        return float(value)

    def flag(self, *keys: str, default: bool) -> bool:
        value = self.get(*keys, default=default)
        if not isinstance(value, bool):
            raise self.error(f"field {self._key(keys)!r} must be true or false, got {shown(value)}")
        return value

    def prob(self, *keys: str) -> bool:
        """Whether a dropout-probability field is set above zero (absent = no dropout)."""
        value = self.get(*keys, default=0.0)
        if not _is_number(value) or not 0 <= value <= 1:
            raise self.error(f"field {self._key(keys)!r} must be a probability from 0 to 1, got {shown(value)}")
        return value > 0

    def int_list(self, key: str) -> list[int]:
        value = self.get(key, default=[])
        if not isinstance(value, list) or not all(type(v) is int for v in value):
            raise self.error(f"field {self.name(key)!r} must be a list of layer indices, got {shown(value)}")
        return value

    def sub(self, key: str) -> HFConfig:
        """A nested object (MPT's ``attn_config``) with the same checks; absent = empty."""
        value = self.get(key, default={})
        if not isinstance(value, dict):
            raise self.error(f"field {self.name(key)!r} must be an object, got {shown(value)}")
        return HFConfig(value, self.origin, self.model_type, f"{self.name(key)}.", self.label)


def _read(config: dict[str, Any] | str | Path, origin: str | None) -> tuple[dict[str, Any], str, Path | None]:
    if isinstance(config, dict):
        return config, origin or "config.json", None
    path = Path(config)
    if path.is_dir():  # a downloaded checkpoint folder
        path = path / "config.json"
        if not path.is_file():
            raise FathomInputError(f"{origin or config}: directory has no config.json")
    where = origin or str(path)
    data = parse_json(read_user_file(path, where), where)
    if not isinstance(data, dict):
        raise FathomInputError(f"{where}: expected a JSON object, got {type(data).__name__}")
    return data, where, path


def parse_json(text: str, where: str) -> Any:
    """``json.loads`` whose every failure is one line: bad syntax, nesting past the recursion limit, or an
    integer of more digits than Python converts (4300)."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        msg = f"malformed JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
        raise FathomInputError(f"{where}: {msg}") from None
    except RecursionError:
        raise FathomInputError(f"{where}: malformed JSON: nested too deeply") from None
    except ValueError as exc:
        raise FathomInputError(f"{where}: malformed JSON: {' '.join(str(exc).split(':')[0].split())}") from None


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


def _adapter_key(model_type: Any) -> str | None:
    """The ``ADAPTERS`` key for a ``model_type`` (as spelled, else lowercase), or None."""
    from fathom.importers.hf_families import ADAPTERS

    if not isinstance(model_type, str):
        return None
    return next((k for k in (model_type, model_type.lower()) if k in ADAPTERS), None)


def _language_model(data: dict[str, Any], where: str) -> tuple[HFConfig, str, str | None]:
    """The config of the language model to import, its adapter's key, and the multimodal wrapper's type.

    A known text ``model_type`` is imported as is. Otherwise a ``text_config`` of a known type is (LLaVA,
    Mistral 3, Gemma 3); a ``text_config`` of another type, or a wrapper without one, is refused as such rather
    than with close-match hints for the wrapper's name."""
    from fathom.importers.hf_families import ADAPTERS

    model_type = data.get("model_type")
    if not isinstance(model_type, str) or not model_type:
        raise FathomInputError(f"{where}: missing field 'model_type'")
    if key := _adapter_key(model_type):
        return HFConfig(data, where, model_type), key, None
    nested = data.get("text_config")
    if nested is None and model_type in _FLAT_MULTIMODAL:
        inner = _FLAT_MULTIMODAL[model_type]
        return HFConfig(data, where, inner, label=f"{inner} of {model_type}"), inner, model_type
    if nested is None:
        if isinstance(data.get("vision_config"), dict):
            raise FathomInputError(
                f"{where}: model_type {model_type!r} is multimodal without a text_config: not supported "
                f"(a nested text_config must have one of the model_types: {', '.join(sorted(ADAPTERS))})"
            )
        raise FathomInputError(f"{where}: {unknown_name_error('model_type', model_type, ADAPTERS)}")
    if not isinstance(nested, dict):
        raise FathomInputError(f"{where}: field 'text_config' must be an object, got {shown(nested)}")
    inner = nested.get("model_type")
    key = _adapter_key(inner)
    if key is None:
        what = "without a model_type" if inner is None else f"of model_type {shown(inner)}"
        raise FathomInputError(
            f"{where}: nested text_config {what} in a {model_type!r} config is not supported "
            f"(supported text model_types: {', '.join(sorted(ADAPTERS))})"
        )
    label = f"{inner} in text_config of {model_type}"
    return HFConfig(nested, where, inner, prefix="text_config.", label=label), key, model_type


def model_from_hf_config(
    config: dict[str, Any] | str | Path, name: str | None = None, *, origin: str | None = None
) -> ModelSpec:
    """A ``ModelSpec`` from a config dict, a path to ``config.json`` or the folder holding it; ``origin`` names
    it in errors."""
    from fathom.importers.hf_families import ADAPTERS

    data, where, path = _read(config, origin)
    c, key, wrapper = _language_model(data, where)
    fields = ADAPTERS[key](c)
    source = f"imported from Hugging Face config {where} (model_type {c.label})"
    if wrapper is not None:
        source += "; language model only, the vision tower is not modelled"
    fields.update(
        name=name or _default_name(data, wrapper or c.model_type, path), family=c.model_type.lower(), source=source
    )
    try:
        return ModelSpec.from_dict(fields)
    except FathomInputError as exc:
        raise FathomInputError(f"{where}: {exc} (model_type {c.label})") from None
