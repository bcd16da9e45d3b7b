"""Serving simulator speed: 100,000 chat-like requests on one replica (goal: under 10 s on 2 cores).

Run: ``python benchmarks/bench_serving.py``. Prints wall time and simulated requests per second for the
analytical step model of Llama-3.1-8B on one H100 (continuous batching, Poisson arrivals near saturation).
``python benchmarks/bench_serving.py day [REPLICAS]`` simulates a whole day of that traffic per replica (1,036,800
requests a replica, behind the default router) and prints the process's peak resident memory as well.
"""

from __future__ import annotations

import resource
import sys
import time

from fathom.api.serving import Workload, simulate_serving
from fathom.specs.serving import ServingPlan


def main(num_requests: int = 100_000) -> None:
    workload = Workload(
        arrival="poisson", rate=12.0, num_requests=num_requests,
        input_len="lognormal:mean=1000,sigma=0.8", output_len="lognormal:mean=250,sigma=0.8",
    )  # fmt: skip
    for scheduler in ("continuous", "chunked-prefill"):
        start = time.perf_counter()
        run = simulate_serving(model="llama-3.1-8b", gpu="h100-sxm", plan=ServingPlan(), workload=workload,
                               scheduler=scheduler, seed=1)  # fmt: skip
        wall = time.perf_counter() - start
        r = run.report
        print(f"{scheduler:16s} {num_requests:,} requests in {wall:6.2f} s wall "
              f"({num_requests / wall:,.0f} simulated requests/s; {r.duration_s:,.0f} s simulated, "
              f"p50 TTFT {r.ttft_s.p50:.3f} s, p50 TPOT {r.tpot_s.p50 * 1e3:.1f} ms)")  # fmt: skip


def day(replicas: int = 1, rate_per_replica: float = 12.0) -> None:
    """24 simulated hours at ``rate_per_replica`` requests/s a replica, continuous batching: wall time and peak
    resident memory."""
    rate = rate_per_replica * replicas
    n = int(rate * 86_400)
    workload = Workload(arrival="poisson", rate=rate, num_requests=n, input_len="lognormal:mean=1000,sigma=0.8",
                        output_len="lognormal:mean=250,sigma=0.8")  # fmt: skip
    start = time.perf_counter()
    r = simulate_serving(model="llama-3.1-8b", gpu="h100-sxm", plan=ServingPlan(), workload=workload,
                         replicas=replicas, seed=1).report  # fmt: skip
    wall = time.perf_counter() - start
    peak_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6  # kB on Linux
    print(f"one day, {replicas} replica(s): {n:,} requests in {wall:6.1f} s wall "
          f"({r.duration_s / 3600:.1f} h simulated, {r.completed:,} completed, "
          f"p99 ITL {r.itl_s.p99 * 1e3:.1f} ms), peak RSS {peak_gb:.2f} GB")  # fmt: skip


if __name__ == "__main__":
    if sys.argv[1:2] == ["day"]:
        day(int(sys.argv[2]) if len(sys.argv) > 2 else 1)
    else:
        main()
