"""``fathom plan serve``: the fleet keeps a disaggregated winner's prefill/decode split, and plans tied on the
objective are ranked (and kept on the Pareto front) by their latencies, so a dominated plan never ranks first."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest

from fathom.api.serving import Workload, simulate_serving
from fathom.cli.app import run
from fathom.search.serving_mix import _single
from fathom.search.serving_result import describe
from fathom.search.serving_search import pareto_points, rank_points
from fathom.search.serving_space import Candidate, Engine, Hardware
from fathom.specs.serving import ServingPlan

SLO_TTFT, SLO_TPOT, PCT, TOTAL = 1.0, 0.05, 99, 100


def _point(score: float, ttft: float, tpot: float, gpus: int = 2, name: str = "") -> SimpleNamespace:
    """A simulated point as the search keeps it: objective, replica counts, report and SLO gap."""
    report = SimpleNamespace(ttft_s=SimpleNamespace(p99=ttft), tpot_s=SimpleNamespace(p99=tpot),
                             cost_per_million_tokens=1.0, goodput_requests_per_s=1.0, duration_s=TOTAL)  # fmt: skip
    row = SimpleNamespace(cand=SimpleNamespace(hw=SimpleNamespace(gpus=gpus)))
    gap = max(ttft / SLO_TTFT, tpot / SLO_TPOT)
    return SimpleNamespace(row=row, counts=(1,), report=report, meets=True, gap=gap, score=score, name=name)


def _names(points) -> list[str]:
    return [p.name for p in points]


def test_a_plan_dominated_at_equal_cost_ranks_below_and_leaves_the_front():
    # QA's case: same cost, TPOT equal to the printed digit (35 ms), TTFT 215 ms vs 190 ms. The dominated plan's
    # TPOT is a hair better at full precision, so its SLO gap (TPOT-bound) was smaller and it ranked first.
    worse = _point(3.77, 0.215, 0.034999, name="b256/t2048")
    better = _point(3.77, 0.190, 0.035001, name="b256/t8192")
    cheap = _point(2.00, 0.900, 0.049, name="cheap")
    assert worse.gap < better.gap
    assert _names(rank_points([worse, better, cheap], PCT, TOTAL)) == ["cheap", "b256/t8192", "b256/t2048"]
    assert _names(pareto_points([worse, better, cheap], PCT, TOTAL)) == ["cheap", "b256/t8192"]


def test_real_trade_offs_keep_the_gap_order_and_the_front():
    fast_first = _point(5.0, 0.100, 0.040, name="fast-ttft")
    fast_rest = _point(5.0, 0.300, 0.020, name="fast-tpot")
    dominated = _point(5.0, 0.301, 0.0401, name="dominated")  # worse than fast-ttft by more than the tolerance
    assert _names(rank_points([fast_first, dominated, fast_rest], PCT, TOTAL)) == [
        "fast-tpot",
        "fast-ttft",
        "dominated",
    ]
    assert _names(pareto_points([fast_first, dominated, fast_rest], PCT, TOTAL)) == ["fast-tpot", "fast-ttft"]
    more_gpus = _point(5.0, 0.09, 0.039, gpus=4, name="more-gpus")  # better latencies, more GPUs: not dominating
    assert _names(rank_points([fast_first, more_gpus], PCT, TOTAL)) == ["more-gpus", "fast-ttft"]


@pytest.fixture(scope="module")
def small_report():
    plan = ServingPlan(tp=1, max_batch=64, max_batch_tokens=2048)
    workload = Workload(rate=4.0, num_requests=10, input_len="256", output_len="16")
    return simulate_serving(model="llama-3.2-1b", gpu="h100-sxm", plan=plan, workload=workload).report


@pytest.mark.parametrize(("disaggregated", "counts"), [(True, (9, 3)), (False, (12,))])
def test_single_type_fleet_keeps_the_mode_and_split(small_report, disaggregated, counts):
    cand = Candidate(Hardware("h100-sxm", 2, 1, "fp8"), Engine("chunked-prefill", 256, 2048), disaggregated)
    single = SimpleNamespace(row=SimpleNamespace(cand=cand), counts=counts, meets=True, gap=0.9, report=small_report)
    scr = SimpleNamespace(prices={"h100-sxm": 6.88})
    sim = SimpleNamespace(requests=[None] * 10)
    part = _single(single, scr, sim, [2000], "HiGHS MILP: optimal", "no mix is cheaper").parts[0]
    assert part.replicas == 12 and part.num_gpus == 24
    if disaggregated:
        assert (part.mode, part.prefill_replicas, part.decode_replicas) == ("disaggregated", 9, 3)
        assert describe(part).startswith("9P+3D x h100-sxm TP2 fp8")
    else:
        assert (part.mode, part.prefill_replicas, part.decode_replicas) == ("aggregated", None, None)
        assert describe(part).startswith("12 x h100-sxm TP2 fp8")


@pytest.fixture(scope="module")
def searched():
    """QA's command (README's flags, three GPU types, p99): small enough to run in a few seconds."""
    import contextlib
    import io

    argv = ["plan", "serve", "--model", "llama-3.1-70b", "--gpus", "h100-sxm,l40s,a100-80gb", "--rate", "10",
            "--input-len", "2000", "--output-len", "300", "--slo-ttft", "1", "--slo-tpot", "0.05",
            "--percentile", "99"]  # fmt: skip
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert run([*argv, "--json"]) == 0
    return json.loads(out.getvalue())


def _metrics(d: dict) -> tuple[float, ...]:
    return (d["num_gpus"], d["ttft_s"]["p99"], d["tpot_s"]["p99"], 1 - d["slo_attainment"],
            d["cost_per_million_tokens"])  # fmt: skip


def _dominates(b: tuple, a: tuple, rtol: float = 0.005) -> bool:
    """``b`` no worse than ``a`` on every metric and better on one, beyond ``rtol`` (about the printed digits)."""
    tol = [rtol * max(abs(x), abs(y)) for x, y in zip(a, b, strict=True)]
    no_worse = all(y <= x + t for x, y, t in zip(a, b, tol, strict=True))
    return no_worse and any(y < x - t for x, y, t in zip(a, b, tol, strict=True))


def test_no_deployment_ranks_above_one_that_dominates_it(searched):
    ds = searched["deployments"]
    assert ds
    for i, a in enumerate(ds):
        for b in ds[i + 1 :]:
            same_cost = b["cost_per_hour"] == pytest.approx(a["cost_per_hour"])
            assert not (same_cost and _dominates(_metrics(b), _metrics(a))), f"#{a['rank']} dominated by #{b['rank']}"


def test_pareto_front_holds_no_dominated_plan(searched):
    front = [(d["cost_per_hour"], d["ttft_s"]["p99"], d["tpot_s"]["p99"]) for d in searched["pareto"]]
    assert front
    for a in front:
        assert not any(_dominates(b, a) for b in front), a


def test_fleet_part_carries_the_winners_mode_and_split(searched):
    best, fleet = searched["deployments"][0], searched["fleet"]
    if fleet["saving"] > 0:  # a mix of GPU types: the program mixes aggregated deployments only
        assert all(p["mode"] == "aggregated" and p["prefill_replicas"] is None for p in fleet["parts"])
        return
    part = fleet["parts"][0]  # the best single-type fleet was kept: it is the winner
    for key in ("gpu", "tp", "pp", "precision", "replicas", "mode", "prefill_replicas", "decode_replicas"):
        assert part[key] == best[key], key
