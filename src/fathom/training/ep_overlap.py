"""Exposed EP all-to-all under Megatron-Core's combined-1F1B overlap (``--overlap-moe-expert-parallel-comm``).

The schedule pairs one micro-batch's forward with another's backward layer by layer and runs each one's dispatch
and combine on a communication stream under the other's attention and MLP compute (Megatron-Core
``pipeline_parallel/combined_1f1b.py``; DeepSeek-V3's DualPipe, arXiv:2412.19437 Sec. 3.2.1). Two things keep it
from hiding all the traffic:

- Only steady-state passes have a partner. The warm-up forwards and the cool-down backwards of the first pipeline
  stage, ``(pp - 1) * 2 + (v - 1) * pp`` chunk passes of its ``m * v`` with interleaving and ``pp - 1`` of ``m``
  without (Megatron-Core ``get_num_warmup_microbatches``), run their all-to-alls exposed.
- The communication kernels occupy streaming multiprocessors while they run: DeepEP-style dispatch needs
  ``EP_COMM_SMS`` = 20 of a Hopper GPU's 132 SMs to saturate NVLink and InfiniBand (DeepSeek-V3 report
  Sec. 3.2.2; Megatron-Core's ``moe_deepep_num_sms`` default), so the compute under them runs that much slower.
"""

from __future__ import annotations

import numpy as np

from fathom.specs.plan import SCHEDULES
from fathom.training.plans import PlanArrays

EP_COMM_SMS = 20.0
HOPPER_SMS = 132.0  # H100 / H800 SXM; fathom uses the same share on other GPUs
EP_COMM_SM_SHARE = EP_COMM_SMS / HOPPER_SMS


def unpaired_share(p: PlanArrays, micro_batches: np.ndarray) -> np.ndarray:
    """Share of the first stage's chunk passes that run in the warm-up or cool-down, without a partner pass."""
    pp = p.pp.astype(float)
    interleaved = p.schedule == SCHEDULES.index("interleaved")
    chunks = np.where(interleaved, p.vpp, 1).astype(float)
    warmup = np.where(interleaved, (pp - 1.0) * 2.0 + (chunks - 1.0) * pp, pp - 1.0)
    return np.clip(warmup / np.maximum(micro_batches * chunks, 1.0), 0.0, 1.0)


def exposed_ep_s(p: PlanArrays, micro_batches, ep_total, compute) -> np.ndarray:
    """Per-layer EP seconds left on the critical path (``ep_total`` forward + backward, ``compute`` likewise).

    Plans without the overlap expose it all. With it, the unpaired share is exposed; of the paired rest, what the
    partner's compute cannot cover, plus the compute slowed by the SMs the overlapped traffic holds.
    """
    u = unpaired_share(p, np.asarray(micro_batches, dtype=float))
    paired = (1.0 - u) * ep_total
    hidden = np.minimum(paired, compute)
    overlapped = u * ep_total + (paired - hidden) + EP_COMM_SM_SHARE * hidden
    return np.where(p.overlap_moe_comm, overlapped, ep_total)
