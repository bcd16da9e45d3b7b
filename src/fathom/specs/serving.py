"""A serving deployment of one replica: parallelism, numerics and engine limits."""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, PositiveInt, model_validator

from fathom.errors import FathomInputError

if TYPE_CHECKING:
    from fathom.specs.model import ModelSpec

WeightDtype = Literal["bf16", "fp16", "fp8", "int8", "int4"]
KVDtype = Literal["bf16", "fp16", "fp8"]
HostProfile = Literal["generic", "vllm-v0-eager", "sarathi-osdi24-eager"]
WEIGHT_DTYPES: tuple[str, ...] = ("bf16", "fp16", "fp8", "int8", "int4")
KV_DTYPES: tuple[str, ...] = ("bf16", "fp16", "fp8")
HOST_PROFILES: tuple[str, ...] = get_args(HostProfile)


class ServingPlan(BaseModel):
    """How one replica runs a model.

    ``weight_dtype``: ``fp8`` multiplies in FP8 (W8A8); ``int8``/``int4`` are weight-only (W8A16/W4A16, as in
    MARLIN and AWQ): 16-bit math on dequantised weights, fewer bytes read. ``max_batch`` caps concurrent
    sequences, ``max_batch_tokens`` the tokens of one iteration (vLLM's max_num_seqs / max_num_batched_tokens).

    A replica runs on ``tp * pp`` GPUs. ``ep`` adds none: expert parallelism spreads the routed experts over the
    ranks of a pipeline stage's TP group (vLLM's EP group is its TP x DP ranks, and a fathom replica is one DP rank;
    SGLang's ``--ep-size`` divides its TP size), so ``ep`` must divide ``tp`` (``check_serving_plan``).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    tp: PositiveInt = 1
    pp: PositiveInt = 1
    ep: PositiveInt = 1
    weight_dtype: WeightDtype = "bf16"
    kv_dtype: KVDtype = "bf16"
    attention: Literal["flash3", "flash2", "flash1"] = "flash2"
    cuda_graphs: bool = True
    max_batch: PositiveInt = 256
    max_batch_tokens: PositiveInt = 8192
    block_size: PositiveInt = 16
    memory_utilization: float = Field(0.9, gt=0, le=1)
    # TensorRT-LLM sizes the KV cache as a fraction of the memory left free after loading the model
    # (kv_cache_free_gpu_mem_fraction); when set, this replaces memory_utilization's share-of-total rule (vLLM).
    kv_free_fraction: float | None = Field(None, gt=0, le=1)
    # Host memory per GPU for KV swapped out by ``swap`` preemption: vLLM's --swap-space (GiB per GPU, default 4),
    # at most the GPU's share of its node's host memory.
    swap_space_gib: float = Field(4.0, gt=0)
    # The engine's context limit (vLLM --max-model-len, TensorRT-LLM max_seq_len); None = the model's own. Rotary
    # and ALiBi models may be built for longer contexts than their config states; learned positions may not.
    max_model_len: PositiveInt | None = None
    # Hydragen (Juravsky et al. 2024, arXiv:2402.05099): decode attention over a prefix that several sequences of
    # the batch share reads the prefix's KV once per batch, as one matrix-matrix product over their queries.
    shared_prefix_attention: bool = False
    # Apply the model's sliding-window attention (Mistral, Gemma 2): decode reads and prefill attends at most the
    # window on those layers. False: the engine attends over the whole context, as TensorRT-LLM does unless
    # max_attention_window_size is set (its default is the full sequence).
    sliding_window: bool = True
    # Offloaded inference (FlexGen, Sheng et al. 2023; "LLM in a flash", Alizadeh et al. 2024): the weights not
    # resident on the device stay in host memory (``cpu``) or on the node's NVMe (``nvme``) and stream over the
    # host link every step; ``resident_weight_fraction`` None = the largest share that leaves room for the KV of one
    # longest sequence. ``offload_kv: cpu`` keeps the KV cache in host memory, read over the host link for attention.
    offload_weights: Literal["none", "cpu", "nvme"] = "none"
    resident_weight_fraction: float | None = Field(None, ge=0, le=1)
    offload_kv: Literal["none", "cpu"] = "none"
    # NanoFlow (Zhu et al. 2024, arXiv:2408.12757): split each iteration into this many nano-batches whose compute-,
    # memory- and network-bound operations overlap on the device (``fathom.inference.overlap``); 1 = run in sequence.
    nano_batches: PositiveInt = 1
    # Host time of the engine's software (fathom.inference.host): ``host_op_us`` to issue one op of an eager forward
    # (a floor under the GPU's work; None: the device's host_op_us), ``host_step_us`` per iteration and
    # ``host_seq_us`` per sequence in it that the GPU waits for (scheduling, inputs, block tables, sampling and
    # output processing in Python). ``host_profile`` names measured values for an engine (``vllm-v0-eager``: vLLM
    # v0.1-0.2 without CUDA graphs, fitted on the Splitwise artifact's profiles; ``sarathi-osdi24-eager``:
    # Sarathi-Serve's Ray-driven artifact engine on several GPUs, fitted on its Figure 2 batches); a field given here
    # overrides it.
    host_profile: HostProfile = "generic"
    host_op_us: float | None = Field(None, ge=0)
    host_step_us: float | None = Field(None, ge=0)
    host_seq_us: float | None = Field(None, ge=0)

    @property
    def num_gpus(self) -> int:
        return self.tp * self.pp


def check_serving_plan(model: ModelSpec, plan: ServingPlan, tp_name: str = "tp") -> None:
    """Raise a one-line FathomInputError for the first layout of ``plan`` that cannot run ``model`` (the training
    planner's rules, ``fathom.training.plans.check_plan``). Every serving cost model passes here
    (``fathom.inference.memory.replica_memory``), so the CLI, plan search, sweeps, imports and the web API agree.
    ``tp_name`` names the TP being checked in the message (``decode-tp`` for a disaggregated decode pool)."""
    tp, moe = plan.tp, model.moe
    if model.num_heads % tp:
        raise FathomInputError(f"{tp_name}={tp} does not divide the {model.num_heads} attention heads of {model.name}")
    # GQA: vLLM splits the KV heads over TP ranks, or replicates each over TP / kv_heads ranks when TP exceeds them;
    # MLA caches one latent per token on every rank, whatever the TP.
    kv = model.num_kv_heads
    if model.mla is None and kv % tp and tp % kv:
        raise FathomInputError(f"{tp_name}={tp} and the {kv} KV heads of {model.name}: one must divide the other")
    if plan.pp > model.num_layers:
        raise FathomInputError(f"pp={plan.pp} is deeper than the {model.num_layers} layers of {model.name}")
    if plan.ep > 1:
        if moe is None:
            raise FathomInputError(f"ep={plan.ep} needs a mixture-of-experts model ({model.name} is dense)")
        if tp % plan.ep:
            raise FathomInputError(
                f"ep={plan.ep} must divide {tp_name}={tp}: expert parallelism runs over a replica's TP ranks and adds "
                "no GPUs (vLLM's EP group is its TP x DP ranks)"
            )
        if moe.num_experts % plan.ep:
            raise FathomInputError(f"ep={plan.ep} does not divide the {moe.num_experts} experts of {model.name}")


class SpeculativeSpec(BaseModel):
    """Speculative decoding (Leviathan et al. 2023, "Fast Inference from Transformers via Speculative Decoding").

    ``method``: ``draft`` (a smaller model ``draft_model`` proposes ``num_tokens`` tokens, one decode step each) or
    ``ngram`` (prompt lookup: proposals copied from an earlier occurrence of the last n-gram in the context, found
    on the host). The target verifies the ``num_tokens`` proposals plus one token of its own in one step; each
    proposal is accepted with probability ``acceptance`` (the paper's alpha, independent per token).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    method: Literal["draft", "ngram"]
    draft_model: str | None = None
    num_tokens: int = Field(4, ge=1, le=64)
    acceptance: float = Field(0.7, ge=0, le=1)

    @model_validator(mode="after")
    def _check(self) -> SpeculativeSpec:
        if self.method == "draft" and not self.draft_model:
            raise ValueError("method 'draft' needs a draft_model")
        if self.method == "ngram" and self.draft_model:
            raise ValueError("method 'ngram' takes no draft_model")
        return self


class LoRAServingSpec(BaseModel):
    """Many LoRA adapters over one base model (S-LoRA, Sheng et al. 2023; Punica, Chen et al. 2023).

    Each request names one of ``num_adapters`` rank-``rank`` adapters, drawn from ``distribution`` (``uniform`` or
    ``zipf:a=A``: adapter i of 1..N with probability proportional to i^-A). The device holds a pool of
    ``max_loras_per_batch`` adapters (vLLM's ``--max-loras``), so a batch mixes at most that many; host memory caches
    ``max_cpu_loras`` (vLLM's ``--max-cpu-loras``), the others are read from NVMe when needed. ``targets``: the
    adapted matrices, ``attention`` (q, k, v, o; S-LoRA's experiments) or ``all-linear`` (also the MLP's)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    num_adapters: PositiveInt
    rank: PositiveInt = 16
    distribution: str = "uniform"
    max_loras_per_batch: PositiveInt = 4
    max_cpu_loras: PositiveInt | None = None  # None: every adapter fits in host memory
    targets: Literal["attention", "all-linear"] = "attention"
