"""The serving simulator: a discrete-event loop over request arrivals and engine iterations of many replicas.

Each ``simulate`` call owns its clock, event heap, router state and seeded numpy ``Generator``; nothing is global,
so runs are reproducible and may run side by side. Events at equal times pop by priority (iteration ends, then KV
transfers, then arrivals, then deferred replica steps) and then in push order. A replica runs iterations back to
back while it has work and sleeps otherwise; an arrival or a landed KV transfer wakes it.

Disaggregated prefill and decode (Splitwise, Patel et al. 2024; DistServe, Zhong et al. 2024): a request prefills
on a prefill replica, which emits its first token; a decode replica is then picked by the router and its KV
(``input_tokens * kv_bytes_per_token`` of the prefill replica) crosses the link at ``kv_link_bytes_per_s``.
Transfers are serialized per prefill replica (its outgoing NIC; FIFO, whatever the destination), and the KV stays
pinned on the prefill replica until its transfer is over. On the decode replica the request waits for a slot and
blocks, then decodes: the gap between its first and second token is queueing on the link + transfer + decode wait +
one decode iteration. With Splitwise's mixed pool (``fathom.serving.mixed_pool``) the pool picks both replicas on
arrival instead of the routers and may pick one replica for both, which then runs the request whole.

A replica with pipeline stages (``pp`` > 1) keeps one micro-batch per stage in flight (``fathom.serving.pipeline``):
its virtual engines sit side by side among the replicas the router picks from and share the stages' clock.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from fathom.errors import FathomInputError
from fathom.serving.events import ARRIVAL, ITERATION_DONE, STEP, TRANSFER_DONE, EventHeap
from fathom.serving.mixed_pool import MixedPool, MixedPoolPolicy
from fathom.serving.pipeline import PipelineStages, merge_stats, pipeline_stages
from fathom.serving.replica import Replica, ReplicaConfig
from fathom.serving.request import Request, RequestState
from fathom.serving.router import get_router

__all__ = ["ClosedLoop", "Disaggregation", "KVTransfer", "ReplicaConfig", "ReplicaStats", "SimulationResult",
           "simulate"]  # fmt: skip

_TERMINAL = (RequestState.FINISHED, RequestState.REJECTED)


@dataclass(frozen=True)
class ClosedLoop:
    """``concurrency`` clients each keep one request in flight until ``num_requests`` have been issued: a new request
    arrives ``think_time_s`` after one finishes (or is rejected). ``make_request(id, arrival_s, rng)`` draws it."""

    concurrency: int
    num_requests: int
    make_request: Callable[[int, float, np.random.Generator], Request]
    think_time_s: float = 0.0

    def __post_init__(self) -> None:
        if self.concurrency < 1 or self.num_requests < 0 or not self.think_time_s >= 0.0:
            raise FathomInputError(
                f"closed loop: concurrency must be >= 1, num_requests >= 0 and think_time_s >= 0 (got "
                f"{self.concurrency}, {self.num_requests}, {self.think_time_s})"
            )


@dataclass(frozen=True)
class Disaggregation:
    """Separate prefill and decode pools joined by a KV link of ``kv_link_bytes_per_s`` per prefill replica.
    ``mixed_pool``: Splitwise's mixed pool (``fathom.serving.mixed_pool``), which picks both replicas of a request on
    arrival and lends machines to the other phase under load, in place of the router."""

    prefill: list[ReplicaConfig]
    decode: list[ReplicaConfig]
    kv_link_bytes_per_s: float
    mixed_pool: MixedPoolPolicy | None = None

    def __post_init__(self) -> None:
        if not self.prefill or not self.decode:
            raise FathomInputError("disaggregation needs at least one prefill and one decode replica")
        if not self.kv_link_bytes_per_s > 0 or math.isinf(self.kv_link_bytes_per_s):
            raise FathomInputError(f"kv_link_bytes_per_s must be > 0 and finite, got {self.kv_link_bytes_per_s}")


@dataclass(frozen=True)
class KVTransfer:
    """One disaggregated hand-off: request, replicas (indices into ``SimulationResult.replicas``), link times."""

    request_id: int
    prefill_replica: int
    decode_replica: int
    start_s: float
    end_s: float
    bytes: float


@dataclass
class ReplicaStats:
    """What one replica did. ``busy_s``: seconds it was running iterations, including one still in flight at a
    ``max_sim_time_s`` cut-off (times the GPUs of a replica for GPU-seconds); ``timeseries``: per iteration, see
    ``Replica.timeseries``."""

    index: int
    role: str
    scheduler: str
    busy_s: float
    iterations: int
    preemptions: int
    prefill_tokens: int  # prompt tokens computed (recomputation included, cache hits excluded)
    decode_tokens: int
    prefix_hit_tokens: int
    swap_out_bytes: float
    swap_in_bytes: float
    kv_capacity_blocks: int  # the denominator of ``timeseries["kv_blocks_used"]``
    timeseries: dict[str, np.ndarray] = field(repr=False)
    lora: dict[str, float] | None = None  # multi-LoRA serving: adapter loads (``LoRAPool.stats``)


@dataclass
class SimulationResult:
    requests: list[Request]  # copies of the input requests (open loop, same order) or the issued ones (closed)
    replicas: list[ReplicaStats]  # disaggregated: prefill replicas first, then decode replicas
    total_time_s: float  # time of the last event processed (the cut-off if ``truncated``)
    truncated: bool  # stopped at ``max_sim_time_s`` with requests still in flight
    transfers: list[KVTransfer] = field(default_factory=list, repr=False)
    mixed_pool: dict[str, int] | None = None  # Splitwise's mixed pool: ``MixedPool.stats``

    @property
    def finished(self) -> list[Request]:
        return [r for r in self.requests if r.state is RequestState.FINISHED]

    @property
    def rejected(self) -> list[Request]:
        return [r for r in self.requests if r.state is RequestState.REJECTED]

    @property
    def busy_s(self) -> list[float]:
        return [r.busy_s for r in self.replicas]


def _fresh(r: Request) -> Request:
    """A copy with no progress, so the caller's list is left as it was and can be simulated again."""
    if r.prefix_len < 0 or r.prefix_len > r.input_tokens:
        raise FathomInputError(f"request {r.id}: prefix_len {r.prefix_len} must be within 0..{r.input_tokens}")
    if not r.arrival_s >= 0.0 or math.isinf(r.arrival_s):
        raise FathomInputError(f"request {r.id}: arrival_s must be finite and >= 0, got {r.arrival_s}")
    if r.samples < 1:
        raise FathomInputError(f"request {r.id}: samples must be >= 1, got {r.samples}")
    return Request(r.id, r.arrival_s, r.input_tokens, r.output_tokens, r.prefix_id, r.prefix_len, adapter=r.adapter,
                   samples=r.samples)  # fmt: skip


