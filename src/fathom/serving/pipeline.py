"""Pipeline-parallel serving: micro-batches in flight through a replica's stages, as Sarathi-Serve's engine runs them.

A replica split into ``pp`` pipeline stages does not wait for one iteration to leave the last stage before the next
enters the first. Sarathi-Serve's pipeline-parallel engine (Agrawal et al. OSDI'24, Sec. 3.3/4; the artifact
microsoft/sarathi-serve, branch osdi-sarathi-serve, sarathi/engine/pipeline_parallel_llm_engine.py and
sarathi/core/scheduler/base_scheduler.py) runs one scheduler over one KV cache and one waiting queue; it forms a new
micro-batch whenever fewer than ``pp`` are in flight (it is called every 10 ms and whenever a micro-batch leaves
stage 1 or the last stage), and queues it behind stage 1. A micro-batch holds only requests that are paused: a
request whose previous micro-batch is still in flight cannot join another, so its next token needs a whole trip of
its micro-batch through the stages. The artifact runs its vLLM and Orca baselines on that same engine (the engine
is chosen by ``pipeline_parallel_size``, whatever the scheduler: sarathi/engine/llm_engine.py).

fathom keeps ``pp`` virtual engines per pipelined replica, one per micro-batch in flight, which share:
- the stages' clock (``PipelineStages``): an engine forms its next micro-batch as soon as its previous one's tokens
  come back, and the micro-batch enters stage 1 when stage 1 is free;
- the waiting queue: a new or preempted request joins the next micro-batch formed, by whichever engine forms it
  (an arrival wakes every idle engine: the artifact's scheduler runs within 10 ms of an arrival);
- the KV cache (one block manager, its whole capacity), and ``max_batch``: an engine admits a request only while
  the engines together run fewer than ``max_batch`` (the artifact's schedulers count every running sequence against
  ``max_num_seqs``: ``len(self.running)`` in vllm_scheduler.py, orca_scheduler.py, sarathi_scheduler.py);
- the load the router sees (``settle_load``).
A request, once running, stays with the engine that admitted it until it finishes or is preempted: the artifact
re-forms each micro-batch from every paused request, which differs only when paused requests of two micro-batches
meet, as after a vLLM prompt-only micro-batch (its decodes pause and ride in the next micro-batch formed); fathom
lets them wait for their own engine's next micro-batch. Swapped-out requests (vLLM's swap preemption; the artifact
only recomputes) return to the engine that swapped them.

Throughput is then set by the stage time per micro-batch, and micro-batches of very different durations (a
prompt-heavy batch beside decode-only ones) leave stages idle: the pipeline bubbles of Sarathi-Serve Sec. 3.3,
which uniform chunked-prefill batches avoid. The cost model prices a micro-batch's whole trip through the pipeline
(every stage's layers and the hops between stages); each stage takes an equal share of it, as stages hold equal
numbers of layers.
"""

from __future__ import annotations

from collections import deque
from dataclasses import replace

import numpy as np

from fathom.serving.kv_manager import KVCacheManager


def pipeline_stages(cost) -> int:
    """The number of pipeline stages of the plan behind a step cost model (1 when it has none)."""
    while cost is not None:
        plan = getattr(cost, "plan", None)
        if plan is not None:
            return max(int(getattr(plan, "pp", 1) or 1), 1)
        cost = getattr(cost, "base", None)  # wrappers (LoRA, offload) keep the step model as ``base``
    return 1


