"""Parallel samples (best-of-N, test-time compute) of one request on a replica (a mixin of ``Replica``).

A request with ``samples`` = N prefills its prompt once; the prefill's last logits give every sample its first
token, then the samples decode independently (vLLM's sequence groups with ``n`` = N; the test-time compute of
best-of-N and self-consistency). The samples share the prompt's full KV blocks (reference-counted in the KV
manager, ``fork``); each holds its own copy of the prompt's partial last block and its generated tokens.

Accounting: while its prompt runs the request reserves N - 1 more batch slots, so the fork never exceeds
``max_batch``. Samples that find no free KV blocks at the fork wait at the queue's head to be recomputed (prompt
plus first token, as a recompute preemption would); a preempted sample is recomputed or swapped on its own. The
request ends when its last sample does: TTFT is the first token (all samples get theirs together), E2E the last
sample's end, and every sample's tokens count as output (``samples`` x ``output_tokens``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from fathom.serving.request import Request, RequestState
from fathom.serving.seq import Seq
from fathom.serving.token_times import TokenTimes

if TYPE_CHECKING:
    from fathom.serving.replica import Replica

_RUNNING, _WAITING, _FINISHED = RequestState.RUNNING, RequestState.WAITING, RequestState.FINISHED


class ParallelSamples:
    """Forking a prefilled request into its samples and gathering them when they finish."""

    def _init_samples(self: Replica) -> None:
        self._reserved = 0  # batch slots held for the samples of requests still prefilling
        self._left: dict[int, int] = {}  # request id -> samples not finished
        self._next_sample_id = -1  # samples get negative ids: their own KV accounting, never a request's

    def _fork(self: Replica, seq: Seq, start: int, now: float) -> None:
        """``seq`` finished its prompt and emitted its first token: its samples decode from iteration ``start``."""
        req, kv, bs = seq.req, self.kv, self.bs
        n = req.samples
        held = seq.kv  # prompt + the first token's slot
        shared = req.input_tokens // bs
        private = kv.blocks_for(held) - shared
        placed = n if not private else 1 + min(n - 1, kv.available // private)
        children = [self._sample_of(req, k, now) for k in range(n)]
        kv.fork(req.id, [c.id for c in children[:placed]], shared, private * (placed - 1))
        self._left[req.id] = n
        self.outstanding -= n - 1  # the other samples' first tokens
        for k, child in enumerate(children):
            s = Seq(child, held, held)
            if k < placed:
                s.kv = held
                self._enter_running(s)
                self._add_decoder(s, start, held, held)
            else:  # no blocks for it now: recompute prompt + first token when blocks free up
                s.done = 0
                child.state, child.prefilled_tokens = _WAITING, 0
                self.outstanding += held
                self.waiting.appendleft(s)
        del self.running[seq.order]
        self._leave_running(req)  # after the samples took their adapter, so the pool never evicts it

    def _sample_of(self: Replica, req: Request, k: int, now: float) -> Request:
        """Sample ``k`` of ``req``, its first token emitted at ``now`` (sample 0 shares the request's token times)."""
        child = Request(self._next_sample_id, req.arrival_s, req.input_tokens, req.output_tokens, adapter=req.adapter,
                        parent=req)  # fmt: skip
        self._next_sample_id -= 1
        child.replica, child.state = self.index, _RUNNING
        child.prefilled_tokens, child.generated_tokens = req.input_tokens, 1
        child.first_scheduled_s, child.first_token_s = req.first_scheduled_s, now
        child.token_times_s = req.token_times_s if k == 0 else TokenTimes((now,))
        return child

    def _sample_finished(self: Replica, child: Request, now: float) -> Request | None:
        """A sample ended: its request if that was the last one, else None."""
        req = child.parent
        req.preemptions += child.preemptions
        left = self._left[req.id] - 1
        if left:
            self._left[req.id] = left
            return None
        del self._left[req.id]
        req.generated_tokens = req.output_tokens
        req.state, req.finished_s = _FINISHED, now
        return req
