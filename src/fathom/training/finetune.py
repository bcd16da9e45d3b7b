"""Fine-tuning levers, per plan: LoRA / QLoRA adapters, frozen leading layers, GaLore and pure 16-bit training.

- LoRA (Hu et al. 2021, arXiv:2106.09685): the base weights are frozen (no gradients, no optimizer states, no
  weight-gradient GEMMs); each targeted ``k x n`` weight gets trainable ``A`` (k x r) and ``B`` (r x n), so the
  layer also runs x@A, (xA)@B forward and their input- and weight-gradient GEMMs backward, and keeps ``xA``
  (t x r) for the backward. The adapters train with fp32 master weights and Adam, like any mixed-precision model.
- QLoRA (Dettmers et al. 2023, arXiv:2305.14314): the frozen linear weights are stored in 4-bit NormalFloat with
  double-quantised constants, 4 + 32/64 -> 4 + 8/64 + 32/(64*256) = 4.127 bits per parameter (Sec. 3); embeddings
  and the LM head stay 16-bit. Every GEMM first dequantises its weight to bf16 (a memory-bound pass, forward and
  again backward) into a transient buffer. Adapters, their gradients and compute are bf16; the paged 32-bit
  optimizer keeps fp32 moments (no master copy) in unified memory, which pages to the host under pressure.
- Frozen leading layers: no gradients or optimizer states, and, lying below the lowest trainable layer, no
  backward at all (so no stored activations either). With pipeline stages the least-frozen stage (the last)
  sets the peak, so the frozen count on it is ``clip(F - (pp - 1) * layers_per_stage, 0, layers_per_stage)``.
- GaLore (Zhao et al. 2024, arXiv:2403.03507): each attention/MLP matrix's gradient is projected to rank r; Adam
  keeps moments of the ``r x max(k, n)`` projected gradient plus the ``min(k, n) x r`` projector (Sec. 4: mn + mr
  + 2nr in all), refreshed by an SVD every ``GALORE_UPDATE_GAP`` steps (amortised). Other parameters use plain
  (8-bit) Adam. Per-layer weight updates (Sec. 5, after Lv et al. 2023) step each layer as soon as its gradient
  exists, so only one layer's full gradient is alive; as in the reference code, nothing accumulates across
  micro-batches: the optimizer runs in every backward pass (``fathom.training.step_time`` charges it m times).
- ``master_weights=False`` is pure 16-bit training: 16-bit gradients and optimizer moments, no fp32 master copy
  (GaLore's "BF16 baseline": 2 + 2 + 4 bytes per parameter with Adam).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fathom.specs.model import ModelSpec
from fathom.specs.plan import FINETUNES, LORA_TARGETS, OPTIMIZERS, TRAIN_PRECISIONS
from fathom.training.plans import PlanArrays
from fathom.training.shapes import PlanShapes

NF4_BITS = 4.127  # QLoRA Sec. 3: NF4, blocksize 64, double-quantised fp32 constants (8-bit, blocksize 256)
GALORE_UPDATE_GAP = 200.0  # steps between projector SVDs (GaLore Sec. 5: subspace change frequency T = 200)
# Optimizer state bytes per parameter in pure 16-bit training (moments in the 16-bit type, no master copy):
# Adam m and v; 8-bit Adam's blockwise 8-bit m and v (Dettmers et al. 2022); Adafactor's momentum and factored
# second moment; SGD momentum. GaLore's unprojected parameters use Adam or 8-bit Adam.
PURE_16BIT_STATE_BYTES = {"adamw": 4.0, "adam-8bit": 2.0, "adafactor": 4.0, "sgd": 2.0, "galore": 4.0,
                          "galore-8bit": 2.0}  # fmt: skip
GALORE_MOMENT_BYTES = {"galore": None, "galore-8bit": 1.0}  # None: the training's own state width (4 or 2)
_GALORE = (OPTIMIZERS.index("galore"), OPTIMIZERS.index("galore-8bit"))
_QLORA = FINETUNES.index("qlora")


@dataclass(frozen=True)
class Matrix:
    """One kind of block weight ``k x n`` (local to a GPU), ``count`` of them in ``frac`` of the layers; GEMM rows
    are ``rows`` x the micro-batch's tokens (routed experts see only their share)."""

    k: object
    n: object
    count: object = 1.0
    frac: float = 1.0
    attention: bool = False
    rows: object = 1.0


