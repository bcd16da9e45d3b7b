"""Running one sweep scenario and flattening it into one table row: ``scenario_id``, ``kind``, ``status``
(``ok``/``error``), ``error``, then ``in.<input>`` and ``out.<dotted.path>`` columns. A scenario that is bad input
(a plan that does not divide the heads, a model that does not fit) becomes an ``error`` row, not a failed sweep."""

from __future__ import annotations

import json
from typing import Any

from fathom.errors import FathomInputError
from fathom.sweep.spec import Scenario


def _scalar(value: Any) -> Any:
    return value if value is None or isinstance(value, bool | int | float | str) else json.dumps(value, sort_keys=True)


def flatten(data: Any, prefix: str) -> dict[str, Any]:
    """Nested mappings to dotted keys; lists and other non-scalars as JSON text."""
    if isinstance(data, dict):
        out: dict[str, Any] = {}
        for k, v in data.items():
            out.update(flatten(v, f"{prefix}.{k}"))
        return out
    return {prefix: _scalar(data)}


def _train(inputs: dict[str, Any]) -> dict[str, Any]:
    from fathom.api.training import estimate_training_plan

    return estimate_training_plan(**inputs).model_dump(mode="json")


def _serve(inputs: dict[str, Any]) -> dict[str, Any]:
    """The ``fathom serve --json`` keys: the report and the optional levers' extras."""
    from fathom.api.serving import simulate_serving
    from fathom.sweep.serve_inputs import serving_arguments

    run = simulate_serving(**serving_arguments(inputs))
    return {**run.report.model_dump(mode="json"), **run.extras}


def run_scenario(scenario: Scenario) -> dict[str, Any]:
    """The scenario's row. Deterministic (no timings), so two runs of a sweep give equal tables."""
    row: dict[str, Any] = {"scenario_id": scenario.id, "kind": scenario.kind, "status": "ok", "error": None}
    row.update(flatten(scenario.inputs, "in") if scenario.inputs else {})
    try:
        outputs = _train(dict(scenario.inputs)) if scenario.kind == "train" else _serve(dict(scenario.inputs))
    except (ValueError, TypeError, KeyError) as exc:  # FathomInputError is a ValueError
        text = " ".join(str(exc).split())
        if not isinstance(exc, FathomInputError):  # bad input a library caught before fathom did: say whose
            text = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
        row.update(status="error", error=text)
        return row
    row.update(flatten(outputs, "out"))
    return row
