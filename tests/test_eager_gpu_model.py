"""A GPU device running eager PyTorch (``DeviceSpec.eager_pytorch``, what ``fathom profile`` writes on a GPU):
eager layers priced with the GPU's overlap of host and device, and the profiler's queued timing."""

from __future__ import annotations

import pytest
import yaml

from fathom.catalog.hardware import get_device
from fathom.catalog.models import get_model
from fathom.inference.host import issue_op_s
from fathom.profiling.check_predict import predict_train, serve_plan
from fathom.profiling.timing import QUEUED_MAX_RUNS, Timer


def _yaml(tmp_path, name: str = "dev", **update) -> str:
    dev = get_device("h100-sxm").model_dump()
    dev.update(update)
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump({**dev, "name": "dev"}))
    return str(path)


def test_eager_pytorch_switches_a_gpu_to_the_eager_layer_and_keeps_overlap(tmp_path):
    spec = get_model("tiny-llama")
    fused = predict_train(spec, _yaml(tmp_path, "fused", eager_pytorch=False), 4, 256, 1)
    eager = predict_train(spec, _yaml(tmp_path, eager_pytorch=True), 4, 256, 1)
    # autograd's saved tensors of the unfused reference layer differ from the fused stack's (Korthikanti) count
    assert eager["memory"]["activations"] != fused["memory"]["activations"]
    # the eager layer dispatches several times the ops: a host-bound tiny model takes longer
    assert eager["total"] > fused["total"]
    dev = get_device(_yaml(tmp_path, eager_pytorch=True))
    assert dev.runs_eager and not dev.ops_run_inline


def test_a_cpu_is_always_eager():
    dev = get_device("cpu")
    assert dev.ops_run_inline and dev.runs_eager and not dev.eager_pytorch


def test_serving_issues_ops_at_the_inference_rate_where_measured(tmp_path):
    plan = serve_plan(8, 128)
    measured = get_device(_yaml(tmp_path, efficiency={"host_op_us": 13.0, "host_op_inference_us": 8.0}))
    assert issue_op_s(plan, measured) == pytest.approx(8e-6)
    unmeasured = get_device(_yaml(tmp_path, "unmeasured", efficiency={"host_op_us": 13.0}))
    assert issue_op_s(plan, unmeasured) == pytest.approx(13e-6)


def test_a_queued_timer_runs_short_work_back_to_back_per_sample():
    calls, syncs = [], []
    timer = Timer(sync=lambda: syncs.append(1), queued=True)
    samples = timer.samples(lambda: calls.append(1), repeats=3, warmup=1, budget_s=5.0)
    assert len(samples) == 3
    # one warm-up, one sizing run, then three samples of QUEUED_MAX_RUNS runs each (each run is far under 2 ms)
    assert len(calls) == 1 + 1 + 3 * QUEUED_MAX_RUNS
    assert all(s < 1e-3 for s in samples)  # per run, not per sample


def test_a_cpu_timer_times_each_run():
    calls = []
    Timer(sync=lambda: None).samples(lambda: calls.append(1), repeats=3, warmup=1, budget_s=5.0)
    assert len(calls) == 4


def _machine(accelerator: str):
    from fathom.profiling.machine import Machine

    return Machine("Xeon", 16, 16, 2.1, [], 125.9, "2.11", accelerator, "2026-11-22")


def test_a_one_gpu_profile_keeps_the_usual_system(tmp_path):
    from fathom.catalog.hardware import resolve_cluster
    from fathom.profiling.runner import system_section

    assert system_section(_machine("NVIDIA H100 80GB HBM3"), 1, {}) == {}
    fitted = {"intra_node_bw_GBps": 300.0, "intra_node_latency_us": 5.0, "intra_node_efficiency": 1.0}
    assert system_section(_machine("NVIDIA H100 80GB HBM3"), 8, fitted) == {"gpus_per_node": 8, **fitted}
    cpu = system_section(_machine("cpu"), 2, fitted)
    assert cpu["gpus_per_node"] == 2 and cpu["host_memory_gib"] == 125.9
    dev = get_device("h100-sxm").model_dump()
    path = tmp_path / "one-gpu.yaml"
    path.write_text(yaml.safe_dump({**dev, "name": "one-gpu", "system": {}}))
    cluster = resolve_cluster(str(path), 8)
    assert cluster.system.gpus_per_node == 8  # dgx-h100: eight GPUs on NVLink, not eight one-GPU nodes