class _Simulation:
    def __init__(self, source, replicas, router, seed, disaggregation, max_sim_time_s, record_timeseries):
        self.rng = np.random.default_rng(seed)
        self.heap = EventHeap()
        self.now = 0.0
        self.limit = max_sim_time_s
        self.pool: MixedPool | None = None
        self.pipelines: list[PipelineStages] = []
        if disaggregation is None:
            if not replicas:
                raise FathomInputError("simulate needs at least one replica")
            self.front = []
            for i, c in enumerate(replicas):  # a pipelined replica runs one virtual engine per stage
                stages = pipeline_stages(c.cost)
                pipe = PipelineStages(stages) if stages > 1 else None
                self.front += [Replica(i, c, "both", record_timeseries, pipe) for _ in range(stages)]
                if pipe is not None:
                    self.pipelines.append(pipe)
            self.back: list[Replica] = []
            self.link_bw = 0.0
        else:
            if replicas:
                raise FathomInputError(
                    "with disaggregation pass replicas=[]: its prefill and decode lists are the replicas"
                )
            p = len(disaggregation.prefill)
            self.front = [Replica(i, c, "prefill", record_timeseries) for i, c in enumerate(disaggregation.prefill)]
            self.back = [Replica(p + i, c, "decode", record_timeseries) for i, c in enumerate(disaggregation.decode)]
            self.link_bw = float(disaggregation.kv_link_bytes_per_s)
            if disaggregation.mixed_pool is not None:
                self.pool = MixedPool(self.front, self.back, disaggregation.mixed_pool)
        self.all = self.front + self.back
        # the router sees a pipelined replica once, as its first virtual engine (they share one waiting queue)
        self.doors = [r for r in self.front if r.pipeline is None or r is r.pipeline.engines[0]]
        self.router = get_router(router)
        self.back_router = get_router(router)
        self.link_free = [0.0] * len(self.all)  # per sending replica (a mixed pool's decode replicas send too)
        self.transfers: list[KVTransfer] = []
        if isinstance(source, ClosedLoop):
            self.closed: ClosedLoop | None = source
            self.requests: list[Request] = []
            self.arrivals: list[Request] = []
            for _ in range(min(source.concurrency, source.num_requests)):
                self._issue(0.0)
        else:
            self.closed = None
            self.requests = [_fresh(r) for r in source]
            if len({r.id for r in self.requests}) < len(self.requests):
                raise FathomInputError("requests: ids must be unique")
            self.arrivals = sorted(self.requests, key=lambda r: r.arrival_s)  # stable: ties keep input order
            self.next_arrival = 0
            if self.arrivals:
                self.heap.push(self.arrivals[0].arrival_s, ARRIVAL, self.arrivals[0])
                self.next_arrival = 1

    def _issue(self, at: float) -> None:
        loop = self.closed
        req = loop.make_request(len(self.requests), at, self.rng)  # type: ignore[union-attr]
        if not isinstance(req, Request):
            raise FathomInputError(f"closed loop: make_request must return a Request, got {type(req).__name__}")
        req = _fresh(req)
        req.id, req.arrival_s = len(self.requests), at  # issue order and send time, whatever the callable set
        self.requests.append(req)
        self.heap.push(req.arrival_s, ARRIVAL, req)

    def _done(self, req: Request) -> None:
        """A request left the system (finished or rejected): a closed-loop client sends its next one."""
        loop = self.closed
        if loop is not None and len(self.requests) < loop.num_requests:
            self._issue(self.now + loop.think_time_s)

    def _kick(self, rep: Replica) -> None:
        """Start the replica's next iteration now, after any other event due at this instant."""
        if rep.busy or rep.step_pending:
            return
        if self.heap.peek_time() <= self.now:
            rep.step_pending = True
            self.heap.push(self.now, STEP, rep)
            return
        self._start(rep)

    def _start(self, rep: Replica) -> None:
        """Run the replica's iterations back to back. An iteration that ends before any pending event is completed
        right here instead of through the heap (the same order of events, without a push and a pop per iteration)."""
        heap, limit = self.heap, self.limit
        pending = heap.items
        pipe = rep.pipeline
        while True:
            free_before = rep.kv.available if pipe is not None else 0
            dur = rep.start_iteration(self.now)
            if dur is None:
                if self.pool is not None:
                    self.pool.idle(rep)
                if pipe is not None and rep.kv.available > free_before:
                    # it preempted its own request for blocks, then had nothing to run: the blocks it freed may let
                    # another virtual engine finish, and no event would wake that one (a stall, found by hypothesis)
                    self._wake_others(rep)
                return
            end = self.now + dur if pipe is None else pipe.run(self.now, dur)  # queued behind stage 1
            if (pending and end >= pending[0][0]) or (limit is not None and end > limit):
                rep.busy = True
                heap.push(end, ITERATION_DONE, rep)
                return
            self.now = end
            self._complete(rep)
            if pending and pending[0][0] <= end:  # something else is due now: step after it, as _kick would
                rep.step_pending = True
                heap.push(end, STEP, rep)
                return

    def _complete(self, rep: Replica) -> None:
        finished, handoffs = rep.finish_iteration(self.now)
        if rep.pipeline is not None:  # idle virtual engines may form a micro-batch now, with the slots, blocks or
            # queued requests this one left (the artifact's scheduler runs every 10 ms, fathom.serving.pipeline)
            self._wake_others(rep)
        for req in finished:
            if self.pool is not None:
                self.pool.finished(req)
            self._done(req)
        for req in handoffs:
            self._handoff(rep, req)

    def _wake_others(self, rep: Replica) -> None:
        """Step the idle virtual engines of ``rep``'s pipeline at this instant."""
        for other in rep.pipeline.engines:
            if other is not rep and not (other.busy or other.step_pending):
                other.step_pending = True
                self.heap.push(self.now, STEP, other)

    def _decodable(self, req: Request) -> bool:
        """Disaggregated: whether some decode replica can hold the request (else it is rejected on arrival)."""
        reasons = [d.reject_reason(req) for d in self.back]
        if None in reasons:
            return True
        req.state, req.reject_reason = RequestState.REJECTED, f"no decode replica fits it: {reasons[0]}"
        return False

    def _handoff(self, src: Replica, req: Request) -> None:
        if self.pool is not None:
            dst = self.pool.decode_replica(req)
        else:
            fits = [d for d in self.back if d.reject_reason(req) is None]  # not empty: checked on arrival
            dst = self.back_router.route(req, fits if len(fits) < len(self.back) else self.back)
        dst.expect(req)
        nbytes = req.input_tokens * float(src.cost.kv_bytes_per_token)
        start = max(self.now, self.link_free[src.index])
        end = self.link_free[src.index] = start + nbytes / self.link_bw
        self.transfers.append(KVTransfer(req.id, src.index, dst.index, start, end, nbytes))
        self.heap.push(end, TRANSFER_DONE, (src, dst, req))

    def run(self) -> SimulationResult:
        heap, limit, truncated = self.heap, self.limit, False
        while heap:
            t, _, _, kind, payload = heap.pop()
            if limit is not None and t > limit:
                truncated = True
                break
            self.now = t
            if kind == ITERATION_DONE:
                payload.busy = False
                self._complete(payload)
                self._kick(payload)
            elif kind == ARRIVAL:
                req = payload
                if self.closed is None and self.next_arrival < len(self.arrivals):
                    nxt = self.arrivals[self.next_arrival]
                    self.next_arrival += 1
                    heap.push(nxt.arrival_s, ARRIVAL, nxt)
                if self.pool is not None:  # Splitwise's mixed pool places it instead of the router
                    rep = self.pool.admit(req)
                    if rep is None:
                        self._done(req)
                    else:
                        self._kick(rep)
                    continue
                if self.back and not self._decodable(req):
                    self._done(req)
                    continue
                for pipe in self.pipelines:
                    pipe.settle_load()
                rep = self.router.route(req, self.doors)
                if rep.enqueue(req):
                    for engine in rep.pipeline.engines if rep.pipeline is not None else (rep,):
                        self._kick(engine)  # a pipelined replica: the next micro-batch formed takes it
                else:
                    self._done(req)
            elif kind == STEP:
                payload.step_pending = False
                self._start(payload)
            else:  # TRANSFER_DONE
                src, dst, req = payload
                src.release(req)
                if self.pool is not None:
                    self.pool.released(src, req)
                dst.receive(req)
                self._kick(src)
                self._kick(dst)
        if truncated:
            self.now = float(limit)  # type: ignore[arg-type]
            for rep in self.all:
                rep.flush()
        else:
            stuck = [r.id for r in self.requests if r.state not in _TERMINAL]
            if stuck:
                raise RuntimeError(f"simulation stalled with {len(stuck)} requests unfinished (first ids {stuck[:5]})")
        pool = self.pool.stats() if self.pool is not None else None
        return SimulationResult(self.requests, _all_stats(self.all), self.now, truncated, self.transfers, pool)


