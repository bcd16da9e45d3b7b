"""Power of a serving replica per iteration, its peak over time windows, and a power cap that throttles it (opt-in).

The serving-side counterpart of ``fathom.energy.power`` (training steps). An iteration's GPUs draw between the
memory-bound and the compute-bound phase power of ``data/power.yaml`` according to how compute-bound its
token-linear work is: a GEMM over ``T`` new tokens is compute-bound once ``T`` exceeds the device's ridge point
(tokens at which GEMM compute time equals the weight read time), so the tensor-core utilisation is
``u = min(1, T / T_ridge)`` and the board power ``P = P_memory + (P_compute - P_memory) * u``. Prefill iterations
(thousands of tokens) draw near TDP, decode iterations (one token per sequence) near the memory-bound power, the
split POLCA measures on DGX-A100 inference (Patel et al. 2024, arXiv:2308.12908: the prompt phase is
compute-bound and spikes power, the token phase is memory-bound and draws much less).

A per-GPU power cap lowers the clock of iterations that would draw more (``power.clock_ratio``); only their
compute-bound share stretches: ``t' = t * (u / r + 1 - u)``. Peak power is the largest mean power over a window of
consecutive iterations (a replica under load runs iterations back to back; idle gaps only lower a window's mean,
so this is an upper bound on the wall-clock windowed peak).

Use: wrap a replica's cost model in ``PowerMeteredCost`` before simulating; nothing changes unless you do.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fathom.energy.power import PowerProfile, check_power_cap, clock_ratio, power_profile
from fathom.errors import FathomInputError


def ridge_tokens(step_model) -> float:
    """Tokens per iteration at which the replica's weight GEMMs turn compute-bound: FLOPs per weight byte of
    ``T`` tokens (``2 T / weight_bytes``) reach the device's achievable FLOP-per-byte ratio."""
    from fathom.inference.memory import WEIGHT_BYTES
    from fathom.inference.step_model import _math_precision

    dev, dtype = step_model.cluster.device, step_model.plan.weight_dtype
    math = _math_precision(dtype)
    eff = dev.efficiency
    flops = dev.peak_flops_per_s(math) * eff.gemm_fraction(math)
    byte_rate = dev.mem_bw_bytes_per_s * eff.memory
    return flops / byte_rate * WEIGHT_BYTES[dtype] / 2.0


@dataclass
class IterationPower:
    """Per iteration of one replica: duration (s, after any cap) and per-GPU board power (W); ``start_s`` where
    known (``with_starts``), else the iterations are taken to run back to back."""

    duration_s: np.ndarray
    power_w: np.ndarray
    start_s: np.ndarray | None = None

    def with_starts(self, timeseries: dict) -> IterationPower:
        """Attach iteration start times from a replica's timeseries (its samples with requests running are the
        iterations' starts); left back to back when the counts disagree (swap-only iterations)."""
        starts = timeseries["time_s"][timeseries["running"] > 0]
        return IterationPower(self.duration_s, self.power_w, starts if starts.size == self.duration_s.size else None)

    def sampled_w(self, grid_s: np.ndarray, idle_w: float) -> np.ndarray:
        """Per-GPU power at the times ``grid_s`` (idle power between iterations)."""
        starts = self.start_s if self.start_s is not None else np.concatenate([[0.0], np.cumsum(self.duration_s)[:-1]])
        i = np.searchsorted(starts, grid_s, side="right") - 1
        inside = (i >= 0) & (grid_s < starts[np.maximum(i, 0)] + self.duration_s[np.maximum(i, 0)])
        return np.where(inside, self.power_w[np.maximum(i, 0)], idle_w)

    def peak_window_w(self, window_s: float) -> float:
        """Largest mean per-GPU power over ``window_s`` of consecutive iterations (time-weighted)."""
        if window_s <= 0:
            raise FathomInputError(f"window_s: must be > 0 seconds (got {window_s})")
        t, p = self.duration_s, self.power_w
        if not t.size:
            return 0.0
        ends = np.concatenate([[0.0], np.cumsum(t)])
        energy = np.concatenate([[0.0], np.cumsum(t * p)])
        if ends[-1] <= window_s:
            return float(energy[-1] / ends[-1])
        # The best window has an edge on an iteration boundary: try windows starting at each start and ending
        # at each end (energy is linear within an iteration).
        lo = np.concatenate([ends[:-1], ends[1:] - window_s])
        lo = lo[(lo >= 0.0) & (lo + window_s <= ends[-1])]
        means = (np.interp(lo + window_s, ends, energy) - np.interp(lo, ends, energy)) / window_s
        return float(means.max())


def cluster_peak_w(servers: list[IterationPower], idle_w: float, window_s: float, gpus_per_server: int) -> float:
    """Largest mean power of a group of servers over ``window_s`` (W): the servers' GPU power summed on a common
    time grid, averaged over sliding windows. A power budget shared by many servers sees this, not the sum of
    each server's own peak (peaks of independent servers rarely coincide, POLCA Sec. 3)."""
    if window_s <= 0:
        raise FathomInputError(f"window_s: must be > 0 seconds (got {window_s})")
    ends = [
        (s.start_s[-1] if s.start_s is not None else 0.0) + s.duration_s.sum() for s in servers if s.duration_s.size
    ]
    if not ends:
        return 0.0
    dt = window_s / 20.0
    grid = np.arange(0.0, min(ends), dt)  # the span every server covers
    total = sum(s.sampled_w(grid, idle_w) for s in servers) * gpus_per_server
    width = max(int(round(window_s / dt)), 1)
    if total.size <= width:
        return float(total.mean())
    sums = np.convolve(total, np.ones(width), mode="valid")
    return float(sums.max() / width)


class PowerMeteredCost:
    """A step-cost model that records each iteration's power and, with ``power_cap_w``, throttles iterations
    that would draw more than the cap. Every other attribute is the wrapped model's."""

    def __init__(self, inner, power_cap_w: float | None = None, profile: PowerProfile | None = None) -> None:
        self._inner = inner
        self.profile = profile or power_profile(inner.cluster.device)
        check_power_cap(self.profile, power_cap_w)
        self.power_cap_w = power_cap_w
        self.ridge = ridge_tokens(inner)
        self._durations: list[float] = []
        self._powers: list[float] = []
        self.throttled_s = 0.0  # seconds the cap added

    def __getattr__(self, name):
        return getattr(self._inner, name)

    def step_time_s(self, prefill_tokens, prefill_context, decode_context, *args, **kwargs) -> float:
        base = float(self._inner.step_time_s(prefill_tokens, prefill_context, decode_context, *args, **kwargs))
        tokens = float(np.sum(prefill_tokens)) + len(decode_context)
        u = min(1.0, tokens / self.ridge)
        w = self.profile.watts
        watts = w["memory"] + (w["compute"] - w["memory"]) * u
        duration = base
        cap = self.power_cap_w
        if cap is not None and watts > cap and base > 0:
            r = float(clock_ratio(watts, cap, self.profile.idle_w, self.profile.dvfs_exponent))
            duration = base * (u / r + 1.0 - u)
            self.throttled_s += duration - base
            watts = cap
        if base > 0:
            self._durations.append(duration)
            self._powers.append(watts)
        return duration

    def iterations(self) -> IterationPower:
        return IterationPower(np.asarray(self._durations), np.asarray(self._powers))