def test_the_gpu_benches_run_and_feed_the_fit_on_any_device():
    """The GPU-only benchmarks (sustained GEMM, serving's per-op host cost) are device-agnostic code: run here on
    the CPU with the tiny grid, their rows set the fields the fit derives from them."""
    from dataclasses import replace

    from fathom.profiling.bench_kernels import bench_gemm_sustained
    from fathom.profiling.bench_memory import bench_eager_layer_op
    from fathom.profiling.fit import fit_profile
    from fathom.profiling.grids import get_grid

    grid = replace(get_grid("tiny"), sustained_s=0.2)
    timer = Timer(sync=lambda: None)
    held = bench_gemm_sustained(grid, ["fp32"], "cpu", timer, lambda: None)
    assert held[0]["isolated_s"] > 0 and held[0]["sustained_s"] > 0
    infer = bench_eager_layer_op(grid, timer, device="cpu", inference=True)
    train = bench_eager_layer_op(grid, timer, device="cpu")
    assert infer["op"] == "eager_inference_op" and infer["ops"] > 0 and infer["seconds_per_op"] > 0
    assert infer["ops"] < train["ops"]  # no backward
    base = get_device("h100-sxm").model_dump()
    overhead = [{"op": "tiny_add", "seconds_per_op": 1e-5}, {"op": "tiny_add_graph", "seconds_per_op": 1.5e-6}]
    fit = fit_profile(
        base, {"overhead": overhead + [train, infer], "gemm_sustained": held}, train_dtype="bf16", cpu=False
    )
    eff = fit.device["efficiency"]
    assert eff["kernel_launch_us"] == pytest.approx(1.5)  # the graph-replayed kernel, not the host's issue
    assert eff["host_op_us"] == pytest.approx(train["seconds_per_op"] * 1e6)
    assert eff["host_op_inference_us"] == pytest.approx(infer["seconds_per_op"] * 1e6)
    ratio = held[0]["isolated_s"] / held[0]["sustained_s"]
    assert eff["gemm_sustained"] == pytest.approx(min(ratio, 1.0))


def test_the_fp8_gemm_bench_runs_and_fits_on_any_device_torch_can_scale_mm_on():
    """``bench_gemm_fp8`` and the FP8 minimal-GEMM call (``_tiny_gemm``) are device-agnostic code, gated by
    ``fp8_gemms_supported`` on a GPU; PyTorch runs ``_scaled_mm`` on a CPU too, so here they run with the tiny grid
    and their rows fit ``efficiency.gemm["fp8"]`` on an FP8 peak."""
    torch = pytest.importorskip("torch")
    if not hasattr(torch, "_scaled_mm"):
        pytest.skip("this PyTorch has no _scaled_mm")
    from fathom.profiling.bench_kernels import bench_gemm_fp8, fp8_gemm_cases
    from fathom.profiling.bench_memory import _tiny_gemm
    from fathom.profiling.fit import fit_profile
    from fathom.profiling.grids import get_grid

    grid, timer = get_grid("tiny"), Timer(sync=lambda: None)
    try:
        rows = bench_gemm_fp8(grid, "cpu", timer, lambda: None)
        call = _tiny_gemm(grid, timer, "fp8", "cpu")
    except (RuntimeError, NotImplementedError) as exc:  # a build without CPU FP8 matmuls
        pytest.skip(f"no CPU _scaled_mm here: {exc}")
    assert len(rows) == len(fp8_gemm_cases(grid)) > 0
    assert all(r["dtype"] == "fp8" and r["seconds"] > 0 for r in rows)
    assert call["op"] == "tiny_gemm" and call["dtype"] == "fp8" and call["seconds_per_op"] > 0
    base = get_device("h100-sxm").model_dump()
    overhead = [{"op": "tiny_add", "seconds_per_op": 1e-5}, call]
    fit = fit_profile(base, {"overhead": overhead, "gemm": rows}, train_dtype="bf16", cpu=False)
    assert 0.0 < fit.device["efficiency"]["gemm"]["fp8"] <= 1.0
    assert fit.quality["gemm_fp8"]["cases"] == len(rows)
