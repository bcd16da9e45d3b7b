"""A training execution plan: how one model is laid out over a cluster and batched.

Closed choices are Literals; the plan validates only itself here. ``fathom.training.plans.check_plan``
checks it against a model and a cluster (TP divides heads, degrees multiply to the GPU count, ...).
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, PositiveInt, model_validator
from pydantic_core import PydanticCustomError

from fathom.errors import FathomInputError

# zero-bubble / zero-bubble-2p: the handcrafted ZB-H1 / ZB-H2 of Qi et al. 2024; zero-bubble-auto / -auto-2p: their
# automatic ZB-1p / ZB-2p, scheduled from the plan's own F, B, W times (fathom.training.zero_bubble_auto).
Schedule = Literal["1f1b", "interleaved", "zero-bubble", "zero-bubble-2p", "zero-bubble-auto", "zero-bubble-auto-2p"]
Recompute = Literal["none", "selective", "full"]
TrainPrecision = Literal["bf16", "fp16", "fp8", "fp32"]
Optimizer = Literal["adamw", "adam-8bit", "adafactor", "sgd", "galore", "galore-8bit"]
Offload = Literal["none", "cpu", "nvme"]
AttentionKernel = Literal["flash3", "flash2", "flash1", "unfused"]
MoEDispatcher = Literal["alltoall", "deepep"]
MoERouting = Literal["balanced", "dropless"]
CudaGraphs = Literal["none", "attn", "attn-moe-router", "full"]
Zero3Gather = Literal["prefetch", "per-parameter-sync", "backward-post"]
Zero2Comm = Literal["per-step", "per-unit"]
PipelineEngine = Literal["megatron", "deepspeed"]
Finetune = Literal["none", "lora", "qlora"]
LoraTargets = Literal["all-linear", "attention"]

SCHEDULES: tuple[str, ...] = ("1f1b", "interleaved", "zero-bubble", "zero-bubble-2p", "zero-bubble-auto",
                               "zero-bubble-auto-2p")  # fmt: skip
RECOMPUTES: tuple[str, ...] = ("none", "selective", "full")
TRAIN_PRECISIONS: tuple[str, ...] = ("bf16", "fp16", "fp8", "fp32")
OPTIMIZERS: tuple[str, ...] = ("adamw", "adam-8bit", "adafactor", "sgd", "galore", "galore-8bit")
OFFLOADS: tuple[str, ...] = ("none", "cpu", "nvme")
ATTENTION_KERNELS: tuple[str, ...] = ("flash3", "flash2", "flash1", "unfused")
MOE_DISPATCHERS: tuple[str, ...] = ("alltoall", "deepep")
MOE_ROUTINGS: tuple[str, ...] = ("balanced", "dropless")
CUDA_GRAPHS: tuple[str, ...] = ("none", "attn", "attn-moe-router", "full")
ZERO3_GATHERS: tuple[str, ...] = ("prefetch", "per-parameter-sync", "backward-post")
ZERO2_COMMS: tuple[str, ...] = ("per-step", "per-unit")
PIPELINE_ENGINES: tuple[str, ...] = ("megatron", "deepspeed")
FINETUNES: tuple[str, ...] = ("none", "lora", "qlora")
LORA_TARGETS: tuple[str, ...] = ("all-linear", "attention")

# Bounds on the integer plan fields. The vectorised estimator (fathom.training.plans.PlanArrays) holds them as int64
# and multiplies parallel degrees and batch sizes there (tp*pp*dp*cp, micro_batch*dp, pp*vpp), so every value and
# every such product must stay far below 2^63. The bounds are far beyond any real run (2^30-token sequences, 2^24
# GPUs) and keep the products safe: micro_batch*dp <= 2^32 * 2^24 = 2^56, pp*vpp <= 2^48. A value out of range is
# a one-line error naming its flag, from TrainingPlan and from PlanArrays alike (plan_limits_error).
MAX_SEQ_LEN = 2**30  # tokens per sequence
MAX_BATCH = 2**32  # sequences in a global batch or a micro-batch
MAX_TOKENS_PER_STEP = 2**40  # global_batch * seq_len
MAX_GPUS = 2**24  # each parallel degree, and tp*pp*dp*cp (the GPU count)
MAX_PLAN_INT = 2**40  # magnitude of the other integer fields (ranks, layer counts: checked against the model later)
PLAN_INT_RANGES: dict[str, tuple[int, int]] = {
    "seq_len": (1, MAX_SEQ_LEN),
    "global_batch": (1, MAX_BATCH),
    "micro_batch": (1, MAX_BATCH),
    **{degree: (1, MAX_GPUS) for degree in ("tp", "pp", "dp", "cp", "ep", "vpp")},
    "zero": (0, 3),
    **{name: (-MAX_PLAN_INT, MAX_PLAN_INT)
       for name in ("lora_rank", "galore_rank", "frozen_layers", "activation_offload_layers")},
}  # fmt: skip


def _extent(value: object) -> tuple[object, object] | None:
    """(smallest, largest) of a scalar or a column; None for an empty column."""
    if isinstance(value, numbers.Real):
        return value, value
    values = np.asarray(value)  # object dtype for ints past int64: compared exactly
    return (values.min(), values.max()) if values.size else None


def _first_over(bound: int, *factors: object) -> tuple[int, ...] | None:
    """The factors of the first plan whose product exceeds ``bound`` (floats: no overflow), or None."""
    if all(isinstance(f, numbers.Real) for f in factors):
        ints = tuple(int(f) for f in factors)  # Python ints: exact, no overflow
        return ints if math.prod(ints) > bound else None
    arrays = np.broadcast_arrays(*(np.asarray(f, dtype=float) for f in factors))
    over = np.prod(arrays, axis=0) > bound
    if not over.any():
        return None
    i = int(np.argmax(over))
    return tuple(int(a.flat[i]) for a in arrays)


def plan_limits_error(columns: Mapping[str, object]) -> str | None:
    """A one-line message for the first integer plan field (a scalar or a column of plans) outside
    ``PLAN_INT_RANGES``, or a product over its bound; None when every value is in range. Fields left out take
    the plan defaults (in range)."""
    for name, (lo, hi) in PLAN_INT_RANGES.items():
        extent = _extent(columns[name]) if name in columns else None
        if extent is None:
            continue
        low, high = extent
        bad = low if not low >= lo else high if not high <= hi else None  # NaN is bad
        if bad is not None:
            flag = "--" + name.replace("_", "-")
            span = f"-{hi}..{hi}" if lo == -hi else f"{lo}..{hi}"
            whole = isinstance(bad, numbers.Integral) or (isinstance(bad, float) and bad.is_integer())
            shown = int(bad) if whole else bad
            return f"{flag} {shown} is out of range: must be {span}"
    if "global_batch" in columns and "seq_len" in columns:
        over = _first_over(MAX_TOKENS_PER_STEP, columns["global_batch"], columns["seq_len"])
        if over is not None:
            g, s = over
            return (
                f"--global-batch {g} x --seq-len {s} = {g * s} tokens per step: must be at most {MAX_TOKENS_PER_STEP}"
            )
    over = _first_over(MAX_GPUS, *(columns.get(d, 1) for d in ("tp", "pp", "dp", "cp")))
    if over is not None:
        t, p, d, c = over
        return f"tp*pp*dp*cp = {t}*{p}*{d}*{c} = {t * p * d * c} GPUs: must be at most {MAX_GPUS}"
    return None


def check_plan_limits(*, num_gpus: object = None, **fields: object) -> None:
    """Raise a one-line FathomInputError when ``num_gpus`` (the cluster's GPU count) or an integer plan field is out
    of range (``PLAN_INT_RANGES``, ``MAX_GPUS``). For entry points that compute with the user's numbers before any
    TrainingPlan or PlanArrays exists (a search enumerating layouts from --num-gpus and --seq-len)."""
    if num_gpus is not None and (not isinstance(num_gpus, numbers.Integral) or isinstance(num_gpus, bool)):
        raise FathomInputError(f"--num-gpus: expected an integer 1..{MAX_GPUS}, got {num_gpus!r}")
    if num_gpus is not None and not 1 <= num_gpus <= MAX_GPUS:
        raise FathomInputError(f"--num-gpus {num_gpus} is out of range: must be 1..{MAX_GPUS}")
    message = plan_limits_error(fields)
    if message is not None:
        raise FathomInputError(message)


class TrainingPlan(BaseModel):
    """Parallel degrees, batching, memory-saving levers and numerics of one training run.

    ``global_batch`` and ``micro_batch`` count sequences; gradient accumulation is derived as
    ``global_batch / (micro_batch * dp)``. ``vpp`` is the number of model chunks per pipeline rank
    (Narayanan et al. 2021 interleaved 1F1B); 1 means plain 1F1B.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    seq_len: PositiveInt
    global_batch: PositiveInt
    micro_batch: PositiveInt = 1
    tp: PositiveInt = 1
    pp: PositiveInt = 1
    dp: PositiveInt = 1
    cp: PositiveInt = 1
    ep: PositiveInt = 1
    vpp: PositiveInt = 1
    sequence_parallel: bool = True
    zero: int = Field(1, ge=0, le=3)
    schedule: Schedule = "1f1b"
    recompute: Recompute = "selective"
    precision: TrainPrecision = "bf16"
    optimizer: Optimizer = "adamw"
    offload: Offload = "none"
    # Attention kernel class: FlashAttention 1/2/3 (Dao et al. 2022, Dao 2023, Shah et al. 2024) never store the
    # s x s scores; "unfused" is the batched-GEMM + fused-softmax path of 2021-22 Megatron.
    attention: AttentionKernel = "flash2"
    # MoE token dispatch: a flat NCCL all-to-all, or DeepEP-style hierarchical dispatch that sends each token
    # once per destination node and forwards it inside the node (DeepSeek-AI 2024, V3 report Sec. 3.2.2).
    moe_dispatcher: MoEDispatcher = "alltoall"
    overlap_moe_comm: bool = False  # hide EP all-to-all under another micro-batch's compute (DualPipe-style)
    # How the router's token counts land on the EP ranks: "balanced" prices every rank at the mean (an idealised
    # router, Megatron-Core's --moe-router-force-load-balancing benchmark mode); "dropless" lets the trained router's
    # skew through, so the busiest rank's expert GEMMs and all-to-all receives set the pace, by the model's
    # ``moe.dropless_ep_imbalance`` (fathom.training.moe_imbalance).
    moe_routing: MoERouting = "balanced"
    # Host-side levers of Megatron-Core's MoE layer (fathom.training.moe_host). ``moe_router_fusion`` is
    # --moe-router-fusion (default off): Transformer Engine's fused router kernels. ``cuda_graphs`` is the part of
    # each layer replayed as CUDA graphs (--cuda-graph-impl transformer_engine --cuda-graph-scope): "attn" the
    # attention sublayer; "attn-moe-router" also the MoE router, the EP preprocessing and the shared experts
    # (--cuda-graph-scope attn moe_router moe_preprocess); "full" the whole layer (dense models only: dropless MoE
    # layers have dynamic shapes). Default "none", as Megatron's.
    moe_router_fusion: bool = False
    cuda_graphs: CudaGraphs = "none"
    overlap_grad_reduce: bool = True  # DP reduction bucketed under the last backward pass
    # How a ZeRO-3 stack moves parameters: "prefetch" gathers one layer (wrapping unit) at a time ahead of its use,
    # under the previous layer's compute (FSDP, DeepSpeed since 2021); "per-parameter-sync" is DeepSpeed's first
    # ZeRO-3 (v0.3.13, March 2021, runtime/zero/partition_parameters.py): one all-gather and one reduce-scatter per
    # parameter tensor, each gather issued after torch.cuda.synchronize(), so none overlaps compute or each other;
    # "backward-post" is PyTorch FSDP's BackwardPrefetch.BACKWARD_POST (Composer's default): the backward pass's
    # re-gathers are issued after each unit's gradient computation and priced exposed (fathom.training.step_time).
    zero3_gather: Zero3Gather = "prefetch"
    # When a ZeRO-2 stack moves its shards: "per-step" reduce-scatters the gradients and all-gathers the updated
    # parameters once per optimizer step (DeepSpeed ZeRO-2, Megatron's distributed optimizer, in buckets under the last
    # backward); "per-unit" is PyTorch FSDP's SHARD_GRAD_OP, which all-gathers each wrapping unit before its forward
    # and reduce-scatters its gradients after its backward in every micro-batch, keeping the gathered parameters
    # through the backward (no re-gather; torch/distributed/fsdp/api.py, ShardingStrategy). Other ZeRO stages ignore it.
    zero2_comm: Zero2Comm = "per-step"
    # Which pipeline runtime holds the stage outputs: "megatron" (Megatron-LM's schedules free each output's data
    # once sent) or "deepspeed" (DeepSpeed's PipelineEngine running Megatron-DeepSpeed's GPTModelPipe keeps a
    # TP-partitioned copy of every in-flight output, the attention mask and p + 1 loaded micro-batches on the first
    # stage). Memory only: fathom.training.stage_activations.
    pipeline_engine: PipelineEngine = "megatron"
    # Communication overlap of MegaScale (Jiang et al. NSDI'24, arXiv:2402.15627, Sec. 3.2), each also a
    # Megatron-Core/TransformerEngine option: TP/SP all-gathers and reduce-scatters split into chunks and pipelined
    # with the GEMMs they feed or follow (Fig. 3c; TE's --tp-comm-overlap); pipeline sends and receives decoupled and
    # run asynchronously beside compute (Fig. 4; --overlap-p2p-communication); ZeRO parameter all-gathers prefetched
    # per model chunk under the forward pass, leaving 1/(2 vpp) of the DP traffic exposed (--overlap-param-gather).
    # Count the embedding and the LM head as one layer each when splitting layers over pipeline stages, so the first
    # and last stages hold one layer fewer (Megatron-Core --account-for-embedding-in-pipeline-split and
    # --account-for-loss-in-pipeline-split; the k p - 2 layer models of Qi et al. 2024). Needs num_layers + 2 to be a
    # multiple of pp.
    balance_pipeline_ends: bool = False
    overlap_tp_comm: bool = False
    # Megatron-LM's asynchronous TP all-reduce (default on since Feb 2022; --no-async-tensor-model-parallel-allreduce
    # turns it off): in the backward of a column-parallel linear the input-gradient all-reduce runs while the
    # weight-gradient GEMM computes. Without it (Megatron-LM before Sept 2021, DeepSpeed's Megatron forks) the
    # all-reduce is exposed. With sequence parallelism Megatron overlaps its backward reduce-scatter and re-gather the
    # same way (megatron/core/tensor_parallel/layers.py, since March 2022); fathom reads this flag as "the stack has
    # Megatron's asynchronous TP backward collectives" and exposes them all when it is off (e.g. DTensor TP).
    async_tp_allreduce: bool = True
    overlap_p2p_comm: bool = False
    overlap_param_gather: bool = False
    # Megatron-Core activation CPU offloading (--cpu-offloading --cpu-offloading-num-layers N, Megatron-Bridge
    # ``cpu_offloading_num_layers``): the saved activations of a stage's first N layers are copied to host memory
    # during the forward pass and reloaded ahead of their backward, overlapped with the other layers' compute
    # (fathom.training.activation_offload). Megatron-Core allows 0 <= N < the layers, no pipeline parallelism and no
    # recomputation with it.
    activation_offload_layers: int = 0
    # Fine-tuning levers (fathom.training.finetune). "none" trains every weight; LoRA (Hu et al. 2021) freezes the
    # base weights and trains rank-``lora_rank`` adapters on ``lora_targets``; QLoRA (Dettmers et al. 2023) also
    # stores the frozen base in 4-bit NF4 and pages optimizer states to the host under memory pressure.
    finetune: Finetune = "none"
    lora_rank: int = 16
    lora_targets: LoraTargets = "all-linear"  # every linear layer of the blocks, or the attention projections
    frozen_layers: int = 0  # leading transformer layers (and the embedding) kept frozen
    # GaLore (Zhao et al. 2024, arXiv:2403.03507): rank of the projected gradients; 128 is the reference code's
    # default (the paper uses 128-512 up to 1B and 1024 for LLaMA 7B).
    galore_rank: int = 128
    # fp32 master weights and gradient accumulation (mixed precision); False trains in pure 16-bit (weights,
    # gradients and optimizer moments in the 16-bit type), the "BF16 baseline" of the GaLore paper.
    master_weights: bool = True
    # FP8 only: whether the linears keep their FP8-cast inputs for the weight-gradient GEMM in place of the 16-bit
    # ones. True is NVIDIA Transformer Engine's behaviour (Megatron-Core, NeMo, Megatron-Bridge, llm-foundry's TE
    # layers): Linear/LayerNormLinear save the quantised input, one FP8 copy (fathom.training.fp8_casts). False is
    # torchao's Float8Linear (torchtitan's FP8), whose autograd function saves the high-precision input and
    # re-casts it in backward (pytorch/ao torchao/float8/float8_linear.py, matmul_with_hp_or_float8_args).
    fp8_saved_inputs: bool = True

    @model_validator(mode="after")
    def _limits(self) -> TrainingPlan:
        message = plan_limits_error({name: getattr(self, name) for name in PLAN_INT_RANGES})
        if message is not None:
            raise PydanticCustomError("plan_limit", "{message}", {"message": message})
        return self

    @property
    def num_gpus(self) -> int:
        return self.tp * self.pp * self.dp * self.cp

    @property
    def grad_accum_steps(self) -> int:
        return self.global_batch // (self.micro_batch * self.dp)
