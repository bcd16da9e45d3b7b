"""The settings of one engine replica, validated once when a deployment is described."""

from __future__ import annotations

from dataclasses import dataclass

from fathom.errors import FathomInputError, unknown_name_error
from fathom.serving.cost import StepCostModel
from fathom.serving.schedulers import BUDGETED, get_scheduler
from fathom.specs.serving import SpeculativeSpec

PREEMPTION_MODES = ("recompute", "swap")
# How admission treats KV blocks a running request will need later (TensorRT-LLM's CapacitySchedulerPolicy):
# ``max-utilization`` admits while the prompt fits and preempts when decodes run out of blocks (vLLM's block
# manager); ``guaranteed-no-evict`` (TensorRT-LLM's default) admits a request only when the blocks of its prompt and
# all its output tokens fit beside the full reservations of the requests already running, so nothing is evicted.
CAPACITY_POLICIES = ("max-utilization", "guaranteed-no-evict")


@dataclass(frozen=True)
class ReplicaConfig:
    """One engine replica: its cost model (hardware, model, parallelism) and its engine settings.

    ``max_batch``: most requests running at once (vLLM ``max_num_seqs``); ``max_batch_tokens``: the per-iteration
    token budget of ``chunked-prefill`` and ``decode-priority`` (vLLM ``max_num_batched_tokens``); ``preemption``:
    what happens to a request evicted when KV blocks run out; ``capacity_policy``: whether admission reserves a
    request's whole output (``CAPACITY_POLICIES``); ``prefix_caching``: reuse KV of shared prefixes;
    ``speculative``: decode speculatively (the cost model must price its steps, see ``fathom.inference.speculative``),
    sampling accepted tokens from a generator seeded by ``seed`` and the replica's index."""

    cost: StepCostModel
    scheduler: str = "continuous"
    max_batch: int = 256
    max_batch_tokens: int = 8192
    preemption: str = "recompute"
    prefix_caching: bool = False
    capacity_policy: str = "max-utilization"
    speculative: SpeculativeSpec | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        if self.speculative is not None and not isinstance(self.speculative, SpeculativeSpec):
            raise FathomInputError(f"speculative: expected a SpeculativeSpec, got {type(self.speculative).__name__}")
        if self.seed < 0:
            raise FathomInputError(f"seed must be >= 0, got {self.seed}")
        get_scheduler(self.scheduler)  # validates the name
        if self.preemption not in PREEMPTION_MODES:
            raise unknown_name_error("preemption", self.preemption, PREEMPTION_MODES)
        if self.capacity_policy not in CAPACITY_POLICIES:
            raise unknown_name_error("capacity_policy", self.capacity_policy, CAPACITY_POLICIES)
        if self.max_batch < 1 or self.max_batch_tokens < 1:
            raise FathomInputError(
                f"max_batch and max_batch_tokens must be >= 1, got {self.max_batch} and {self.max_batch_tokens}"
            )
        if self.scheduler.strip().lower() in BUDGETED and self.max_batch_tokens < self.max_batch:
            raise FathomInputError(
                f"max_batch_tokens ({self.max_batch_tokens}) must be >= max_batch ({self.max_batch}) for scheduler "
                f"{self.scheduler!r}: every running decode takes one token of the budget"
            )
        if int(self.cost.kv_capacity_tokens) // max(int(self.cost.block_size), 1) < 1:
            raise FathomInputError(
                f"kv_capacity_tokens ({self.cost.kv_capacity_tokens}) holds no block of {self.cost.block_size} tokens"
            )
