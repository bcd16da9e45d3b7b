"""Speculative decoding as a cost model: the target verifies proposals in one step, a drafter proposes them.

Leviathan et al. 2023 ("Fast Inference from Transformers via Speculative Decoding", ICML; Eq. 1 / Theorem 3.8):
with ``k`` proposals each accepted with probability ``alpha`` independently, a target step yields
``(1 - alpha^(k+1)) / (1 - alpha)`` tokens in expectation (the accepted prefix plus the target's own token). The
simulator samples that count per sequence and step (``fathom.serving.speculative_slots``); this module prices a step:
- the target verifies ``k + 1`` tokens per decoding sequence (``InferenceStepModel.verify_step_time_s``);
- ``draft``: the draft model runs ``k`` sequential decode steps over the batch on the same GPUs (its first one also
  covers this iteration's prefill chunks, whose KV it needs), priced by its own ``InferenceStepModel``; its weights
  and its KV share the GPU memory, so the target's KV capacity shrinks;
- ``ngram`` (prompt lookup decoding, Saxena 2023; vLLM's ``ngram`` proposer): proposals are copied from an earlier
  occurrence of the context's last n-gram, a host-side scan of each sequence's token ids before the step.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fathom.catalog.models import get_model
from fathom.errors import FathomInputError
from fathom.inference.memory import ReplicaMemory
from fathom.inference.step_model import InferenceStepModel
from fathom.specs.hardware import GIB, Cluster
from fathom.specs.serving import ServingPlan, SpeculativeSpec

# ASSUMPTION (no published microbenchmark found): the n-gram lookup scans the token ids once, about 1 ns per
# token on one host core, plus 2 us per sequence of Python/dispatch overhead.
NGRAM_SCAN_S_PER_TOKEN = 1e-9
NGRAM_PER_SEQUENCE_S = 2e-6
_EMPTY = np.zeros(0)


def expected_tokens_per_step(acceptance: float, num_tokens: int) -> float:
    """Mean tokens one target step yields (Leviathan et al. 2023, Eq. 1): ``(1 - a^(k+1)) / (1 - a)``."""
    if acceptance >= 1.0:
        return float(num_tokens + 1)
    return (1.0 - acceptance ** (num_tokens + 1)) / (1.0 - acceptance)


@dataclass(frozen=True)
class SpeculativeMemory(ReplicaMemory):
    """The target's memory with the draft model beside it: its weights and its KV per token."""

    draft_weights_bytes: float = 0.0
    draft_kv_bytes_per_token: float = 0.0


