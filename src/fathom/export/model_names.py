"""Engine files name models their own way (``meta-llama/Llama-3.1-8B-Instruct``); find the fathom preset, and the
Hugging Face repository a serving engine should download for a preset."""

from __future__ import annotations

import re
from pathlib import Path

from fathom.catalog.models import list_models
from fathom.errors import FathomInputError, close_matches

_SUFFIXES = re.compile(r"(-(instruct|chat|hf|base|it|fp8|awq|gptq|int4|int8))+$")

# The Hugging Face repository of each preset with a public checkpoint: the repo whose config.json the preset's
# ``source`` names (tests/test_export_serving_models.py checks that it does). Presets missing here (GPT-3, the
# Megatron-LM paper shapes, OPT-175B, MPT-70B, LLaMA-65B and the synthetic test shapes) have no public repo of
# their own; an export keeps their name and warns.
HF_REPOS: dict[str, str] = {
    "bloom-176b": "bigscience/bloom",
    "deepseek-v2": "deepseek-ai/DeepSeek-V2",
    "deepseek-v3": "deepseek-ai/DeepSeek-V3",
    "falcon-180b": "tiiuae/falcon-180B",
    "falcon-40b": "tiiuae/falcon-40b",
    "falcon-7b": "tiiuae/falcon-7b",
    "gemma-2-27b": "google/gemma-2-27b",
    "gemma-2-2b": "google/gemma-2-2b",
    "gemma-2-9b": "google/gemma-2-9b",
    "gpt-j-6b": "EleutherAI/gpt-j-6b",
    "gpt-neox-20b": "EleutherAI/gpt-neox-20b",
    "llama-2-13b": "meta-llama/Llama-2-13b-hf",
    "llama-2-70b": "meta-llama/Llama-2-70b-hf",
    "llama-2-7b": "meta-llama/Llama-2-7b-hf",
    "llama-3-70b": "meta-llama/Meta-Llama-3-70B",
    "llama-3-8b": "meta-llama/Meta-Llama-3-8B",
    "llama-3.1-405b": "meta-llama/Llama-3.1-405B",
    "llama-3.1-70b": "meta-llama/Llama-3.1-70B",
    "llama-3.1-8b": "meta-llama/Llama-3.1-8B",
    "llama-3.2-1b": "meta-llama/Llama-3.2-1B",
    "llama-3.2-3b": "meta-llama/Llama-3.2-3B",
    "llama-3.3-70b": "meta-llama/Llama-3.3-70B-Instruct",  # Meta released Llama 3.3 as Instruct only
    "mistral-7b": "mistralai/Mistral-7B-v0.1",
    "mixtral-8x22b": "mistralai/Mixtral-8x22B-v0.1",
    "mixtral-8x7b": "mistralai/Mixtral-8x7B-v0.1",
    "mpt-30b": "mosaicml/mpt-30b",
    "mpt-7b": "mosaicml/mpt-7b",
    "phi-3-medium": "microsoft/Phi-3-medium-4k-instruct",
    "phi-3-mini": "microsoft/Phi-3-mini-4k-instruct",
    "qwen2.5-14b": "Qwen/Qwen2.5-14B",
    "qwen2.5-32b": "Qwen/Qwen2.5-32B",
    "qwen2.5-72b": "Qwen/Qwen2.5-72B",
    "qwen2.5-7b": "Qwen/Qwen2.5-7B",
    "qwen3-235b-a22b": "Qwen/Qwen3-235B-A22B",
    "qwen3-30b-a3b": "Qwen/Qwen3-30B-A3B",
    "qwen3-32b": "Qwen/Qwen3-32B",
    "qwen3-8b": "Qwen/Qwen3-8B",
    "yi-34b-200k": "01-ai/Yi-34B-200K",
}
_PRESET_OF_REPO = {repo.lower(): preset for preset, repo in HF_REPOS.items()}


def _presets() -> set[str]:
    return set(list_models())


def resolve_model_name(name: str | None) -> str | None:
    """The catalog preset a model reference means, or None when none matches."""
    if not name:
        return None
    presets = _presets()
    if name in presets:
        return name
    if name.lower() in presets:
        return name.lower()
    repo = name.strip().rstrip("/").lower()
    if _PRESET_OF_REPO.get(repo) in presets:
        return _PRESET_OF_REPO[repo]
    key = _SUFFIXES.sub("", repo.rsplit("/", 1)[-1])
    for candidate in (key, key.removeprefix("meta-")):
        if candidate in presets:
            return candidate
    return None


def serving_model(name: str) -> tuple[str, str | None]:
    """What a serving engine should load for ``name``, and a warning when that is not a checkpoint it can fetch.

    A preset becomes its Hugging Face repository; a preset without one keeps its name (with the warning); anything
    else (a repo id, a local path) is the user's own and passes through."""
    preset = name.strip().lower()
    if preset not in _presets():
        return name, None
    if preset in HF_REPOS:
        return HF_REPOS[preset], None
    return name, (
        f"preset {preset!r} has no public Hugging Face checkpoint; wrote its name, which the engine cannot "
        "download: replace it with the path of a local checkpoint"
    )


def check_serving_model(name: str, flag: str = "--model") -> None:
    """Reject a serving model reference that is neither a preset, a Hugging Face ``ORG/NAME`` id nor an existing
    path (most likely a misspelt preset), naming the closest presets."""
    text = name.strip()
    if not text:
        raise FathomInputError(f"{flag}: empty model name")
    if text.lower() in _presets() or "/" in text or Path(text).exists():
        return
    close = close_matches(text, _presets(), n=3)
    hint = f"did you mean {', '.join(repr(c) for c in close)}? " if close else ""
    raise FathomInputError(
        f"{flag}: {text!r} is not a fathom preset, a Hugging Face repo id (ORG/NAME) or a local path; {hint}"
        "(`fathom models` lists the presets)"
    )


def fathom_model_comment(text: str) -> str | None:
    """The ``# fathom-model: NAME`` line fathom writes into every file it exports."""
    for line in text.splitlines():
        if line.lstrip().startswith("# fathom-model:"):
            return line.split(":", 1)[1].strip() or None
    return None
