"""Admission of work into a replica's running batch: the scheduler's interface (a mixin of ``Replica``).

The scheduler (``fathom.serving.schedulers``) asks for prompt chunks through ``admit_head`` (a new request, never by
preempting) and ``grant_chunk`` (more of a running prompt, preempting later admissions if blocks run out);
``_admit_arrived`` starts disaggregated requests whose KV has landed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from fathom.serving.request import RequestState
from fathom.serving.seq import Seq

if TYPE_CHECKING:
    from fathom.serving.replica import Replica

_RUNNING = RequestState.RUNNING


class Admission:
    """Admitting waiting requests and granting prompt chunks."""

    def admit_head(self: Replica, max_tokens: int | None, allow_partial: bool) -> tuple[Seq, int] | None:
        """Admit the head of the waiting queue with a first chunk: its whole prompt (less prefix-cache hits) if that
        is within ``max_tokens`` (None: no limit), else ``max_tokens`` if ``allow_partial``, else nothing. Needs a
        free slot and free blocks (never preempts); nothing is admitted while swapped or landed requests wait or
        after a preemption in this iteration."""
        if not self.waiting or len(self.running) + self._reserved >= self.max_batch or self.swapped or self.arrived_kv:
            return None
        if self._preempted_now and self.running:
            return None
        seq = self.waiting[0]
        req, bs = seq.req, self.bs
        if self.lora is not None and not self.lora.can_take(req.adapter):
            return None  # its adapter cannot join the batch's (fathom.serving.lora_pool)
        if req.samples > 1 and len(self.running) + self._reserved + req.samples > self.max_batch:
            return None  # its samples need their slots (fathom.serving.samples)
        if self._reserve_output and self._kv_reserved + self.kv_blocks_reserved_for(req) > self.kv.capacity_blocks:
            return None  # guaranteed-no-evict: its whole output must fit beside the running requests' reservations
        pid = req.prefix_id if self.prefix_caching else None
        hit = 0
        if pid is not None and req.prefix_len >= bs:
            hit = self.kv.cached_prefix_blocks(pid, min(req.prefix_len, seq.target - 1) // bs)
        done = hit * bs
        remaining = seq.target - done
        if max_tokens is None or remaining <= max_tokens:
            chunk = remaining
        elif allow_partial:
            chunk = max_tokens
        else:
            return None
        tokens = done + chunk + (chunk == remaining)  # a completed prefill holds a slot for its first token
        if not self.kv.can_admit(pid, hit, tokens):
            return None
        self.waiting.popleft()
        self.kv.admit(req.id, pid, hit, tokens)
        seq.done, seq.kv = done, tokens
        req.prefilled_tokens = min(done, req.input_tokens)
        self.outstanding -= done
        self.prefix_hit_tokens += done
        if req.first_scheduled_s is None:
            req.first_scheduled_s = self.now
        self._enter_running(seq)
        self.prefilling[seq.order] = seq
        return seq, chunk

    def grant_chunk(self: Replica, seq: Seq, n: int) -> int:
        """KV for up to ``n`` more prompt tokens of running ``seq``, preempting requests admitted after it if blocks
        run out, else cutting the chunk to the blocks there are. Returns the tokens granted (0: none)."""
        if seq.req.state is not _RUNNING or seq.slot >= 0 or n <= 0:
            return 0
        kv, done, target = self.kv, seq.done, seq.target
        held = kv.blocks_for(seq.kv)
        need = kv.blocks_for(done + n + (done + n == target)) - held
        while need > kv.available:
            victim = self.running[next(reversed(self.running))]
            if victim is seq:
                break
            self._preempt(victim)
        if need > kv.available and self.pipeline is not None:  # the KV cache is shared (fathom.serving.pipeline)
            self.pipeline.preempt_later_prefills(self, seq, need)
        if need > kv.available:
            cap = (held + kv.available) * self.bs  # tokens it could hold
            n = min(n, cap - done)
            if done + n == target and done + n + 1 > cap:
                n -= 1
            if n <= 0:
                return 0
            need = kv.blocks_for(done + n + (done + n == target)) - held
        kv.grow(need)
        seq.kv = done + n + (done + n == target)
        return n

    def _admit_arrived(self: Replica, t: int) -> None:
        """Disaggregated: requests whose KV has landed start decoding while slots and blocks allow."""
        if self.scheduler.name == "static" and self.running:
            return  # a static batch admits nobody until it drains
        kv = self.kv
        while self.arrived_kv and len(self.running) < self.max_batch:
            seq = self.arrived_kv[0]
            req = seq.req
            c0 = req.input_tokens + req.generated_tokens
            alloc = self._decode_alloc(seq, c0)
            need = kv.blocks_for(alloc)
            if need > kv.available:
                break
            if self._reserve_output and self._kv_reserved + self.kv_blocks_reserved_for(req) > kv.capacity_blocks:
                break
            self.arrived_kv.popleft()
            kv.grow(need)
            self._enter_running(seq)
            self._add_decoder(seq, t, c0, alloc)