class PipelineStages:
    """The stages of one pipelined replica and what its virtual engines share: when each stage is next free, the
    waiting queue and the KV cache."""

    def __init__(self, stages: int) -> None:
        if stages < 1:
            raise ValueError(f"stages must be >= 1, got {stages}")
        self.free = [0.0] * stages
        self.busy_s = 0.0  # time at least one stage was working
        self._busy_until = 0.0
        self.engines: list = []  # the virtual engines (replicas) sharing these stages
        self.waiting: deque = deque()  # the replica's one waiting queue
        self.kv: KVCacheManager | None = None  # the replica's one KV cache, made by its first engine

    def shared_kv(self, cost) -> KVCacheManager:
        """The KV cache of the replica: the first engine's call makes it, the others share it."""
        if self.kv is None:
            self.kv = KVCacheManager(cost)
        return self.kv

    def slots_taken(self, engine) -> int:
        """Batch slots the other virtual engines hold: ``max_batch`` counts every running request of the replica,
        whichever micro-batch it rides in (one scheduler over all micro-batches in flight)."""
        return sum(len(e.running) + e._reserved for e in self.engines if e is not engine)

    def settle_load(self) -> None:
        """Gather the engines' outstanding tokens on the first engine, the one the router sees. Work moves between
        engines through the shared queue, so only their sum means anything: it is the replica's load."""
        door, total = self.engines[0], 0
        for e in self.engines:
            total += e.outstanding
            e.outstanding = 0
        door.outstanding = total

    def preempt_later_prefills(self, engine, seq, need: int) -> None:
        """Free blocks for ``need`` more blocks of ``seq``'s prompt on ``engine`` once its own later admissions are
        gone: preempt part-prefilled requests of idle engines (no micro-batch in flight) that arrived after ``seq``,
        latest first. The artifact's one scheduler preempts the lowest-priority running request (FCFS: the latest
        arrival) whichever micro-batch it rides in; without this, two engines each holding part of a prompt could
        wait on each other's blocks for ever."""
        rank = (seq.req.arrival_s, seq.req.id)  # FCFS, ties in arrival order
        victims = [((s.req.arrival_s, s.req.id), e, s) for e in self.engines if e is not engine and not e.busy
                   for s in e.prefilling.values() if (s.req.arrival_s, s.req.id) > rank]  # fmt: skip
        victims.sort(key=lambda v: v[0])
        kv = engine.kv
        while victims and need > kv.available:
            _, owner, victim = victims.pop()
            owner._preempt(victim)

    def first_free_s(self) -> float:
        """When stage 1 can take the next micro-batch."""
        return self.free[0]

    def run(self, formed: float, seconds: float) -> float:
        """Send a micro-batch of ``seconds`` of whole-pipeline work, formed at ``formed``, into stage 1 once stage 1
        is free (it queues behind the micro-batch there); each stage takes ``seconds / stages`` once it and the
        previous stage are done. Returns when the micro-batch leaves the last stage (its tokens come back)."""
        share = seconds / len(self.free)
        start = t = formed if formed > self.free[0] else self.free[0]
        for k, free in enumerate(self.free):
            t = (t if t > free else free) + share
            self.free[k] = t
        if t > self._busy_until:  # micro-batches enter in order and leave in order: merge busy intervals
            self.busy_s += t - max(start, self._busy_until)
            self._busy_until = t
        return t


_SUMMED = ("iterations", "preemptions", "prefill_tokens", "decode_tokens", "prefix_hit_tokens")
_SHARED_SERIES = ("waiting", "kv_blocks_used")  # sampled from the shared queue and cache: the latest sample holds


def merge_stats(parts: list, busy_s: float):
    """One ``ReplicaStats`` for a pipelined replica from its virtual engines' (their counts summed; the KV cache's
    figures, shared, once; running requests summed over the union of their sample times, the shared queue and cache
    as last sampled by any engine; busy time the pipeline's)."""
    first = parts[0]
    total = {f: sum(getattr(p, f) for p in parts) for f in _SUMMED}
    return replace(first, busy_s=busy_s, timeseries=merge_timeseries([p.timeseries for p in parts]), **total)


def merge_timeseries(series: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """Merge step-function time series sampled at different times (each holds its last sample until its next):
    per-engine series are summed; ``_SHARED_SERIES`` take the latest sample of any engine."""
    times = np.unique(np.concatenate([s["time_s"] for s in series]))
    out: dict[str, np.ndarray] = {"time_s": times}
    for name in series[0]:
        if name == "time_s":
            continue
        if name in _SHARED_SERIES:
            stamps = np.concatenate([s["time_s"] for s in series])
            vals = np.concatenate([np.asarray(s[name]) for s in series]).astype(np.int64)
            order = np.argsort(stamps, kind="stable")  # ties: the later engine's sample, taken after
            idx = np.searchsorted(stamps[order], times, side="right") - 1
            out[name] = vals[order][idx] if vals.size else np.zeros(times.size, dtype=np.int64)
            continue
        total = np.zeros(times.size, dtype=np.int64)
        for s in series:
            idx = np.searchsorted(s["time_s"], times, side="right") - 1
            vals = np.asarray(s[name])
            total += np.where(idx >= 0, vals[np.clip(idx, 0, None)] if vals.size else 0, 0)
        out[name] = total
    return out
