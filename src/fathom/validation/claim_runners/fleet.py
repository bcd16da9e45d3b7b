"""Fleet claims: the cost of a mixed-GPU serving fleet against single-GPU-type fleets (Melange, Griggs et al. 2024).

Each side is ``fathom plan serve``'s search (``fathom.api.search.search_serving_deployments``): the baseline
searches one GPU type alone, the technique all types together and keeps the cheaper of the best single-type
deployment and the heterogeneous fleet (``fathom.search.fleet``). Prices, SLOs and length distributions come from
the claim entry; the capacity of every candidate is simulated with the same defaults as ``fathom serve``.
"""

from __future__ import annotations

from fathom.api.search import search_serving_deployments
from fathom.search.serving_space import ServingAxes
from fathom.validation.claim_runners.common import Pair


def _cheapest_usd_per_hour(fig: dict, gpus: list[str], rate: float) -> tuple[float, str]:
    """USD/hour of the cheapest deployment (or mixed fleet) of ``gpus`` meeting the figure's SLOs at ``rate``."""
    axes = ServingAxes(
        tp=tuple(fig.get("tp", [1])),
        pp=(1,),
        precision=tuple(fig.get("precision", ["bf16"])),
        disaggregate=False,
    )
    result = search_serving_deployments(
        model=fig["model"],
        gpus=gpus,
        slo_ttft_s=fig["slo"]["ttft_s"],
        slo_tpot_s=fig["slo"]["tpot_s"],
        percentile=fig["slo"]["percentile"],
        rate=rate,
        input_len=fig["input_len"],
        output_len=fig["output_len"],
        num_requests=fig.get("num_requests"),
        axes=axes,
        prices={g: usd for g, usd in fig["prices"].items() if g in gpus},
        top=1,
    )
    if not result.feasible:
        return float("nan"), "infeasible"
    best = result.deployments[0]
    cost, picked = best.cost_per_hour, f"{best.replicas}x {best.gpu}"
    fleet = result.fleet
    if fleet is not None and fleet.meets_slo and fleet.cost_per_hour < cost:
        cost, picked = fleet.cost_per_hour, " + ".join(f"{p.replicas}x {p.gpu}" for p in fleet.parts)
    return cost, picked


def fleet_cost(fig: dict) -> tuple[list[Pair], str]:
    """Per rate and per single-type baseline: (the baseline fleet's USD/hour, the mixed search's USD/hour)."""
    pairs, notes = [], []
    for rate in fig["rates"]:
        mixed, picked = _cheapest_usd_per_hour(fig, list(fig["gpus"]), rate)
        notes.append(f"{rate:g} req/s: {picked} ${mixed:.2f}/h")
        for gpu in fig["baselines"]:
            single, _ = _cheapest_usd_per_hour(fig, [gpu], rate)
            if single == single:  # a type that cannot meet the SLOs at all is no baseline
                pairs.append((single, mixed))
    return pairs, "; ".join(notes)


RUNNERS = {"fleet_cost": fleet_cost}
