"""Iteration-level schedulers: each decides, at the start of every engine iteration, which prompts prefill how many
tokens. Every running request that has finished its prefill decodes one token in every iteration (all policies agree
on that but ``prompt-first``, whose prompt runs pause the decodes; they differ in when and how much prefill joins), so
a scheduler only returns prefill chunks.

A scheduler works through the replica's small interface (``fathom.serving.replica.Replica``):
- ``prefilling``: running requests part-way through their prompt, in admission order; ``n_dec``: decoding requests;
- ``grant_chunk(seq, n)``: KV for up to ``n`` more prompt tokens of a running request, preempting requests admitted
  after it if blocks run out (call in admission order); returns the tokens granted;
- ``admit_head(max_tokens, allow_partial)``: admit the head of the waiting queue if ``max_batch`` and free KV allow
  (never by preempting), returning ``(seq, chunk)`` or None.
KV growth of decodes, preemption on decode growth and swap-in are the replica's, before the scheduler runs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

from fathom.errors import unknown_name_error

if TYPE_CHECKING:
    from fathom.serving.replica import Replica, Seq

Chunk = tuple["Seq", int]


class Scheduler(Protocol):
    name: str

    def plan(self, r: Replica) -> list[Chunk]:
        """Prefill chunks for the iteration about to start."""
        ...


def continue_prefills(r: Replica, budget: int | None) -> tuple[list[Chunk], int | None]:
    """Chunks for requests already part-way through their prompt, in admission order, within ``budget`` tokens
    (None: no budget, whole remainders)."""
    chunks: list[Chunk] = []
    for seq in list(r.prefilling.values()):
        want = seq.target - seq.done
        if budget is not None:
            if budget <= 0:
                break
            want = min(want, budget)
        got = r.grant_chunk(seq, want)
        if got:
            chunks.append((seq, got))
            if budget is not None:
                budget -= got
    return chunks, budget


def _registry() -> dict[str, type]:
    from fathom.serving.schedulers.chunked_prefill import ChunkedPrefillScheduler
    from fathom.serving.schedulers.continuous import ContinuousScheduler
    from fathom.serving.schedulers.decode_priority import DecodePriorityScheduler
    from fathom.serving.schedulers.prompt_first import PaddedPromptFirstScheduler, PromptFirstScheduler
    from fathom.serving.schedulers.static import StaticScheduler

    kinds = (StaticScheduler, ContinuousScheduler, ChunkedPrefillScheduler, DecodePriorityScheduler,
             PromptFirstScheduler, PaddedPromptFirstScheduler)  # fmt: skip
    return {s.name: s for s in kinds}


def list_schedulers() -> list[str]:
    return sorted(_registry())


def get_scheduler(name: str) -> Scheduler:
    """A fresh scheduler by name; an unknown name is a one-line input error with close matches."""
    registry = _registry()
    key = str(name).strip().lower()
    if key not in registry:
        raise unknown_name_error("scheduler", str(name), registry)
    return registry[key]()


# Schedulers that spend a per-iteration token budget in which each decode takes one token.
BUDGETED = ("chunked-prefill", "decode-priority")
