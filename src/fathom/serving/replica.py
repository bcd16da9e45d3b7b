"""One engine replica: queues, KV cache and scheduler, advanced one engine iteration at a time (Orca's
iteration-level model, Yu et al. 2022; vLLM's paged KV and preemption, Kwon et al. 2023).

An iteration starts at ``start_iteration(now)``: decodes get their KV blocks first (preempting the most recently
admitted requests if blocks run out), swapped-out requests come back if nothing was preempted, then the scheduler picks
prefill chunks. The cost model times the batch; ``finish_iteration`` at its end advances the requests. The first
output token is emitted at the end of the iteration that completes the prefill; each later iteration emits one more
(speculative decoding: a sampled number). A request holds KV blocks for prompt + generated tokens (the newest token's
slot included), at most input + output tokens, which is what admission control checks against the whole cache.

The replica's parts: its settings in ``fathom.serving.replica_config``, admission (the scheduler's interface) in
``admission``, decode bookkeeping in ``decode_slots`` (and ``speculative_slots``), preemption and swapping in
``preemption``; arrivals, the iteration loop and its results here.
"""

from __future__ import annotations

from array import array
from collections import deque

import numpy as np

from fathom.errors import unknown_name_error
from fathom.serving.admission import Admission
from fathom.serving.decode_slots import DecodeSlots
from fathom.serving.kv_manager import KVCacheManager
from fathom.serving.lora_pool import LoRAPool
from fathom.serving.pipeline import PipelineStages
from fathom.serving.preemption import Preemption
from fathom.serving.replica_config import PREEMPTION_MODES, ReplicaConfig
from fathom.serving.request import Request, RequestState
from fathom.serving.samples import ParallelSamples
from fathom.serving.schedulers import get_scheduler
from fathom.serving.seq import Seq
from fathom.serving.speculative_slots import SpeculativeSlots

__all__ = ["PREEMPTION_MODES", "ROLES", "Replica", "ReplicaConfig", "Seq", "SpeculativeReplica"]

ROLES = ("both", "prefill", "decode")
_EMPTY = np.zeros(0)  # batch arrays are float64 (integer-valued): cost models compute in floats anyway
_INF = float("inf")
_NONE: list[Request] = []  # shared empty result: callers only iterate it
_RUNNING, _WAITING = RequestState.RUNNING, RequestState.WAITING


