"""Running one sweep scenario and flattening it into one table row: ``scenario_id``, ``kind``, ``status``
(``ok``/``error``), ``error``, then ``in.<input>`` and ``out.<dotted.path>`` columns. A scenario that is bad input
(a plan that does not divide the heads, a model that does not fit) becomes an ``error`` row, not a failed sweep."""

from __future__ import annotations

import json
from typing import Any

from fathom.errors import FathomInputError
from fathom.sweep.spec import Scenario

SERVE_PLAN = ("tp", "pp", "ep", "kv_dtype", "max_batch", "max_batch_tokens", "memory_utilization", "cuda_graphs")
SERVE_WORKLOAD = {"arrival": "arrival", "rate": "rate", "cv": "cv", "duration": "duration_s",
                  "num_requests": "num_requests", "concurrency": "concurrency", "trace": "trace"}  # fmt: skip
SERVE_RUN = ("replicas", "system", "scheduler", "preemption", "prefix_caching", "router", "seed",
             "price_per_gpu_hour", "slo_ttft_s", "slo_tpot_s")  # fmt: skip


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
    from fathom.api.serving import Workload, simulate_serving
    from fathom.specs.hardware import validate_or_explain
    from fathom.specs.serving import ServingPlan

    known = {"model", "gpu", "precision", "input_len", "output_len", "disaggregate", "slo_ttft", "slo_tpot"}
    known |= set(SERVE_PLAN) | set(SERVE_WORKLOAD) | set(SERVE_RUN)
    unknown = sorted(set(inputs) - known)
    if unknown:
        raise FathomInputError(f"serve scenario: unknown input {unknown[0]!r} (valid: {', '.join(sorted(known))})")
    precision = inputs.get("precision", "bf16")
    fields = {k: inputs[k] for k in SERVE_PLAN if k in inputs}
    fields.setdefault("kv_dtype", "fp8" if precision == "fp8" else "bf16")
    plan = validate_or_explain(ServingPlan, {**fields, "weight_dtype": precision}, "serving plan")
    arrival = inputs.get("arrival") or ("trace" if inputs.get("trace") else "poisson")
    workload = Workload(**{v: inputs[k] for k, v in SERVE_WORKLOAD.items() if k in inputs and k != "arrival"},
                        arrival=arrival, input_len=str(inputs.get("input_len", 1024)),
                        output_len=str(inputs.get("output_len", 256)))  # fmt: skip
    run = {k: inputs[k] for k in SERVE_RUN if k in inputs}
    run.update(slo_ttft_s=inputs.get("slo_ttft"), slo_tpot_s=inputs.get("slo_tpot"))
    split = inputs.get("disaggregate")
    if split:
        try:
            run["disaggregate"] = tuple(int(x) for x in str(split).split(":"))
        except ValueError:
            raise FathomInputError(f"disaggregate: expected P:D replica counts, got {split!r}") from None
    return simulate_serving(model=inputs["model"], gpu=inputs["gpu"], plan=plan, workload=workload,
                            **run).report.model_dump(mode="json")  # fmt: skip


def run_scenario(scenario: Scenario) -> dict[str, Any]:
    """The scenario's row. Deterministic (no timings), so two runs of a sweep give equal tables."""
    row: dict[str, Any] = {"scenario_id": scenario.id, "kind": scenario.kind, "status": "ok", "error": None}
    row.update(flatten(scenario.inputs, "in") if scenario.inputs else {})
    try:
        outputs = _train(dict(scenario.inputs)) if scenario.kind == "train" else _serve(dict(scenario.inputs))
    except (FathomInputError, TypeError, KeyError) as exc:
        row.update(status="error", error=" ".join(str(exc).split()) or type(exc).__name__)
        return row
    row.update(flatten(outputs, "out"))
    return row
