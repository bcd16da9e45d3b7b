"""Energy, power caps and carbon: invariants of the phase power model and the validation command."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fathom.api import estimate_training_plan
from fathom.catalog.hardware import resolve_cluster
from fathom.cli.app import run
from fathom.energy.carbon import device_embodied_kg, grid_intensity
from fathom.energy.power import phase_of, power_profile, step_power
from fathom.errors import FathomInputError

PLAN = dict(model="llama-3.1-8b", gpu="h100-sxm", num_gpus=64, seq_len=8192, global_batch=256, tokens=1e11)
H100 = resolve_cluster("h100-sxm", 8).device


def test_phases_of_the_breakdown():
    assert phase_of("gemm") == "compute" and phase_of("dp_comm") == "communication"
    assert phase_of("pipeline_bubble") == "idle" and phase_of("memory_bound") == "memory"
    assert phase_of("some_new_comm") == "communication"


def test_all_compute_step_draws_tdp_and_idle_step_draws_idle():
    prof = power_profile(H100)
    assert float(step_power({"gemm": 1.0}, prof).avg_power_w) == pytest.approx(H100.tdp_w)
    assert float(step_power({"pipeline_bubble": 1.0}, prof).avg_power_w) == pytest.approx(prof.idle_w)


@settings(max_examples=80, deadline=None)
@given(
    times=st.lists(st.floats(0.0, 10.0), min_size=4, max_size=4).filter(lambda t: sum(t) > 1e-6),
    caps=st.lists(st.floats(150.0, 700.0), min_size=2, max_size=2),  # idle 140 W .. TDP
)
def test_power_cap_never_increases_throughput(times, caps):
    prof = power_profile(H100)
    breakdown = dict(zip(("gemm", "memory_bound", "tp_comm", "pipeline_bubble"), times, strict=True))
    lo, hi = sorted(caps)
    free = step_power(breakdown, prof)
    t_hi, t_lo = step_power(breakdown, prof, hi), step_power(breakdown, prof, lo)
    assert float(free.step_time_s) <= float(t_hi.step_time_s) + 1e-12 <= float(t_lo.step_time_s) + 2e-12
    assert float(t_lo.avg_power_w) <= lo + 1e-9


def test_power_cap_in_the_estimate():
    free = estimate_training_plan(**PLAN)
    capped = estimate_training_plan(**PLAN, power_cap_w=400.0)
    assert capped.tokens_per_s < free.tokens_per_s and capped.run.days > free.run.days
    assert sum(capped.time_breakdown.values()) == pytest.approx(capped.step_time_s)
    assert capped.run.avg_power_w_per_gpu <= 400.0
    with pytest.raises(FathomInputError, match="--power-cap"):
        estimate_training_plan(**PLAN, power_cap_w=50.0)
    with pytest.raises(FathomInputError, match="at most its 700 W TDP"):  # no board's limit goes past its TDP
        estimate_training_plan(**PLAN, power_cap_w=2000.0)
    assert capped.power_cap_w == 400.0 and capped.power_cap_slowdown == pytest.approx(capped.run.power_cap_slowdown)
    uncapped_run = estimate_training_plan(**{**PLAN, "tokens": None}, power_cap_w=400.0)  # shown without --tokens too
    assert uncapped_run.run is None and uncapped_run.power_cap_slowdown > 1.0


def test_carbon_scales_with_grid_intensity():
    low = estimate_training_plan(**PLAN, region="eu-north").run
    high = estimate_training_plan(**PLAN, region="asia").run
    assert high.co2e_t / low.co2e_t == pytest.approx(grid_intensity("asia") / grid_intensity("eu-north"))
    doubled = estimate_training_plan(**PLAN, region=str(2 * grid_intensity("us-east"))).run
    base = estimate_training_plan(**PLAN, region="us-east").run
    assert doubled.co2e_t == pytest.approx(2 * base.co2e_t)
    assert estimate_training_plan(**PLAN).run.co2e_t is None  # no region, no operational carbon
    with pytest.raises(FathomInputError, match="did you mean"):
        grid_intensity("us-eats")


def test_pue_and_existing_energy_contract():
    r = estimate_training_plan(**PLAN, pue=1.5).run
    assert r.pue == 1.5
    assert r.energy_mwh == pytest.approx(64 * 700 * r.time_s * 1.5 / 3.6e9)  # TDP x time x PUE, unchanged
    assert r.energy_phase_mwh <= r.energy_mwh < r.energy_server_mwh * 1.5


def test_embodied_carbon_follows_llmcarbon():
    # H100: 8.14 cm^2 x 1.8 kg/cm^2 + 80 GiB x 0.4 kg/GB
    assert device_embodied_kg(H100) == pytest.approx(8.14 * 1.8 + 80 * 1.073741824 * 0.4)
    run_ = estimate_training_plan(**PLAN).run
    expected = device_embodied_kg(H100) * 64 * run_.time_s / (5 * 365 * 86400) / 1000
    assert run_.embodied_co2e_t == pytest.approx(expected)
    assert device_embodied_kg(resolve_cluster("mi300x", 8).device) is None


def test_validate_energy_runs_and_reports(capsys):
    assert run(["validate", "energy", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    rows = {r["row_id"]: r for r in out["rows"]}
    assert {"gpt3-175b", "bloom-176b", "opt-175b", "llama-2-70b", "llama-3.1-405b"} <= set(rows)
    assert rows["opt-175b"]["skipped"]
    errors = np.array([r["error_pct"] for r in rows.values() if r["error_pct"] is not None])
    summary = out["summary"]["energy | all sources"]
    assert summary["rows"] == len(errors) and summary["mean_abs_error_pct"] == pytest.approx(np.abs(errors).mean())
    assert summary["mean_abs_error_pct"] < 20.0


def _row_405b() -> dict[str, str]:
    from fathom.validation.energy import load_footprints

    return next(r for r in load_footprints() if r["id"] == "llama-3.1-405b")


def test_published_layout_with_fathoms_knobs():
    from fathom.catalog.models import get_model
    from fathom.specs.plan import TrainingPlan
    from fathom.training.estimator import estimate_training
    from fathom.validation.energy import best_plan_for_layout

    row, model = _row_405b(), get_model("llama-3.1-405b")
    cluster = resolve_cluster("h100-sxm", 16384)
    best = best_plan_for_layout(row, model, cluster)
    assert (best.tp, best.pp, best.cp, best.dp, best.schedule) == (8, 16, 1, 128, "interleaved")
    assert 8 % best.vpp == 0 and best.vpp > 1  # splits the fullest (8-layer) stage evenly
    chosen = estimate_training(model, cluster, best)
    assert chosen.fits
    # No fitting plan of the same layout and schedule trains faster.
    for vpp in (2, 4):
        for recompute in ("none", "selective", "full"):
            other = best.model_copy(update={"vpp": vpp, "recompute": recompute})
            est = estimate_training(model, cluster, TrainingPlan(**other.model_dump()))
            assert not est.fits or est.tokens_per_s <= chosen.tokens_per_s * (1 + 1e-9)
    pinned = best_plan_for_layout({**row, "micro_batch": "2", "zero": "3"}, model, cluster)
    assert pinned.micro_batch == 2 and pinned.zero == 3  # stated knobs are kept, not searched


def test_unknown_plan_source_is_a_one_line_error():
    from fathom.validation.energy import check_row

    with pytest.raises(FathomInputError, match="plan_source.*published-search"):
        check_row({**_row_405b(), "plan_source": "guessed"})
