"""The Python API checks what the CLI checks: one-line FathomInputErrors, not wrong numbers or tracebacks
(a QA pass over ``fathom.api`` and the plan/budget/sweep commands, session 10)."""

from __future__ import annotations

import os

import pytest

from fathom.api.search import search_serving_deployments, search_training_plans
from fathom.api.serving import Workload, simulate_serving
from fathom.api.training import estimate_training_plan
from fathom.catalog.models import get_model
from fathom.cli.app import run
from fathom.errors import FathomInputError
from fathom.specs.serving import ServingPlan

TRAIN = dict(model="llama-3.1-8b", gpu="h100-sxm", seq_len=4096, global_batch=64)
SERVE = dict(model="llama-3.1-8b", gpu="h100-sxm")


@pytest.mark.parametrize(
    "kw, needle",
    [
        (dict(price_per_gpu_hour=-5.0, tokens=1e11, objective="cost"), "--price-per-gpu-hour"),
        (dict(tokens=float("nan")), "--tokens"),
        (dict(tokens=float("inf")), "--tokens"),
        (dict(top=2.5), "--top"),
        (dict(max_days=float("nan"), tokens=1e11), "--max-days"),
        (dict(precision="int3"), "--precision"),
        (dict(system_overrides={"pue": float("nan")}), "--pue"),
    ],
)
def test_training_search_refuses_bad_numbers(kw, needle):
    with pytest.raises(FathomInputError, match=needle):
        search_training_plans(**TRAIN, num_gpus=16, **kw)


def test_training_estimate_takes_pue_in_overrides_and_checks_region_and_types():
    est = estimate_training_plan(**TRAIN, num_gpus=8, system_overrides={"pue": 1.3}, tokens=1e11)
    assert est.run is not None and est.run.power_cap_slowdown == 1.0  # no cap: exactly 1
    with pytest.raises(FathomInputError, match="--region"):
        estimate_training_plan(**TRAIN, num_gpus=8, region="mars")
    with pytest.raises(FathomInputError, match="expected an integer"):
        estimate_training_plan(**TRAIN, num_gpus=8.0)
    with pytest.raises(FathomInputError, match="gpu: expected a catalog name"):
        estimate_training_plan(**{**TRAIN, "gpu": None}, num_gpus=8)
    spec = get_model("llama-3.1-8b")
    by_spec = estimate_training_plan(**{**TRAIN, "model": spec}, num_gpus=8)
    assert by_spec.step_time_s == estimate_training_plan(**TRAIN, num_gpus=8).step_time_s
    with pytest.raises(FathomInputError, match="model: expected"):
        get_model(42)


@pytest.mark.parametrize(
    "kw, needle",
    [
        (dict(trace="t.jsonl", rate=2.0, num_requests=5), "ignores trace"),
        (dict(arrival="offline", rate=2.0), "ignores rate"),
        (dict(arrival="closed-loop", concurrency=4, num_requests=5, rate=1.0), "ignores rate"),
        (dict(concurrency=4, num_requests=5), "ignores concurrency"),
        (dict(arrival="trace", trace="t.jsonl", num_requests=5), "ignores num_requests"),
        (dict(rate=1.0, num_requests=3.5), "Workload.num_requests"),
        (dict(rate=float("inf")), "Workload.rate"),
        (dict(arrival="posson", rate=1.0), "did you mean 'poisson'"),
        (dict(rate=1.0, input_len=None), "Workload.input_len"),
    ],
)
def test_a_workload_refuses_what_its_arrival_would_ignore(kw, needle):
    with pytest.raises(FathomInputError, match=needle):
        Workload(**kw)


def test_a_workload_takes_an_integer_length():
    assert Workload(rate=1.0, input_len=512).input_len == "512"


@pytest.mark.parametrize(
    "kw, needle",
    [
        (dict(price_per_gpu_hour=-3.0), "price_per_gpu_hour"),
        (dict(slo_ttft_s=float("nan")), "slo_ttft_s"),
        (dict(disaggregate=(1, 1), kv_link_GBps=0.0), "kv_link_GBps"),
        (dict(disaggregate=(1.5, 1)), "--disaggregate"),
        (dict(samples=2.5), "samples"),
    ],
)
def test_simulate_serving_refuses_bad_numbers(kw, needle):
    with pytest.raises(FathomInputError, match=needle):
        simulate_serving(**SERVE, plan=ServingPlan(), workload=Workload(rate=1.0, num_requests=5), **kw)


def test_simulate_serving_takes_mappings_for_plan_and_workload():
    run_ = simulate_serving(**SERVE, plan={"max_batch": 64}, workload={"rate": 2.0, "num_requests": 10})
    assert run_.report.completed == 10
    with pytest.raises(FathomInputError, match="workload field"):
        simulate_serving(**SERVE, plan={}, workload={"rat": 2.0})
    with pytest.raises(FathomInputError, match="plan"):
        simulate_serving(**SERVE, plan={"max_batch": 0}, workload={"rate": 2.0, "num_requests": 10})