def _all_stats(replicas: list[Replica]) -> list[ReplicaStats]:
    """One entry per replica: a pipelined replica's virtual engines (adjacent, one index) merge into one."""
    out: list[ReplicaStats] = []
    i = 0
    while i < len(replicas):
        pipe = replicas[i].pipeline
        if pipe is None:
            out.append(_stats(replicas[i]))
            i += 1
            continue
        n = len(pipe.free)
        out.append(merge_stats([_stats(r) for r in replicas[i : i + n]], pipe.busy_s))
        i += n
    return out


def _stats(rep: Replica) -> ReplicaStats:
    return ReplicaStats(
        index=rep.index, role=rep.role, scheduler=rep.scheduler.name, busy_s=rep.busy_s,
        iterations=rep.it + rep.prompt_runs, preemptions=rep.preemptions, prefill_tokens=rep.prefill_tokens,
        decode_tokens=rep.decode_tokens,
        prefix_hit_tokens=rep.prefix_hit_tokens, swap_out_bytes=rep.kv.swap_out_bytes,
        swap_in_bytes=rep.kv.swap_in_bytes, kv_capacity_blocks=rep.kv.capacity_blocks, timeseries=rep.timeseries(),
        lora=rep.lora.stats() if rep.lora is not None else None,
    )  # fmt: skip


def simulate(
    requests: Sequence[Request] | ClosedLoop,
    replicas: Sequence[ReplicaConfig],
    *,
    router: str = "round-robin",
    seed: int = 0,
    disaggregation: Disaggregation | None = None,
    max_sim_time_s: float | None = None,
    record_timeseries: bool = True,
) -> SimulationResult:
    """Simulate serving ``requests`` (open loop: each arrives at its ``arrival_s``) or a ``ClosedLoop`` on
    ``replicas`` (or on the pools of ``disaggregation``, with ``replicas=[]``). The input requests are not modified;
    the result holds copies with their timestamps and states. ``max_sim_time_s`` stops the clock early."""
    if max_sim_time_s is not None and not max_sim_time_s >= 0.0:
        raise FathomInputError(f"max_sim_time_s must be >= 0, got {max_sim_time_s}")
    sim = _Simulation(requests, list(replicas), router, seed, disaggregation, max_sim_time_s, record_timeseries)
    return sim.run()
