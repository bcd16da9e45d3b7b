"""A training execution plan: how one model is laid out over a cluster and batched.

Closed choices are Literals; the plan validates only itself here. ``fathom.training.plans.check_plan``
checks it against a model and a cluster (TP divides heads, degrees multiply to the GPU count, ...).
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, PositiveInt

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

    @property
    def num_gpus(self) -> int:
        return self.tp * self.pp * self.dp * self.cp

    @property
    def grad_accum_steps(self) -> int:
        return self.global_batch // (self.micro_batch * self.dp)
