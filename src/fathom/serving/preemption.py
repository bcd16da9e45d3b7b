"""Preemption when KV blocks run out, by recompute or by swapping to host memory (a mixin of ``Replica``).

vLLM's policy (Kwon et al. 2023): the victim is the most recently admitted running request. ``recompute`` frees its
KV and puts it at the front of the waiting queue; tokens it already emitted stay emitted, and on re-admission its
prompt plus those tokens are recomputed as one prefill whose end emits its next token. ``swap`` copies its KV to
host memory over the device's host link; it comes back, before any new admission, when blocks free up. Swaps are
issued with the iteration in which they happen and delay it (vLLM's ``blocks_to_swap_in/out`` run before the model):
the cost model's ``swap_time_s(blocks)`` when it has one, else the bytes over ``host_link_bytes_per_s``.

Host memory is finite: the cost model's ``host_swap_tokens`` (vLLM's ``--swap-space`` per GPU) bounds the KV
swapped out at once. When a victim does not fit there it is preempted by recompute instead (vLLM aborts the
request with "Aborted due to the lack of CPU swap space"; a simulator keeps it, so every request still finishes).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from fathom.serving.request import RequestState
from fathom.serving.seq import Seq

if TYPE_CHECKING:
    from fathom.serving.replica import Replica

_WAITING, _SWAPPED = RequestState.WAITING, RequestState.SWAPPED


class Preemption:
    """Evicting running requests when the KV cache is full, and bringing swapped ones back."""

    def _init_preemption(self: Replica) -> None:
        cost = self.cost
        self._swap_time = getattr(cost, "swap_time_s", None)
        host = getattr(cost, "host_swap_tokens", None)
        self.host_capacity_blocks = None if host is None else int(host) // self.bs
        self.host_blocks = 0  # blocks of KV swapped out now
        self.swap_fallbacks = 0  # swap victims recomputed for lack of host memory

    def _grow_preempting(self: Replica, t: int, need: int) -> None:
        """Blocks for this iteration's decodes when the free ones do not suffice: preempt from the most recently
        admitted until they do (a preempted decode that needed a block needs it no more)."""
        kv = self.kv
        self._grown = False
        while need > kv.available:
            victim = self.running[next(reversed(self.running))]
            if victim.slot >= 0:
                need -= self._block_due_of(victim, t)
            self._preempt(victim)
        kv.grow(need)
        self._grown = True

    def _preempt(self: Replica, victim: Seq) -> None:
        """Evict ``victim``: swap its KV to host memory if swapping and there is room there, else recompute it."""
        req = victim.req
        if victim.slot >= 0:
            self._sync(victim, self.it)
            kv_tokens = victim.c0
            held = self._decode_held(victim)  # this iteration's slots may already be taken
            self._drop_decoder(victim)
        else:
            kv_tokens = held = victim.kv
            del self.prefilling[victim.order]
        del self.running[victim.order]
        req.preemptions += 1
        self.preemptions += 1
        self._preempted_now = True
        if self.swap:
            blocks = self.kv.blocks_for(kv_tokens)
            cap = self.host_capacity_blocks
            if cap is None or self.host_blocks + blocks <= cap:
                seconds = self.kv.swap_out(req.id, held, kv_tokens)
                self._swap_s += seconds if self._swap_time is None else self._swap_time(blocks)
                self.host_blocks += blocks
                victim.kv = kv_tokens
                req.state = _SWAPPED
                self.swapped.appendleft(victim)  # successive victims were admitted earlier: the oldest returns first
                return
            self.swap_fallbacks += 1
        self.kv.free(req.id, held)
        target = req.input_tokens + req.generated_tokens  # prompt and generated tokens are recomputed as prefill
        self.outstanding += target - (victim.target - victim.done)
        victim.target, victim.done, victim.kv = target, 0, 0
        req.prefilled_tokens = 0
        req.state = _WAITING
        self.waiting.appendleft(victim)

    def _swap_in(self: Replica, t: int) -> None:
        """Bring swapped requests back, oldest first, while slots and blocks allow (before any new admission)."""
        kv = self.kv
        while self.swapped and len(self.running) + self._reserved < self.max_batch:
            seq = self.swapped[0]
            if self.lora is not None and not self.lora.can_take(seq.req.adapter):
                break  # its adapter cannot join the batch's (fathom.serving.lora_pool)
            decoding = seq.done >= seq.target
            alloc = self._decode_alloc(seq, seq.kv) if decoding else seq.kv  # a decode also needs this iteration
            if kv.blocks_for(alloc) > kv.available:
                break
            self.swapped.popleft()
            blocks = kv.blocks_for(seq.kv)
            seconds = kv.swap_in(alloc, seq.kv)
            self._swap_s += seconds if self._swap_time is None else self._swap_time(blocks)
            self.host_blocks -= blocks
            self._enter_running(seq)
            if decoding:
                self._add_decoder(seq, t, seq.kv, alloc)
            else:
                self.prefilling[seq.order] = seq
