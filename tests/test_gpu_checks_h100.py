"""The H100 profile and checks measured on a lent GPU node (``validation/data/gpu_checks/h100``).

No GPU runs here: the stored measurements are refitted and the stored checks re-predicted, so a change to the
fit or to the eager-GPU prediction path (``DeviceSpec.eager_pytorch``) shows up as a moved number.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from eager_variants import VARIANTS as _VARIANTS
from fathom.catalog.hardware import get_device
from fathom.catalog.models import get_model
from fathom.profiling.check_predict import predict_serve, predict_train
from fathom.profiling.fit import fit_profile
from fathom.profiling.grids import GPU_GRIDS, GRIDS, get_grid
from fathom.profiling.speed import at_reference_speed

HERE = Path(__file__).resolve().parents[1] / "src/fathom/validation/data/gpu_checks/h100"
PROFILE = HERE / "h100-quick.yaml"
# (profile, check) of each run: session 10's two nodes (here and ``run2/``), session 11's two (``run3/``, ``run4/``:
# bf16 training checks too, after the fused-kernel op counts below), session 16's (``run5/``: one node, no decode
# probe yet; ``run6/``, ``run7/``: another node profiled twice, with the decode probe; ``run8/``: a third node;
# ``run9/``: a profile alone, FP8 GEMMs and the reference-normalised GPU fit; ``run10/``: FP8 GEMMs, raw GPU fit)
RUNS = tuple([HERE] + [HERE / f"run{i}" for i in range(2, 11)])
CHECKS = [(d / "h100-quick.yaml", c) for d in RUNS for c in sorted(d.glob("check-*.json"))]


def _profile() -> dict:
    return yaml.safe_load(PROFILE.read_text())


def test_the_stored_profile_is_an_eager_gpu_device():
    dev = get_device(str(PROFILE))
    assert dev.eager_pytorch and dev.runs_eager and not dev.ops_run_inline
    eff = dev.efficiency
    # what an H100 reaches: bf16 GEMMs near 750 TFLOP/s, HBM3 near its 3.35 TB/s, a kernel's own cost ~1 us
    assert 0.6 < eff.gemm["bf16"] < 0.9
    assert 0.85 < eff.memory <= 1.0
    assert 0.5 < eff.kernel_launch_us < 3.0
    assert eff.host_op_inference_us < eff.host_op_us  # no autograd bookkeeping in serving
    assert 0.5 < eff.gemm_sustained <= 1.0


def test_refitting_the_stored_measurements_gives_the_stored_efficiencies():
    doc = _profile()
    base = get_device("h100-sxm").model_dump()
    base.update(name=doc["name"], eager_pytorch=True)
    fit = fit_profile(base, at_reference_speed(doc["profile"]["measurements"]), train_dtype="bf16", cpu=False)
    stored = doc["efficiency"]
    for key in ("memory", "optimizer", "kernel_launch_us", "host_op_us", "host_op_inference_us", "gemm_sustained"):
        assert fit.device["efficiency"][key] == pytest.approx(stored[key], rel=1e-3), key
    for dtype in ("bf16", "fp32"):
        assert fit.device["efficiency"]["gemm"][dtype] == pytest.approx(stored["gemm"][dtype], rel=1e-3)
    assert fit.device["efficiency"]["attention"]["flash2"] == pytest.approx(stored["attention"]["flash2"], rel=1e-3)


def test_the_gpu_fit_floors_host_bound_cases_at_the_issue_rate():
    """Without the floor the tiny GEMMs (host-bound at ~10 us a call) pull the bf16 share far down."""
    doc = _profile()
    meas = at_reference_speed(doc["profile"]["measurements"])
    base = get_device("h100-sxm").model_dump()
    floored = fit_profile(base, meas, train_dtype="bf16", cpu=False).device["efficiency"]["gemm"]["bf16"]
    no_issue = {**meas, "overhead": [r for r in meas["overhead"] if r["op"] != "tiny_add"]}
    bare = fit_profile(base, no_issue, train_dtype="bf16", cpu=False).device["efficiency"]["gemm"]["bf16"]
    assert floored > bare * 1.1


# The bounds README.md states for these runs: training within 25% (the compute-bound fp32 runs within 7%; the small
# models are host-bound, and the same check moved with the node: medium-llama's fp32 step measured 19.1, 26.7 and
# 27.9 ms on three nodes, so no one prediction is within 20% of all three), serving within 45% (host-bound at these
# batches), peak memory within 10%.
TRAIN_BOUND_PCT, SERVE_BOUND_PCT, MEMORY_BOUND_PCT = 25.0, 45.0, 10.0
# Runs a lever fathom does not price puts outside the bound; the test holds them outside, so that pricing it shows.
KNOWN_OUTSIDE = {
    # The tied LM head over GPT-2's unpadded 50,257-token vocabulary: cuBLAS ran its bf16 GEMM at 96 TFLOP/s
    # (8.8 ms forward, torch profiler on the same node) where fathom prices an aligned one at ~700.
    "run3/check-train-gpt3-350m-8-1024-bf16",
    # Host-bound decode steps in a fast spell of the node's host: on run7's node gpt3-125m's check measured 218 and
    # 294 ms back to back (check-serve-gpt3-125m-again-8), tiny-llama's 178 ms in run6 and 107 ms in run7
    "run6/check-serve-gpt3-125m-8",
    "run7/check-serve-gpt3-125m-8",
    "run7/check-serve-tiny-llama-8",
}


@pytest.mark.parametrize("profile,path", CHECKS, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_the_stored_checks_re_predicted_stay_within_the_stated_bounds(profile, path):
    """Today's prediction for each stored run against its stored measurement (so a change to the eager-GPU path
    that moves a run out of its bound fails here, though no GPU is present)."""
    run = json.loads(path.read_text())
    spec = get_model(run["model"])
    if "micro_batch" in run:
        pred = predict_train(spec, str(profile), run["micro_batch"], run["seq_len"], run["dp"], run["precision"])
        total, bound = pred["total"], TRAIN_BOUND_PCT
    else:
        pred = predict_serve(spec, str(profile), run["batch"], run["input_len"], run["output_len"])
        total, bound = pred["prefill_s"] + sum(pred["decode_step_s"]), SERVE_BOUND_PCT
    outside = abs(total / run["total"]["measured_s"] - 1.0) * 100.0 >= bound
    assert outside == (f"{path.parent.name}/{path.stem}" in KNOWN_OUTSIDE)
    assert abs(run["memory"]["error_pct"]) < MEMORY_BOUND_PCT


def test_the_compute_bound_training_checks_are_within_7_percent():
    """Session 10's and 11's nodes were within 6%; session 16's first node ran gpt3-1.3b 6.9% faster."""
    for profile, path in CHECKS:
        run = json.loads(path.read_text())
        if run["model"] in ("gpt3-350m", "gpt3-1.3b") and "micro_batch" in run and run["precision"] == "fp32":
            pred = predict_train(get_model(run["model"]), str(profile), run["micro_batch"], run["seq_len"], 1)
            assert abs(pred["total"] / run["total"]["measured_s"] - 1.0) < 0.07, path