class SpeculativeStepModel:
    """The ``StepCostModel`` of a replica decoding speculatively (target + drafter on the same GPUs)."""

    def __init__(self, target: InferenceStepModel, spec: SpeculativeSpec, draft: InferenceStepModel | None = None):
        if (spec.method == "draft") != (draft is not None):
            raise FathomInputError("speculative: method 'draft' needs a draft step model, 'ngram' none")
        self.target, self.spec, self.draft = target, spec, draft
        self.k = spec.num_tokens
        self.block_size, self.max_context = target.block_size, target.max_context
        self.host_link_bytes_per_s = target.host_link_bytes_per_s
        mem = target.memory
        draft_w = draft_kv = 0.0
        if draft is not None:
            draft_w, draft_kv = draft.memory.weights_bytes, draft.kv_bytes_per_token
        # the KV pool the target alone would have gets the draft's weights taken out and holds both caches per token
        pool = mem.kv_capacity_tokens * mem.kv_bytes_per_token - draft_w
        per_token = mem.kv_bytes_per_token + draft_kv
        tokens = int(pool // per_token) // self.block_size * self.block_size if pool > 0 else 0
        if tokens < self.block_size:
            raise FathomInputError(
                f"speculative: draft model {spec.draft_model} ({draft_w / GIB:.1f} GiB per GPU) leaves no room for "
                f"the KV cache of {target.model.name}; raise --tp or quantise"
            )
        self.memory = SpeculativeMemory(mem.weights_bytes + draft_w, mem.activation_bytes, mem.runtime_bytes,
                                        per_token, tokens, draft_w, draft_kv)  # fmt: skip
        self.kv_capacity_tokens = tokens
        self.kv_bytes_per_token = per_token  # both caches move on a swap or a hand-off
        self.host_swap_tokens = int(target.host_swap_tokens * mem.kv_bytes_per_token // per_token)

    def swap_time_s(self, blocks: int) -> float:
        return blocks * self.block_size * self.kv_bytes_per_token / self.host_link_bytes_per_s

    def proposal_time_s(self, prefill_tokens, prefill_context, decode_context) -> float:
        """Seconds to propose ``k`` tokens for every decoding sequence (and, for a draft model, to prefill it)."""
        d = np.asarray(decode_context, dtype=float)
        if self.draft is None:
            return d.size * NGRAM_PER_SEQUENCE_S + float(d.sum()) * NGRAM_SCAN_S_PER_TOKEN
        seconds = self.draft.step_time_s(prefill_tokens, prefill_context, d)
        if d.size:
            for j in range(1, self.k):  # each proposal depends on the previous one: k sequential steps
                seconds += self.draft.step_time_s(_EMPTY, _EMPTY, d + j)
        return seconds

    def step_time_s(self, prefill_tokens, prefill_context, decode_context) -> float:
        verify = self.target.verify_step_time_s(prefill_tokens, prefill_context, decode_context, self.k + 1)
        return verify + self.proposal_time_s(prefill_tokens, prefill_context, decode_context)


def speculative_step_model(target: InferenceStepModel, spec: SpeculativeSpec, cluster: Cluster,
                           plan: ServingPlan) -> SpeculativeStepModel:  # fmt: skip
    """Build the drafter beside ``target`` (same device, same parallelism and numerics) and wrap both."""
    if spec.method == "ngram":
        return SpeculativeStepModel(target, spec)
    draft_model = get_model(spec.draft_model)  # type: ignore[arg-type]
    if draft_model.vocab_size != target.model.vocab_size:
        raise FathomInputError(
            f"--speculative: draft model {draft_model.name} has a vocabulary of {draft_model.vocab_size}, "
            f"{target.model.name} {target.model.vocab_size}; the draft must share the target's tokenizer"
        )
    draft_plan = plan if draft_model.moe is not None else plan.model_copy(update={"ep": 1})  # a dense draft has no EP
    return SpeculativeStepModel(target, spec, InferenceStepModel(draft_model, cluster, draft_plan))


def parse_speculative(method: str | None, num_tokens: int | None, acceptance: float | None) -> SpeculativeSpec | None:
    """The spec of ``fathom serve --speculative draft:MODEL|ngram --spec-tokens K --spec-acceptance A``."""
    if method is None:
        if num_tokens is not None or acceptance is not None:
            raise FathomInputError("--spec-tokens and --spec-acceptance need --speculative draft:MODEL|ngram")
        return None
    kind, _, draft = method.strip().partition(":")
    kind = kind.strip().lower()
    if kind not in ("draft", "ngram") or (kind == "draft") != bool(draft.strip()):
        raise FathomInputError(f"--speculative: expected draft:MODEL or ngram, got {method!r}")
    if kind == "draft":
        try:
            get_model(draft.strip())  # an unknown name fails here, with close matches
        except FathomInputError as exc:
            raise FathomInputError(f"--speculative draft {exc}") from None
    k = 4 if num_tokens is None else num_tokens
    if not 1 <= k <= 64:
        raise FathomInputError(f"--spec-tokens: speculative tokens per step must be within 1..64, got {k}")
    if acceptance is None:
        raise FathomInputError("--spec-acceptance: give the proposals' acceptance rate alpha, within 0..1")
    if not 0.0 <= acceptance <= 1.0:
        raise FathomInputError(f"--spec-acceptance: acceptance rate must be within 0..1, got {acceptance}")
    return SpeculativeSpec(method=kind, draft_model=draft.strip() or None, num_tokens=k, acceptance=acceptance)
