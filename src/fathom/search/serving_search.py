"""Serving search: the cheapest deployment that meets the SLOs, screened analytically, confirmed by simulation.

Branch and bound over candidates: they are taken cheapest analytic estimate first, and one is simulated only if
its analytic lower bound (``serving_screen.BOUND_SLACK``) could still beat the ``top``-th best confirmed deployment.
Each simulated one
gets its smallest replica count that meets the SLOs by bisection, never above the count that would cost as much
as what it has to beat. Then the several GPU types are mixed by an integer program (``serving_mix``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from fathom.errors import FathomInputError
from fathom.search.serving_capacity import SLO
from fathom.search.serving_result import Deployment, ServingSearchResult, SLOSpec, describe
from fathom.search.serving_screen import Screen, Screened, screen
from fathom.search.serving_sim import Simulator, attainment, meets_slo, percentile_of, slo_gap
from fathom.search.serving_space import ServingAxes, load_stats
from fathom.serving.metrics import ServingReport
from fathom.serving.request import Request
from fathom.specs.model import ModelSpec

MAX_REPLICAS = 1024
MAX_PARETO = 20
# Metrics within this relative difference count as equal when ranking ties and building the front: about the three
# significant digits the tables print, so a plan is not kept or preferred for a difference no one can see.
SAME_RTOL = 0.005
CLOSEST_TRIES = 3


@dataclass
class Point:
    """One simulation: a candidate at replica counts ``(n,)`` or ``(prefill, decode)``."""

    row: Screened
    counts: tuple[int, ...]
    report: ServingReport
    meets: bool
    gap: float
    score: float


class _Confirm:
    def __init__(self, sim: Simulator, scr: Screen, top: int, max_simulations: int) -> None:
        self.sim, self.scr, self.top, self.max_sims = sim, scr, top, max_simulations
        self.points: dict[tuple, Point] = {}
        self.best: dict[int, Point] = {}  # per row (id): its cheapest point meeting the SLOs
        self.truncated = False

    def evaluate(self, row: Screened, counts: tuple[int, ...]) -> Point:
        key = (id(row), counts)
        if key not in self.points:
            hw, engine = row.cand.hw, row.cand.engine
            if row.cand.disaggregated:
                res = self.sim.run([(hw, engine, 0)], disaggregate=counts)
            else:
                res = self.sim.run([(hw, engine, counts[0])])
            report = self.sim.report([(res, hw, engine, sum(counts))], self.scr.prices)
            total = len(self.sim.requests)
            self.points[key] = Point(
                row,
                counts,
                report,
                meets_slo(report, total, self.sim.slo),
                slo_gap(report, self.sim.slo),
                row.score(counts),
            )
        return self.points[key]

    def _bar(self) -> float:
        """What a candidate must cost less than to matter: the top-th best confirmed so far."""
        scores = sorted(p.score for p in self.best.values())
        return scores[self.top - 1] if len(scores) >= self.top else np.inf

    def run(self) -> None:
        for row in self.scr.rows:
            if not row.feasible:
                continue
            bar = self._bar()
            if row.score(row.lb) >= bar:
                continue
            if self.sim.count >= self.max_sims:
                self.truncated = True
                break
            found = self._disaggregated(row, bar) if row.cand.disaggregated else self._aggregated(row, bar)
            if found is not None:
                self.best[id(row)] = found

    def _aggregated(self, row: Screened, bar: float) -> Point | None:
        """Smallest replica count meeting the SLOs, below the bar; assumes more replicas never hurt. Probes the
        estimate, then one less (or up, doubling the step), then the analytic bound, then bisects."""
        most = int(min(np.ceil(bar / row.unit) - 1, MAX_REPLICAS)) if np.isfinite(bar) else MAX_REPLICAS
        n = min(max(row.est[0], row.lb[0]), most)
        if n < row.lb[0]:
            return None
        meets = lambda k: self.evaluate(row, (k,)).meets  # noqa: E731
        fail, ok = 0, None
        if meets(n):
            ok = n
            for probe in (n - 1, row.lb[0] - 1):
                if 0 < probe < ok and self.sim.count < self.max_sims:
                    if not meets(probe):
                        fail = probe
                        break
                    ok = probe
        else:
            fail, step = n, 1
            while fail < most and self.sim.count < self.max_sims:
                probe = min(fail + step, most)
                if meets(probe):
                    ok = probe
                    break
                fail, step = probe, step * 2
        while ok is not None and ok - fail > 1 and self.sim.count < self.max_sims:  # bisect (fail, ok]
            mid = (fail + ok) // 2
            ok, fail = (mid, fail) if meets(mid) else (ok, mid)
        return self.points[(id(row), (ok,))] if ok is not None else None

    def _disaggregated(self, row: Screened, bar: float, tries: int = 10) -> Point | None:
        """Coordinate search over (prefill, decode): grow the pool whose SLO is missed, then shrink while met."""
        counts, best = tuple(max(e, lb) for e, lb in zip(row.est, row.lb, strict=True)), None
        for _ in range(tries):
            if row.score(counts) >= bar or self.sim.count >= self.max_sims:
                break
            p = self.evaluate(row, counts)
            if p.meets:
                best = p
                smaller = [c for c in ((counts[0] - 1, counts[1]), (counts[0], counts[1] - 1)) if min(c) >= 1]
                nxt = next((c for c in smaller if (id(row), c) not in self.points), None)
                if nxt is None:
                    break
                counts = nxt
                continue
            if best is not None:  # a shrink failed: try the other pool, or stop
                smaller = [
                    c
                    for c in ((best.counts[0] - 1, best.counts[1]), (best.counts[0], best.counts[1] - 1))
                    if min(c) >= 1 and (id(row), c) not in self.points
                ]
                if not smaller:
                    break
                counts = smaller[0]
                continue
            slow_first = (percentile_of(p.report.ttft_s, self.sim.slo.percentile) or np.inf) > self.sim.slo.ttft_s
            slow_rest = (percentile_of(p.report.tpot_s, self.sim.slo.percentile) or 0.0) > self.sim.slo.tpot_s
            counts = (counts[0] + int(slow_first or not slow_rest), counts[1] + int(slow_rest or p.report.rejected > 0))
        return best


def deployment(
    p: Point, prices: dict[str, float], requests: int, slo: SLO, flags: str, rank: int | None = None
) -> Deployment:
    """The report of a point with what deployed it, and the ``fathom serve`` command that reproduces it."""
    c = p.row.cand
    hw, e = c.hw, c.engine
    count = f"--disaggregate {p.counts[0]}:{p.counts[1]}" if c.disaggregated else f"--replicas {p.counts[0]}"
    command = (
        f"fathom serve --gpu {hw.gpu} --tp {hw.tp} --pp {hw.pp} {count} --precision {hw.precision} "
        f"--scheduler {e.scheduler} --max-batch {e.max_batch} --max-batch-tokens {e.max_batch_tokens} "
        f"--router least-loaded {flags} --slo-ttft {slo.ttft_s:g} --slo-tpot {slo.tpot_s:g} "
        f"--price-per-gpu-hour {prices[hw.gpu]:g}"
    ).strip()
    gpus = sum(p.counts) * hw.gpus
    return Deployment(
        **p.report.model_dump(),
        rank=rank,
        gpu=hw.gpu,
        tp=hw.tp,
        pp=hw.pp,
        replicas=sum(p.counts),
        precision=hw.precision,
        kv_dtype=hw.kv_dtype,
        scheduler=e.scheduler,
        max_batch=e.max_batch,
        max_batch_tokens=e.max_batch_tokens,
        mode="disaggregated" if c.disaggregated else "aggregated",
        prefill_replicas=p.counts[0] if c.disaggregated else None,
        decode_replicas=p.counts[1] if c.disaggregated else None,
        num_gpus=gpus,
        cost_per_hour=gpus * prices[hw.gpu],
        meets_slo=p.meets,
        slo_gap=p.gap,
        slo_attainment=attainment(p.report, requests),
        analytic_replicas=sum(p.row.est),
        command=command,
    )


def search_serving(
    model: ModelSpec,
    gpus: list[str],
    requests: list[Request],
    *,
    slo: SLO,
    rate: float | None = None,
    axes: ServingAxes | None = None,
    prices: dict[str, float] | None = None,
    objective: str = "cost",
    top: int = 5,
    buckets: int = 3,
    seed: int = 0,
    system: str | None = None,
    max_simulations: int = 80,
    command_flags: str = "",
) -> ServingSearchResult:
    """The cheapest deployments of ``model`` on ``gpus`` that serve ``requests`` within ``slo``, best first.

    ``rate`` is the load's requests/s (default: from the arrival times); ``buckets`` prompt-length buckets for
    the heterogeneous fleet; ``command_flags``: the workload part of each deployment's ``fathom serve`` command.
    """
    start = time.perf_counter()
    if top < 1 or max_simulations < 1:
        raise FathomInputError("top and max_simulations: must be positive integers")
    if not (slo.ttft_s > 0 and slo.tpot_s > 0):
        raise FathomInputError("slo: TTFT and TPOT SLOs must be positive seconds")
    load = load_stats(requests, rate, slo.percentile, buckets)
    scr = screen(model, gpus, load, slo, axes or ServingAxes(), prices or {}, objective, system)
    if not scr.rows:
        reasons = "; ".join(f"{g}: {why}" for g, why in scr.skipped.items())
        raise FathomInputError(f"gpus: no GPU type can serve {model.name} ({reasons})")
    sim = Simulator(model, requests, slo, seed, system)
    search = _Confirm(sim, scr, top, max_simulations)
    search.run()
    total = len(requests)
    ranked = rank_points(list(search.best.values()), slo.percentile, total)
    shown = [deployment(p, scr.prices, total, slo, command_flags, i + 1) for i, p in enumerate(ranked[:top])]
    closest = None
    if not ranked:
        near = _closest(search, scr)
        closest = deployment(near, scr.prices, total, slo, command_flags) if near else None
    fleet = None
    if ranked and len(scr.prices) > 1:
        from fathom.search.serving_mix import mix_fleet

        fleet = mix_fleet(sim, scr, load, ranked, ranked[0])
    return ServingSearchResult(
        model=model.name,
        gpus=list(gpus),
        objective=objective,
        rate=load.rate,
        requests=total,
        slo=SLOSpec(ttft_s=slo.ttft_s, tpot_s=slo.tpot_s, percentile=slo.percentile),
        space_size=scr.space_size,
        fits_memory=scr.fits_memory,
        analytically_feasible=sum(r.feasible for r in scr.rows),
        simulations=sim.count,
        seconds=time.perf_counter() - start,
        truncated=search.truncated,
        feasible=bool(ranked),
        message=_message(shown, closest, slo, search.truncated),
        deployments=shown,
        closest=closest,
        fleet=fleet,
        pareto=_pareto(search, scr, total, slo, command_flags),
        skipped_gpus=scr.skipped,
    )


def _closest(search: _Confirm, scr: Screen) -> Point | None:
    """The simulated point nearest its SLOs; if the screen ruled everything out, the few candidates it found
    nearest are simulated first (at the replica count of their least-bad batch size)."""
    if not search.points:
        for row in scr.rows[:CLOSEST_TRIES]:
            search.evaluate(row, row.est)
    done = [p for p in search.points.values() if p.report.completed]
    pool = done or list(search.points.values())
    return min(pool, key=lambda p: (p.gap, -attainment(p.report, len(search.sim.requests)), p.score), default=None)


def _pareto(search: _Confirm, scr: Screen, total: int, slo: SLO, flags: str) -> list[Deployment]:
    """Simulated points no other beats on cost and on both latency percentiles (every request finished)."""
    pts = [p for p in search.points.values() if p.report.completed == total]
    if not pts:
        return []
    front = pareto_points(pts, slo.percentile, total)
    return [deployment(p, scr.prices, total, slo, flags) for p in front[:MAX_PARETO]]


def pareto_points(pts: list[Point], pct: int, total: int) -> list[Point]:
    """The points no other beats on the objective and both latency percentiles, latencies within ``SAME_RTOL``
    counting as equal (exact duplicates keep their first point, as ``pareto.non_dominated`` does); ranked."""
    costs = [(p.score, percentile_of(p.report.ttft_s, pct), percentile_of(p.report.tpot_s, pct) or 0.0) for p in pts]
    tol = (0.0, SAME_RTOL, SAME_RTOL)
    keep = [
        p
        for i, (p, c) in enumerate(zip(pts, costs, strict=True))
        if c not in costs[:i] and not any(dominates(o, c, tol) for o in costs)
    ]
    return rank_points(keep, pct, total)


def dominates(a, b, rtol) -> bool:
    """``a`` no worse than ``b`` on every column (lower is better) and better on one, where values within
    ``rtol`` (relative, per column) of each other count as equal."""
    better = False
    for x, y, r in zip(a, b, rtol, strict=True):
        if x == y:
            continue
        tol = r * max(abs(x), abs(y)) if np.isfinite(x) and np.isfinite(y) else 0.0
        if x > y + tol:
            return False
        better = better or x < y - tol
    return better


def _reported(p: Point, pct: int, total: int) -> tuple[float, ...]:
    """What the deployment tables report besides the objective, each lower-is-better: GPUs, TTFT and TPOT
    percentiles, share of requests outside the SLOs, USD per million tokens."""
    ttft, tpot = percentile_of(p.report.ttft_s, pct), percentile_of(p.report.tpot_s, pct)
    per_m = p.report.cost_per_million_tokens
    return (
        float(sum(p.counts) * p.row.cand.hw.gpus),
        np.inf if ttft is None else ttft,
        np.inf if tpot is None else tpot,
        1.0 - attainment(p.report, total),
        np.inf if per_m is None else per_m,
    )


def rank_points(points: list[Point], pct: int, total: int) -> list[Point]:
    """Best first: by the objective, then by the SLO gap, except that among points tied on the objective none
    ranks above one that dominates it on the reported metrics (``SAME_RTOL``). The gap alone let a plan with the
    same cost and TPOT but a worse TTFT rank first, as the gap is the larger of the two ratios."""
    order = sorted(points, key=lambda p: (p.score, p.gap))
    tol = (0.0, SAME_RTOL, SAME_RTOL, SAME_RTOL, SAME_RTOL)
    out: list[Point] = []
    i = 0
    while i < len(order):
        j = i + 1
        while j < len(order) and np.isclose(order[j].score, order[i].score, rtol=1e-9, atol=0.0):
            j += 1
        tied = order[i:j]
        metrics = {id(p): _reported(p, pct, total) for p in tied}
        while tied:  # next: the smallest gap among those no remaining tied point dominates
            free = (p for p in tied if not any(dominates(metrics[id(q)], metrics[id(p)], tol) for q in tied))
            pick = next(free, tied[0])  # none free: a cycle, possible only through the tolerance
            out.append(pick)
            tied = [p for p in tied if p is not pick]
        i = j
    return out


def _message(shown: list[Deployment], closest: Deployment | None, slo: SLO, truncated: bool) -> str:
    pct = f"p{slo.percentile}"
    goal = f"TTFT {pct} <= {slo.ttft_s:g} s and TPOT {pct} <= {slo.tpot_s:g} s"
    cut = " (stopped at the simulation limit; raise --max-simulations to search further)" if truncated else ""
    if shown:
        return f"cheapest deployment meeting {goal}: {describe(shown[0])}, ${shown[0].cost_per_hour:,.2f}/h{cut}"
    if closest is None:
        return f"no deployment meets {goal}{cut}"
    ttft, tpot = percentile_of(closest.ttft_s, slo.percentile), percentile_of(closest.tpot_s, slo.percentile)
    parts = []
    for name, value, bound in (("TTFT", ttft, slo.ttft_s), ("TPOT", tpot, slo.tpot_s)):
        if value is not None:
            over = f" ({value / bound - 1:+.0%} over)" if value > bound else " (met)"
            parts.append(f"{name} {pct} {value:.3g} s{over}")
    rejected = f", {closest.rejected} requests rejected" if closest.rejected else ""
    return (
        f"no deployment meets {goal}{cut}; closest: {describe(closest)} with {', '.join(parts)}, "
        f"{closest.slo_attainment:.0%} of requests within both SLOs{rejected}"
    )
