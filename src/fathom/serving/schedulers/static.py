"""Static (request-level) batching, as in FasterTransformer before iteration-level scheduling (Yu et al. 2022, Orca,
section 2): a batch is formed only when the previous one has fully drained; its prompts prefill together in one
iteration, then the batch decodes until its last request finishes. Slots of requests that finish early stay empty.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from fathom.serving.schedulers import Chunk, continue_prefills

if TYPE_CHECKING:
    from fathom.serving.replica import Replica


class StaticScheduler:
    name = "static"

    def plan(self, r: Replica) -> list[Chunk]:
        if r.running or r.swapped:  # the batch is still draining (swapped members belong to it)
            return continue_prefills(r, None)[0]
        chunks: list[Chunk] = []
        while (admitted := r.admit_head(None, False)) is not None:  # up to max_batch whole prompts that fit
            chunks.append(admitted)
        return chunks
