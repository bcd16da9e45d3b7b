"""Power claims: how many more servers a power budget holds when servers are provisioned for the peak power
they draw serving, under a cap, instead of their nameplate (POLCA, Patel et al. 2024, arXiv:2308.12908).

One replica per server is simulated with its cost model wrapped in ``fathom.energy.serving_power``; the baseline
provisions each GPU at its TDP, the technique at the peak windowed power it drew, enforced by a power cap at that
level (the cap's throughput cost is reported in the note). Host power is a fixed share of server power
(``data/power.yaml``), so the server-level ratio equals the GPU-level one.
"""

from __future__ import annotations

import numpy as np

from fathom.catalog.hardware import resolve_cluster
from fathom.catalog.models import get_model
from fathom.energy.serving_power import IterationPower, PowerMeteredCost, cluster_peak_w
from fathom.inference.step_model import InferenceStepModel
from fathom.serving.simulator import ReplicaConfig, simulate
from fathom.serving.workload import generate_requests, parse_length_dist
from fathom.specs.serving import ServingPlan
from fathom.validation.claim_runners.common import Pair


def _serve(fig: dict, cap_w: float | None, seed: int = 0) -> tuple[PowerMeteredCost, IterationPower, float]:
    """Simulate the figure's load on one server (one replica); its metered cost model, its iterations' power with
    their start times, and its requests' mean end-to-end latency (s)."""
    model = get_model(fig["model"])
    cluster = resolve_cluster(fig["gpu"], fig["tp"])
    plan = ServingPlan(tp=fig["tp"], weight_dtype=fig.get("precision", "bf16"))
    cost = PowerMeteredCost(InferenceStepModel(model, cluster, plan), power_cap_w=cap_w)
    rng = np.random.default_rng(seed)
    requests = generate_requests(
        arrival="poisson",
        rate=fig["rate"],
        num_requests=fig["num_requests"],
        duration_s=None,
        cv=1.0,
        input_dist=parse_length_dist(fig["input_len"], "input length"),
        output_dist=parse_length_dist(fig["output_len"], "output length"),
        rng=rng,
    )
    config = ReplicaConfig(cost=cost, scheduler=fig.get("scheduler", "continuous"), max_batch=fig.get("max_batch", 256))
    result = simulate(requests, [config], seed=seed)
    done = [r for r in result.requests if r.finished_s is not None]
    iterations = cost.iterations().with_starts(result.replicas[0].timeseries)
    return cost, iterations, float(np.mean([r.finished_s - r.arrival_s for r in done]))


def oversubscription(fig: dict) -> tuple[list[Pair], str]:
    """(servers per watt at nameplate, servers per watt at the group's peak): their ratio is the extra servers."""
    runs = [_serve(fig, None, seed) for seed in range(fig["servers"])]
    profile, latency = runs[0][0].profile, runs[0][2]
    gpus = fig["tp"]
    group_peak = cluster_peak_w([r[1] for r in runs], profile.idle_w, fig["window_s"], gpus)
    per_gpu = group_peak / (fig["servers"] * gpus)
    _, _, capped_latency = _serve(fig, per_gpu, 0)
    loss = (capped_latency / latency - 1.0) * 100.0
    note = (f"{fig['servers']} servers peak at {per_gpu:.0f} W per GPU of a {profile.tdp_w:.0f} W TDP over "
            f"{fig['window_s']:g} s windows; a static per-GPU cap there adds {loss:.1f}% to mean end-to-end latency "
            "(an upper bound: POLCA caps only near the budget)")  # fmt: skip
    return [(1.0 / profile.tdp_w, 1.0 / per_gpu)], note


RUNNERS = {"power_oversubscription": oversubscription}
