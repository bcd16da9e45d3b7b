"""Plans as a struct of NumPy arrays, so thousands are priced in one vectorised pass.

``PlanArrays.from_plans`` packs ``TrainingPlan`` objects; ``PlanArrays.grid`` builds a cartesian product
directly as arrays (no Python objects per plan). ``validity`` returns, for every plan, whether it is
structurally valid for a model and a cluster, and ``check_plan`` turns the first violation of a single plan
into a one-line error for the CLI.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, fields

import numpy as np

from fathom.errors import FathomInputError
from fathom.specs.hardware import Cluster
from fathom.specs.model import ModelSpec
from fathom.specs.plan import (
    ATTENTION_KERNELS,
    CUDA_GRAPHS,
    FINETUNES,
    LORA_TARGETS,
    MOE_DISPATCHERS,
    MOE_ROUTINGS,
    OFFLOADS,
    OPTIMIZERS,
    PIPELINE_ENGINES,
    PLAN_INT_RANGES,
    RECOMPUTES,
    SCHEDULES,
    TRAIN_PRECISIONS,
    ZERO2_COMMS,
    ZERO3_GATHERS,
    TrainingPlan,
    plan_limits_error,
)

_CODED = {
    "schedule": SCHEDULES,
    "recompute": RECOMPUTES,
    "precision": TRAIN_PRECISIONS,
    "optimizer": OPTIMIZERS,
    "offload": OFFLOADS,
    "attention": ATTENTION_KERNELS,
    "moe_dispatcher": MOE_DISPATCHERS,
    "moe_routing": MOE_ROUTINGS,
    "zero3_gather": ZERO3_GATHERS,
    "zero2_comm": ZERO2_COMMS,
    "pipeline_engine": PIPELINE_ENGINES,
    "finetune": FINETUNES,
    "lora_targets": LORA_TARGETS,
    "cuda_graphs": CUDA_GRAPHS,
}


@dataclass(frozen=True)
class PlanArrays:
    """One entry per plan. Closed choices are stored as indices into the tuples in ``fathom.specs.plan``."""

    seq_len: np.ndarray
    global_batch: np.ndarray
    micro_batch: np.ndarray
    tp: np.ndarray
    pp: np.ndarray
    dp: np.ndarray
    cp: np.ndarray
    ep: np.ndarray
    vpp: np.ndarray
    sequence_parallel: np.ndarray
    zero: np.ndarray
    schedule: np.ndarray
    recompute: np.ndarray
    precision: np.ndarray
    optimizer: np.ndarray
    offload: np.ndarray
    attention: np.ndarray
    moe_dispatcher: np.ndarray
    overlap_grad_reduce: np.ndarray
    zero3_gather: np.ndarray
    zero2_comm: np.ndarray
    pipeline_engine: np.ndarray
    overlap_moe_comm: np.ndarray
    balance_pipeline_ends: np.ndarray
    overlap_tp_comm: np.ndarray
    async_tp_allreduce: np.ndarray
    overlap_p2p_comm: np.ndarray
    overlap_param_gather: np.ndarray
    finetune: np.ndarray
    lora_rank: np.ndarray
    lora_targets: np.ndarray
    frozen_layers: np.ndarray
    galore_rank: np.ndarray
    master_weights: np.ndarray
    moe_routing: np.ndarray
    moe_router_fusion: np.ndarray
    cuda_graphs: np.ndarray
    activation_offload_layers: np.ndarray
    fp8_saved_inputs: np.ndarray

    def __len__(self) -> int:
        return int(self.tp.shape[0])

    @classmethod
    def from_columns(cls, **columns) -> PlanArrays:
        """Build from equal-length columns; string choices are encoded, omitted fields take plan defaults.

        Integer fields out of ``fathom.specs.plan.PLAN_INT_RANGES`` (values past int64, products that could
        overflow it) are a one-line FathomInputError naming the flag, before anything is converted."""
        defaults = TrainingPlan.model_fields
        message = plan_limits_error({name: columns[name] for name in PLAN_INT_RANGES if name in columns})
        if message is not None:
            raise FathomInputError(message)
        n = max(np.size(v) for v in columns.values())
        out = {}
        for f in fields(cls):
            value = columns.get(f.name, defaults[f.name].default)
            if f.name in _CODED:
                choices = _CODED[f.name]
                value = np.asarray(value)
                if value.dtype.kind in "UO":
                    value = np.vectorize(choices.index, otypes=[np.int64])(value)
            dtype = bool if isinstance(defaults[f.name].default, bool) else np.int64
            out[f.name] = np.broadcast_to(np.asarray(value, dtype=dtype), (n,)).copy()
        return cls(**out)

    @classmethod
    def from_plans(cls, plans: list[TrainingPlan]) -> PlanArrays:
        return cls.from_columns(**{f.name: [getattr(p, f.name) for p in plans] for f in fields(cls)})

    @classmethod
    def grid(cls, **axes) -> PlanArrays:
        """Cartesian product of the given axes (each a list of values); other fields take defaults."""
        names = list(axes)
        mesh = np.meshgrid(*[np.asarray(axes[k]) for k in names], indexing="ij")
        return cls.from_columns(**{k: m.ravel() for k, m in zip(names, mesh, strict=True)})

    def take(self, index) -> PlanArrays:
        return PlanArrays(**{f.name: getattr(self, f.name)[index] for f in fields(self)})

    def plan(self, i: int) -> TrainingPlan:
        values = {}
        for f in fields(self):
            v = getattr(self, f.name)[i]
            values[f.name] = _CODED[f.name][int(v)] if f.name in _CODED else v.item()
        return TrainingPlan(**values)


def _violations(model: ModelSpec, cluster: Cluster, p: PlanArrays) -> list[tuple[np.ndarray, str]]:
    """(mask of violating plans, message) pairs, in the order a user should fix them."""
    gpus = p.tp * p.pp * p.dp * p.cp
    tokens_per_rank = p.seq_len // np.maximum(p.cp, 1)
    stages = p.pp * p.vpp
    moe = model.moe
    return [
        (model.num_heads % p.tp != 0, "tp={tp} does not divide the {heads} attention heads"),
        (
            (model.num_kv_heads % p.tp != 0) & (p.tp % model.num_kv_heads != 0),
            "tp={tp} and the {kv} KV heads: one must divide the other",
        ),
        # Balanced ends count the embedding and the LM head as a layer slot each (Megatron-Core splits num_layers + 2
        # over pp x vpp), so each of num_layers + 2 model chunks may hold one slot (Dubey et al. 2024 Sec. 3.3.2).
        (
            stages > model.num_layers + 2 * (p.balance_pipeline_ends & (p.pp > 1)),
            "pp*vpp={stages} is deeper than the model's {layers} layers",
        ),
        # A learned position table (GPT-2/3, OPT) has one row per position: a longer sequence has no embedding to
        # look up. RoPE and ALiBi compute positions, so training past max_seq_len (context extension) is allowed.
        (
            (model.position_embedding == "learned") & (p.seq_len > model.max_seq_len),
            "--seq-len {seq} exceeds {model}'s {max_pos} learned position embeddings: must be 1..{max_pos}",
        ),
        (gpus != cluster.num_gpus, "tp*pp*dp*cp = {gpus} but --num-gpus is {n}"),
        ((p.vpp > 1) & (p.schedule != SCHEDULES.index("interleaved")), "vpp>1 needs --schedule interleaved"),
        # Interleaving splits each pipeline rank's layers into model chunks: with one rank there is nothing to
        # interleave (Megatron-LM asserts pipeline-model-parallel size > 1 for virtual pipeline stages).
        ((p.vpp > 1) & (p.pp == 1), "vpp={vpp} needs --pp 2 or more (it splits pipeline stages into model chunks)"),
        (
            p.global_batch % (p.micro_batch * p.dp) != 0,
            "global batch {gb} is not a multiple of micro-batch*dp = {mbdp}",
        ),
        ((p.cp > 1) & (p.seq_len % (2 * p.cp) != 0), "seq_len {seq} must be divisible by 2*cp (load-balanced CP)"),
        (tokens_per_rank < 1, "cp={cp} leaves no tokens per rank"),
        ((p.ep > 1) & (moe is None), "ep={ep} needs a mixture-of-experts model"),
        (((p.tp * p.dp * p.cp) % p.ep != 0), "ep={ep} must divide tp*dp*cp"),
        (
            (moe is not None) & ((moe.num_experts if moe else 1) % p.ep != 0),
            "ep={ep} does not divide the {experts} experts",
        ),
        (
            (moe is not None) & (p.cuda_graphs == CUDA_GRAPHS.index("full")),
            "--cuda-graphs full needs a dense model: dropless MoE layers have dynamic shapes "
            "(choices for MoE: none, attn, attn-moe-router)",
        ),
        ((p.offload > 0) & (p.zero == 0), "--offload needs --zero 1 or more (ZeRO-Offload)"),
        # a device that runs its ops on the host's cores (a CPU) holds everything in host memory already
        (
            ((p.offload > 0) | (p.activation_offload_layers > 0)) & cluster.device.ops_run_inline,
            "--offload/--activation-offload-layers: {gpu} computes out of host memory already; nothing to offload",
        ),
        # DeepSpeed's configuration reference (docs/_pages/config-json.md, "Optimizer offloading"): CPU offloading
        # with ZeRO stage 1, 2 or 3, NVMe offloading only with ZeRO stage 3 (ZeRO-Infinity).
        (
            (p.offload == OFFLOADS.index("nvme")) & (p.zero < 3),
            "--offload nvme needs --zero 3 (ZeRO-Infinity; with --zero 1 or 2 choose --offload cpu)",
        ),
        # FP8 training runs its GEMMs on FP8 tensor cores (Transformer Engine refuses devices without them); a
        # device with no fp8 rate in the catalog cannot run the plan, where serving would fall back to 16 bits.
        (
            (p.precision == TRAIN_PRECISIONS.index("fp8")) & ("fp8" not in cluster.device.peak_tflops),
            "--precision fp8: {gpu} has no FP8 tensor cores (choices there: {precisions})",
        ),
        # BF16 needs Ampere-class tensor cores or newer; a device without a bf16 rate (V100) cannot train in it.
        (
            (p.precision == TRAIN_PRECISIONS.index("bf16")) & ("bf16" not in cluster.device.peak_tflops),
            "--precision bf16: {gpu} has no BF16 support (choices there: {precisions})",
        ),
        (
            (p.finetune == FINETUNES.index("qlora")) & (p.precision == TRAIN_PRECISIONS.index("fp8")),
            "--finetune qlora dequantises its 4-bit weights to bf16 for the GEMMs: use --precision bf16, not fp8",
        ),
        # A rank past the hidden size is no longer low-rank: the factors would hold more than the matrix.
        (
            (p.lora_rank <= 0) | (p.lora_rank > model.hidden_size),
            "--lora-rank {lora_rank} must be 1..{hidden} (the hidden size)",
        ),
        (
            (p.galore_rank <= 0) | (p.galore_rank > model.hidden_size),
            "--galore-rank {galore_rank} must be 1..{hidden} (the hidden size)",
        ),
        (
            (p.frozen_layers < 0) | (p.frozen_layers >= model.num_layers),
            "--frozen-layers {frozen} must be 0..{last} (the model has {layers} layers)",
        ),
        (
            (p.finetune > 0) & np.isin(p.optimizer, [OPTIMIZERS.index("galore"), OPTIMIZERS.index("galore-8bit")]),
            "--optimizer galore projects full weight gradients: use it with --finetune none",
        ),
        (
            p.balance_pipeline_ends & (p.pp > 1) & ((model.num_layers + 2) % (p.pp * p.vpp) != 0),
            "--balance-pipeline-ends needs num_layers + 2 = {layers2} to be a multiple of pp*vpp={stages}",
        ),
        # Megatron-Core's TransformerConfig checks (megatron/core/transformer/transformer_config.py, core_v0.14.0).
        (
            (p.activation_offload_layers < 0) | (p.activation_offload_layers >= model.num_layers // p.pp),
            "--activation-offload-layers {offload_layers} must be 0..{offload_max} (fewer than the {stage_layers} "
            "layers of a stage)",
        ),
        (
            (p.activation_offload_layers > 0) & (p.pp > 1),
            "--activation-offload-layers needs --pp 1 (Megatron-Core has no CPU offloading with pipeline parallelism)",
        ),
        (
            (p.activation_offload_layers > 0) & (p.recompute != RECOMPUTES.index("none")),
            "--activation-offload-layers needs --recompute none (Megatron-Core rejects CPU offloading with "
            "recomputation)",
        ),
    ]


_MODEL_ONLY_CHECKS = 4


def validity(model: ModelSpec, cluster: Cluster, p: PlanArrays) -> np.ndarray:
    """True for every plan that can run at all (memory fit is judged separately)."""
    bad = np.zeros(len(p), dtype=bool)
    for mask, _ in _violations(model, cluster, p):
        bad |= np.broadcast_to(mask, bad.shape)
    return ~bad


def check_plan(model: ModelSpec, cluster: Cluster, plan: TrainingPlan, *, model_only: bool = False) -> None:
    """Raise a one-line FathomInputError for the first structural problem of ``plan``.

    ``model_only`` stops after the checks that involve only the model (used before DP is inferred).
    """
    p = PlanArrays.from_plans([plan])
    for i, (mask, message) in enumerate(_violations(model, cluster, p)):
        if model_only and i >= _MODEL_ONLY_CHECKS:
            return
        if np.broadcast_to(mask, (1,))[0]:
            raise FathomInputError(
                message.format(
                    gpus=plan.num_gpus,
                    n=cluster.num_gpus,
                    tp=plan.tp,
                    heads=model.num_heads,
                    kv=model.num_kv_heads,
                    stages=plan.pp * plan.vpp,
                    layers=model.num_layers,
                    gb=plan.global_batch,
                    mbdp=plan.micro_batch * plan.dp,
                    seq=plan.seq_len,
                    model=model.name,
                    max_pos=model.max_seq_len,
                    cp=plan.cp,
                    ep=plan.ep,
                    experts=model.moe.num_experts if model.moe else 0,
                    lora_rank=plan.lora_rank,
                    galore_rank=plan.galore_rank,
                    hidden=model.hidden_size,
                    frozen=plan.frozen_layers,
                    last=model.num_layers - 1,
                    layers2=model.num_layers + 2,
                    pp=plan.pp,
                    offload_layers=plan.activation_offload_layers,
                    offload_max=model.num_layers // plan.pp - 1,
                    stage_layers=model.num_layers // plan.pp,
                    vpp=plan.vpp,
                    gpu=cluster.device.name,
                    precisions=", ".join(q for q in TRAIN_PRECISIONS if q in cluster.device.peak_tflops),
                )
            )


def infer_dp(num_gpus: int, tp: int, pp: int, cp: int) -> int:
    """DP when the user leaves it out: whatever is left of the GPUs after TP, PP and CP."""
    denom = tp * pp * cp
    if num_gpus % denom:
        raise FathomInputError(f"--num-gpus {num_gpus} is not a multiple of tp*pp*cp = {denom}")
    return num_gpus // denom


def iter_grid(**axes):
    """Plain product iterator, for callers that want dicts (tests, small sweeps)."""
    keys = list(axes)
    for combo in itertools.product(*(axes[k] for k in keys)):
        yield dict(zip(keys, combo, strict=True))
