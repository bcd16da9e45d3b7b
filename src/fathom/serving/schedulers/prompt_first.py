"""Prompt-first scheduling, vLLM's scheduler before chunked prefill (v0.1-v0.3; Kwon et al. SOSP'23): whenever
prompts wait and nothing is swapped out, the iteration runs waiting prompts alone and every running decode pauses;
otherwise it runs all running decodes and no prompt. Prompts are never split; a prompt run admits waiting requests
first-come first-served within ``max_batch_tokens`` (vLLM's ``max_num_batched_tokens``), and always at least one.
The pauses of the decodes are the generation stalls that Sarathi-Serve (Agrawal et al. OSDI'24, Sec. 3) and
DeepSpeed-FastGen (Holmes et al. 2024, Sec. 3) measure against.

- ``prompt-first``: the budget counts prompt tokens (Sarathi-Serve's artifact, sarathi/core/scheduler/
  vllm_scheduler.py);
- ``prompt-first-padded``: vLLM v0.2 itself padded a prompt batch to its longest prompt, so the budget counts
  ``len(prompts) * max(prompts)`` and the padding may not exceed ``MAX_PADDINGS`` (vllm/core/scheduler.py and
  EngineArgs of v0.2.x). fathom prices the unpadded tokens (at most ``MAX_PADDINGS`` fewer).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from fathom.serving.schedulers import Chunk

if TYPE_CHECKING:
    from fathom.serving.replica import Replica

# vLLM v0.2 EngineArgs / SchedulerConfig default ``max_paddings`` (vllm/engine/arg_utils.py, v0.2.x)
MAX_PADDINGS = 256


class PromptFirstScheduler:
    name = "prompt-first"
    prompt_only_runs = True  # the replica runs this scheduler's prompts in iterations of their own
    padded = False

    def plan(self, r: Replica) -> list[Chunk]:
        chunks: list[Chunk] = []
        lens: list[int] = []
        while r.waiting:
            new = [*lens, r.waiting[0].target]
            if chunks and not self._fits(new, r.max_batch_tokens):
                break
            admitted = r.admit_head(None, False)
            if admitted is None:
                break
            chunks.append(admitted)
            lens = new
        return chunks

    def _fits(self, lens: list[int], budget: int) -> bool:
        if not self.padded:
            return sum(lens) <= budget
        padded = len(lens) * max(lens)
        return padded <= budget and padded - sum(lens) <= MAX_PADDINGS


class PaddedPromptFirstScheduler(PromptFirstScheduler):
    name = "prompt-first-padded"
    padded = True
