"""Timing goals of the training estimator (kept out of the unit tests on purpose).

Run: ``make bench`` or ``python benchmarks/bench_training.py``. Prints the time of one estimate (through
the public single-plan API) and of 100,000 plans priced as NumPy arrays in one call.
"""

from __future__ import annotations

import time

import numpy as np

from fathom.catalog.hardware import resolve_cluster
from fathom.catalog.models import get_model
from fathom.specs.plan import TrainingPlan
from fathom.training.estimator import estimate_arrays, estimate_training
from fathom.training.plans import PlanArrays, validity


def _best_of(fn, repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def main() -> None:
    model = get_model("llama-3.1-70b")
    cluster = resolve_cluster("h100-sxm", 1024)
    plan = TrainingPlan(seq_len=8192, global_batch=1024, tp=8, pp=4, dp=32, recompute="selective")
    one = _best_of(lambda: estimate_training(model, cluster, plan), 50)
    print(f"one estimate (estimate_training):        {one * 1e3:8.2f} ms")

    n = 100_000
    rng = np.random.default_rng(0)
    tp = rng.choice([1, 2, 4, 8], n)
    pp = rng.choice([1, 2, 4, 8, 16], n)
    cp = rng.choice([1, 2], n)
    dp = 1024 // (tp * pp * cp)
    plans = PlanArrays.from_columns(
        seq_len=np.full(n, 8192),
        global_batch=np.full(n, 1024),
        micro_batch=rng.choice([1, 2, 4], n),
        tp=tp,
        pp=pp,
        dp=dp,
        cp=cp,
        zero=rng.integers(0, 4, n),
        recompute=rng.choice(["none", "selective", "full"], n),
        schedule=rng.choice(["1f1b", "zero-bubble"], n),
        precision=rng.choice(["bf16", "fp8"], n),
    )
    arrays = _best_of(lambda: estimate_arrays(model, cluster, plans), 3)
    ok = validity(model, cluster, plans)
    print(
        f"{n:,} plans as arrays (estimate_arrays): {arrays * 1e3:8.1f} ms "
        f"({arrays / n * 1e6:.2f} us per plan; {int(ok.sum()):,} structurally valid)"
    )


if __name__ == "__main__":
    main()
