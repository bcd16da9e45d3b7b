"""The space of training plans for one model, cluster and workload, built as NumPy arrays.

Each axis has a short list of candidates (or the user's own list); the plans are their cross product, built one
axis at a time with ``np.repeat``/``np.tile`` and pruned by a mask after each axis, so combinations that are
already impossible never multiply the later axes. No Python object exists per plan.

Rules of the space (on top of ``fathom.training.plans.validity``, which has the final word):
- TP: powers of two up to the scale-up domain (the NVLink node or NVL domain), dividing the heads.
- CP: powers of two while each rank keeps at least ``MIN_CP_TOKENS`` tokens of a sequence, at most ``MAX_CP``.
- PP: divisors of the GPU count left after TP and CP, at most the layer count. Stages may be uneven
  (Megatron-LM's uneven first/last stage); the estimator prices the fullest one.
- VPP: interleaving (Narayanan et al. 2021) needs the layers to split evenly into ``pp * vpp`` chunks and the
  micro-batch count to be a multiple of ``pp`` (Megatron-LM asserts both); layers that do not split may with
  balanced ends (the embedding and the head a layer slot each: num_layers + 2 over ``pp * vpp``).
- EP (MoE only): divisors of the expert count that divide TP x DP x CP.
- Micro-batch: divisors of the global batch up to ``max_micro_batch`` that divide the per-replica batch.
- ZeRO 0-3, recomputation none/selective/full, offload none/cpu/nvme (CPU offload needs ZeRO >= 1, NVMe offload
  ZeRO 3, as DeepSpeed requires). With one data-parallel shard, ZeRO 2 and 3 equal ZeRO 1 and are left out, but
  for ZeRO 3 with NVMe offload.
- Schedules: 1F1B and zero-bubble (pp > 1) with vpp = 1, interleaved 1F1B with vpp > 1.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fathom.errors import FathomInputError
from fathom.specs.hardware import Cluster
from fathom.specs.model import ModelSpec
from fathom.specs.plan import OFFLOADS, RECOMPUTES, SCHEDULES, check_plan_limits
from fathom.training.plans import PlanArrays

MAX_CP = 32
MIN_CP_TOKENS = 1024
MAX_VPP = 8
DEFAULT_MAX_MICRO_BATCH = 16
_ONE_F_ONE_B = SCHEDULES.index("1f1b")
_INTERLEAVED = SCHEDULES.index("interleaved")
_NVME = OFFLOADS.index("nvme")
# Searched unless the axes name them: the automatic zero-bubble schedules run a list scheduler per plan
# (fathom.training.zero_bubble_auto), too slow to price across a whole search space.
DEFAULT_SCHEDULES = tuple(s for s in SCHEDULES if not s.startswith("zero-bubble-auto"))


@dataclass(frozen=True)
class SearchAxes:
    """Candidate values per axis; ``None`` means "the default candidates for this model and cluster"."""

    tp: tuple[int, ...] | None = None
    pp: tuple[int, ...] | None = None
    cp: tuple[int, ...] | None = None
    ep: tuple[int, ...] | None = None
    vpp: tuple[int, ...] | None = None
    zero: tuple[int, ...] | None = None
    micro_batch: tuple[int, ...] | None = None
    recompute: tuple[str, ...] | None = None
    schedule: tuple[str, ...] | None = None
    offload: tuple[str, ...] | None = None
    max_micro_batch: int = DEFAULT_MAX_MICRO_BATCH

    def __post_init__(self) -> None:
        for name, choices in (("recompute", RECOMPUTES), ("schedule", SCHEDULES), ("offload", OFFLOADS)):
            for value in getattr(self, name) or ():
                if value not in choices:
                    raise FathomInputError(f"{name}: unknown value {value!r} (valid: {', '.join(choices)})")
        for name in ("tp", "pp", "cp", "ep", "vpp", "micro_batch"):
            if any(not _is_int(v) or int(v) < 1 for v in getattr(self, name) or ()):
                raise FathomInputError(f"{name}: candidates must be positive integers, got {getattr(self, name)!r}")
        if any(not _is_int(z) or not 0 <= int(z) <= 3 for z in self.zero or ()):
            raise FathomInputError(f"zero: candidates must be ZeRO stages 0, 1, 2 or 3, got {self.zero!r}")
        if self.max_micro_batch < 1:
            raise FathomInputError("max_micro_batch: must be a positive integer")


def _is_int(value) -> bool:
    """An integer candidate (numpy's too), not a bool, a float or a string."""
    return isinstance(value, int | np.integer) and not isinstance(value, bool)


def divisors(n: int) -> np.ndarray:
    """All positive divisors of ``n``, ascending."""
    k = np.arange(1, int(np.sqrt(n)) + 1)
    small = k[n % k == 0]
    return np.unique(np.concatenate([small, n // small]))


def _powers_of_two(limit: int) -> np.ndarray:
    return 2 ** np.arange(int(np.log2(max(limit, 1))) + 1)


def gpu_counts(max_gpus: int, gpus_per_node: int) -> np.ndarray:
    """GPU counts tried under ``--max-gpus``: powers of two below a node, then whole nodes in steps of
    2^k and 3 x 2^k nodes (the sizes clusters are partitioned into), and ``max_gpus`` itself."""
    if max_gpus < 1:
        raise FathomInputError("max_gpus: must be a positive integer")
    small = _powers_of_two(min(gpus_per_node, max_gpus))
    nodes = np.concatenate([_powers_of_two(max_gpus), 3 * _powers_of_two(max_gpus)]) * gpus_per_node
    counts = np.unique(np.concatenate([small, nodes, [max_gpus]]))
    return counts[counts <= max_gpus]


def _cross(table: dict[str, np.ndarray], name: str, values: np.ndarray) -> dict[str, np.ndarray]:
    """Every row of ``table`` with every value of a new axis."""
    values = np.asarray(values)
    rows = len(next(iter(table.values()))) if table else 1
    out = {k: np.repeat(v, len(values)) for k, v in table.items()}
    out[name] = np.tile(values, rows)
    return out


def _keep(table: dict[str, np.ndarray], mask: np.ndarray) -> dict[str, np.ndarray]:
    return {k: v[mask] for k, v in table.items()}


def _layouts(model: ModelSpec, cluster: Cluster, seq_len: int, axes: SearchAxes) -> dict[str, np.ndarray]:
    """TP x CP x PP (DP derived) x EP combinations that use exactly the cluster's GPUs."""
    n = cluster.num_gpus
    tp = np.asarray(axes.tp or _powers_of_two(min(cluster.system.domain_size, n, model.num_heads)))
    cp_default = _powers_of_two(min(MAX_CP, max(seq_len // MIN_CP_TOKENS, 1)))
    cp = np.asarray(axes.cp or cp_default)
    t = _cross({"tp": tp}, "cp", cp)
    t = _keep(t, (model.num_heads % t["tp"] == 0) & (seq_len % (2 * t["cp"]) == 0) & (n % (t["tp"] * t["cp"]) == 0))
    pp_default = divisors(n)
    t = _cross(t, "pp", np.asarray(axes.pp or pp_default[pp_default <= model.num_layers]))
    t = _keep(t, (n % (t["tp"] * t["cp"] * t["pp"]) == 0) & (t["pp"] <= model.num_layers))
    t["dp"] = n // (t["tp"] * t["cp"] * t["pp"])
    if model.moe is None:
        if axes.ep and any(e != 1 for e in axes.ep):
            raise FathomInputError(f"--ep: expert parallelism needs a mixture-of-experts model; {model.name} is dense "
                                   "(drop --ep)")  # fmt: skip
        t["ep"] = np.ones_like(t["tp"])
        return t
    t = _cross(t, "ep", np.asarray(axes.ep or divisors(model.moe.num_experts)))
    return _keep(t, (model.moe.num_experts % t["ep"] == 0) & ((t["tp"] * t["dp"] * t["cp"]) % t["ep"] == 0))


def _schedules(axes: SearchAxes) -> tuple[np.ndarray, np.ndarray]:
    """(vpp, schedule code) pairs: vpp = 1 with 1F1B or zero-bubble, vpp > 1 with interleaved 1F1B."""
    allowed = [SCHEDULES.index(s) for s in (axes.schedule or DEFAULT_SCHEDULES)]
    vpps = [v for v in (axes.vpp or range(1, MAX_VPP + 1))]
    pairs = [(v, s) for v in vpps for s in allowed if (v > 1) == (s == _INTERLEAVED)]
    if not pairs:
        raise FathomInputError("schedule/vpp: interleaved needs a vpp above 1 and the other schedules vpp 1")
    vpp, sched = np.array(pairs, dtype=np.int64).T
    return vpp, sched


def enumerate_plans(
    model: ModelSpec,
    cluster: Cluster,
    seq_len: int,
    global_batch: int,
    axes: SearchAxes | None = None,
    **fixed,
) -> PlanArrays:
    """Every plan of the space for this cluster's GPU count; ``fixed`` are plan fields shared by all of them
    (precision, optimizer, attention, ...)."""
    check_plan_limits(num_gpus=cluster.num_gpus, seq_len=seq_len, global_batch=global_batch)  # before int64 math
    axes = axes or SearchAxes()
    t = _layouts(model, cluster, seq_len, axes)
    vpp, sched = _schedules(axes)
    t = _cross(t, "pair", np.arange(len(vpp)))
    pair = t.pop("pair")
    t["vpp"], t["schedule"] = vpp[pair], sched[pair]
    pipelined = t["pp"] > 1
    interleaved = t["schedule"] == _INTERLEAVED
    chunks = t["pp"] * t["vpp"]
    even_chunks = model.num_layers % chunks == 0
    # Layers that do not split into the chunks may with the embedding and the head taking a slot each (balanced
    # ends: num_layers + 2 chunks' worth, Megatron-Core's account-for-embedding/loss split; Llama 3 405B's 126
    # layers on 16 stages x 8, Dubey et al. 2024 Sec. 3.3.2). A caller's fixed choice applies to every plan.
    ends_fixed = fixed.pop("balance_pipeline_ends", None)
    ends = (model.num_layers + 2) % chunks == 0
    t["balance_pipeline_ends"] = (
        interleaved & ~even_chunks & ends if ends_fixed is None else np.full(len(chunks), bool(ends_fixed))
    )
    t = _keep(
        t,
        ((t["schedule"] == _ONE_F_ONE_B) | pipelined)
        & (~interleaved | even_chunks | (t["balance_pipeline_ends"] & ends)),
    )
    mb_default = divisors(global_batch)
    t = _cross(t, "micro_batch", np.asarray(axes.micro_batch or mb_default[mb_default <= axes.max_micro_batch]))
    per_replica = t["micro_batch"] * t["dp"]
    whole = global_batch % per_replica == 0
    micro_batches = global_batch // per_replica
    t = _keep(t, whole & ((t["schedule"] != _INTERLEAVED) | (micro_batches % t["pp"] == 0)))
    t = _cross(t, "zero", np.asarray(axes.zero if axes.zero is not None else (0, 1, 2, 3)))
    offloads = np.array([OFFLOADS.index(o) for o in (axes.offload or OFFLOADS)])
    t = _cross(t, "offload", offloads)
    nvme = t["offload"] == _NVME
    # one shard: ZeRO 2 and 3 equal ZeRO 1, except that NVMe offload runs under stage 3 only (ZeRO-Infinity)
    redundant = ((t["dp"] * t["cp"]) == 1) & (t["zero"] >= 2) & (axes.zero is None) & ~(nvme & (t["zero"] == 3))
    offload_ok = (t["offload"] == 0) | (t["zero"] >= 1)
    t = _keep(t, offload_ok & (~nvme | (t["zero"] == 3)) & ~redundant)
    t = _cross(t, "recompute", np.array([RECOMPUTES.index(r) for r in (axes.recompute or RECOMPUTES)]))
    rows = len(t["tp"])
    shared = {k: np.full(rows, v) for k, v in {"seq_len": seq_len, "global_batch": global_batch, **fixed}.items()}
    return PlanArrays.from_columns(**t, **shared)
