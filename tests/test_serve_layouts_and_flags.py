"""`fathom serve` QA fixes: layouts the model cannot run, flags a run would ignore, outputs written all or none,
one-line errors naming the flag, the per-replica KV figure, grouped rejection reasons, the offload default."""

from __future__ import annotations

import json

import pytest

from fathom.api.serving import Workload, simulate_serving
from fathom.catalog.hardware import resolve_cluster
from fathom.catalog.models import get_model
from fathom.cli.app import run
from fathom.errors import FathomInputError
from fathom.inference.memory import replica_memory, weight_bytes_per_gpu
from fathom.inference.speculative import parse_speculative
from fathom.inference.step_model import InferenceStepModel
from fathom.specs.serving import ServingPlan

BASE = ["serve", "--model", "llama-3.1-8b", "--gpu", "h100-sxm", "--offline", "--num-requests", "4",
        "--input-len", "256", "--output-len", "16"]  # fmt: skip
MIXTRAL = ["serve", "--model", "mixtral-8x7b", "--gpu", "h100-sxm", "--precision", "fp8", "--rate", "4",
           "--num-requests", "20", "--input-len", "1500", "--output-len", "50"]  # fmt: skip
WORKLOAD = Workload(arrival="offline", num_requests=4, input_len="256", output_len="16")


def _error(capsys, argv) -> str:
    """Exit 2, one line on stderr, no traceback, nothing on stdout (no run was started)."""
    assert run(argv) == 2
    captured = capsys.readouterr()
    assert captured.err.startswith("error: ") and captured.err.count("\n") == 1, captured.err
    assert "Traceback" not in captured.err and captured.out == ""
    return captured.err


def _json(capsys, argv) -> dict:
    assert run(argv + ["--json"]) == 0
    return json.loads(capsys.readouterr().out)


# -- 1. expert parallelism adds no GPUs ----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("extra", "words"),
    [
        (["--tp", "1", "--ep", "8"], ("ep=8 must divide tp=1",)),
        (["--tp", "2", "--ep", "4"], ("ep=4 must divide tp=2",)),
        (["--tp", "16", "--ep", "16"], ("ep=16 does not divide the 8 experts",)),
    ],
)
def test_ep_must_divide_tp_and_the_experts(capsys, extra, words):
    err = _error(capsys, MIXTRAL + extra)
    for w in words:
        assert w in err, err


def test_ep_on_a_dense_model_is_an_error(capsys):
    assert "ep=2 needs a mixture-of-experts model" in _error(capsys, BASE + ["--tp", "2", "--ep", "2"])


def test_ep_within_tp_runs_on_the_tp_gpus_only(capsys):
    data = _json(capsys, MIXTRAL + ["--tp", "2", "--ep", "2"])
    assert data["completed"] == 20
    assert data["gpu_seconds"] == pytest.approx(2 * data["duration_s"])  # two GPUs, whatever the ep


def test_ep_leaves_the_weights_per_gpu_at_one_tp_share():
    mixtral = get_model("mixtral-8x7b")
    tp8 = weight_bytes_per_gpu(mixtral, ServingPlan(tp=8))
    for ep in (2, 4, 8):  # ep experts groups, each expert split tp/ep ways: 1/tp of the experts on every GPU
        assert weight_bytes_per_gpu(mixtral, ServingPlan(tp=8, ep=ep)) == pytest.approx(tp8)


def test_web_simulate_checks_ep_too():
    pytest.importorskip("fastapi")
    pytest.importorskip("httpx")
    from fastapi.testclient import TestClient

    from fathom.web import create_app

    body = {"model": "mixtral-8x7b", "gpu": "h100-sxm", "precision": "fp8", "tp": 1, "ep": 8, "rate": 4,
            "num_requests": 10, "input_len": "256", "output_len": "16"}  # fmt: skip
    with TestClient(create_app()) as client:
        r = client.post("/api/serve/simulate", json=body)
    assert r.status_code == 422 and "ep=8 must divide tp=1" in r.json()["message"]


# -- 2. seed -------------------------------------------------------------------------------------------------------
def test_negative_seed_is_a_one_line_error(capsys):
    assert "--seed" in _error(capsys, BASE + ["--seed", "-1"])
    with pytest.raises(FathomInputError, match="seed"):
        simulate_serving(model="llama-3.1-8b", gpu="h100-sxm", plan=ServingPlan(), workload=WORKLOAD, seed=-1)


