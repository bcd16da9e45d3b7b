"""Decode-priority scheduling: running decodes are never slowed beyond the token budget and never stalled by a
prompt, at the cost of time to first token (the decode-prioritising end of the trade-off in Sarathi-Serve, Agrawal
et al. 2024, section 3; FasterTransformer-like).

Precisely, with B = ``max_batch_tokens`` and D running decodes:
- when D > 0, the iteration carries all D decodes plus whole prompts, first-come first-served, only while their sum
  stays within B - D; prompts are never chunked, and a prompt that does not fit waits (head-of-line) until it does;
- when D = 0 (nothing to slow down), the iteration is prefill-only: whole prompts up to B tokens, and always at
  least the first one even if it alone exceeds B, so a long prompt is never starved once the decodes drain.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from fathom.serving.schedulers import Chunk

if TYPE_CHECKING:
    from fathom.serving.replica import Replica


class DecodePriorityScheduler:
    name = "decode-priority"

    def plan(self, r: Replica) -> list[Chunk]:
        budget = r.max_batch_tokens - r.n_dec
        chunks: list[Chunk] = []

        def unbounded() -> bool:  # a prefill-only iteration takes its first prompt whatever its size
            return r.n_dec == 0 and not chunks

        for seq in list(r.prefilling.values()):  # remainders of prompts cut short by KV or a swap, whole as well
            want = seq.target - seq.done
            if not unbounded() and want > budget:
                break
            got = r.grant_chunk(seq, want)
            if got:
                chunks.append((seq, got))
                budget -= got
        while unbounded() or budget > 0:
            admitted = r.admit_head(None if unbounded() else budget, False)
            if admitted is None:
                break
            chunks.append(admitted)
            budget -= admitted[1]
        return chunks
