"""Names and pasted configs from a request, checked before any work: catalog names only, never file paths.

``fathom.api`` also accepts paths (the CLI's users name their own files); a server must not read files that a
request names, so the web layer admits only catalog names, and hands a pasted ``config.json`` to the API as a
file it writes itself into a private temporary folder.
"""

from __future__ import annotations

import json
import re
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from fathom.catalog.hardware import list_gpus, list_systems
from fathom.catalog.models import list_models
from fathom.errors import FathomInputError, unknown_name_error
from fathom.importers.hf_config import model_from_hf_config
from fathom.specs.model import ModelSpec
from fathom.web.limits import Limits, check


def catalog_name(field: str, name: str, choices: list[str]) -> str:
    key = name.strip().lower()
    if key not in choices:
        raise unknown_name_error(field, name, choices)
    return key


def check_hardware(gpu: str, system: str | None) -> tuple[str, str | None]:
    gpu = catalog_name("gpu", gpu, list_gpus())
    return gpu, None if system is None else catalog_name("system", system, list_systems())


def spec_from_config(config: dict[str, Any]) -> ModelSpec:
    """The model of a pasted config: a Hugging Face ``config.json``, or ModelSpec fields (as ``--model x.json``)."""
    fields = "model_type" not in config and "num_layers" in config
    try:
        if fields:
            return ModelSpec.from_dict({"name": "pasted-model", **config})
        return model_from_hf_config(config, origin="config")
    except FathomInputError as exc:
        if not fields:
            raise  # the importer names the config already
        raise FathomInputError(f"config: {exc}") from None
    except (ValueError, ArithmeticError, TypeError) as exc:  # a value no check caught, e.g. 10**400 (not a float)
        detail = " ".join(str(exc).split())[:200]
        raise FathomInputError(
            f"config: cannot be read ({type(exc).__name__}: {detail}); check that its numbers are in range"
        ) from exc


def _folder_name(name: str) -> str:
    return re.sub(r"[^a-z0-9._-]+", "-", name.lower()).strip(".-")[:80] or "pasted-model"


@contextmanager
def model_argument(model: str | None, config: dict[str, Any] | None, limits: Limits) -> Iterator[str]:
    """What ``fathom.api`` takes as ``model``: a preset name, or the path of the pasted config written to a
    temporary folder (named after the model, so the API names it as the CLI would), removed afterwards."""
    if (model is None) == (config is None):
        raise FathomInputError("model/config: give exactly one (a preset name, or a pasted config.json)")
    if model is not None:
        yield catalog_name("model", model, list_models())
        return
    text = json.dumps(config)
    check(len(text), limits.max_config_chars, "config (characters)")
    spec = spec_from_config(config)
    with tempfile.TemporaryDirectory(prefix="fathom-web-") as tmp:
        folder = Path(tmp) / _folder_name(spec.name)
        folder.mkdir()
        path = folder / "config.json"
        path.write_text(text, encoding="utf-8")
        yield str(path)
