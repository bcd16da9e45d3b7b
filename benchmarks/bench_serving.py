"""Serving simulator speed: 100,000 chat-like requests on one replica (goal: under 10 s on 2 cores).

Run: ``python benchmarks/bench_serving.py``. Prints wall time and simulated requests per second for the
analytical step model of Llama-3.1-8B on one H100 (continuous batching, Poisson arrivals near saturation).
"""

from __future__ import annotations

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


if __name__ == "__main__":
    main()
