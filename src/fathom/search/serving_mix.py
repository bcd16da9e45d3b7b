"""The heterogeneous fleet of a serving search: the integer program over the confirmed deployments, then a
simulation of the mix.

The program's capacities are the analytic per-bucket ones, calibrated per deployment against what the simulator
confirmed (``fleet.calibrated_capacity``). The simulator's routers place requests by load, not by size, so the mix
is simulated one deployment at a time, each on the requests the program routes to it (a seeded draw per request in
its bucket's shares), and the runs are summarised together. A mix that misses the SLOs gets one more replica where
it is busiest, a few times, while it stays cheaper than the best single type; failing that, the best single-type
fleet is the answer, so the fleet is never costlier than it.
"""

from __future__ import annotations

import numpy as np

from fathom.search.fleet import assign_requests, calibrated_capacity, solve_mix
from fathom.search.serving_result import Fleet, FleetPart
from fathom.search.serving_screen import Screen, bucket_capacity
from fathom.search.serving_sim import Simulator, attainment, meets_slo, slo_gap
from fathom.search.serving_space import LoadStats

PER_TYPE = 3  # deployments per GPU type offered to the program (its cheapest confirmed ones)
REPAIRS = 3


def mix_fleet(sim: Simulator, scr: Screen, load: LoadStats, confirmed: list, single) -> Fleet | None:
    """``confirmed``: the search's points meeting the SLOs (cheapest per deployment); ``single``: the best one.
    The program is offered, per GPU type, its cheapest confirmed aggregated deployments (capacities calibrated
    against the simulation) and then its cheapest unconfirmed ones by the screen (analytic capacities; the mix's
    own simulation checks them). None when fewer than two GPU types can take part."""
    chosen, cap, most, per_type = [], [], [], {}

    def offer(row, capacity, limit) -> None:
        gpu = row.cand.hw.gpu
        if per_type.get(gpu, 0) < PER_TYPE and capacity.any():
            chosen.append(row)
            cap.append(capacity)
            most.append(limit)
            per_type[gpu] = per_type.get(gpu, 0) + 1

    for p in sorted((p for p in confirmed if not p.row.cand.disaggregated), key=lambda p: p.score):
        analytic = bucket_capacity(scr, p.row.cand, load, sim.slo, sim.system)
        offer(p.row, calibrated_capacity(analytic, load.share, load.rate, p.counts[0]), p.counts[0])
    for row in scr.rows:
        if row.feasible and not row.cand.disaggregated and row not in chosen:
            offer(row, bucket_capacity(scr, row.cand, load, sim.slo, sim.system), row.est[0])
    if len(per_type) < 2:
        return None
    cap = np.stack(cap)
    rates = load.rate * load.share
    unit = np.array([row.unit for row in chosen])
    sol = solve_mix(rates, cap, unit, max_replicas=most)
    edges = [int(e) for e in load.edges]
    if not sol.ok or sol.cost >= single.score - 1e-9:
        why = "no mix of GPU types is cheaper than the best single-type fleet"
        return _single(single, scr, sim, edges, "HiGHS MILP: " + sol.status, why)
    counts = sol.replicas.copy()
    which = assign_requests(load.bucket, sol.share, sim.seed)
    for attempt in range(REPAIRS + 1):
        report = _simulate(sim, chosen, counts, which, scr.prices)
        if meets_slo(report, len(sim.requests), sim.slo):
            break
        used = (rates[:, None] * sol.share / np.where(cap.T > 0, cap.T, np.inf)).sum(axis=0)
        busiest = int(np.argmax(np.where(counts > 0, used / np.maximum(counts, 1), -1.0)))
        if attempt == REPAIRS or float(unit @ counts + unit[busiest]) >= single.score - 1e-9:
            why = f"the cheapest mix ({_usd(chosen, counts, scr)}/h) missed the SLOs when simulated"
            return _single(single, scr, sim, edges, "HiGHS MILP: optimal", why)
        counts[busiest] += 1
    parts = [
        FleetPart(
            gpu=row.cand.hw.gpu,
            tp=row.cand.hw.tp,
            pp=row.cand.hw.pp,
            precision=row.cand.hw.precision,
            scheduler=row.cand.engine.scheduler,
            max_batch=row.cand.engine.max_batch,
            max_batch_tokens=row.cand.engine.max_batch_tokens,
            replicas=int(n),
            num_gpus=int(n) * row.cand.hw.gpus,
            cost_per_hour=int(n) * row.cand.hw.gpus * scr.prices[row.cand.hw.gpu],
            load_share=float(np.mean(which == k)),
            buckets=[b for b in range(load.buckets) if sol.share[b, k] > 1e-9],
            mode="aggregated",  # the program mixes aggregated deployments only
        )
        for k, (row, n) in enumerate(zip(chosen, counts, strict=True))
        if n > 0
    ]
    single_usd = sum(single.counts) * single.row.cand.hw.gpus * scr.prices[single.row.cand.hw.gpu]
    usd = sum(part.cost_per_hour for part in parts)
    note = (
        "each GPU type was simulated on the requests routed to it (by prompt-length bucket, in the program's "
        "shares) and the runs summarised together: the simulator's routers do not route by request size"
    )
    return Fleet(
        parts=parts,
        cost_per_hour=usd,
        num_gpus=sum(part.num_gpus for part in parts),
        best_single_cost_per_hour=single_usd,
        saving=1.0 - usd / single_usd if single_usd else 0.0,
        meets_slo=True,
        slo_gap=slo_gap(report, sim.slo),
        slo_attainment=attainment(report, len(sim.requests)),
        bucket_edges=edges,
        solver="HiGHS MILP: optimal",
        note=note,
        metrics=report,
    )