def block_matrices(model: ModelSpec, p: PlanArrays, s: PlanShapes) -> list[Matrix]:
    """The linear weights of an average transformer layer as one GPU holds them (TP/EP sharded)."""
    tp, ep = p.tp.astype(float), p.ep.astype(float)
    h = model.hidden_size
    if model.mla is not None:
        from fathom.training.compute import _attention_gemms

        mats = [Matrix(k, n, attention=True) for _, n, k, _ in _attention_gemms(model, 1.0, tp)]
    else:
        q, kv = model.num_heads * model.head_dim / tp, np.maximum(model.num_kv_heads / tp, 1.0) * model.head_dim
        mats = [Matrix(h, q, attention=True), Matrix(h, kv, 2.0, attention=True), Matrix(q, h, attention=True)]
    ups = 2.0 if model.gated_mlp else 1.0
    fr = s.moe_fraction
    if fr < 1.0:
        ffn = model.ffn_size / tp
        mats += [Matrix(h, ffn, ups, 1.0 - fr), Matrix(ffn, h, 1.0, 1.0 - fr)]
    if model.moe is not None:
        moe = model.moe
        local = moe.num_experts / ep
        rows = moe.top_k * (s.tokens_sp / s.tokens) / local
        eff = moe.expert_ffn_size
        mats += [Matrix(h, eff, ups * local, fr, rows=rows), Matrix(eff, h, local, fr, rows=rows)]
        if moe.num_shared_experts:
            sff = moe.shared_ffn_size * moe.num_shared_experts / tp
            mats += [Matrix(h, sff, ups, fr), Matrix(sff, h, 1.0, fr)]
    return mats


def galore_plans(p: PlanArrays) -> np.ndarray:
    """Plans that train with GaLore's per-layer updates."""
    return np.isin(p.optimizer, _GALORE) & (p.finetune == 0)


def frozen_in_stage(p: PlanArrays, s: PlanShapes) -> np.ndarray:
    """Frozen layers on the least-frozen (peak) pipeline stage."""
    lps = s.layers_per_stage
    return np.clip(p.frozen_layers - (p.pp - 1.0) * lps, 0.0, lps)


def trainable_layer_fraction(p: PlanArrays, s: PlanShapes) -> np.ndarray:
    """Share of the peak stage's layers that run a backward pass."""
    lps = s.layers_per_stage
    return (lps - frozen_in_stage(p, s)) / lps


def _targeted(m: Matrix, p: PlanArrays) -> np.ndarray:
    return (p.lora_targets == LORA_TARGETS.index("all-linear")) | m.attention


def adapter_params_per_layer(model: ModelSpec, p: PlanArrays, s: PlanShapes) -> np.ndarray:
    """LoRA A and B parameters of one average layer on one GPU (zero for full training)."""
    r = p.lora_rank.astype(float)
    total = sum(m.frac * m.count * r * (m.k + m.n) * _targeted(m, p) for m in block_matrices(model, p, s))
    return np.where(p.finetune > 0, total, 0.0)


def adapter_activation_bytes(model: ModelSpec, p: PlanArrays, s: PlanShapes) -> np.ndarray:
    """Per layer and micro-batch: the stored x@A (t x r) of every adapter, needed for B's gradient."""
    r = p.lora_rank.astype(float)
    mats = block_matrices(model, p, s)
    per_token = sum(m.frac * m.count * m.rows * r * _targeted(m, p) for m in mats)
    kept = (p.finetune > 0) & (p.recompute != 2)  # full recomputation keeps only each layer's input
    return np.where(kept, s.tokens * per_token * s.act_bytes, 0.0)


@dataclass(frozen=True)
class ParameterBytes:
    """Bytes per GPU on the peak rank before ZeRO sharding, and the parameters the optimizer updates."""

    weights: np.ndarray
    gradients: np.ndarray
    optimizer: np.ndarray
    adapters: np.ndarray
    trainable: np.ndarray
    step_bytes_per_param: np.ndarray  # HBM bytes the optimizer step moves per trainable parameter
    galore_extra: np.ndarray  # low-rank state bytes (read and written every step) of GaLore plans


