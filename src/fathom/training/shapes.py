"""Per-plan quantities every estimator needs: tokens per rank, layers per stage, parameters per GPU."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fathom.specs.hardware import Cluster
from fathom.specs.model import ModelSpec
from fathom.specs.plan import TRAIN_PRECISIONS
from fathom.training.plans import PlanArrays

ACT_BYTES = 2.0  # activations stay 16-bit even when GEMMs run in fp8 (Micikevicius et al. 2022)


@dataclass(frozen=True)
class PlanShapes:
    """Derived sizes, one array entry per plan (floats so they broadcast through the cost model)."""

    tokens: np.ndarray  # tokens of one micro-batch held by one CP rank (GEMM rows): b * s / cp
    tokens_sp: np.ndarray  # tokens each TP rank normalises (divided by tp under sequence parallelism)
    layers_per_stage: np.ndarray  # on the fullest pipeline rank
    moe_fraction: float  # share of layers that are MoE
    micro_batches: np.ndarray  # gradient-accumulation steps per optimizer step
    layer_params_local: np.ndarray  # parameters of one average layer held by one GPU (TP and EP sharded)
    dense_params_local: np.ndarray  # the non-expert part of those (sharded by TP only)
    stage_params_local: np.ndarray  # parameters on the fullest pipeline rank (incl. embedding or head)
    embed_params_local: np.ndarray
    head_params_local: np.ndarray
    act_bytes: np.ndarray  # bytes per stored activation element: 4 when training in fp32, else 2


def plan_shapes(model: ModelSpec, cluster: Cluster, p: PlanArrays) -> PlanShapes:
    f = lambda a: np.asarray(a, dtype=float)  # noqa: E731
    tp, pp, cp, ep, dp = f(p.tp), f(p.pp), f(p.cp), f(p.ep), f(p.dp)
    tokens = f(p.micro_batch) * f(p.seq_len) / cp
    tokens_sp = np.where(p.sequence_parallel & (p.tp > 1), tokens / tp, tokens)
    layers = np.ceil(model.num_layers / pp)
    moe_fraction = model.num_moe_layers / model.num_layers
    expert = float(model.expert_params_per_layer)
    moe_nonexpert = float(model.moe_layer_params) - expert if model.is_moe else 0.0
    dense_avg = (1 - moe_fraction) * model.dense_layer_params + moe_fraction * moe_nonexpert
    dense_local = dense_avg / tp
    layer_local = dense_local + moe_fraction * expert / ep  # experts: EP shards them, no expert TP
    embed_local = model.embedding_params / tp
    head_local = model.lm_head_params / tp if not model.tied_embeddings else model.vocab_size * model.hidden_size / tp
    # With a single stage both ends live on one GPU; otherwise the heavier end decides the peak.
    ends = np.where(
        pp > 1,
        np.maximum(embed_local, head_local),
        embed_local + (0 if model.tied_embeddings else head_local),
    )
    stage_local = layers * layer_local + ends
    return PlanShapes(
        tokens=tokens,
        tokens_sp=tokens_sp,
        layers_per_stage=layers,
        moe_fraction=moe_fraction,
        micro_batches=f(p.global_batch) / (f(p.micro_batch) * dp),
        layer_params_local=layer_local,
        dense_params_local=dense_local,
        stage_params_local=stage_local,
        embed_params_local=np.broadcast_to(embed_local, tp.shape),
        head_params_local=np.broadcast_to(head_local, tp.shape),
        act_bytes=np.where(p.precision == TRAIN_PRECISIONS.index("fp32"), 4.0, ACT_BYTES),
    )
