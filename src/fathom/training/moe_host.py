"""Host ops a Megatron-Core MoE layer issues per forward pass, and what CUDA graphs leave of them.

A step cannot run faster than the host issues its kernels (``fathom.training.step_time`` takes the larger of a
layer's GPU time and its host time). Fine-grained MoE layers issue many small kernels, and NVIDIA measured its
DeepSeek-V3 GB200 baseline to be host-bound ("Optimizing DeepSeek-V3 Training Performance on NVIDIA GB200 NVL72",
Megatron-LM docs/discussions/deepseek-v3-gb200-optimization, Sec. 2). Its kernel counts:

* the router (routing map, top-k, aux-loss bookkeeping) with the all-to-all dispatcher: 72 kernels, 31 with
  ``--moe-router-fusion`` (Sec. 2.1.4);
* with DeepEP's flex dispatcher, whose EP preprocessing is one fused kernel, router plus preprocessing: 17 kernels,
  measured with router fusion on (Sec. 2.2.1). Without router fusion fathom adds back the 41 kernels that fusion
  removes (inferred: the fused kernels are the router's own, whatever the dispatcher);
* ``--cuda-graph-scope attn moe_router moe_preprocess`` replays the attention, the router, the EP preprocessing and
  the shared experts as graphs (Sec. 2.3); the routed experts stay eager (dynamic shapes). A graphed region costs
  one host op per pass.

Each of these kernels is issued from Python through PyTorch, as fathom's other counted ops are, so each costs
``host_op_us``. The routed experts' grouped GEMM is Transformer Engine's GroupedLinear, whose
``general_grouped_gemm`` loops over the local experts in C++ and launches one cuBLAS GEMM each (multi-stream; TE
transformer_engine/pytorch/module/grouped_linear.py; "multi-stream + cuBLAS", Sec. 1 item 3): one Python op per
grouped linear, plus per local expert a kernel launch without the Python/PyTorch dispatch, priced at the device's
``kernel_launch_us``. Backward issues twice the forward's ops (input and weight gradient per GEMM; autograd's
other ops, as ``fathom.training.compute`` counts them).

Ops the sources do not count keep fathom's earlier per-kernel count: permute and unpermute, the dispatch and
combine collectives, the expert activation and the shared experts' GEMMs.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fathom.specs.model import MoESpec
from fathom.specs.plan import CUDA_GRAPHS, MOE_DISPATCHERS
from fathom.training.plans import PlanArrays

ROUTER_KERNELS_UNFUSED = 72  # all-to-all dispatcher, no router fusion (Sec. 2.1.4)
ROUTER_KERNELS_FUSED = 31  # the same with --moe-router-fusion (Sec. 2.1.4)
FLEX_ROUTER_PREPROCESS_FUSED = 17  # DeepEP flex dispatcher, router fusion on: router + EP preprocess (Sec. 2.2.1)
PERMUTE_OPS = 2  # permute before the experts, unpermute after (fathom's per-kernel count)
EP_COMM_OPS = 2  # dispatch and combine
GROUPED_LINEARS = 2  # fc1 and fc2 of the routed experts, each one Python op with one GEMM per local expert
EXPERT_ACTIVATION_OPS = 1
SHARED_EXPERT_GEMMS = 2


@dataclass(frozen=True)
class MoEHostOps:
    """Forward ops of one MoE block (arrays over plans): Python-issued ops and C++-issued kernel launches."""

    python_ops: np.ndarray
    cpp_launches: np.ndarray

    def forward_seconds(self, host_op_us: float, kernel_launch_us: float) -> np.ndarray:
        """Host seconds to issue the block's forward (the caller doubles the layer's total for the backward)."""
        return (self.python_ops * host_op_us + self.cpp_launches * kernel_launch_us) * 1e-6


def router_preprocess_kernels(p: PlanArrays) -> np.ndarray:
    """Kernels of the router and the dispatcher's EP preprocessing, per forward (sourced counts above)."""
    fused = p.moe_router_fusion.astype(bool)
    saved_by_fusion = ROUTER_KERNELS_UNFUSED - ROUTER_KERNELS_FUSED
    alltoall = np.where(fused, ROUTER_KERNELS_FUSED, ROUTER_KERNELS_UNFUSED)
    flex = np.where(fused, FLEX_ROUTER_PREPROCESS_FUSED, FLEX_ROUTER_PREPROCESS_FUSED + saved_by_fusion)
    return np.where(p.moe_dispatcher == MOE_DISPATCHERS.index("deepep"), flex, alltoall)


def graphs_capture_router(p: PlanArrays) -> np.ndarray:
    """Whether the router, EP preprocessing and shared experts run as one replayed graph."""
    return p.cuda_graphs == CUDA_GRAPHS.index("attn-moe-router")


def graphs_capture_attention(p: PlanArrays) -> np.ndarray:
    return np.isin(p.cuda_graphs, [CUDA_GRAPHS.index("attn"), CUDA_GRAPHS.index("attn-moe-router")])


def graphs_capture_layer(p: PlanArrays) -> np.ndarray:
    return p.cuda_graphs == CUDA_GRAPHS.index("full")


def collapse(ops, captured: np.ndarray) -> np.ndarray:
    """A region's ops, or the single graph launch that replaces them when it is captured (never more)."""
    ops = np.asarray(ops, dtype=float)
    return np.where(captured, np.minimum(ops, 1.0), ops)


def moe_block_ops(moe: MoESpec, p: PlanArrays) -> MoEHostOps:
    """Forward host ops of the MoE block that replaces a dense MLP: router and preprocessing (graphable with the
    shared experts), permutation, EP collectives, the grouped expert GEMMs and their activation."""
    shared = SHARED_EXPERT_GEMMS if moe.num_shared_experts else 0
    static = collapse(router_preprocess_kernels(p) + shared, graphs_capture_router(p))
    python_ops = static + PERMUTE_OPS + EP_COMM_OPS + GROUPED_LINEARS + EXPERT_ACTIVATION_OPS
    local_experts = moe.num_experts / p.ep.astype(float)
    return MoEHostOps(python_ops=python_ops, cpp_launches=GROUPED_LINEARS * local_experts)