def test_gpu_grids_reach_gpu_sizes():
    for name, cpu in GRIDS.items():
        gpu = get_grid(name, "cuda")
        assert gpu is GPU_GRIDS[name] and get_grid(name, "cpu") is cpu
        assert max(gpu.gemm_m) > max(cpu.gemm_m) and gpu.gemm_max_flops > cpu.gemm_max_flops
        assert max(gpu.copy_numel) * 4 > 50e6  # past an H100's 50 MB L2
    assert np.all(np.diff(GPU_GRIDS["quick"].attention_seq) > 0)


def test_the_fused_op_counts_are_the_h100s():
    """``fathom.training.eager`` with ``fused`` against the ops the reference model dispatched on the H100
    (``cuda_op_counts.json``): training layer and head, fp32 and bf16, and a decode step's per layer."""
    from fathom.training.eager import eager_decode_ops, eager_head_ops, eager_layer

    counts = json.loads((HERE / "cuda_op_counts.json").read_text())
    assert len(counts["training"]) == len(counts["decode"]) == 2 * len(_VARIANTS)
    for key, measured in counts["training"].items():
        variant, dtype = key.split(" ")
        spec = get_model("tiny-llama").model_copy(update=_VARIANTS[variant])
        act = 2.0 if dtype == "torch.bfloat16" else 4.0
        assert [int(n) for n in eager_layer(spec, fused=True).ops(act)] == measured["layer"], key
        assert [int(n) for n in eager_head_ops(spec, act, fused=True)] == measured["head"], key
    for key, measured in counts["decode"].items():
        variant, dtype = key.split(" ")
        spec = get_model("tiny-llama").model_copy(update=_VARIANTS[variant])
        assert eager_decode_ops(spec, dtype == "torch.bfloat16", fused=True) == measured, key


