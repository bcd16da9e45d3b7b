"""The inputs of a sweep's ``serve`` scenarios: the ``fathom serve`` flags with underscores, in one table that says
how each is checked and where it goes in ``fathom.api.serving.simulate_serving``, so the sweep takes what
``fathom serve`` takes (``tests/test_sweep_serve_inputs.py`` compares the table with the command's options).

Values are checked here, per scenario, so a bad value (``seed: -1``, ``tp: 0``) is that scenario's error row and
never an exception from deep in the simulator that aborts the sweep."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from fathom.errors import FathomInputError, close_matches


@dataclass(frozen=True)
class ServeInput:
    """``type``: int | float | bool | str | length (an int or a length spec) | split (P:D) | mapping; ``to``: where
    the value goes (``call`` = a simulate_serving argument, ``plan`` = a ServingPlan field, ``workload``, or a
    parser: ``speculative``, ``lora``, ``decode_plan``, ``arrival``); ``name``: the argument/field there."""

    type: str
    to: str
    name: str
    low: float | None = None  # inclusive lower bound
    high: float | None = None  # inclusive upper bound


def _i(to: str, name: str, low: float | None = None) -> ServeInput:
    return ServeInput("int", to, name, low)


def _f(to: str, name: str, low: float | None = None, high: float | None = None) -> ServeInput:
    return ServeInput("float", to, name, low, high)


def _b(to: str, name: str) -> ServeInput:
    return ServeInput("bool", to, name)


def _s(to: str, name: str) -> ServeInput:
    return ServeInput("str", to, name)


# ``fathom serve``'s options, in its order; bounds as its own (typer ``min``/``max`` and the checks it makes).
SERVE_INPUTS: dict[str, ServeInput] = {
    "model": _s("call", "model"),
    "gpu": _s("call", "gpu"),
    "tp": _i("plan", "tp", 1),
    "pp": _i("plan", "pp", 1),
    "ep": _i("plan", "ep", 1),
    "replicas": _i("call", "replicas", 1),
    "system": _s("call", "system"),
    "precision": _s("plan", "weight_dtype"),
    "kv_dtype": _s("plan", "kv_dtype"),
    "rate": _f("workload", "rate", 0.0),
    "arrival": _s("arrival", "arrival"),
    "cv": _f("workload", "cv", 0.0),
    "duration": _f("workload", "duration_s", 0.0),
    "num_requests": _i("workload", "num_requests", 1),
    "concurrency": _i("workload", "concurrency", 1),
    "offline": _b("arrival", "offline"),
    "trace": _s("workload", "trace"),
    "input_len": ServeInput("length", "workload", "input_len", 1),
    "input_dist": _s("workload", "input_len"),
    "output_len": ServeInput("length", "workload", "output_len", 1),
    "output_dist": _s("workload", "output_len"),
    "scheduler": _s("call", "scheduler"),
    "max_batch": _i("plan", "max_batch", 1),
    "max_batch_tokens": _i("plan", "max_batch_tokens", 1),
    "preemption": _s("call", "preemption"),
    "capacity_policy": _s("call", "capacity_policy"),
    "prefix_caching": _b("call", "prefix_caching"),
    "sliding_window": _b("plan", "sliding_window"),
    "shared_prefix_attention": _b("plan", "shared_prefix_attention"),
    "nano_batches": _i("plan", "nano_batches", 1),
    "router": _s("call", "router"),
    "disaggregate": ServeInput("split", "call", "disaggregate"),
    "decode_tp": _i("decode_plan", "tp", 1),
    "kv_link_bw": _f("call", "kv_link_GBps", 0.001),
    "mixed_pool": _b("call", "mixed_pool"),
    "cuda_graphs": _b("plan", "cuda_graphs"),
    "host_profile": _s("plan", "host_profile"),
    "memory_utilization": _f("plan", "memory_utilization", 0.05, 1.0),
    "slo_ttft": _f("call", "slo_ttft_s", 0.0),
    "slo_tpot": _f("call", "slo_tpot_s", 0.0),
    "speculative": _s("speculative", "method"),
    "spec_tokens": _i("speculative", "num_tokens"),
    "spec_acceptance": _f("speculative", "acceptance"),
    "offload_weights": _s("plan", "offload_weights"),
    "resident_weight_fraction": _f("plan", "resident_weight_fraction", 0.0, 1.0),
    "offload_kv": _s("plan", "offload_kv"),
    "lora_adapters": _i("lora", "num_adapters"),
    "adapter_rank": _i("lora", "rank"),
    "adapter_dist": _s("lora", "dist"),
    "max_loras_per_batch": _i("lora", "max_per_batch"),
    "max_cpu_loras": _i("lora", "max_cpu"),
    "adapter_targets": _s("lora", "targets"),
    "samples": _i("call", "samples", 1),
    "seed": _i("call", "seed", 0),
    "price_per_gpu_hour": _f("call", "price_per_gpu_hour", 0.0),
}
# simulate_serving arguments with no ``fathom serve`` flag, and the older sweep spellings of two flags.
API_INPUTS: dict[str, ServeInput] = {
    "decode_gpu": _s("call", "decode_gpu"),
    "slo_slowdown": ServeInput("mapping", "call", "slo_slowdown"),
    "slowdown_reference_gpu": _s("call", "slowdown_reference_gpu"),
    "slo_ttft_s": _f("call", "slo_ttft_s", 0.0),
    "slo_tpot_s": _f("call", "slo_tpot_s", 0.0),
}
INPUTS = {**SERVE_INPUTS, **API_INPUTS}
# ``fathom serve`` flags that name files or formats of its own output: a sweep writes one row per scenario instead.
OUTPUT_FLAGS = ("out", "plot", "report", "json_out")
REQUIRED = ("model", "gpu")


def check_keys(inputs: dict[str, Any], where: str) -> None:
    """An unknown input: one line naming it, the closest valid names, then all of them."""
    for key in inputs:
        if key in INPUTS:
            continue
        if key in OUTPUT_FLAGS:
            raise FathomInputError(f"{where}: {key!r} is an output option of `fathom serve`, not a scenario input "
                                   "(a sweep writes one row per scenario to --out)")  # fmt: skip
        close = close_matches(str(key), INPUTS, n=3)
        hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""
        raise FathomInputError(f"{where}: unknown serve input {key!r}{hint} (valid: {', '.join(sorted(INPUTS))})")


def _describe(spec: ServeInput) -> str:
    what = {"int": "an integer", "float": "a number", "bool": "true or false", "str": "a string",
            "length": "a token count or a length spec like lognormal:mean=300,sigma=0.8",
            "mapping": "a mapping"}[spec.type]  # fmt: skip
    if spec.low is not None and spec.high is not None:
        return f"{what} within {spec.low:g}..{spec.high:g}"
    return f"{what} >= {spec.low:g}" if spec.low is not None else what


def _split(value: Any) -> tuple[int, int]:
    """``disaggregate``: ``"2:1"`` or ``[2, 1]``. YAML reads an unquoted ``2:1`` as the base-60 number 121."""
    if isinstance(value, list | tuple):
        parts = list(value)
    elif isinstance(value, str):
        parts = value.split(":")
    else:
        hint = " (quote it: YAML reads an unquoted 2:1 as the base-60 number 121)" if isinstance(value, int) else ""
        raise FathomInputError(f"disaggregate: expected PREFILL:DECODE replica counts like '2:1' or [2, 1], got "
                               f"{value!r}{hint}")  # fmt: skip
    try:
        prefill, decode = (int(x) for x in parts)
    except (TypeError, ValueError):
        raise FathomInputError(
            f"disaggregate: expected PREFILL:DECODE replica counts like '2:1', got {value!r}"
        ) from None
    if prefill < 1 or decode < 1:
        raise FathomInputError(f"disaggregate: both pools need at least one replica, got {value!r}")
    return prefill, decode


def check_value(key: str, value: Any, label: str | None = None) -> Any:
    """The value, checked against the table (``None`` = not given); numbers must be finite. ``label``: the name the
    error gives (default ``key``; the Python API names its own argument)."""
    spec = INPUTS[key]
    if value is None:
        return None
    if spec.type == "split":
        return _split(value)
    ok = {
        "int": isinstance(value, int) and not isinstance(value, bool),
        "float": isinstance(value, int | float) and not isinstance(value, bool),
        "bool": isinstance(value, bool),
        "str": isinstance(value, str),
        "length": isinstance(value, str) or (isinstance(value, int) and not isinstance(value, bool)),
        "mapping": isinstance(value, dict),
    }[spec.type]
    if ok and isinstance(value, int | float) and not isinstance(value, bool):
        within = (spec.low is None or value >= spec.low) and (spec.high is None or value <= spec.high)
        ok = math.isfinite(value) and within
    if not ok:
        raise FathomInputError(f"{label or key}: expected {_describe(spec)}, got {value!r}")
    return float(value) if spec.type == "float" else value


def _arrival(given: dict[str, Any]) -> str:
    """As ``fathom serve``: at most one of rate, concurrency, offline, trace, and no input the chosen workload
    would silently ignore; ``arrival`` picks the open-loop process (or, as sweeps always allowed, names
    offline/closed-loop/trace itself)."""
    chosen = [k for k in ("rate", "concurrency", "offline", "trace") if given.get(k) not in (None, False)]
    if len(chosen) > 1:
        raise FathomInputError(f"workload: give one of rate, concurrency, offline, trace (got {', '.join(chosen)})")
    explicit = given.get("arrival")
    if given.get("offline"):
        kind = "offline"
    elif given.get("trace") is not None:
        kind = "trace"
    elif given.get("concurrency") is not None:
        kind = "closed-loop"
    else:
        kind = explicit or "poisson"
    ignored = {"trace": ("num_requests", "duration", "input_len", "input_dist", "output_len", "output_dist",
                         "arrival", "cv"),
               "offline": ("duration", "arrival", "cv"), "closed-loop": ("duration", "arrival", "cv")}  # fmt: skip
    stray = [k for k in ignored.get(kind, ()) if k in given and not (k == "arrival" and explicit == kind)]
    if stray:
        raise FathomInputError(f"workload ({kind}): ignores {', '.join(stray)}; drop "
                               f"{'them' if len(stray) > 1 else 'it'}")  # fmt: skip
    return kind


def serving_arguments(inputs: dict[str, Any]) -> dict[str, Any]:
    """``simulate_serving``'s keyword arguments for a serve scenario's inputs, every value checked first."""
    from fathom.api.serving import Workload
    from fathom.inference.speculative import parse_speculative
    from fathom.serving.lora_pool import parse_lora
    from fathom.specs.hardware import validate_or_explain
    from fathom.specs.serving import ServingPlan

    check_keys(inputs, "serve scenario")
    for key in REQUIRED:
        if inputs.get(key) is None:
            raise FathomInputError(f"serve scenario: {key!r} is required")
    given = {k: check_value(k, v) for k, v in inputs.items()}
    given = {k: v for k, v in given.items() if v is not None}
    for a, b in (("input_len", "input_dist"), ("output_len", "output_dist"), ("slo_ttft", "slo_ttft_s"),
                 ("slo_tpot", "slo_tpot_s")):  # fmt: skip
        if a in given and b in given:
            raise FathomInputError(f"give {a} or {b}, not both")
    groups: dict[str, dict[str, Any]] = {
        g: {} for g in ("call", "plan", "workload", "speculative", "lora", "decode_plan")
    }
    for key, value in given.items():
        where = INPUTS[key]
        if where.to in groups:
            groups[where.to][where.name] = str(value) if where.type == "length" else value
    plan_fields = groups["plan"]
    plan_fields.setdefault("kv_dtype", "fp8" if plan_fields.get("weight_dtype") == "fp8" else "bf16")
    if plan_fields.get("resident_weight_fraction") is not None and plan_fields.get("offload_weights", "none") == "none":
        raise FathomInputError("resident_weight_fraction needs offload_weights cpu|nvme")
    call = groups["call"]
    call["plan"] = validate_or_explain(ServingPlan, plan_fields, "serving plan")
    if groups["decode_plan"]:
        call["decode_plan"] = validate_or_explain(ServingPlan, {**plan_fields, **groups["decode_plan"]}, "decode plan")
    spec_args = groups["speculative"]
    call["speculative"] = parse_speculative(*(spec_args.get(k) for k in ("method", "num_tokens", "acceptance")))
    lora = groups["lora"]
    call["lora"] = parse_lora(*(lora.get(k) for k in ("num_adapters", "rank", "dist", "max_per_batch", "max_cpu",
                                                       "targets")))  # fmt: skip
    call["workload"] = Workload(arrival=_arrival(given), **{"input_len": "1024", "output_len": "256",
                                                            **groups["workload"]})  # fmt: skip
    return call
