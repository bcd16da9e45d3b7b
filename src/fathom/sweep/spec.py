"""A sweep spec: blocks of scenarios, each a ``kind`` (``train`` or ``serve``), ``fixed`` inputs shared by all its
scenarios, a ``grid`` (every combination of the listed values) and a ``list`` (explicit points); the scenarios of a
block are fixed + each grid combination + each list point (a missing grid or list counts as one empty point).

    scenarios:
      - kind: train
        fixed: {seq_len: 8192, global_batch: 1024, num_gpus: 1024}
        grid: {model: [llama-3.1-70b], gpu: [h100-sxm, a100-80gb], tp: [4, 8], pp: [4, 8]}
      - kind: serve
        fixed: {model: llama-3.1-8b, rate: 8, duration: 60, input_len: 1024, output_len: 256}
        list: [{gpu: h100-sxm, tp: 1}, {gpu: a100-80gb, tp: 2}]

A scenario's id is a hash of its kind and inputs, so it stays the same however the spec is reordered, and a rerun
knows which rows it already has.
"""

from __future__ import annotations

import hashlib
import itertools
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from fathom.errors import FathomInputError, close_matches, read_user_file

KINDS = ("train", "serve")
BLOCK_KEYS = ("kind", "fixed", "grid", "list")


@dataclass(frozen=True)
class Scenario:
    kind: str
    inputs: dict[str, Any]

    @property
    def id(self) -> str:
        text = json.dumps({"kind": self.kind, "inputs": self.inputs}, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()[:16]


def _mapping(value: Any, where: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise FathomInputError(f"{where}: expected a mapping of input names to values")
    return value


def expand(spec: dict[str, Any], where: str = "sweep") -> list[Scenario]:
    """The scenarios of a parsed spec, in spec order, duplicates dropped."""
    blocks = spec.get("scenarios") if isinstance(spec, dict) else None
    if not isinstance(blocks, list) or not blocks:
        raise FathomInputError(f"{where}: expected a top-level 'scenarios' list of blocks")
    out: dict[str, Scenario] = {}
    for i, block in enumerate(blocks):
        at = f"{where} scenarios[{i}]"
        if not isinstance(block, dict):
            raise FathomInputError(f"{at}: expected a mapping with {', '.join(BLOCK_KEYS)}")
        unknown = set(block) - set(BLOCK_KEYS)
        if unknown:
            raise FathomInputError(f"{at}: unknown key {sorted(unknown)[0]!r} (valid: {', '.join(BLOCK_KEYS)})")
        kind = block.get("kind")
        if kind not in KINDS:
            raise FathomInputError(f"{at}.kind: unknown value {kind!r} (valid: {', '.join(KINDS)})")
        fixed, grid = _mapping(block.get("fixed"), f"{at}.fixed"), _mapping(block.get("grid"), f"{at}.grid")
        for name, values in grid.items():
            if not isinstance(values, list) or not values:
                raise FathomInputError(f"{at}.grid.{name}: expected a non-empty list of values")
        points = block.get("list") or [{}]
        if not isinstance(points, list):
            raise FathomInputError(f"{at}.list: expected a list of mappings")
        # a misspelt input is the spec's error, not one error row per scenario
        check = _check_train_keys
        if kind == "serve":
            from fathom.sweep.serve_inputs import check_keys as check
        check(fixed, f"{at}.fixed")
        check(grid, f"{at}.grid")
        for j, point in enumerate(points):
            check(_mapping(point, f"{at}.list[{j}]"), f"{at}.list[{j}]")
        names = list(grid)
        for combo in itertools.product(*(grid[n] for n in names)):
            for j, point in enumerate(points):
                inputs = {**fixed, **dict(zip(names, combo, strict=True)), **_mapping(point, f"{at}.list[{j}]")}
                s = Scenario(kind, dict(sorted(inputs.items())))
                out.setdefault(s.id, s)
    return list(out.values())


def load_sweep(path: str | Path) -> list[Scenario]:
    text = read_user_file(path)
    try:
        spec = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise FathomInputError(f"{path}: malformed YAML ({' '.join(str(exc).split())})") from None
    return expand(spec, str(path))


def _check_train_keys(inputs: dict[str, Any], where: str) -> None:
    """A train scenario's unknown input: one line naming it and the closest of ``estimate_training_plan``'s
    arguments and the plan's fields."""
    import inspect

    from fathom.api.training import estimate_training_plan
    from fathom.specs.plan import TrainingPlan

    params = inspect.signature(estimate_training_plan).parameters
    valid = {n for n, p in params.items() if p.kind is not inspect.Parameter.VAR_KEYWORD} | set(
        TrainingPlan.model_fields
    )
    for key in inputs:
        if key not in valid:
            close = close_matches(str(key), valid, n=3)
            hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""
            raise FathomInputError(f"{where}: unknown train input {key!r}{hint} (valid: {', '.join(sorted(valid))})")