# -- 3. layouts the model cannot run, at every entry point ------------------------------------------------------------
@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (BASE + ["--tp", "3"], ("tp=3 does not divide the 32 attention heads",)),
        (["serve", "--model", "phi-3-medium", "--gpu", "h100-sxm", "--tp", "4", "--offline", "--num-requests", "2"],
         ("tp=4 and the 10 KV heads", "one must divide the other")),
        (["serve", "--model", "llama-2-70b", "--gpu", "h100-sxm", "--pp", "200", "--offline", "--num-requests", "2"],
         ("pp=200 is deeper than the 80 layers",)),
        (BASE + ["--disaggregate", "1:1", "--decode-tp", "3"], ("decode-tp=3 does not divide the 32 attention heads",)),
    ],
)  # fmt: skip
def test_impossible_layouts_are_rejected(capsys, argv, words):
    err = _error(capsys, argv)
    for w in words:
        assert w in err, err


def test_kv_heads_fewer_than_tp_are_replicated_not_rejected():
    from fathom.specs.serving import check_serving_plan

    check_serving_plan(get_model("llama-3.1-8b"), ServingPlan(tp=16))  # 8 KV heads, each on two ranks
    check_serving_plan(get_model("deepseek-v2"), ServingPlan(tp=8))  # MLA: one latent per token, any TP


def test_the_check_guards_every_cost_model():
    """Plan search, imports and sweeps build replicas through ``replica_memory``: they get the same check."""
    device = resolve_cluster("h100-sxm", 3).device
    with pytest.raises(FathomInputError, match="tp=3 does not divide"):
        replica_memory(get_model("llama-3.1-8b"), device, ServingPlan(tp=3))
    from fathom.sweep.scenario import _serve

    with pytest.raises(FathomInputError, match="pp=200"):
        _serve({"model": "llama-2-70b", "gpu": "h100-sxm", "pp": 200, "arrival": "offline", "num_requests": 2})


# -- 4. flags a run would silently ignore ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("extra", "words"),
    [
        (["--disaggregate", "2:1", "--replicas", "4"], ("--replicas", "--disaggregate")),
        (["--decode-tp", "8"], ("--decode-tp", "--disaggregate")),
        (["--kv-link-bw", "50"], ("--kv-link-bw", "--disaggregate")),
        (["--duration", "10"], ("--offline", "--duration")),
        (["--arrival", "gamma"], ("--offline", "--arrival")),
    ],
)
def test_ignored_flags_are_errors(capsys, extra, words):
    err = _error(capsys, BASE + extra)
    for w in words:
        assert w in err, err


def test_trace_with_generated_workload_flags_is_an_error(tmp_path, capsys):
    trace = tmp_path / "t.jsonl"
    trace.write_text('{"arrival_s": 0, "input_tokens": 10, "output_tokens": 5}\n')
    argv = ["serve", "--model", "llama-3.1-8b", "--gpu", "h100-sxm", "--trace", str(trace)]
    err = _error(capsys, argv + ["--num-requests", "400", "--input-len", "1500"])
    assert "--trace" in err and "--num-requests" in err and "--input-len" in err
    assert _json(capsys, argv)["completed"] == 1  # the trace alone is fine


def test_api_rejects_ignored_arguments_too():
    kw = dict(model="llama-3.1-8b", gpu="h100-sxm", plan=ServingPlan(), workload=WORKLOAD)
    with pytest.raises(FathomInputError, match="--replicas"):
        simulate_serving(**kw, replicas=4, disaggregate=(2, 1))
    with pytest.raises(FathomInputError, match="--decode-tp"):
        simulate_serving(**kw, decode_plan=ServingPlan(tp=2))
    with pytest.raises(FathomInputError, match="--kv-link-bw"):
        simulate_serving(**kw, kv_link_GBps=50.0)


