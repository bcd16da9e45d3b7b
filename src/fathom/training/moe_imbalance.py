"""Dropless MoE routing: the busiest expert-parallel rank sets the pace of every MoE layer.

Without token dropping or forced balance, a trained router sends each EP rank a different number of token copies.
The dispatch all-to-all completes when the busiest rank has received its copies, and the combine waits for that
rank's expert GEMMs, so every MoE layer runs at the busiest rank's load: the mean load times the model's
``moe.dropless_ep_imbalance`` (busiest / mean for a trained router: FEPLB, arXiv:2604.19654; DODOCO,
arXiv:2605.20982, finds it nearly independent of the EP degree). ``balanced`` routing (Megatron-Core's
``--moe-router-force-load-balancing``, its benchmark mode) prices every rank at the mean. The busiest rank's
expert work is the mean rank's scaled by the load: a few more rows per expert change a grouped GEMM's efficiency
little.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from fathom.specs.model import ModelSpec
from fathom.specs.plan import MOE_ROUTINGS
from fathom.training.communication import LayerComm
from fathom.training.compute import LayerCompute
from fathom.training.plans import PlanArrays


def ep_load_factor(model: ModelSpec, p: PlanArrays) -> np.ndarray:
    """Busiest EP rank's routed tokens over the mean, per plan (1 where balanced, dense or without EP)."""
    if model.moe is None:
        return np.ones(len(p))
    dropless = (p.moe_routing == MOE_ROUTINGS.index("dropless")) & (p.ep > 1)
    return np.where(dropless, model.moe.dropless_ep_imbalance, 1.0)


def with_dropless_imbalance(
    model: ModelSpec, p: PlanArrays, c: LayerCompute, comm: LayerComm
) -> tuple[LayerCompute, LayerComm]:
    """The busiest EP rank's per-layer compute and EP traffic under the plan's routing."""
    load = ep_load_factor(model, p)
    extra = load - 1.0
    if not np.any(extra > 0):
        return c, comm
    c = replace(
        c,
        gemm_fwd=c.gemm_fwd + extra * c.expert_gemm_fwd,
        gemm_bwd=c.gemm_bwd + extra * c.expert_gemm_bwd,
        gemm_wgrad=c.gemm_wgrad + extra * c.expert_gemm_wgrad,
        other_fwd=c.other_fwd + extra * c.expert_mem_fwd,
        other_bwd=c.other_bwd + extra * c.expert_mem_bwd,
        expert_gemm_fwd=load * c.expert_gemm_fwd,
        expert_gemm_bwd=load * c.expert_gemm_bwd,
        expert_gemm_wgrad=load * c.expert_gemm_wgrad,
        expert_mem_fwd=load * c.expert_mem_fwd,
        expert_mem_bwd=load * c.expert_mem_bwd,
    )
    # Dispatch and combine finish when the busiest rank has received (and returned) its copies.
    return c, replace(comm, ep_fwd=load * comm.ep_fwd, ep_bwd=load * comm.ep_bwd)
