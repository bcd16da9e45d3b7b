"""Continuous (iteration-level) batching, Orca (Yu et al. 2022) and TensorRT-LLM's in-flight batching: the batch is
re-formed every iteration. Waiting requests are admitted first-come first-served whenever a slot (``max_batch``), KV
blocks for their whole prompt and room in the iteration's token budget are free, and their whole prompts run in the
very next iteration alongside every running decode (Orca's selective batching). The budget is ``max_batch_tokens``
tokens per iteration, decodes included (TensorRT-LLM's ``max_num_tokens``, Orca's max batch tokens); prompts are
never split (that is ``chunked-prefill``), so a prompt waits until it fits whole. A prompt longer than the whole
budget runs in an iteration that holds no other prompt (an engine built for such prompts raises its limit).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from fathom.serving.schedulers import Chunk, continue_prefills

if TYPE_CHECKING:
    from fathom.serving.replica import Replica


class ContinuousScheduler:
    name = "continuous"

    def plan(self, r: Replica) -> list[Chunk]:
        chunks, _ = continue_prefills(r, None)
        budget = r.max_batch_tokens - r.n_dec
        for _, n in chunks:
            budget -= n
        while budget > 0 and (admitted := r.admit_head(budget, False)) is not None:
            chunks.append(admitted)
            budget -= admitted[1]
        if not chunks and r.waiting and r.waiting[0].target > r.max_batch_tokens:
            admitted = r.admit_head(None, False)  # can never fit a budget: it runs with the decodes alone
            if admitted is not None:
                chunks.append(admitted)
        return chunks
