"""Continuous (iteration-level) batching, Orca (Yu et al. 2022): the batch is re-formed every iteration. Waiting
requests are admitted first-come first-served whenever a slot (``max_batch``) and KV blocks for their whole prompt are
free, and their whole prompts run in the very next iteration alongside every running decode (Orca's selective
batching; prefill-first: a new prompt never waits for decodes). No token budget: one long prompt makes that
iteration long for every decode in it (the generation stalls Sarathi-Serve measures).
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
        while (admitted := r.admit_head(None, False)) is not None:
            chunks.append(admitted)
        return chunks