def _simulate(sim: Simulator, chosen, counts, which, prices):
    runs = []
    for k, (row, n) in enumerate(zip(chosen, counts, strict=True)):
        if n <= 0:
            continue
        subset = [r for r, w in zip(sim.requests, which, strict=True) if w == k]
        hw, engine = row.cand.hw, row.cand.engine
        runs.append((sim.run([(hw, engine, int(n))], requests=subset), hw, engine, int(n)))
    return sim.report(runs, prices)


def _usd(chosen, counts, scr: Screen) -> str:
    usd = sum(int(n) * row.cand.hw.gpus * scr.prices[row.cand.hw.gpu] for row, n in zip(chosen, counts, strict=True))
    return f"${usd:,.2f}"


def _single(single, scr: Screen, sim: Simulator, edges: list[int], solver: str, why: str) -> Fleet:
    c = single.row.cand
    n = sum(single.counts)
    usd = n * c.hw.gpus * scr.prices[c.hw.gpu]
    part = FleetPart(
        gpu=c.hw.gpu,
        tp=c.hw.tp,
        pp=c.hw.pp,
        precision=c.hw.precision,
        scheduler=c.engine.scheduler,
        max_batch=c.engine.max_batch,
        max_batch_tokens=c.engine.max_batch_tokens,
        replicas=n,
        num_gpus=n * c.hw.gpus,
        cost_per_hour=usd,
        load_share=1.0,
        buckets=list(range(len(edges))),
        mode="disaggregated" if c.disaggregated else "aggregated",
        prefill_replicas=single.counts[0] if c.disaggregated else None,
        decode_replicas=single.counts[1] if c.disaggregated else None,
    )
    return Fleet(
        parts=[part],
        cost_per_hour=usd,
        num_gpus=n * c.hw.gpus,
        best_single_cost_per_hour=usd,
        saving=0.0,
        meets_slo=single.meets,
        slo_gap=single.gap,
        slo_attainment=attainment(single.report, len(sim.requests)),
        bucket_edges=edges,
        solver=solver,
        note=why + "; the best single-type fleet is kept",
        metrics=single.report,
    )
