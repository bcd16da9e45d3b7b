"""Pipeline-parallel serving: micro-batches in flight through a replica's stages.

A replica split into ``pp`` pipeline stages does not wait for one iteration to leave the last stage before the next
enters the first. Engines run ``pp`` virtual engines (vLLM's ``virtual_engine``, one scheduler each over its own
share of the KV cache; Sarathi-Serve, Agrawal et al. OSDI'24, Sec. 3.3/4): each virtual engine owns a disjoint set
of requests, so its next iteration can start only once its previous one's tokens come back from the last stage,
and a new micro-batch enters stage 1 as soon as stage 1 is free. Throughput is then set by the stage time per
micro-batch, and micro-batches of very different durations (a prompt-heavy batch beside decode-only ones) leave
stages idle: the pipeline bubbles of Sarathi-Serve Sec. 3.3, which uniform chunked-prefill batches avoid.

``max_batch`` bounds the replica's running requests over all its micro-batches, not each virtual engine's: an
engine admits a request only while the engines together run fewer than ``max_batch`` (Sarathi-Serve's artifact runs
one scheduler for all micro-batches in flight and counts every running sequence against ``max_num_seqs``:
microsoft/sarathi-serve sarathi/core/scheduler/base_scheduler.py and the schedulers beside it,
engine/pipeline_parallel_llm_engine.py). vLLM v0's virtual engines each had their own limit; give such a replica
``pp * max_batch`` to model it.

The cost model prices a micro-batch's whole trip through the pipeline (every stage's layers and the hops between
stages); each stage takes an equal share of it, as stages hold equal numbers of layers.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np


def pipeline_stages(cost) -> int:
    """The number of pipeline stages of the plan behind a step cost model (1 when it has none)."""
    while cost is not None:
        plan = getattr(cost, "plan", None)
        if plan is not None:
            return max(int(getattr(plan, "pp", 1) or 1), 1)
        cost = getattr(cost, "base", None)  # wrappers (LoRA, offload) keep the step model as ``base``
    return 1


class PipelineStages:
    """The stages of one pipelined replica, shared by its virtual engines: when each stage is next free."""

    def __init__(self, stages: int) -> None:
        if stages < 1:
            raise ValueError(f"stages must be >= 1, got {stages}")
        self.free = [0.0] * stages
        self.busy_s = 0.0  # time at least one stage was working
        self._busy_until = 0.0
        self.engines: list = []  # the virtual engines (replicas) sharing these stages

    def slots_taken(self, engine) -> int:
        """Batch slots the other virtual engines hold: ``max_batch`` counts every running request of the replica,
        whichever micro-batch it rides in (one scheduler over all micro-batches in flight)."""
        return sum(len(e.running) + e._reserved for e in self.engines if e is not engine)

    def first_free_s(self) -> float:
        """When stage 1 can take the next micro-batch."""
        return self.free[0]

    def run(self, start: float, seconds: float) -> float:
        """Send a micro-batch of ``seconds`` of whole-pipeline work into stage 1 at ``start`` (stage 1 free by
        then); each stage takes ``seconds / stages`` once it and the previous stage are done. Returns when the
        micro-batch leaves the last stage (its tokens come back)."""
        if start < self.free[0]:
            raise ValueError(f"stage 1 is busy until {self.free[0]}, cannot start at {start}")
        share = seconds / len(self.free)
        t = start
        for k, free in enumerate(self.free):
            t = (t if t > free else free) + share
            self.free[k] = t
        if t > self._busy_until:  # micro-batches enter in order and leave in order: merge busy intervals
            self.busy_s += t - max(start, self._busy_until)
            self._busy_until = t
        return t


_SUMMED = ("iterations", "preemptions", "prefill_tokens", "decode_tokens", "prefix_hit_tokens", "swap_out_bytes",
           "swap_in_bytes", "kv_capacity_blocks")  # fmt: skip


def merge_stats(parts: list, busy_s: float):
    """One ``ReplicaStats`` for a pipelined replica from its virtual engines' (counts summed, time series summed
    over the union of their sample times, busy time the pipeline's)."""
    first = parts[0]
    total = {f: sum(getattr(p, f) for p in parts) for f in _SUMMED}
    return replace(first, busy_s=busy_s, timeseries=merge_timeseries([p.timeseries for p in parts]), **total)


def merge_timeseries(series: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """Sum step-function time series sampled at different times: each holds its last sample until its next."""
    times = np.unique(np.concatenate([s["time_s"] for s in series]))
    out: dict[str, np.ndarray] = {"time_s": times}
    for name in series[0]:
        if name == "time_s":
            continue
        total = np.zeros(times.size, dtype=np.int64)
        for s in series:
            idx = np.searchsorted(s["time_s"], times, side="right") - 1
            vals = np.asarray(s[name])
            total += np.where(idx >= 0, vals[np.clip(idx, 0, None)] if vals.size else 0, 0)
        out[name] = total
    return out