def test_a_gpu_profile_fits_its_gemms_on_the_raw_times_with_each_dtypes_call_floor():
    """run10 (FP8 GEMMs, each dtype's call timed, the fit on raw medians): refitting its measurements gives its
    stored GEMM efficiencies, and they agree with an independent measurement of the same GPU's best GEMM rate, the
    MAMF tables the catalog's h100-sxm cites (bf16 0.803, FP8 0.709 of the datasheet peaks), within 5%."""
    doc = yaml.safe_load((HERE / "run10" / "h100-quick.yaml").read_text())
    meas = doc["profile"]["measurements"]
    assert not any("normalised" in r for r in meas["gemm"])  # a GPU's cases are not scaled by host-bound kernels
    base = get_device("h100-sxm").model_dump()
    base.update(name=doc["name"], eager_pytorch=True)
    fit = fit_profile(base, at_reference_speed(meas), train_dtype="bf16", cpu=False)
    for dtype in ("bf16", "fp32", "fp8"):
        assert fit.device["efficiency"]["gemm"][dtype] == pytest.approx(doc["efficiency"]["gemm"][dtype], rel=1e-3)
        assert fit.quality[f"gemm_{dtype}"]["median_abs_error_pct"] < 10.0
    catalog = get_device("h100-sxm").efficiency.gemm
    for dtype in ("bf16", "fp8"):
        assert fit.device["efficiency"]["gemm"][dtype] == pytest.approx(catalog[dtype], rel=0.05)


def test_a_host_bound_reference_would_corrupt_a_gpu_gemm():
    """Why a GPU profile's fit takes raw times: in run9 the bf16 reference GEMM (host-bound on a GPU) read 5x slow
    once, and its normalised time for a 2048 x 4096 x 8192 GEMM is faster than the H100's datasheet peak."""
    doc = yaml.safe_load((HERE / "run9" / "h100-quick.yaml").read_text())
    peak = get_device("h100-sxm").peak_tflops["bf16"] * 1e12
    case = next(
        r
        for r in doc["profile"]["measurements"]["gemm"]
        if (r["dtype"], r["m"], r["n"], r["k"]) == ("bf16", 2048, 4096, 8192)
    )
    flops = 2.0 * 2048 * 4096 * 8192
    assert flops / case["normalised"]["seconds"] > peak > flops / case["seconds"]


def test_a_profile_with_fp8_gemm_cases_passes_the_checks_schema():
    """run9's serving check refused its own profile (an ``fp8`` GEMM case the schema did not know); run10's passes."""
    from fathom.profiling.profile_schema import check_profile_section

    doc = yaml.safe_load((HERE / "run10" / "h100-quick.yaml").read_text())
    assert any(r["dtype"] == "fp8" for r in doc["profile"]["measurements"]["gemm"])
    check_profile_section(doc["profile"], "run10")