class Replica(Admission, Preemption, DecodeSlots, ParallelSamples):
    """One engine replica. ``role``: ``both``, or ``prefill``/``decode`` for disaggregated serving, where a
    request leaves a prefill replica after its first token and its KV stays pinned there until ``release``.
    A config with ``speculative`` set makes a ``SpeculativeReplica``. A cost model with a ``lora`` spec (multi-LoRA
    serving, ``fathom.inference.lora_cost``) gives the replica an adapter pool (``fathom.serving.lora_pool``);
    requests with ``samples`` > 1 fork after their prefill (``fathom.serving.samples``)."""

    def __new__(cls, index: int, config: ReplicaConfig, *args, **kwargs) -> Replica:
        if cls is Replica and config.speculative is not None:
            cls = SpeculativeReplica
        return super().__new__(cls)

    def __init__(
        self, index: int, config: ReplicaConfig, role: str = "both", record_timeseries: bool = True,
        pipeline: PipelineStages | None = None,
    ) -> None:  # fmt: skip
        if role not in ROLES:
            raise unknown_name_error("role", role, ROLES)
        self.index, self.config, self.role = index, config, role
        self.cost = config.cost
        # one virtual engine of a pipelined replica (fathom.serving.pipeline) shares its stages, KV cache, waiting
        # queue and max_batch slots with the other virtual engines
        self.pipeline = pipeline
        self.kv = KVCacheManager(config.cost) if pipeline is None else pipeline.shared_kv(config.cost)
        if pipeline is not None:
            pipeline.engines.append(self)
        self.bs = self.kv.block_size
        self.scheduler = get_scheduler(config.scheduler)
        self._prompt_first = getattr(self.scheduler, "prompt_only_runs", False)
        self._prompt_run = False  # the iteration in flight runs prompts alone (prompt-first schedulers)
        self.prompt_runs = 0  # such iterations, which do not advance ``it``
        self.max_batch_tokens = config.max_batch_tokens
        self.swap = config.preemption == "swap"
        # a prefill replica hands requests off after their first token: only decoding replicas reserve outputs
        self._reserve_output = config.capacity_policy == "guaranteed-no-evict" and role != "prefill"
        self._kv_reservations: dict[int, int] = {}  # request id -> blocks of prompt + all output (no-evict policy)
        self._kv_reserved = 0
        self.prefix_caching = config.prefix_caching
        self.waiting: deque[Seq] = deque() if pipeline is None else pipeline.waiting
        self.swapped: deque[Seq] = deque()
        self.arrived_kv: deque[Seq] = deque()  # disaggregated: prefilled elsewhere, KV landed, waiting for blocks
        self.running: dict[int, Seq] = {}  # admission order -> seq; the last one is the preemption victim
        self.prefilling: dict[int, Seq] = {}  # admission order -> running seq part-way through its prompt
        self._order = 0
        self._pinned: dict[int, int] = {}  # request id -> tokens held after hand-off (prefill role)
        self._handoff: set[int] = set()  # request ids that leave after their first token (``enqueue``'s handoff)
        # prompt tokens queued or running here before their first token: Splitwise's JSQ (fathom.serving.mixed_pool,
        # whose replicas are never pipelined; a pipelined replica's engines share one queue and split this count)
        self.queued_prompt_tokens = 0
        self._init_decodes()
        self._init_preemption()
        self._init_samples()
        self.lora = LoRAPool.for_cost(config.cost)
        # Hydragen: decoders that share a cached prefix attend to it once per batch (the step model's lever)
        self._hydragen = bool(
            self.prefix_caching
            and hasattr(self.cost, "decode_attention_s")  # the step model itself, not a wrapper around it
            and self.cost.plan.shared_prefix_attention
        )
        # A cost model whose decode attention depends on the contexts only through their sum is handed that sum,
        # kept up to date by the decode slots, instead of an array of contexts built every iteration. Asked of the
        # class, so a wrapper that forwards attributes to the model it wraps never takes this path by accident.
        by_sum = getattr(type(self.cost), "prices_context_sum", None) is not None and self.cost.prices_context_sum
        self._by_sum = bool(by_sum) and self.lora is None and not self._hydragen
        self._step_by_sum = self.cost.step_time_sum_s if self._by_sum else None
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
        self._ts = array("d")  # (time, running, waiting, kv blocks used) per sample, flat: 32 bytes an iteration

    @property
    def max_batch(self) -> int:
        """Requests this replica may run now: ``max_batch``, less those a pipelined replica's other virtual engines
        run (one scheduler's limit over all micro-batches in flight, ``fathom.serving.pipeline``)."""
        pipe = self.pipeline
        return self.config.max_batch if pipe is None else self.config.max_batch - pipe.slots_taken(self)

    # -- arrivals ----------------------------------------------------------------------------------------------
    def reject_reason(self, req: Request, handoff: bool | None = None) -> str | None:
        """Why ``req`` can never run here (only its prompt and first token if ``handoff``), or None. The reason names
        the limit, not the request's own numbers (those are in its row of the per-request table), so the report's
        ``rejected_reasons`` counts requests per kind of limit."""
        if req.input_tokens < 1 or req.output_tokens < 1:
            return "input_tokens and output_tokens must be >= 1"
        total = req.input_tokens + req.output_tokens
        if req.samples > self.config.max_batch:
            return f"samples exceed max_batch {self.config.max_batch}"
        if total > self.cost.max_context:
            return f"input+output tokens exceed max_context {self.cost.max_context}"
        handoff = self.role == "prefill" if handoff is None else handoff
        held = min(req.input_tokens + 1, total) if handoff else total
        need = self.kv_blocks_reserved_for(req) if self._reserve_output else self.kv.blocks_for(held)
        if need > self.kv.capacity_blocks:
            return f"needs more KV blocks than a replica holds ({self.kv.capacity_blocks} blocks of {self.bs} tokens)"
        return None

    def enqueue(self, req: Request, handoff: bool | None = None) -> bool:
        """A new request routed here: queued, or rejected (False) with ``reject_reason`` set. ``handoff``: it leaves
        for a decode replica after its first token (default: on a prefill replica; Splitwise's mixed pool sets it
        per request, ``fathom.serving.mixed_pool``)."""
        handoff = self.role == "prefill" if handoff is None else handoff
        reason = self.reject_reason(req, handoff)
        if reason is not None:
            req.state, req.reject_reason = RequestState.REJECTED, reason
            return False
        req.replica, req.state = self.index, _WAITING
        self.waiting.append(Seq(req, req.input_tokens))
        self.outstanding += req.input_tokens + (1 if handoff else req.output_tokens * req.samples)
        self.queued_prompt_tokens += req.input_tokens
        if handoff:
            self._handoff.add(req.id)
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

    # -- one iteration -----------------------------------------------------------------------------------------
    def start_iteration(self, now: float) -> float | None:
        """Schedule the next iteration at ``now``; its duration in seconds, or None if there is nothing to run."""
        t = self.it
        self.now = now
        # a prompt-first scheduler (vLLM v0) runs waiting prompts alone, before the decodes grow or run
        prompt_run = self._prompt_first and bool(self.waiting) and not self.swapped
        chunks = self.scheduler.plan(self) if prompt_run else []
        self._prompt_run = prompt_run = bool(chunks)
        if not prompt_run and self.n_dec:  # lockstep decoding inlined: this runs once per iteration
            need = self._phase[-t % self.bs] if self._lockstep else self._blocks_due(t)
            if need and not self.kv.try_grow(need):
                self._grow_preempting(t, need)
        if prompt_run:
            pass
        elif self.waiting or self.prefilling or self.swapped or self.arrived_kv:
            if not (self._preempted_now and self.running):
                if self.swapped:
                    self._swap_in(t)
                if self.arrived_kv:
                    self._admit_arrived(t)
            if not self._prompt_first:  # a prompt-first decode run carries no prompts
                chunks = self.scheduler.plan(self) if (self.waiting or self.prefilling) else []
        n_dec = 0 if prompt_run else self.n_dec
        if chunks or n_dec:
            if chunks:
                pt = [n for _, n in chunks]  # lists: a few chunks per iteration, cheaper than arrays
                pc = [s.done for s, _ in chunks]
                self.prefill_tokens += sum(pt)
            else:
                pt = pc = _EMPTY
            if self._by_sum and self._lockstep:  # the hot path: one float instead of an array of contexts
                step = self._step_by_sum(pt, pc, n_dec, self._off_sum + n_dec * t)
            else:
                if not n_dec:
                    dc = _EMPTY
                elif self._lockstep:  # DecodeSlots._decode_contexts inlined
                    if self._dirty:
                        self._active, self._dirty = self._off[self._mask], False
                    self._t0d[()] = t
                    dc = self._active + self._t0d
                else:
                    dc = self._decode_contexts(t)
                lora = self.lora
                if self._hydragen and n_dec:
                    step = self.cost.step_time_s(pt, pc, dc, shared_prefix=self._shared_prefix_groups())
                elif lora is None:
                    step = self.cost.step_time_s(pt, pc, dc)
                else:
                    step = self.cost.step_time_s(pt, pc, dc, lora.active)
            dur = self._swap_s + float(step)
            if not 0.0 <= dur < _INF:
                raise ValueError(f"cost model returned an invalid iteration time {dur}")
        elif self._swap_s:
            dur = self._swap_s  # an iteration spent only moving KV over the host link
        else:
            self._preempted_now = False
            if self._record:  # the state it idles in, so a timeline does not hold the last iteration's counts
                self._sample(now)
            return None
        self._chunks, self._n_dec_iter = chunks, n_dec
        self.decode_tokens += n_dec
        self.busy_s += dur
        if self._record:  # _sample inlined: this runs once per iteration
            kv = self.kv
            self._ts.extend((now, len(self.running), len(self.waiting) + len(self.swapped) + len(self.arrived_kv),
                             kv.capacity_blocks - kv._free - len(kv._evictable)))  # fmt: skip
        return dur

    def _shared_prefix_groups(self) -> list[tuple[int, int]]:
        """``(prefix_len, decoders)`` for each cached prefix that two or more decoding requests share."""
        groups: dict[str, list[int]] = {}
        for seq in self.running.values():
            req = seq.req
            if seq.slot >= 0 and req.prefix_id is not None:
                group = groups.setdefault(req.prefix_id, [req.prefix_len, 0])
                group[1] += 1
        return [(length, n) for length, n in groups.values() if n > 1]

    def _sample(self, now: float) -> None:
        kv = self.kv
        self._ts.extend((now, len(self.running), len(self.waiting) + len(self.swapped) + len(self.arrived_kv),
                         kv.capacity_blocks - kv._free - len(kv._evictable)))  # fmt: skip

    def finish_iteration(self, now: float) -> tuple[list[Request], list[Request]]:
        """Advance the iteration that ends at ``now``: (requests finished, requests handed off for decoding)."""
        t = self.it
        self.outstanding -= self._n_dec_iter
        self._swap_s = 0.0
        self._preempted_now = False
        if self._prompt_run:  # the decodes did not run: their iteration index and token times stay put
            self.prompt_runs += 1
            nxt, ending = t, None
        else:
            self._iter_end.append(now)
            self.it = nxt = t + 1
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
                self.queued_prompt_tokens -= req.input_tokens
            self.outstanding -= 1
            if req.generated_tokens >= req.output_tokens:
                del self.running[seq.order]
                if (done_req := self._finish(seq, now, seq.kv)) is not None:
                    finished.append(done_req)
            elif req.samples > 1:
                self._fork(seq, nxt, now)
            elif req.id in self._handoff:
                self._handoff.discard(req.id)
                del self.running[seq.order]
                self._pinned[req.id] = seq.kv
                handoffs.append(req)
            else:
                self._add_decoder(seq, nxt, req.input_tokens + req.generated_tokens, seq.kv)
        self._chunks = []
        for seq in ending or ():
            self._sync(seq, t + 1)
            self._drop_decoder(seq, listed=False)
            del self.running[seq.order]
            if (done_req := self._finish(seq, now, seq.c0)) is not None:
                finished.append(done_req)
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
        req = seq.req
        req.state = _RUNNING
        if req.samples > 1:
            self._reserved += req.samples - 1
        if self.lora is not None:
            self._swap_s += self.lora.acquire(req.adapter)  # loading it delays this iteration, as a KV swap does
        if self._reserve_output:
            blocks = self.kv_blocks_reserved_for(req)
            self._kv_reservations[req.id] = blocks
            self._kv_reserved += blocks

    def _leave_running(self, req: Request) -> None:
        """Undo ``_enter_running``'s reservations (the caller removes it from ``running``)."""
        if req.samples > 1:
            self._reserved -= req.samples - 1
        if self.lora is not None:
            self.lora.release(req.adapter)
        if self._reserve_output:
            self._kv_reserved -= self._kv_reservations.pop(req.id, 0)

    def kv_blocks_reserved_for(self, req: Request) -> int:
        """Blocks the no-evict policy sets aside for ``req``: its prompt and every output token of every sample."""
        return self.kv.blocks_for(req.input_tokens + req.output_tokens * req.samples)

    def _finish(self, seq: Seq, now: float, held_tokens: int) -> Request | None:
        """Free a finished request's KV: the request to report finished (a sample's once its last sample ends)."""
        req = seq.req
        self.kv.free(req.id, held_tokens)
        req.state, req.finished_s = RequestState.FINISHED, now
        if req.samples > 1 or self.lora is not None or self._reserve_output:
            self._leave_running(req)
        return req if req.parent is None else self._sample_finished(req, now)

    def _preempt(self, victim: Seq) -> None:
        self._leave_running(victim.req)
        super()._preempt(victim)

    # -- results -----------------------------------------------------------------------------------------------
    def timeseries(self) -> dict[str, np.ndarray]:
        """At each iteration's start and when the replica goes idle: ``time_s``, ``running``, ``waiting`` (incl.
        swapped), ``kv_blocks_used``."""
        grid = np.frombuffer(self._ts, dtype=float).reshape(-1, 4)  # a view: each column below is its own copy
        out = {"time_s": grid[:, 0].copy()}
        for i, name in enumerate(("running", "waiting", "kv_blocks_used"), start=1):
            out[name] = grid[:, i].astype(np.int64)
        return out


class SpeculativeReplica(SpeculativeSlots, Replica):
    """A replica decoding speculatively: each iteration emits a sampled number of tokens per decoding request."""