@pytest.mark.parametrize(
    "kw, needle",
    [
        (dict(prices={"h100-sxm": float("nan")}), "--price"),
        (dict(prices={"h100-sxm": -2.0}), "--price"),
        (dict(seed=-1), "--seed"),
        (dict(gpus="h100-sxm"), "gpus: give a list"),
        (dict(slo_ttft_s=float("inf")), "--slo-ttft"),
    ],
)
def test_serving_search_refuses_bad_inputs(kw, needle):
    args = {**dict(model="llama-3.1-8b", gpus=["h100-sxm"], slo_ttft_s=1.0, slo_tpot_s=0.05, rate=2.0), **kw}
    with pytest.raises(FathomInputError, match=needle):
        search_serving_deployments(**args)


PLAN_TRAIN = ["plan", "train", "--model", "llama-3.1-8b", "--gpu", "h100-sxm", "--num-gpus", "8", "--seq-len", "4096",
              "--global-batch", "64"]  # fmt: skip
PLAN_SERVE = ["plan", "serve", "--model", "llama-3.1-8b", "--gpus", "h100-sxm", "--rate", "2", "--slo-ttft", "1",
              "--slo-tpot", "0.05"]  # fmt: skip
BUDGET = ["budget", "--gpu", "h100-sxm", "--num-gpus", "1024"]


@pytest.mark.parametrize(
    "argv, says",
    [
        (PLAN_TRAIN + ["--ep", "2"], "--ep: expert parallelism needs a mixture-of-experts model"),
        (BUDGET + ["--dollars", "1e6", "--price-per-gpu-hour", "0"], "--price-per-gpu-hour: must be > 0"),
        (BUDGET + ["--flops", "1e10"], "give fewer --num-gpus or a larger budget"),
        (PLAN_SERVE + ["--tp", "3"], "TP must divide its 32 attention heads"),
    ],
)
def test_cli_refusals_name_the_flag_in_one_line(argv, says, capsys):
    assert run(argv) == 2
    err = capsys.readouterr().err
    assert says in err and len(err.strip().splitlines()) == 1


def test_sweep_out_refuses_a_directory_and_a_foreign_table(tmp_path):
    from fathom.sweep.store import check_output

    (tmp_path / "d.csv").mkdir()
    with pytest.raises(FathomInputError, match="is a directory"):
        check_output(tmp_path / "d.csv")
    foreign = tmp_path / "g.csv"
    foreign.write_text("garbage,,,\n")
    with pytest.raises(FathomInputError, match="not a sweep table"):
        check_output(foreign)
    ours = tmp_path / "s.csv"
    ours.write_text("scenario_id,kind\na,train\n")
    assert check_output(ours) == ours


def test_native_solver_output_is_kept_off_stdout(capfd):
    """HiGHS prints some MIP lines with C's printf: the fleet solve silences file descriptor 1, so `--json` stays
    JSON (here: a write to fd 1 inside the block never reaches the captured stdout)."""
    import sys

    from fathom.search.fleet import _native_stdout_silenced

    class FdStdout:  # stands for a terminal's stdout, which has a descriptor (capfd leaves sys.stdout without one)
        def fileno(self):
            return 1

        def flush(self):
            pass

    real, sys.stdout = sys.stdout, FdStdout()
    try:
        with _native_stdout_silenced():
            os.write(1, b"HighsMipSolverData::noise\n")
        os.write(1, b"after\n")
    finally:
        sys.stdout = real
    out = capfd.readouterr().out
    assert "noise" not in out and "after" in out


def test_a_misspelt_train_input_is_the_spec_error(tmp_path):
    from fathom.sweep.spec import load_sweep

    spec = tmp_path / "t.yaml"
    spec.write_text(
        "scenarios:\n  - kind: train\n    fixed: {model: llama-3.1-8b, gpu: h100-sxm, num_gpus: 8, seq_len: 4096,"
        " global_batch: 64}\n    grid: {tensor_par: [1, 2]}\n"
    )
    with pytest.raises(FathomInputError, match="unknown train input 'tensor_par'"):
        load_sweep(spec)


def test_a_resumed_sweep_counts_the_error_rows_it_keeps(tmp_path):
    from fathom.sweep.run import run_sweep
    from fathom.sweep.spec import load_sweep

    spec = tmp_path / "s.yaml"
    spec.write_text(
        "scenarios:\n  - kind: train\n    fixed: {model: llama-3.1-8b, gpu: h100-sxm, num_gpus: 8, seq_len: 4096,"
        " global_batch: 64}\n    grid: {tp: [1, 3]}\n"
    )
    out = tmp_path / "s.csv"
    first = run_sweep(load_sweep(spec), out, progress=False)
    again = run_sweep(load_sweep(spec), out, progress=False)
    assert first.errors == 1 and again.ran == 0 and again.errors == 1
