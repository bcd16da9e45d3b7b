"""Time of the fine-tuning levers (see ``fathom.training.finetune`` for the memory side and the sources).

- LoRA/QLoRA skip the base weights' weight-gradient GEMMs (the LM head's too: it is frozen) but run the adapters'
  GEMMs: x@A and (xA)@B forward, and for each an input-gradient and a weight-gradient GEMM backward. These are
  skinny (one side is the rank), so the GEMM model's wave and tile terms price them far below peak.
- QLoRA dequantises each NF4 weight to bf16 before its GEMM, forward and again for the input gradient: a
  memory-bound pass reading 4.127 bits and writing 16 bits per weight.
- Frozen leading layers run forward only; the per-layer average backward is scaled by the trainable share.
- GaLore's step adds two projection GEMMs per matrix (P^T G and P R) and an SVD of each gradient matrix every
  ``GALORE_UPDATE_GAP`` steps, amortised. The thin SVD costs about 6 a b^2 + 20 b^3 flops for an a x b matrix
  (a >= b; Golub & Van Loan, Matrix Computations, R-SVD), priced at the device's fp32 GEMM rate: a lower bound,
  as Householder bidiagonalisation is partly matrix-vector work.
- QLoRA's paged optimizer leaves on the host whatever part of the optimizer states does not fit, and moves that
  part to the GPU and back once per step over the host link.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from fathom.costmodel.kernels import gemm_s, memory_bound_s
from fathom.specs.hardware import Cluster, DeviceSpec
from fathom.specs.model import ModelSpec
from fathom.specs.plan import TRAIN_PRECISIONS
from fathom.training.compute import LayerCompute, _gemm_set
from fathom.training.finetune import (
    _QLORA,
    GALORE_UPDATE_GAP,
    NF4_BITS,
    _targeted,
    block_matrices,
    galore_plans,
    trainable_layer_fraction,
)
from fathom.training.plans import PlanArrays
from fathom.training.shapes import PlanShapes

_FP32 = TRAIN_PRECISIONS.index("fp32")


def finetune_compute(model: ModelSpec, dev: DeviceSpec, p: PlanArrays, s: PlanShapes, c: LayerCompute) -> LayerCompute:
    """The per-layer compute of full training, adjusted for adapters, dequantisation and frozen layers."""
    lora = p.finetune > 0
    live = trainable_layer_fraction(p, s)
    if not lora.any() and np.all(live == 1.0):
        return c
    gemm_bwd = c.gemm_bwd - np.where(lora, c.gemm_wgrad, 0.0)
    head_bwd = c.head_bwd - np.where(lora, c.head_wgrad, 0.0)
    adapter_f = adapter_b = dequant_f = ops = 0.0
    if lora.any():
        r = p.lora_rank.astype(float)
        qlora = p.finetune == _QLORA
        dq_bytes = dq_kernels = 0.0
        for m in block_matrices(model, p, s):
            rows = s.tokens * m.rows
            f, b, _ = _gemm_set(dev, p.precision, [(rows, r, m.k, m.count), (rows, m.n, r, m.count)])
            use = lora & _targeted(m, p)
            adapter_f = adapter_f + m.frac * np.where(use, f, 0.0)
            adapter_b = adapter_b + m.frac * np.where(use, b, 0.0)
            ops = ops + m.frac * np.where(use, 3.0, 0.0)  # two GEMMs and the scaled add
            dq_bytes = dq_bytes + m.frac * m.count * m.k * m.n * (NF4_BITS / 8.0 + 2.0)
            dq_kernels = dq_kernels + m.frac
        dequant_f = np.where(qlora, memory_bound_s(dev, dq_bytes, dq_kernels), 0.0)
        ops = ops + np.where(qlora, dq_kernels, 0.0)
    host_op = dev.efficiency.host_op_us * 1e-6
    return replace(
        c,
        gemm_fwd=c.gemm_fwd + live * adapter_f,
        gemm_bwd=live * (gemm_bwd + adapter_b),
        gemm_wgrad=live * np.where(lora, 0.0, c.gemm_wgrad),
        column_wgrad=live * np.where(lora, 0.0, c.column_wgrad),
        column_dgrad=live * c.column_dgrad,
        attn_bwd=live * c.attn_bwd,
        other_fwd=c.other_fwd + dequant_f,
        other_bwd=live * (c.other_bwd + dequant_f),
        head_bwd=head_bwd,
        head_wgrad=np.where(lora, 0.0, c.head_wgrad),
        host_fwd=c.host_fwd + ops * host_op,
        host_bwd=live * (c.host_bwd + 2.0 * ops * host_op),
    )


def galore_step_s(model: ModelSpec, dev: DeviceSpec, p: PlanArrays, s: PlanShapes) -> np.ndarray:
    """Seconds per optimizer step (before ZeRO sharding) of GaLore's projections and amortised SVDs."""
    galore = galore_plans(p)
    out = np.zeros(len(p))
    if not galore.any():
        return out
    wide = (p.master_weights | (p.precision == _FP32)) & (p.finetune != _QLORA)  # fp32 gradients
    r = p.galore_rank.astype(float)
    svd_rate = dev.peak_flops_per_s("fp32") * dev.efficiency.gemm_fraction("fp32")
    for m in block_matrices(model, p, s):
        big, small = np.maximum(m.k, m.n), np.minimum(m.k, m.n)
        re = np.minimum(r, small)
        proj = {
            prec: gemm_s(dev, prec, re, big, small, m.count) + gemm_s(dev, prec, small, big, re, m.count)
            for prec in ("fp32", "bf16")
        }
        svd = m.count * (6.0 * big * small**2 + 20.0 * small**3) / GALORE_UPDATE_GAP / svd_rate
        out = out + m.frac * (np.where(wide, proj["fp32"], proj["bf16"]) + svd)
    live = s.layers_per_stage * trainable_layer_fraction(p, s)
    return np.where(galore, live * out, 0.0)


def page_optimizer(optimizer: np.ndarray, total: np.ndarray, cluster: Cluster, p: PlanArrays):
    """QLoRA's paged optimizer: (optimizer bytes left on the GPU, seconds per step moving the rest)."""
    qlora = p.finetune == _QLORA
    over = np.clip(total - cluster.device.memory_bytes, 0.0, optimizer)
    paged = np.where(qlora, over, 0.0)
    return optimizer - paged, 2.0 * paged / cluster.device.host_link_bytes_per_s