def _galore_terms(model: ModelSpec, p: PlanArrays, s: PlanShapes, master: np.ndarray):
    """Per trainable layer: projected parameters and low-rank state bytes."""
    r = p.galore_rank.astype(float)
    own = np.where(master, 4.0, 2.0)
    mom = np.where(p.optimizer == _GALORE[1], 1.0, own)
    proj = np.where(master, 4.0, 2.0)  # the projector takes the parameters' dtype
    params = state = 0.0
    for m in block_matrices(model, p, s):
        big, small = np.maximum(m.k, m.n), np.minimum(m.k, m.n)
        re = np.minimum(r, small)
        w = m.frac * m.count
        params = params + w * m.k * m.n
        state = state + w * (2.0 * re * big * mom + re * small * proj)
    return params, state


def parameter_bytes(model: ModelSpec, p: PlanArrays, s: PlanShapes) -> ParameterBytes:
    from fathom.training.memory import GRAD_BYTES, OPTIMIZER_STATE_BYTES
    from fathom.training.step_time import OPTIMIZER_STEP_BYTES

    lps, layer, stage = s.layers_per_stage, s.layer_params_local, s.stage_params_local
    live = lps - frozen_in_stage(p, s)
    ends = stage - lps * layer
    embed_frozen = (p.frozen_layers > 0) & (p.pp == 1) & (not model.tied_embeddings)
    full_trainable = stage - (lps - live) * layer - np.where(embed_frozen, ends - s.head_params_local, 0.0)
    lora, qlora = p.finetune > 0, p.finetune == _QLORA
    fp32 = p.precision == TRAIN_PRECISIONS.index("fp32")
    master = p.master_weights & ~fp32 & ~qlora  # fp32 training has no separate copy; QLoRA keeps bf16 adapters
    mixed_state = np.array([OPTIMIZER_STATE_BYTES[o] for o in OPTIMIZERS])[p.optimizer]
    pure_state = np.array([PURE_16BIT_STATE_BYTES[o] for o in OPTIMIZERS])[p.optimizer]
    state = np.select([fp32 | qlora, master], [mixed_state - 4.0, mixed_state], pure_state)
    grad = np.where(fp32 | master, GRAD_BYTES, 2.0)  # fp32 main gradients unless pure 16-bit / QLoRA
    weight = np.where(fp32, 4.0, 2.0)
    # Adapter and QLoRA terms only where a plan uses them: a search prices millions of full-training plans.
    adapters = live * adapter_params_per_layer(model, p, s) if lora.any() else np.zeros_like(full_trainable)
    trainable = np.where(lora, adapters, full_trainable)
    weights = stage * weight
    if qlora.any():
        mats = block_matrices(model, p, s)
        biggest = np.maximum.reduce([np.broadcast_to(m.k * m.n, lps.shape) for m in mats])
        weights = np.where(qlora, lps * layer * NF4_BITS / 8.0 + ends * 2.0 + biggest * 2.0, weights)
    gradients = trainable * grad
    optimizer = trainable * state
    table_step = np.array([OPTIMIZER_STEP_BYTES[o] for o in OPTIMIZERS])[p.optimizer]
    step = np.where(master | fp32, table_step, 2.0 * (state + weight) + grad)  # pure: weights and states r/w
    extra = np.zeros_like(trainable)
    galore = galore_plans(p)
    if galore.any():
        proj_params, low_state = _galore_terms(model, p, s, master)
        unprojected = trainable - live * proj_params
        master_bytes = np.where(master, 4.0, 0.0)
        optimizer = np.where(galore, unprojected * state + live * (proj_params * master_bytes + low_state), optimizer)
        gradients = np.where(galore, layer * grad, gradients)  # the one layer being updated
        # projected parameters: read the gradient, update the (master) weights; the low-rank states separately
        proj_step = grad + np.where(master, 8.0 + 2.0, 2.0 * weight)
        share = np.divide(live * proj_params, trainable, out=np.zeros_like(trainable), where=trainable > 0)
        step = np.where(galore, (1.0 - share) * step + share * proj_step, step)
        extra = np.where(galore, 2.0 * live * low_state, 0.0)
    adapter_weights = np.where(lora, adapters * 2.0, 0.0)  # bf16 adapters; the fp32 master is optimizer state
    return ParameterBytes(weights, gradients, optimizer, adapter_weights, trainable, step, extra)
