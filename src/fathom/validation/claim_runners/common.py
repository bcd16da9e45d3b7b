"""Helpers every claim runner shares: scenario expansion, metric lookup, model files shipped beside the claims."""

from __future__ import annotations

import itertools
from importlib import resources

Pair = tuple[float, float]


def data_path(name: str) -> str:
    """Model files shipped beside the claims (``claim_models/*.yaml``) resolve to their installed path."""
    if name.startswith("claim_models/"):
        return str(resources.files("fathom.validation").joinpath("data").joinpath(name))
    return name


def metric(estimate, path: str) -> float:
    """``tokens_per_s``, ``memory.peak_gib``, ``memory.breakdown.optimizer``, ``hfu`` ... of a training estimate."""
    value = estimate
    for part in path.split("."):
        value = value[part] if isinstance(value, dict) else getattr(value, part)
    return float(value)


def cases(fig: dict) -> list[dict]:
    """The scenario inputs shared by both sides: ``common`` x each of ``cases`` x each ``sweep`` value (a list
    value inside a case is swept too)."""
    common = dict(fig.get("common", {}))
    out = []
    for case in fig.get("cases", [{}]):
        merged = {**common, **case, **{k: v for k, v in fig.get("sweep", {}).items()}}
        keys = [k for k, v in merged.items() if isinstance(v, list)]
        for combo in itertools.product(*(merged[k] for k in keys)):
            out.append({**merged, **dict(zip(keys, combo, strict=True))})
    return out
