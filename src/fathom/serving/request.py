"""A request as the simulator sees it: what arrived, what has been computed, and when each milestone happened."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from fathom.serving.token_times import TokenTimes


class RequestState(StrEnum):
    WAITING = "waiting"  # arrived, no KV yet (or preempted by recompute)
    RUNNING = "running"  # prefilling or decoding on a replica
    SWAPPED = "swapped"  # preempted by swapping its KV to host memory
    FINISHED = "finished"
    REJECTED = "rejected"


@dataclass(slots=True)  # slots: a day of traffic holds millions of them
class Request:
    """One inference request. Times are simulation seconds; token counts exclude nothing (prompt + generated).

    ``prefix_id``/``prefix_len``: requests sharing ``prefix_id`` share their first ``prefix_len`` prompt tokens
    (system prompt, few-shot examples), which a prefix cache can reuse. With ``samples`` > 1, ``output_tokens`` is
    per sample and ``generated_tokens``/``token_times_s`` follow the first sample.
    """

    id: int
    arrival_s: float
    input_tokens: int
    output_tokens: int
    prefix_id: str | None = None
    prefix_len: int = 0
    state: RequestState = RequestState.WAITING
    prefilled_tokens: int = 0  # prompt tokens whose KV exists
    generated_tokens: int = 0
    replica: int | None = None
    first_scheduled_s: float | None = None
    first_token_s: float | None = None
    finished_s: float | None = None
    token_times_s: TokenTimes = field(default_factory=TokenTimes)  # emission time of every output token
    preemptions: int = 0
    reject_reason: str | None = None
    adapter: int | None = None  # multi-LoRA serving: the adapter this request runs with (None: the base model)
    samples: int = 1  # parallel samples (best-of-N) sharing the prompt's KV; the request ends when all have
    parent: Request | None = field(default=None, repr=False)  # a sample's request (see fathom.serving.samples)

    @property
    def context_tokens(self) -> int:
        """Tokens whose KV the request holds now (prompt computed so far + generated)."""
        return self.prefilled_tokens + self.generated_tokens

    @property
    def prefill_remaining(self) -> int:
        return self.input_tokens - self.prefilled_tokens

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens
