"""Cluster throughput under per-request slowdown SLOs: a baseline cluster against a prefill/decode split.

Splitwise (Patel et al. ISCA'24, Sec. 6; artifact github.com/Mutinifni/splitwise-sim) compares clusters of equal
power or cost by the highest request rate at which every slowdown bound holds (P50/P90/P99 of TTFT, TBT and E2E
slowdown over each request run alone on a reference machine, ``fathom.serving.slowdown``). The figure here
is that rate for the ``technique`` cluster (``disaggregate: [prefill, decode]`` machines, the decode pool on
``decode_gpu``) over the ``baseline`` cluster (``replicas`` machines serving both phases), both found by the same
Poisson-rate bisection as ``serving_capacity`` (``fathom.validation.claim_runners.serving``).

Inputs per side (``common``, each of ``cases``, then ``baseline`` / ``technique``): model, gpu, plan fields,
``router``, ``kv_link_GBps`` (the prefill-to-decode KV link; the system's inter-node bandwidth when absent),
``mixed_pool`` (Splitwise's mixed machine pool, ``fathom.serving.mixed_pool``),
``slo_slowdown``, ``slowdown_reference_gpu``, workload lengths, ``num_requests``, ``start_rate``, ``iterations``.
"""

from __future__ import annotations

import json

from fathom.api.serving import Workload, simulate_serving
from fathom.specs.serving import ServingPlan
from fathom.validation.claim_runners.common import Pair
from fathom.validation.claim_runners.serving import PLAN_FIELDS, _length, _sides, largest_rate


def meets_slowdown_slo(inputs: dict, rate: float) -> bool:
    """One run at ``rate`` requests/s: every slowdown bound holds and no request was rejected."""
    plan = ServingPlan(**{k: inputs[k] for k in PLAN_FIELDS if k in inputs})
    w = Workload(arrival="poisson", rate=rate, num_requests=int(inputs["num_requests"]),
                 input_len=_length(inputs["input_len"]), output_len=_length(inputs["output_len"]))  # fmt: skip
    split = inputs.get("disaggregate")
    run = simulate_serving(
        model=inputs["model"], gpu=inputs["gpu"], plan=plan, workload=w,
        replicas=int(inputs.get("replicas", 1)), system=inputs.get("system"),
        scheduler=inputs.get("scheduler", "continuous"), router=inputs.get("router", "round-robin"),
        disaggregate=tuple(split) if split else None, decode_gpu=inputs.get("decode_gpu"),
        kv_link_GBps=inputs.get("kv_link_GBps") if split else None,  # a link between split pools only
        mixed_pool=bool(inputs.get("mixed_pool", False)),
        slo_slowdown=inputs["slo_slowdown"],
        slowdown_reference_gpu=inputs.get("slowdown_reference_gpu"),
        seed=int(inputs.get("seed", 0)),
    )  # fmt: skip
    return run.report.rejected == 0 and run.extras["slowdown"]["meets_slo"]


def slowdown_capacity_rps(inputs: dict) -> float:
    """Largest Poisson rate meeting the slowdown SLOs (``serving.largest_rate``, 6 bisections by default)."""
    return largest_rate(
        lambda rate: meets_slowdown_slo(inputs, rate), inputs.get("start_rate", 1.0), inputs.get("iterations", 6)
    )


def slowdown_capacity(fig: dict) -> tuple[list[Pair], str]:
    found: dict[str, float] = {}

    def capacity(inputs: dict) -> float:
        key = json.dumps(inputs, sort_keys=True)
        if key not in found:
            found[key] = slowdown_capacity_rps(inputs)
        return found[key]

    sides = _sides(fig)
    pairs = [(capacity(b), capacity(t)) for b, t, _ in sides]
    note = "; ".join(f"{c.get('label', i)}: {b:.3g} vs {t:.3g} req/s" for i, ((b, t), (_, _, c)) in
                     enumerate(zip(pairs, sides, strict=True)))  # fmt: skip
    return pairs, note


RUNNERS = {"slowdown_capacity": slowdown_capacity}