# -- 5. outputs: all or none -------------------------------------------------------------------------------------------
def test_unwritable_plot_leaves_no_table(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    err = _error(capsys, BASE + ["--out", "good.csv", "--plot", "/proc/x.png"])
    assert "--plot" in err
    assert not (tmp_path / "good.csv").exists()


def test_a_failing_figure_after_the_run_leaves_nothing(tmp_path, capsys, monkeypatch):
    import fathom.reports.serving_report as serving_report

    def broken(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(serving_report, "write_serving_files", broken)
    out, plot = tmp_path / "r.csv", tmp_path / "r.png"
    assert run(BASE + ["--out", str(out), "--plot", str(plot)]) == 2
    assert "No space left" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # no table, no figure, no temporary files


def test_all_outputs_land_together(tmp_path, capsys):
    out, plot = tmp_path / "r.csv", tmp_path / "r.html"
    assert run(BASE + ["--out", str(out), "--plot", str(plot)]) == 0
    assert out.read_text().startswith("id,") and plot.read_text().lstrip().lower().startswith("<!doctype html")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.csv", "r.html"]


def test_same_path_for_two_outputs_is_an_error(tmp_path, capsys):
    page = str(tmp_path / "x.html")
    assert "--report" in _error(capsys, BASE + ["--plot", page, "--report", page])


# -- 6. KV cache per replica -------------------------------------------------------------------------------------------
def test_kv_cache_gib_is_the_whole_replicas(capsys):
    one = _json(capsys, BASE + ["--tp", "1"])["kv_cache_gib"]
    two = _json(capsys, BASE + ["--tp", "2"])["kv_cache_gib"]
    per_gpu = replica_memory(get_model("llama-3.1-8b"), resolve_cluster("h100-sxm", 2).device, ServingPlan(tp=2))
    assert two == pytest.approx(2 * per_gpu.kv_cache_bytes / 2**30)
    assert two > 2 * one  # two GPUs, each with fewer weights: more than twice the KV of one


# -- 7. rejection reasons grouped by kind ------------------------------------------------------------------------------
def test_rejected_reasons_count_per_kind(capsys):
    data = _json(capsys, ["serve", "--model", "gpt3-125m", "--gpu", "h100-sxm", "--offline", "--num-requests", "12",
                          "--input-dist", "uniform:low=3000,high=4000", "--output-len", "10"])  # fmt: skip
    assert data["rejected"] == 12
    assert data["rejected_reasons"] == {"input+output tokens exceed max_context 2048": 12}


# -- 8. errors name the flag -----------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("extra", "words"),
    [
        (["--precision", "int3"], ("--precision", "int4", "bf16")),
        (["--kv-dtype", "int8"], ("--kv-dtype", "fp8")),
        (["--host-profile", "vllm"], ("--host-profile", "generic", "vllm-v0-eager")),
        (["--out", "r.txt"], ("--out", ".csv", ".parquet")),
        (["--scheduler", "fifo"], ("--scheduler", "continuous")),
        (["--router", "random"], ("--router", "round-robin")),
        (["--preemption", "drop"], ("--preemption", "recompute")),
        (["--capacity-policy", "x"], ("--capacity-policy", "max-utilization")),
    ],
)
def test_bad_choices_name_the_flag_before_running(capsys, extra, words):
    err = _error(capsys, BASE + extra)
    for w in words:
        assert w in err, err


# -- 9. offload: the default fraction trades resident weights for KV ---------------------------------------------------
def test_default_resident_fraction_is_near_the_best(capsys):
    argv = ["serve", "--model", "llama-2-70b", "--gpu", "rtx-4090", "--offload-weights", "cpu", "--offline",
            "--num-requests", "64", "--input-len", "512", "--output-len", "128"]  # fmt: skip
    auto = _json(capsys, argv)
    streamed = _json(capsys, argv + ["--resident-weight-fraction", "0"])
    assert auto["memory_placement"]["resident_weight_fraction"] < 0.05
    assert auto["kv_cache_gib"] > 10  # was 1.25 GiB: room for six 640-token sequences
    speed = auto["throughput"]["output_tokens_per_s"]
    assert speed >= 0.95 * streamed["throughput"]["output_tokens_per_s"]


def test_experts_split_over_ep_and_the_rest_of_tp():
    """With ep dividing tp, each EP rank's tp/ep GPUs split its experts' width: the decode step stays about the
    same from ep=1 (every expert split tp ways) to ep=tp (whole experts, tp/ep as many of them)."""
    model, cluster = get_model("mixtral-8x7b"), resolve_cluster("h100-sxm", 8)
    steps = []
    for ep in (1, 2, 4, 8):
        cost = InferenceStepModel(model, cluster, ServingPlan(tp=8, ep=ep))
        steps.append(cost.step_time_s(prefill_tokens=[], prefill_context=[], decode_context=[1500] * 32))
    assert max(steps) < 1.15 * min(steps)


def test_a_dense_draft_runs_without_expert_parallelism():
    run = simulate_serving(
        model="mixtral-8x7b", gpu="h100-sxm", plan=ServingPlan(tp=8, ep=8), seed=1,
        workload=Workload(arrival="poisson", rate=4.0, num_requests=20, input_len="fixed:512", output_len="fixed:32"),
        speculative=parse_speculative("draft:mistral-7b", 4, 0.7),
    )  # fmt: skip
    assert run.report.completed == 20


def test_a_measured_runtime_footprint_replaces_the_cuda_reserve():
    """A profiled CPU holds its framework's measured pages, not a GPU's 1.5 GiB CUDA context."""
    model = get_model("tiny-llama")
    gpu = resolve_cluster("h100-sxm", 1).device
    cpu_like = gpu.model_copy(update={"runtime_reserved_gib": 0.15, "memory_gib": 1.6})
    assert replica_memory(model, gpu, ServingPlan()).runtime_bytes == pytest.approx(1.5 * 2**30)
    small = replica_memory(model, cpu_like, ServingPlan())
    assert small.runtime_bytes == pytest.approx(0.15 * 2**30) and small.kv_capacity_tokens > 0
