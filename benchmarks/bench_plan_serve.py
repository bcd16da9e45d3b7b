"""Timing of the serving search (kept out of the unit tests on purpose).

Run: ``python benchmarks/bench_plan_serve.py``. The issue's example: Llama-3.1-70B at 50 requests/s of 2,000-token
prompts and 300-token outputs, TTFT p90 <= 1 s and TPOT p90 <= 50 ms, over H100-SXM, A100-80GB and L40S (L40S at
an assumed $1.50 per GPU-hour: the catalog has no price for it). Reports the analytic screen on its own (every
candidate of the space, no simulation) and the whole search (screen + confirming simulations + fleet program),
in wall and CPU seconds.
"""

from __future__ import annotations

import time

import numpy as np

from fathom.api.search import search_serving_deployments
from fathom.catalog.models import get_model
from fathom.search.serving_capacity import SLO
from fathom.search.serving_screen import screen
from fathom.search.serving_space import ServingAxes, load_stats
from fathom.serving.workload import generate_requests, parse_length_dist

GPUS = ["h100-sxm", "a100-80gb", "l40s"]
PRICES = {"l40s": 1.5}


def main() -> None:
    model = get_model("llama-3.1-70b")
    requests = generate_requests(
        arrival="poisson",
        rate=50.0,
        num_requests=None,
        duration_s=60.0,
        input_dist=parse_length_dist("2000", "in"),
        output_dist=parse_length_dist("300", "out"),
        rng=np.random.default_rng(0),
    )
    load = load_stats(requests, 50.0, 90, 3)
    wall, cpu = time.perf_counter(), time.process_time()
    scr = screen(model, GPUS, load, SLO(1.0, 0.05, 90), ServingAxes(), PRICES)
    print(
        f"analytic screen: {scr.space_size} deployments ({scr.fits_memory} fit), "
        f"{time.perf_counter() - wall:.2f} s wall, {time.process_time() - cpu:.2f} s CPU"
    )
    wall, cpu = time.perf_counter(), time.process_time()
    r = search_serving_deployments(
        model="llama-3.1-70b",
        gpus=GPUS,
        rate=50.0,
        input_len="2000",
        output_len="300",
        slo_ttft_s=1.0,
        slo_tpot_s=0.05,
        prices=PRICES,
    )
    print(
        f"whole search: {r.simulations} simulations of {r.requests} requests, "
        f"{time.perf_counter() - wall:.1f} s wall, {time.process_time() - cpu:.1f} s CPU"
    )
    print(r.message)
    if r.fleet:
        print(f"fleet: ${r.fleet.cost_per_hour:,.2f}/h; {r.fleet.note}")


if __name__ == "__main__":
    main()
