"""Timing of a callable: warm-up, then the median of repeats, within a wall-clock budget.

Two clocks. ``wall`` (perf_counter) is what a user waits for on a machine of their own. ``cpu`` (process CPU
time: user + system of every thread, which includes the kernel's copies for loopback sockets) is what the work
would take alone on a machine other tenants share: with one thread per rank, time slices given to other
processes are not counted. ``cpu`` is only meaningful with one thread (a multi-threaded op's threads overlap).
Neither clock hides other tenants of the physical core: on a shared VM this core's speed switches, in spells of
about a second, between its own and a contended state (measured on the 2-core development VM, in CPU time and
whatever its other core runs: bf16 AMX GEMMs at 400-500 against 850-1000 GFLOP/s, a pure-Python loop 1.5x slower,
fp32 GEMMs 0.65-1x), and more processes than cores evict each other's caches between time slices. A minimum
over a few milliseconds' repeats catches the fastest spell, which a step of seconds cannot: the profile keeps
each case's median within a pass and its median over three passes taken seconds apart (``fathom.profiling.runner``;
a pass caught in a spell is outvoted), the checks the median step.

Medians still leave a profile and a check taken in different spells 20-50% apart, so both are speed-normalised
by design (``fathom.profiling.speed``): small fixed reference kernels (a GEMM per dtype, an L2-resident copy, a
loop of tiny eager ops) are timed around every profile case and between the checks' timed steps. The profile
stores each case's raw seconds with the reference speed around it, records each reference's median speed
(``profile.reference``) and fits on the times at that speed (seconds x speed then / reference speed); a GPU
profile records the references but fits on the raw times (its reference kernels are host-bound, ``runner``). A check
reports its raw ``error_pct`` as before and beside it ``speed_ratio`` (how fast the check ran the phase's mix
of kernels against the profile, from the references read just before and after each timed sample, each kernel
class weighted by its part of the predicted time) and ``error_pct_speed_adjusted`` (the prediction against the
measurement normalised to the profile's speed). ``speed_probe`` re-times the profile's largest GEMM beside the
real work, as before.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar

from fathom.errors import FathomInputError

if TYPE_CHECKING:
    from fathom.profiling.speed import SpeedReference

T = TypeVar("T")

CLOCKS: dict[str, Callable[[], float]] = {"wall": time.perf_counter, "cpu": time.process_time}
QUEUED_SAMPLE_S = 2e-3  # a GPU sample's length: a synchronise's round trip (~10-20 us) is under 1% of it
QUEUED_MAX_RUNS = 256


def synchronizer(device: str) -> Callable[[], None]:
    """A function that waits for queued work on ``device`` (a no-op on the CPU, where ops run eagerly)."""
    if device.startswith("cuda"):
        import torch

        return torch.cuda.synchronize
    return lambda: None


def check_clock(clock: str, threads: int, device: str) -> None:
    if clock not in CLOCKS:
        raise FathomInputError(f"--clock: unknown name {clock!r} (valid: {', '.join(CLOCKS)})")
    if clock == "cpu" and (threads != 1 or device != "cpu"):
        raise FathomInputError("--clock: 'cpu' needs a CPU device run with --threads 1 (use 'wall' otherwise)")


@dataclass(frozen=True)
class Timer:
    sync: Callable[[], None]
    clock: Callable[[], float] = time.perf_counter
    speed: SpeedReference | None = None  # reference kernels read around each case (``around``)
    # A device that queues work (a GPU): each sample runs ``fn`` back to back until it lasts ``QUEUED_SAMPLE_S``,
    # then waits once, as a training step keeps the queue full; one run per sample would time the host's launch
    # and the synchronise's round trip beside a short kernel.
    queued: bool = False

    @classmethod
    def make(cls, device: str, clock: str = "wall") -> Timer:
        return cls(synchronizer(device), CLOCKS[clock], queued=device.startswith("cuda"))

    def once(self, fn: Callable[[], object]) -> float:
        t0 = self.clock()
        fn()
        self.sync()
        return self.clock() - t0

    def phase(self, fn: Callable[[], object]) -> float:
        """Seconds of ``fn`` alone: queued work is waited for before the clock is read, then ``once``. A check's
        timed phases use it, since work queued on a GPU just before (``zero_grad``, a KV cache being zeroed) would
        otherwise run inside the phase. On the CPU the wait is a no-op: the same reading as ``once``. (``once``
        itself does not wait first: the collectives' timer synchronises with a barrier, whose extra round the
        profile's collective times do not include.)"""
        self.sync()
        return self.once(fn)

    def around(self, ref: str | None, measure: Callable[[], T]) -> tuple[T, dict]:
        """``measure()`` and, with reference kernels, the speed of ``ref`` around it ({"ref", "ref_speed"})."""
        if self.speed is None:
            return measure(), {}
        return self.speed.around(ref, measure)

    def median(self, fn: Callable[[], object], repeats: int = 5, warmup: int = 1, budget_s: float = 2.0) -> float:
        """Median seconds of ``fn`` over up to ``repeats`` runs after ``warmup`` runs, stopping at ``budget_s``."""
        return statistics.median(self.samples(fn, repeats, warmup, budget_s))

    def samples(self, fn: Callable[[], object], repeats: int, warmup: int, budget_s: float) -> list[float]:
        """Seconds of up to ``repeats`` runs of ``fn`` after ``warmup`` runs, stopping at ``budget_s``."""
        for _ in range(warmup):
            fn()
        self.sync()
        runs = self._runs_per_sample(fn) if self.queued else 1
        samples: list[float] = []
        start = time.perf_counter()
        while len(samples) < repeats:
            samples.append(self.per_run(fn, runs))
            if time.perf_counter() - start > budget_s:
                break
        return samples

    def per_run(self, fn: Callable[[], object], runs: int) -> float:
        """Seconds per run of ``runs`` runs of ``fn`` back to back, waited for once (``once`` for one run)."""
        return self.once(fn) if runs == 1 else self.once(lambda: [fn() for _ in range(runs)]) / runs

    def _runs_per_sample(self, fn: Callable[[], object]) -> int:
        """Runs of ``fn`` that fill ``QUEUED_SAMPLE_S`` (at most ``QUEUED_MAX_RUNS``), from one timed run."""
        one = max(self.once(fn), 1e-7)
        return int(min(max(QUEUED_SAMPLE_S // one, 1), QUEUED_MAX_RUNS))
