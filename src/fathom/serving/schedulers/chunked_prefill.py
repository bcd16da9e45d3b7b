"""Chunked prefill with stall-free batching, Sarathi-Serve (Agrawal et al. 2024) and vLLM v1's scheduler: each
iteration has a token budget ``max_batch_tokens``. Every decode takes one token of it first; what remains goes to
prompt chunks, first to requests already part-way through their prompt (admission order), then to newly admitted
waiting requests (first-come first-served), the last one cut to the budget. A prompt of length L thus prefills in
about ceil(L / budget) iterations, and no iteration exceeds the budget, which bounds the time between tokens.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from fathom.serving.schedulers import Chunk, continue_prefills

if TYPE_CHECKING:
    from fathom.serving.replica import Replica


class ChunkedPrefillScheduler:
    name = "chunked-prefill"

    def plan(self, r: Replica) -> list[Chunk]:
        chunks, budget = continue_prefills(r, r.max_batch_tokens - r.n_dec)
        while budget is not None and budget > 0 and (admitted := r.admit_head(budget, True)) is not None:
            chunks.append(admitted)
            budget -= admitted[1]
        return chunks
