"""One engine replica: queues, KV cache and scheduler, advanced one engine iteration at a time (Orca's
iteration-level model, Yu et al. 2022; vLLM's paged KV and preemption, Kwon et al. 2023).

An iteration starts at ``start_iteration(now)``: decodes get their KV blocks first (preempting the most recently
admitted requests if blocks run out), swapped-out requests come back if nothing was preempted, then the scheduler picks
prefill chunks. The cost model times the batch; ``finish_iteration`` at its end advances the requests. The first
output token is emitted at the end of the iteration that completes the prefill; each later iteration emits one more.
A request holds KV blocks for prompt + generated tokens (the newest token's slot included), at most
input + output tokens, which is what admission control checks against the whole cache.

Preemption (vLLM): the victim is the most recently admitted running request. ``recompute`` frees its KV and puts it
at the front of the waiting queue; tokens it already emitted stay emitted, and on re-admission its prompt plus those
tokens are recomputed as one prefill whose end emits its next token. ``swap`` copies its KV to host memory over the
host link (the copy time is added to the iteration); it comes back, before any new admission, when blocks free up.

Speed: every decoding request decodes in every iteration until it finishes or is preempted (all schedulers agree),
so its state is a function of the iteration index. A decode costs nothing per token in Python: its context is
``off + t`` in a slot array, the number of decodes needing a new KV block at iteration ``t`` is a count kept per
``off mod block_size``, its finishing iteration is known when it starts, and its token times are copied from the
replica's list of iteration end times when it leaves.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np

from fathom.errors import FathomInputError, unknown_name_error
from fathom.serving.cost import StepCostModel
from fathom.serving.kv_manager import KVCacheManager
from fathom.serving.request import Request, RequestState
from fathom.serving.schedulers import BUDGETED, get_scheduler

PREEMPTION_MODES = ("recompute", "swap")
ROLES = ("both", "prefill", "decode")
_EMPTY = np.zeros(0)  # batch arrays are float64 (integer-valued): cost models compute in floats anyway
_INF = float("inf")
_NONE: list[Request] = []  # shared empty result: callers only iterate it
_RUNNING, _WAITING, _SWAPPED = RequestState.RUNNING, RequestState.WAITING, RequestState.SWAPPED


@dataclass(frozen=True)
class ReplicaConfig:
    """One engine replica: its cost model (hardware, model, parallelism) and its engine settings.

    ``max_batch``: most requests running at once (vLLM ``max_num_seqs``); ``max_batch_tokens``: the per-iteration
    token budget of ``chunked-prefill`` and ``decode-priority`` (vLLM ``max_num_batched_tokens``); ``preemption``:
    what happens to a request evicted when KV blocks run out; ``prefix_caching``: reuse KV of shared prefixes."""

    cost: StepCostModel
    scheduler: str = "continuous"
    max_batch: int = 256
    max_batch_tokens: int = 8192
    preemption: str = "recompute"
    prefix_caching: bool = False

    def __post_init__(self) -> None:
        get_scheduler(self.scheduler)  # validates the name
        if self.preemption not in PREEMPTION_MODES:
            raise unknown_name_error("preemption", self.preemption, PREEMPTION_MODES)
        if self.max_batch < 1 or self.max_batch_tokens < 1:
            raise FathomInputError(
                f"max_batch and max_batch_tokens must be >= 1, got {self.max_batch} and {self.max_batch_tokens}"
            )
        if self.scheduler.strip().lower() in BUDGETED and self.max_batch_tokens < self.max_batch:
            raise FathomInputError(
                f"max_batch_tokens ({self.max_batch_tokens}) must be >= max_batch ({self.max_batch}) for scheduler "
                f"{self.scheduler!r}: every running decode takes one token of the budget"
            )
        if int(self.cost.kv_capacity_tokens) // max(int(self.cost.block_size), 1) < 1:
            raise FathomInputError(
                f"kv_capacity_tokens ({self.cost.kv_capacity_tokens}) holds no block of {self.cost.block_size} tokens"
            )


class Seq:
    """A request's state on one replica. ``target``: tokens to compute before the next token is emitted (the prompt,
    or after a recompute preemption prompt + generated); ``done`` of them are computed; ``kv``: tokens whose blocks
    it holds while not decoding. While decoding (``slot >= 0``) its context before iteration t is ``c0 + t - start``
    and ``Request.generated_tokens``/``token_times_s`` lag until it leaves (``_sync``). While a recomputation runs,
    ``Request.context_tokens`` overstates the KV held: its generated tokens are counted before they are recomputed."""

    __slots__ = ("req", "order", "target", "done", "kv", "slot", "start", "c0", "phase", "finish_it")

    def __init__(self, req: Request, target: int, done: int = 0) -> None:
        self.req = req
        self.order = -1
        self.target = target
        self.done = done
        self.kv = 0
        self.slot = -1
        self.start = self.c0 = self.phase = self.finish_it = 0


class Replica:
    """One engine replica. ``role``: ``both``, or ``prefill``/``decode`` for disaggregated serving, where a
    request leaves a prefill replica after its first token and its KV stays pinned there until ``release``."""

    def __init__(self, index: int, config: ReplicaConfig, role: str = "both", record_timeseries: bool = True) -> None:
        if role not in ROLES:
            raise unknown_name_error("role", role, ROLES)
        self.index, self.config, self.role = index, config, role
        self.cost = config.cost
        self.kv = KVCacheManager(config.cost)
        self.bs = self.kv.block_size
        self.scheduler = get_scheduler(config.scheduler)
        self.max_batch, self.max_batch_tokens = config.max_batch, config.max_batch_tokens
        self.swap = config.preemption == "swap"
        self.prefix_caching = config.prefix_caching
        self.waiting: deque[Seq] = deque()
        self.swapped: deque[Seq] = deque()
        self.arrived_kv: deque[Seq] = deque()  # disaggregated: prefilled elsewhere, KV landed, waiting for blocks
        self.running: dict[int, Seq] = {}  # admission order -> seq; the last one is the preemption victim
        self.prefilling: dict[int, Seq] = {}  # admission order -> running seq part-way through its prompt
        self._order = 0
        self._pinned: dict[int, int] = {}  # request id -> tokens held after hand-off (prefill role)
        # decoding requests, lazily: context = _off[slot] + t, a block is due when (off + t) % bs == 0
        self.n_dec = 0
        self._off = np.zeros(64)
        self._mask = np.zeros(64, dtype=bool)
        self._free_slots = list(range(63, -1, -1))
        self._active = _EMPTY
        self._t0d = np.zeros(())
        self._dirty = False
        self._phase = [0] * self.bs
        self._finish_at: dict[int, list[Seq]] = {}
        self._iter_end: list[float] = []  # end time of every iteration: the token times of decodes
        # the iteration in flight
        self.it = 0
        self.now = 0.0
        self._chunks: list[tuple[Seq, int]] = []
        self._n_dec_iter = 0
        self._swap_s = 0.0
        self._preempted_now = False
        self._grown = True  # False only while this iteration's decode blocks are being found
        # simulator flags and statistics
        self.busy = self.step_pending = False
        self.outstanding = 0  # tokens still to compute or emit for requests queued or running here
        self.busy_s = 0.0
        self.preemptions = self.prefix_hit_tokens = self.prefill_tokens = self.decode_tokens = 0
        self._record = record_timeseries
        self._ts: list[tuple[float, int, int, int]] = []

    # -- arrivals ----------------------------------------------------------------------------------------------
    def reject_reason(self, req: Request) -> str | None:
        """Why ``req`` can never run here, or None."""
        if req.input_tokens < 1 or req.output_tokens < 1:
            return f"input_tokens and output_tokens must be >= 1 (got {req.input_tokens}, {req.output_tokens})"
        total = req.input_tokens + req.output_tokens
        if total > self.cost.max_context:
            return f"input+output tokens {total} exceed max_context {self.cost.max_context}"
        held = min(req.input_tokens + 1, total) if self.role == "prefill" else total
        need = self.kv.blocks_for(held)
        if need > self.kv.capacity_blocks:
            return f"needs {need} KV blocks of {self.bs} tokens, replica {self.index} holds {self.kv.capacity_blocks}"
        return None

    def enqueue(self, req: Request) -> bool:
        """A new request routed here: queued, or rejected (False) with ``reject_reason`` set."""
        reason = self.reject_reason(req)
        if reason is not None:
            req.state, req.reject_reason = RequestState.REJECTED, reason
            return False
        req.replica, req.state = self.index, _WAITING
        self.waiting.append(Seq(req, req.input_tokens))
        self.outstanding += req.input_tokens + (1 if self.role == "prefill" else req.output_tokens)
        return True

    def expect(self, req: Request) -> None:
        """A request routed here for decoding whose KV is on its way (counts toward ``outstanding`` already)."""
        self.outstanding += req.output_tokens - req.generated_tokens

    def receive(self, req: Request) -> None:
        """Its KV has landed: it decodes as soon as a slot and blocks are free."""
        req.replica, req.state = self.index, _WAITING
        self.arrived_kv.append(Seq(req, req.input_tokens, req.input_tokens))

    def release(self, req: Request) -> None:
        """Free the KV pinned by a request handed off to a decode replica (its transfer is over)."""
        self.kv.free(req.id, self._pinned.pop(req.id))

    # -- the scheduler's interface -----------------------------------------------------------------------------
    def admit_head(self, max_tokens: int | None, allow_partial: bool) -> tuple[Seq, int] | None:
        """Admit the head of the waiting queue with a first chunk: its whole prompt (less prefix-cache hits) if that
        is within ``max_tokens`` (None: no limit), else ``max_tokens`` if ``allow_partial``, else nothing. Needs a
        free slot and free blocks (never preempts); nothing is admitted while swapped or landed requests wait or
        after a preemption in this iteration."""
        if not self.waiting or len(self.running) >= self.max_batch or self.swapped or self.arrived_kv:
            return None
        if self._preempted_now and self.running:
            return None
        seq = self.waiting[0]
        req, bs = seq.req, self.bs
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

    def grant_chunk(self, seq: Seq, n: int) -> int:
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

    # -- one iteration -----------------------------------------------------------------------------------------
    def start_iteration(self, now: float) -> float | None:
        """Schedule the next iteration at ``now``; its duration in seconds, or None if there is nothing to run."""
        t = self.it
        self.now = now
        if self.n_dec:
            need = self._phase[-t % self.bs]
            if need and not self.kv.try_grow(need):
                self._grow_preempting(t, need)
        if self.waiting or self.prefilling or self.swapped or self.arrived_kv:
            if not (self._preempted_now and self.running):
                if self.swapped:
                    self._swap_in(t)
                if self.arrived_kv:
                    self._admit_arrived(t)
            chunks = self.scheduler.plan(self) if (self.waiting or self.prefilling) else []
        else:
            chunks = []
        n_dec = self.n_dec
        if chunks or n_dec:
            if chunks:
                pt = np.array([n for _, n in chunks], dtype=float)
                pc = np.array([s.done for s, _ in chunks], dtype=float)
                self.prefill_tokens += sum(n for _, n in chunks)
            else:
                pt = pc = _EMPTY
            if n_dec:
                if self._dirty:
                    self._active, self._dirty = self._off[self._mask], False
                self._t0d[()] = t  # adding a 0-d array is cheaper than adding a Python int
                dc = self._active + self._t0d
            else:
                dc = _EMPTY
            dur = self._swap_s + float(self.cost.step_time_s(pt, pc, dc))
            if not 0.0 <= dur < _INF:
                raise ValueError(f"cost model returned an invalid iteration time {dur}")
        elif self._swap_s:
            dur = self._swap_s  # an iteration spent only moving KV over the host link
        else:
            self._preempted_now = False
            return None
        self._chunks, self._n_dec_iter = chunks, n_dec
        self.decode_tokens += n_dec
        self.busy_s += dur
        if self._record:
            kv = self.kv
            self._ts.append((now, len(self.running), len(self.waiting) + len(self.swapped) + len(self.arrived_kv),
                             kv.capacity_blocks - kv._free - len(kv._evictable)))  # fmt: skip
        return dur

    def _grow_preempting(self, t: int, need: int) -> None:
        """Blocks for this iteration's decodes when the free ones do not suffice: preempt from the most recently
        admitted until they do (a preempted decode that needed a block needs it no more)."""
        cross = -t % self.bs
        kv = self.kv
        self._grown = False
        while need > kv.available:
            victim = self.running[next(reversed(self.running))]
            if victim.slot >= 0 and victim.phase == cross:
                need -= 1
            self._preempt(victim)
        kv.grow(need)
        self._grown = True

    def finish_iteration(self, now: float) -> tuple[list[Request], list[Request]]:
        """Advance the iteration that ends at ``now``: (requests finished, requests handed off for decoding)."""
        t = self.it
        self._iter_end.append(now)
        self.outstanding -= self._n_dec_iter
        self._swap_s = 0.0
        self._preempted_now = False
        self.it = t + 1
        ending = self._finish_at.pop(t, None)
        if not self._chunks and ending is None:
            return _NONE, _NONE
        finished: list[Request] = []
        handoffs: list[Request] = []
        kv, bs = self.kv, self.bs
        for seq, n in self._chunks:
            req = seq.req
            before = seq.done
            done = seq.done = before + n
            self.outstanding -= n
            req.prefilled_tokens = min(done, req.input_tokens)
            if self.prefix_caching and req.prefix_id is not None and before < req.prefix_len:
                kv.commit_prefix(req.id, req.prefix_id, min(done, req.prefix_len) // bs)
            if done < seq.target:
                continue
            del self.prefilling[seq.order]
            req.generated_tokens += 1
            req.token_times_s.append(now)
            if req.first_token_s is None:
                req.first_token_s = now
            self.outstanding -= 1
            if req.generated_tokens >= req.output_tokens:
                del self.running[seq.order]
                self._finish(seq, now, seq.kv)
                finished.append(req)
            elif self.role == "prefill":
                del self.running[seq.order]
                self._pinned[req.id] = seq.kv
                handoffs.append(req)
            else:
                self._add_decoder(seq, t + 1, req.input_tokens + req.generated_tokens)
        self._chunks = []
        for seq in ending or ():
            self._sync(seq, t + 1)
            self._drop_decoder(seq, listed=False)
            del self.running[seq.order]
            self._finish(seq, now, seq.c0)
            finished.append(seq.req)
        return finished, handoffs

    def flush(self) -> None:
        """Bring decoding requests' token counts and times up to date (a run cut short by ``max_sim_time_s``)."""
        for seq in self.running.values():
            if seq.slot >= 0:
                self._sync(seq, self.it)

    # -- internals ---------------------------------------------------------------------------------------------
    def _enter_running(self, seq: Seq) -> None:
        self._order += 1
        seq.order = self._order
        self.running[seq.order] = seq
        seq.req.state = _RUNNING

    def _finish(self, seq: Seq, now: float, held_tokens: int) -> None:
        self.kv.free(seq.req.id, held_tokens)
        seq.req.state, seq.req.finished_s = RequestState.FINISHED, now

    def _add_decoder(self, seq: Seq, start: int, c0: int) -> None:
        if not self._free_slots:
            size = self._off.size
            self._off = np.concatenate([self._off, np.zeros(size)])
            self._mask = np.concatenate([self._mask, np.zeros(size, dtype=bool)])
            self._free_slots = list(range(2 * size - 1, size - 1, -1))
        slot = self._free_slots.pop()
        off = c0 - start
        self._off[slot] = off
        self._mask[slot] = True
        self._dirty = True
        seq.slot, seq.start, seq.c0 = slot, start, c0
        seq.phase = off % self.bs
        self._phase[seq.phase] += 1
        req = seq.req
        f = seq.finish_it = start + req.output_tokens - req.generated_tokens - 1
        lst = self._finish_at.get(f)
        if lst is None:
            self._finish_at[f] = [seq]
        else:
            lst.append(seq)
        self.n_dec += 1

    def _drop_decoder(self, seq: Seq, listed: bool = True) -> None:
        self._mask[seq.slot] = False
        self._free_slots.append(seq.slot)
        self._dirty = True
        self._phase[seq.phase] -= 1
        if listed:
            self._finish_at[seq.finish_it].remove(seq)
        seq.slot = -1
        self.n_dec -= 1

    def _sync(self, seq: Seq, upto: int) -> None:
        """Emit the tokens of iterations ``seq.start .. upto - 1`` into the request."""
        k = upto - seq.start
        if k > 0:
            seq.req.token_times_s.extend(self._iter_end[seq.start : upto])
            seq.req.generated_tokens += k
            seq.c0 += k
            seq.start = upto

    def _preempt(self, victim: Seq) -> None:
        """Evict ``victim`` (vLLM's policy: the most recently admitted request goes first): recompute or swap."""
        req = victim.req
        if victim.slot >= 0:
            self._sync(victim, self.it)
            kv_tokens = victim.c0
            held = kv_tokens + self._grown  # this iteration's block was already added
            self._drop_decoder(victim)
        else:
            kv_tokens = held = victim.kv
            del self.prefilling[victim.order]
        del self.running[victim.order]
        req.preemptions += 1
        self.preemptions += 1
        self._preempted_now = True
        if self.swap:
            self._swap_s += self.kv.swap_out(req.id, held, kv_tokens)
            victim.kv = kv_tokens
            req.state = _SWAPPED
            self.swapped.appendleft(victim)  # successive victims were admitted earlier: the oldest comes back first
            return
        self.kv.free(req.id, held)
        target = req.input_tokens + req.generated_tokens  # prompt and generated tokens are recomputed as prefill
        self.outstanding += target - (victim.target - victim.done)
        victim.target, victim.done, victim.kv = target, 0, 0
        req.prefilled_tokens = 0
        req.state = _WAITING
        self.waiting.appendleft(victim)

    def _swap_in(self, t: int) -> None:
        kv = self.kv
        while self.swapped and len(self.running) < self.max_batch:
            seq = self.swapped[0]
            decoding = seq.done >= seq.target
            alloc = seq.kv + 1 if decoding else seq.kv  # a decode also needs this iteration's slot
            if kv.blocks_for(alloc) > kv.available:
                break
            self.swapped.popleft()
            self._swap_s += kv.swap_in(alloc, seq.kv)
            self._enter_running(seq)
            if decoding:
                self._add_decoder(seq, t, seq.kv)
            else:
                self.prefilling[seq.order] = seq

    def _admit_arrived(self, t: int) -> None:
        if self.scheduler.name == "static" and self.running:
            return  # a static batch admits nobody until it drains
        kv = self.kv
        while self.arrived_kv and len(self.running) < self.max_batch:
            seq = self.arrived_kv[0]
            req = seq.req
            c0 = req.input_tokens + req.generated_tokens
            need = kv.blocks_for(c0 + 1)
            if need > kv.available:
                break
            self.arrived_kv.popleft()
            kv.grow(need)
            self._enter_running(seq)
            self._add_decoder(seq, t, c0)

    # -- results -----------------------------------------------------------------------------------------------
    def timeseries(self) -> dict[str, np.ndarray]:
        """Per iteration, at its start: ``time_s``, ``running``, ``waiting`` (incl. swapped), ``kv_blocks_used``."""
        grid = np.array(self._ts, dtype=float).reshape(len(self._ts), 4)
        out = {"time_s": grid[:, 0]}
        for i, name in enumerate(("running", "waiting", "kv_blocks_used"), start=1):
            out[name] = grid[:, i].astype(np.int64)
        return out
