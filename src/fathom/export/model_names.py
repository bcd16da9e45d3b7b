"""Engine files name models their own way (``meta-llama/Llama-3.1-8B-Instruct``); find the fathom preset."""

from __future__ import annotations

import re

from fathom.catalog.models import list_models

_SUFFIXES = re.compile(r"(-(instruct|chat|hf|base|it|fp8|awq|gptq|int4|int8))+$")


def resolve_model_name(name: str | None) -> str | None:
    """The catalog preset a model reference means, or None when none matches."""
    if not name:
        return None
    presets = set(list_models())
    if name in presets:
        return name
    key = _SUFFIXES.sub("", name.rstrip("/").rsplit("/", 1)[-1].lower())
    for candidate in (key, key.removeprefix("meta-")):
        if candidate in presets:
            return candidate
    return None


def fathom_model_comment(text: str) -> str | None:
    """The ``# fathom-model: NAME`` line fathom writes into every file it exports."""
    for line in text.splitlines():
        if line.lstrip().startswith("# fathom-model:"):
            return line.split(":", 1)[1].strip() or None
    return None
