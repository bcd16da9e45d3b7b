"""fathom profile / fit / check: the fit recovers known parameters (pure numpy), and with PyTorch the tiny
profile writes a loadable device and the checks run end to end with the documented JSON keys."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from eager_variants import VARIANTS as _VARIANTS
from fathom.catalog.hardware import resolve_cluster
from fathom.catalog.models import get_model
from fathom.costmodel.collectives import all_gather_s, all_reduce_s
from fathom.costmodel.kernels import attention_flops, attention_s, linear_s, memory_bound_s
from fathom.profiling.fit import fit_profile
from fathom.specs.hardware import DeviceSpec, SystemSpec

NOMINAL = {
    "name": "synthetic",
    "vendor": "cpu",
    "peak_tflops": {"fp32": 0.2, "bf16": 2.0},
    "memory_gib": 8,
    "mem_bw_GBps": 10.0,
    "tdp_w": 10,
    "num_compute_units": 1,
    "default_system": "cpu-node",
    "efficiency": {},
    "source": "test",
}
TRUE_EFF = {
    "kernel_launch_us": 3.0,
    "host_op_us": 3.0,
    "memory": 0.7,
    "gemm": {"fp32": 0.8, "bf16": 0.4},
    "gemm_sustained": 1.0,
    "attention": {"flash2": 0.05},
}


def _synthetic_measurements(bw_GBps: float, noise: float, rng) -> dict:
    dev = DeviceSpec.model_validate({**NOMINAL, "mem_bw_GBps": bw_GBps, "efficiency": TRUE_EFF})
    jitter = lambda x: np.asarray(x) * np.exp(rng.normal(0.0, noise, np.shape(x)))  # noqa: E731
    mem = [{"op": "copy", "bytes": 8e7, "kernels": 1, "seconds": 8e7 / (bw_GBps * 1e9)}]  # the peak stream
    for nbytes in (1e5, 1e6, 1e7, 1e8):
        mem.append({"op": "silu", "bytes": nbytes, "kernels": 1, "seconds": float(jitter(memory_bound_s(dev, nbytes)))})
    gemm = []
    for dtype in ("fp32", "bf16"):
        for m, n, k in [(256, 512, 512), (1024, 1536, 512), (1024, 1536, 1536), (256, 1536, 1536)]:
            gemm.append(
                {"dtype": dtype, "m": m, "n": n, "k": k, "seconds": float(jitter(linear_s(dev, dtype, m, n, k)))}
            )
    attn = []
    for seq in (128, 512, 1024):
        f = attention_flops(1.0, seq, seq / 2, 8, 64, 64)
        attn.append(
            {
                "dtype": "fp32",
                "seq": seq,
                "heads": 8,
                "head_dim": 64,
                "fwd_s": float(jitter(attention_s(dev, "flash2", f, seq))),
                "bwd_s": float(jitter(attention_s(dev, "flash2", f, seq, backward=True))),
            }
        )
    system = SystemSpec(
        name="s",
        device="d",
        gpus_per_node=4,
        intra_node_bw_GBps=2.0,
        intra_node_latency_us=80.0,
        intra_node_efficiency=1.0,
        inter_node_bw_GBps=1.0,
        source="t",
    )
    coll = []
    for op, fn in (("all_reduce", all_reduce_s), ("all_gather", all_gather_s)):
        for n in (2, 4):
            for nbytes in (4e3, 2.6e5, 4e6, 1.6e7):
                coll.append({"op": op, "ranks": n, "bytes": nbytes, "seconds": float(jitter(fn(system, nbytes, n, 1)))})
    overhead = [{"op": "tiny_add", "seconds_per_op": 3e-6}]
    return {"overhead": overhead, "memory": mem, "gemm": gemm, "attention": attn, "collective": coll}


@pytest.mark.parametrize("noise", [0.0, 0.03])
def test_fit_recovers_known_parameters(noise: float) -> None:
    meas = _synthetic_measurements(12.0, noise, np.random.default_rng(7))
    fit = fit_profile(NOMINAL, meas, train_dtype="fp32", cpu=True)
    eff = fit.device["efficiency"]
    tol = 0.02 + 2 * noise
    assert fit.device["mem_bw_GBps"] == pytest.approx(12.0, rel=1e-6)
    assert eff["kernel_launch_us"] == pytest.approx(3.0)
    assert eff["memory"] == pytest.approx(0.7, rel=tol)
    assert eff["gemm"]["fp32"] == pytest.approx(0.8, rel=tol)
    assert eff["gemm"]["bf16"] == pytest.approx(0.4, rel=tol)
    assert eff["attention"]["flash2"] == pytest.approx(0.05, rel=tol)
    assert fit.system["intra_node_bw_GBps"] == pytest.approx(2.0, rel=tol)
    assert fit.system["intra_node_latency_us"] == pytest.approx(80.0, rel=tol + 0.05)
    DeviceSpec.model_validate(fit.device)


def test_a_gpu_fit_recovers_the_fp8_gemm_rate_beside_bf16() -> None:
    """A GPU profile's FP8 GEMM cases (``bench_gemm_fp8``) fit ``efficiency.gemm["fp8"]`` on the datasheet FP8 peak,
    apart from bf16's: cases made at 0.55 of an FP8 peak twice bf16's come back at 0.55, bf16 at its own 0.4. Small
    cases run back to back take the host's time to issue each call of their dtype (``tiny_gemm``: an FP8
    ``_scaled_mm`` costs more than a matmul, both more than the tiny add), which the fit floors them at."""
    base = {**NOMINAL, "peak_tflops": {"fp32": 0.2, "bf16": 2.0, "fp8": 4.0}}
    true_gemm = {"fp32": 0.8, "bf16": 0.4, "fp8": 0.55}
    dev = DeviceSpec.model_validate({**base, "efficiency": {**TRUE_EFF, "gemm": true_gemm}})
    calls = {"bf16": 18e-6, "fp8": 24e-6}
    shapes = [(16, 64, 64), (32, 128, 64), (64, 128, 128), (128, 256, 256), (512, 1024, 1024), (2048, 4096, 4096)]
    gemm = [
        {"dtype": dtype, "m": m, "n": n, "k": k, "seconds": max(float(linear_s(dev, dtype, m, n, k)), calls[dtype])}
        for dtype in ("bf16", "fp8")
        for m, n, k in shapes
    ]
    meas = {**_synthetic_measurements(12.0, 0.0, np.random.default_rng(7)), "gemm": gemm}
    meas["overhead"] += [{"op": "tiny_gemm", "dtype": d, "seconds_per_op": t} for d, t in calls.items()]
    eff = fit_profile(base, meas, train_dtype="bf16", cpu=False).device["efficiency"]
    assert eff["gemm"]["fp8"] == pytest.approx(0.55, rel=0.02)
    assert eff["gemm"]["bf16"] == pytest.approx(0.4, rel=0.02)
    assert "gemm_call_us" not in eff  # a GPU's call cost is the host's issue, not device time a GEMM adds


def test_fp8_gemms_are_benched_only_on_a_gpu_with_fp8_tensor_cores(monkeypatch) -> None:
    """Compute capability 8.9 and later (Ada, Hopper, Blackwell), CUDA builds only (a faked ``torch.cuda``)."""
    torch = pytest.importorskip("torch")
    from fathom.profiling.bench_kernels import fp8_gemms_supported

    assert not fp8_gemms_supported("cpu")
    if not hasattr(torch, "_scaled_mm"):
        return
    monkeypatch.setattr(torch.version, "hip", None, raising=False)
    for capability, expected in (((8, 0), False), ((8, 9), True), ((9, 0), True), ((10, 0), True)):
        monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None, c=capability: c)
        assert fp8_gemms_supported("cuda") is expected, capability
    monkeypatch.setattr(torch.version, "hip", "6.2", raising=False)  # ROCm: e4m3fnuz, not built here
    assert not fp8_gemms_supported("cuda")


def test_fit_keeps_a_gemm_call_cost_beyond_the_dispatched_op() -> None:
    """A CPU's minimal GEMM per call, less a minimal op: oneDNN's bf16 path pays tens of microseconds where fp32
    pays about one op. The fit keeps it per dtype (never negative); every GEMM pays it instead of the launch cost,
    so a decode-shaped bf16 GEMM grows by the difference; the large-GEMM fit moves by little (these synthetic
    cases were made with the launch cost, 27 us less per call)."""
    meas = _synthetic_measurements(12.0, 0.0, np.random.default_rng(3))
    meas["overhead"] += [
        {"op": "tiny_gemm", "dtype": "bf16", "seconds_per_op": 33e-6},
        {"op": "tiny_gemm", "dtype": "fp32", "seconds_per_op": 2e-6},
    ]
    eff = fit_profile(NOMINAL, meas, train_dtype="fp32", cpu=True).device["efficiency"]
    assert eff["gemm_call_us"] == pytest.approx({"bf16": 30.0, "fp32": 0.0})
    assert eff["gemm"]["bf16"] == pytest.approx(0.4, rel=0.06)
    with_call = DeviceSpec.model_validate({**NOMINAL, "efficiency": eff})
    without = DeviceSpec.model_validate({**NOMINAL, "efficiency": {**eff, "gemm_call_us": {}}})
    grown = linear_s(with_call, "bf16", 8, 256, 256) - linear_s(without, "bf16", 8, 256, 256)
    assert float(grown) == pytest.approx((30.0 - eff["kernel_launch_us"]) * 1e-6)


def test_fit_prices_decode_attention_work_where_it_outlasts_the_kv_read() -> None:
    """One query per sequence: a CPU's SDPA reuses nothing, so with grouped KV heads the query-key work, not the
    KV read, sets its time. The fit recovers the rate from decode cases; the serving step then charges each KV
    token the larger of the two, so a grouped-KV model's decode grows while a device without the measurement
    prices the read alone."""
    from fathom.catalog.models import get_model
    from fathom.costmodel.kernels import decode_attention_s
    from fathom.inference.step_model import InferenceStepModel
    from fathom.profiling.check_predict import serve_plan
    from fathom.specs.hardware import Cluster

    meas = _synthetic_measurements(12.0, 0.0, np.random.default_rng(4))
    truth = DeviceSpec.model_validate({**NOMINAL, "efficiency": {**TRUE_EFF, "decode_attention": {"bf16": 0.002}}})
    meas["attention_decode"] = [
        {"dtype": "bf16", "batch": 8, "heads": 16, "kv_heads": 4, "head_dim": 64, "context": c,
         "seconds": float(decode_attention_s(truth, "bf16", 8 * c, 16, 4, 64))}
        for c in (256, 1024)
    ]  # fmt: skip
    eff = fit_profile(NOMINAL, meas, train_dtype="fp32", cpu=True).device["efficiency"]
    assert eff["decode_attention"]["bf16"] == pytest.approx(0.002, rel=0.02)
    system = SystemSpec(name="s", device="synthetic", gpus_per_node=1, intra_node_bw_GBps=1.0, inter_node_bw_GBps=1.0,
                        source="t")  # fmt: skip
    plan = serve_plan(8, 128)

    def decode(efficiency: dict, model: str) -> float:
        dev = DeviceSpec.model_validate({**NOMINAL, "efficiency": efficiency})
        step = InferenceStepModel(get_model(model), Cluster(device=dev, system=system, num_gpus=1), plan)
        return step.step_time_s([], [], np.full(8, 1000.0))

    without = {k: v for k, v in eff.items() if k != "decode_attention"}
    assert decode(eff, "small-llama") > 1.05 * decode(without, "small-llama")  # 8 query heads over 4 KV heads


def test_fit_raises_a_peak_that_measurements_beat() -> None:
    """A turbo clock above the nominal peak moves the peak, never an efficiency above 1."""
    meas = _synthetic_measurements(12.0, 0.0, np.random.default_rng(0))
    fit = fit_profile({**NOMINAL, "peak_tflops": {"fp32": 0.1, "bf16": 2.0}}, meas, train_dtype="fp32", cpu=True)
    assert fit.device["efficiency"]["gemm"]["fp32"] == 1.0
    assert fit.device["peak_tflops"]["fp32"] == pytest.approx(0.16, rel=0.02)


# ---- with PyTorch --------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_profile(tmp_path_factory):
    pytest.importorskip("torch")
    from fathom.cli.app import run

    out = tmp_path_factory.mktemp("profile") / "node.yaml"
    assert run(["profile", "--tiny", "--threads", "1", "--clock", "cpu", "--no-collectives", "--out", str(out)]) == 0
    return out


def test_fit_prices_the_loss_per_logit_and_training_charges_it() -> None:
    """A CPU's softmax cross-entropy costs its measured time per logit (exps and logs), more than its memory
    passes: the fit keeps the median per-logit time, and the training estimate's head grows by that much."""
    meas = _synthetic_measurements(12.0, 0.0, np.random.default_rng(5))
    meas["loss"] = [
        {"op": "cross_entropy", "logits": n, "fwd_s": n * 2.5e-9, "bwd_s": n * 5e-9} for n in (2**23, 2**24)
    ]
    eff = fit_profile(NOMINAL, meas, train_dtype="fp32", cpu=True).device["efficiency"]
    assert eff["loss_ns_per_element"] == pytest.approx({"fwd": 2.5, "bwd": 5.0})

    from fathom.catalog.models import get_model
    from fathom.profiling.check_predict import train_plan
    from fathom.training.estimator import estimate_training

    model = get_model("small-llama")
    cluster = resolve_cluster("cpu", 1)
    priced = cluster.model_copy(update={"device": cluster.device.model_copy(update={
        "efficiency": cluster.device.efficiency.model_copy(update={"loss_ns_per_element": {"fwd": 2.5, "bwd": 5.0}})
    })})  # fmt: skip
    plan = train_plan(4, 256, 1)
    extra = estimate_training(model, priced, plan).step_time_s - estimate_training(model, cluster, plan).step_time_s
    logits = 4 * 256 * model.vocab_size
    assert 0 < extra <= logits * 7.5e-9 * 1.0001  # at most the full per-logit cost (it replaces the memory passes)
    assert extra > 0.5 * logits * 7.5e-9  # and most of it: the passes are far cheaper on any CPU


def test_fit_prices_dropout_random_numbers_beyond_its_passes() -> None:
    """Dropout's time beyond its memory passes is the cost of its random numbers; only models with dropout pay
    it, in the forward pass (backward reuses the saved mask)."""
    meas = _synthetic_measurements(12.0, 0.0, np.random.default_rng(6))
    fit = fit_profile(NOMINAL, meas, train_dtype="fp32", cpu=True)
    streamed = fit.device["mem_bw_GBps"] * fit.device["efficiency"]["memory"] * 1e9
    meas["dropout"] = [{"op": "dropout", "elements": n, "bytes": 9.0 * n, "seconds": 9.0 * n / streamed + n * 13e-9}
                       for n in (2**20, 2**22)]  # fmt: skip
    eff = fit_profile(NOMINAL, meas, train_dtype="fp32", cpu=True).device["efficiency"]
    assert eff["dropout_rng_ns_per_element"] == pytest.approx(13.0, rel=1e-6)

    from fathom.catalog.models import get_model
    from fathom.profiling.check_predict import train_plan
    from fathom.training.estimator import estimate_training

    cluster = resolve_cluster("cpu", 1)
    priced = cluster.model_copy(update={"device": cluster.device.model_copy(update={
        "efficiency": cluster.device.efficiency.model_copy(update={"dropout_rng_ns_per_element": 13.0})
    })})  # fmt: skip
    plan = train_plan(4, 256, 1)
    gpt = get_model("gpt3-125m")  # trained with dropout
    extra = estimate_training(gpt, priced, plan).step_time_s - estimate_training(gpt, cluster, plan).step_time_s
    assert extra == pytest.approx(gpt.num_layers * 2 * gpt.hidden_size * 4 * 256 * 13e-9, rel=1e-6)
    llama = get_model("small-llama")  # no dropout: nothing to draw
    assert estimate_training(llama, priced, plan).step_time_s == estimate_training(llama, cluster, plan).step_time_s


def test_fresh_mappings_are_priced_on_outputs_past_the_mmap_threshold() -> None:
    """A CPU profile's first-touch cost is the median per byte over its cases, and a GEMM pays it for an output of
    32 MiB or more (a fresh mapping each time) and never below; a device without the measurement pays nothing."""
    from fathom.costmodel.kernels import FRESH_MAPPING_BYTES, first_touch_s, linear_s

    meas = _synthetic_measurements(12.0, 0.0, np.random.default_rng(7))
    meas["first_touch"] = [{"op": "first_touch", "bytes": 2.0**26, "seconds": 2.0**26 * 0.4e-9}]
    eff = fit_profile(NOMINAL, meas, train_dtype="fp32", cpu=True).device["efficiency"]
    assert eff["first_touch_ns_per_byte"] == pytest.approx(0.4)

    plain = resolve_cluster("cpu", 1).device
    touched = plain.model_copy(
        update={"efficiency": plain.efficiency.model_copy(update={"first_touch_ns_per_byte": 0.4})}
    )
    assert first_touch_s(plain, 2.0**30) == 0.0
    below = FRESH_MAPPING_BYTES / 4 - 1024  # fp32 elements of an output just under the threshold
    assert float(linear_s(touched, "fp32", 1024, below / 1024, 512)) == float(
        linear_s(plain, "fp32", 1024, below / 1024, 512)
    )
    n = 8192  # a (1024, 8192) fp32 output: exactly 32 MiB
    extra = float(linear_s(touched, "fp32", 1024, n, 512)) - float(linear_s(plain, "fp32", 1024, n, 512))
    assert extra == pytest.approx(1024 * n * 4 * 0.4e-9)

    # In a training step of GPT-3 125M (tied 50,257 x 768 embeddings) on such a device: the logits, the LM head's
    # weight gradient, the embedding's zero-filled gradient and the tied sum are each past the threshold.
    from fathom.catalog.models import get_model
    from fathom.profiling.check_predict import train_plan
    from fathom.training.estimator import estimate_training

    cluster = resolve_cluster("cpu", 1)
    priced = cluster.model_copy(update={"device": touched})
    gpt, plan = get_model("gpt3-125m"), train_plan(4, 256, 1)
    extra = estimate_training(gpt, priced, plan).step_time_s - estimate_training(gpt, cluster, plan).step_time_s
    vocab, hidden = gpt.vocab_size, gpt.hidden_size
    assert extra == pytest.approx((1024 * vocab + 3 * vocab * hidden) * 4 * 0.4e-9, rel=1e-6)


def test_tiny_profile_writes_a_loadable_device(tiny_profile) -> None:
    import yaml

    cluster = resolve_cluster(str(tiny_profile), 1)
    assert cluster.device.num_compute_units == 1
    assert cluster.device.efficiency.gemm["fp32"] > 0
    assert cluster.device.runtime_reserved_gib > 0 and cluster.device.efficiency.optimizer > 0
    assert cluster.device.efficiency.host_op_us > 0
    assert set(cluster.device.efficiency.loss_ns_per_element) == {"fwd", "bwd"}
    assert cluster.device.efficiency.dropout_rng_ns_per_element is not None
    assert cluster.device.efficiency.first_touch_ns_per_byte is not None
    prof = yaml.safe_load(tiny_profile.read_text())["profile"]
    assert {"cpu_model", "cores", "threads", "torch_version", "date"} <= set(prof["machine"])
    assert prof["clock"] == "cpu" and prof["measurements"]["gemm"]
    # Every case keeps its raw seconds beside the reference speed read around it and its time at the profile's
    # reference speed (what the fit used); the reference speeds themselves are recorded.
    assert {r["op"] for r in prof["measurements"]["footprint"]} == {"training_process", "serving_process"}
    assert {"gemm_fp32", "memory", "host"} <= set(prof["reference"])
    assert all(v["speed"] > 0 and v["unit"] for v in prof["reference"].values())
    for row in prof["measurements"]["gemm"] + prof["measurements"]["memory"]:
        assert row["ref"] in prof["reference"] and row["ref_speed"] > 0 and row["seconds"] > 0
        assert row["normalised"]["seconds"] > 0
    # A CPU with bf16 times the decode probe, serving's dtype, and keeps its in-situ scale
    if any(r["dtype"] == "bf16" for r in prof["measurements"]["gemm"]):
        early, late = prof["measurements"]["decode_step"]  # timed at both ends of each pass
        for probe in (early, late):
            assert probe["dtype"] == "bf16" and probe["seconds"] > 0 and probe["ref"] == "memory"
        assert 0.25 <= cluster.device.efficiency.serving_in_situ["bf16"] <= 4.0


def test_check_train_and_serve_json(tiny_profile, capsys) -> None:
    import yaml

    from fathom.cli.app import run

    assert (
        run(
            [
                "check",
                "train",
                "--model",
                "tiny-llama",
                "--gpu",
                str(tiny_profile),
                "--micro-batch",
                "1",
                "--seq-len",
                "32",
                "--steps",
                "1",
                "--json",
            ]
        )
        == 0
    )
    train = json.loads(capsys.readouterr().out)
    assert set(train["phases"]) == {"forward", "backward", "optimizer"}
    for r in [*train["phases"].values(), train["total"]]:
        assert {"predicted_s", "measured_s", "error_pct"} <= set(r) and r["measured_s"] > 0
        # error_pct keeps its raw meaning; the speed-adjusted error compares with the prediction at the check's speed
        assert r["error_pct"] == pytest.approx((r["predicted_s"] / r["measured_s"] - 1) * 100)
        assert r["speed_ratio"] > 0 and r["predicted_speed_adjusted_s"] == pytest.approx(
            r["predicted_s"] / r["speed_ratio"]
        )
        assert r["error_pct_speed_adjusted"] == pytest.approx(
            (r["predicted_speed_adjusted_s"] / r["measured_s"] - 1) * 100
        )
    refs = train["speed"]["reference"]
    assert {"gemm_fp32", "memory", "host"} == set(refs)  # fp32 training reads no bf16 reference
    assert all(v["ratio"] == pytest.approx(v["check"] / v["profile"]) and v["readings"] for v in refs.values())
    assert train["memory"]["predicted_bytes"] > 0
    assert train["speed_probe"]["gemm"].startswith("fp32") and train["speed_probe"]["slowdown"] > 0
    assert (
        run(
            [
                "check",
                "serve",
                "--model",
                "tiny-llama",
                "--gpu",
                str(tiny_profile),
                "--batch",
                "2",
                "--input-len",
                "16",
                "--output-len",
                "4",
                "--repeats",
                "1",
                "--json",
            ]
        )
        == 0
    )
    serve = json.loads(capsys.readouterr().out)
    assert {"prefill", "decode_step"} <= set(serve["phases"]) and serve["total"]["measured_s"] > 0
    for r in [*serve["phases"].values(), serve["total"]]:
        assert {"speed_ratio", "error_pct_speed_adjusted"} <= set(r) and r["speed_ratio"] > 0
    # Peak memory in the same shape as training's: the serving memory model (weights, KV cache, activations) plus
    # the minimal serving process the profile measured, against the worker's resident high-water mark.
    assert set(serve["memory"]) == set(train["memory"])
    parts = serve["memory"]["predicted_breakdown_bytes"]
    assert set(parts) == {"weights", "kv_cache", "activations", "runtime_reserved"} and parts["runtime_reserved"] > 0
    assert serve["memory"]["predicted_bytes"] == pytest.approx(sum(parts.values()))
    assert serve["memory"]["measured_bytes"] > 0 and abs(serve["memory"]["error_pct"]) < 30
    probe = serve["speed_probe"]  # the profile's bf16 reference GEMM re-timed beside the real work
    if '"bf16"' in json.dumps(yaml.safe_load(tiny_profile.read_text())["profile"]["measurements"]["gemm"]):
        assert probe["gemm"].startswith("bf16") and probe["check_s"] > 0 and probe["profile_s"] > 0


def test_profile_passes_take_each_case_median() -> None:
    """One pass caught in a slow spell (the 9.0 s copy) does not move the merged case."""
    from fathom.profiling.runner import mean_rows

    one = [{"op": "copy", "bytes": 8.0, "seconds": 1.0}, {"dtype": "bf16", "fwd_s": 2.0, "bwd_s": 4.0}]
    two = [{"op": "copy", "bytes": 8.0, "seconds": 9.0}, {"dtype": "bf16", "fwd_s": 4.0, "bwd_s": 2.0}]
    three = [{"op": "copy", "bytes": 8.0, "seconds": 1.2}, {"dtype": "bf16", "fwd_s": 3.0, "bwd_s": 3.0}]
    assert mean_rows([one, two, three]) == [
        {"op": "copy", "bytes": 8.0, "seconds": 1.2},
        {"dtype": "bf16", "fwd_s": 3.0, "bwd_s": 3.0},
    ]


def test_check_train_bf16_json(tiny_profile, capsys) -> None:
    """Pure bf16 training: bf16 weights, gradients and AdamW moments (8 bytes per parameter), timed against the
    bf16 references; fp16 (which would need loss scaling) is refused with the choices named."""
    from fathom.cli.app import run

    args = ["check", "train", "--model", "tiny-llama", "--gpu", str(tiny_profile), "--micro-batch", "1"]
    assert run([*args, "--seq-len", "32", "--steps", "1", "--precision", "bf16", "--json"]) == 0
    train = json.loads(capsys.readouterr().out)
    assert train["precision"] == "bf16" and train["total"]["measured_s"] > 0
    assert set(train["speed"]["reference"]) == {"gemm_bf16", "memory", "host"}
    assert train["speed_probe"]["gemm"].startswith("bf16")
    state = train["memory"]["predicted_breakdown_bytes"]["weights_grads_optimizer"]
    assert state == pytest.approx(8.0 * train["params"], rel=1e-3)  # 16-bit weights and grads, two 16-bit moments
    assert run([*args, "--precision", "fp16"]) == 2
    err = capsys.readouterr().err
    assert "--precision: 'fp16' is not one of fp32, bf16" in err and "Traceback" not in err


def test_check_refuses_moe(tiny_profile) -> None:
    from fathom.cli.app import run

    assert run(["check", "train", "--model", "mixtral-8x7b", "--gpu", str(tiny_profile)]) == 2


def test_check_refuses_oversubscribed_data_parallel_ranks(tiny_profile, capsys) -> None:
    """More ranks x profile threads than cores would measure the ranks spinning against each other: one-line error."""
    import os

    from fathom.cli.app import run

    cores = os.cpu_count() or 1
    dp = cores + 1  # the tiny profile runs one thread per rank: more threads would not help, fewer ranks would
    assert run(["check", "train", "--model", "tiny-llama", "--gpu", str(tiny_profile), "--dp", str(dp)]) == 2
    err = capsys.readouterr().err
    assert f"need {dp} cores, this machine has {cores}" in err and f"use --dp {cores} or fewer" in err
    assert "--threads" not in err and "Traceback" not in err


def test_fit_measures_optimizer_host_op_and_runtime_memory() -> None:
    """The AdamW step, the eager per-op cost and the process footprint become their own device parameters."""
    meas = _synthetic_measurements(12.0, 0.0, np.random.default_rng(3))
    dev = DeviceSpec.model_validate({**NOMINAL, "mem_bw_GBps": 12.0, "efficiency": {**TRUE_EFF, "memory": 0.6}})
    for n in (1e6, 8e6):  # an optimizer streaming at 0.6 of the peak, against elementwise ops at 0.7
        meas["memory"].append(
            {
                "op": "adamw",
                "params": n,
                "bytes": 30 * n,
                "kernels": 4,
                "seconds": float(memory_bound_s(dev, 30 * n, 4)),
            }
        )
    meas["overhead"].append({"op": "eager_layer_op", "ops": 676, "seconds": 676 * 7e-6, "seconds_per_op": 7e-6})
    meas["footprint"] = [{"op": "training_process", "bytes": 0.25 * 2**30}]
    fit = fit_profile(NOMINAL, meas, train_dtype="fp32", cpu=True)
    eff = fit.device["efficiency"]
    assert eff["optimizer"] == pytest.approx(0.6, rel=0.01)
    assert eff["memory"] == pytest.approx(0.7, rel=0.02)
    assert eff["host_op_us"] == pytest.approx(7.0) and eff["kernel_launch_us"] == pytest.approx(3.0)
    assert fit.device["runtime_reserved_gib"] == pytest.approx(0.25)


def test_fit_gives_16bit_elementwise_ops_their_own_share_and_serving_uses_it() -> None:
    """bf16 elementwise cases fit ``efficiency.elementwise["bf16"]`` without moving the fp32 ``memory`` share; an
    inline (CPU) device's serving step prices its eager elementwise passes at it, so a slower 16-bit share
    means a slower prefill."""
    from fathom.catalog.models import get_model
    from fathom.costmodel.kernels import eager_elementwise_s
    from fathom.inference.step_model import InferenceStepModel
    from fathom.specs.hardware import Cluster
    from fathom.specs.serving import ServingPlan

    meas = _synthetic_measurements(12.0, 0.0, np.random.default_rng(4))
    slow = DeviceSpec.model_validate({**NOMINAL, "mem_bw_GBps": 12.0, "efficiency": {**TRUE_EFF, "memory": 0.3}})
    for nbytes in (1e5, 1e6, 1e7, 1e8):
        secs = float(memory_bound_s(slow, nbytes, 2))
        meas["memory"].append({"op": "rms_norm", "dtype": "bf16", "bytes": nbytes, "kernels": 2, "seconds": secs})
    fit = fit_profile(NOMINAL, meas, train_dtype="fp32", cpu=True)
    eff = fit.device["efficiency"]
    assert eff["elementwise"]["bf16"] == pytest.approx(0.3, rel=0.01)
    assert eff["memory"] == pytest.approx(0.7, rel=0.02)
    dev = DeviceSpec.model_validate({**fit.device, "ops_run_inline": True})
    assert eager_elementwise_s(dev, "bf16", 1e8) > eager_elementwise_s(dev, "fp32", 1e8)
    fast = dev.model_copy(update={"efficiency": dev.efficiency.model_copy(update={"elementwise": {}})})
    plan = ServingPlan(weight_dtype="bf16", kv_dtype="bf16", max_batch=8, max_batch_tokens=1024, block_size=1)
    system = SystemSpec(
        name="s", device=dev.name, gpus_per_node=1, intra_node_bw_GBps=1.0, inter_node_bw_GBps=1.0, source="t"
    )
    times = [
        InferenceStepModel(get_model("tiny-llama"), Cluster(device=d, system=system, num_gpus=1), plan).step_time_s(
            [128] * 8, [0] * 8, []
        )
        for d in (dev, fast)
    ]
    assert times[0] > times[1]


# ---- the eager layer inventory against what PyTorch runs ---------------------------------------------------


def _decoder(spec, layers: int, dtype=None):
    """The reference model with ``layers`` layers (in ``dtype``: the whole model, as pure 16-bit training runs)."""
    from fathom.profiling.torch_model import Decoder

    model = Decoder(spec.model_copy(update={"num_layers": layers}), 16)
    return model if dtype is None else model.to(dtype)


@pytest.mark.parametrize("name", ["gpt3-125m", "tiny-llama"])
def test_the_reference_model_starts_from_real_training_init(name: str) -> None:
    """Weights N(0, 0.02), biases zero, as GPT-2, Hugging Face and Megatron-LM initialise. With PyTorch's default
    N(0, 1) embedding, a tied head's logits have a spread of sqrt(hidden), and their softmax underflows into
    subnormals, which a CPU computes on a slow path: a check would time that instead of a real step."""
    torch = pytest.importorskip("torch")
    from fathom.catalog.models import get_model

    spec = get_model(name)
    torch.manual_seed(0)
    model = _decoder(spec, 1)
    weights = [m.weight for m in model.modules() if isinstance(m, torch.nn.Linear | torch.nn.Embedding)]
    assert all(abs(float(w.detach().std()) - 0.02) < 0.002 for w in weights)
    biases = [m.bias.detach() for m in model.modules() if isinstance(m, torch.nn.Linear) and m.bias is not None]
    assert all(float(b.abs().max()) == 0.0 for b in biases)
    tokens = torch.randint(0, spec.vocab_size, (2, 16))
    with torch.no_grad():
        logits = model.head(model.hidden(tokens))
    assert float(logits.std()) < 2.0  # sqrt(hidden) = 27.7 for gpt3-125m under PyTorch's default init


def _per_layer(spec, measure, dtype=None):
    """What ``measure(model)`` gives for a two-layer model beyond a one-layer one."""
    one, two = (measure(_decoder(spec, n, dtype)) for n in (1, 2))
    return tuple(b - a for a, b in zip(one, two, strict=True))


_ACT_DTYPES = {"fp32": 4.0, "bf16": 2.0}  # training dtype -> activation bytes (pure bf16 training for bf16)


@pytest.mark.parametrize("dtype", sorted(_ACT_DTYPES))
@pytest.mark.parametrize("variant", sorted(_VARIANTS))
def test_eager_op_counts_match_the_reference_layer(variant: str, dtype: str) -> None:
    torch = pytest.importorskip("torch")
    from fathom.catalog.models import get_model
    from fathom.profiling.op_count import count_ops
    from fathom.training.eager import eager_head_ops, eager_layer

    spec = get_model("tiny-llama").model_copy(update=_VARIANTS[variant])
    tokens = torch.randint(0, spec.vocab_size, (2, 16))
    cast = {"fp32": torch.float32, "bf16": torch.bfloat16}[dtype]
    fwd, bwd = _per_layer(spec, lambda m: count_ops(lambda: m(tokens, tokens)), dtype=cast)
    assert tuple(int(n) for n in eager_layer(spec).ops(_ACT_DTYPES[dtype])) == (fwd, bwd)
    # Outside the layers: a one-layer model's ops less one layer's.
    one = _decoder(spec, 1, cast)
    total = count_ops(lambda: one(tokens, tokens))
    head = tuple(int(n) for n in eager_head_ops(spec, _ACT_DTYPES[dtype]))
    assert head == (total[0] - fwd, total[1] - bwd)


@pytest.mark.parametrize("dtype", sorted(_ACT_DTYPES))
@pytest.mark.parametrize("variant", ["llama", "layernorm-gelu-learned", "parallel-block", "mha-no-positions"])
def test_eager_saved_activations_match_autograd(variant: str, dtype: str) -> None:
    """Bytes of the distinct non-parameter storages autograd's saved-tensor hooks see, per layer and token (bf16:
    RMSNorm's saved tensors and SDPA's log-sum-exp stay fp32)."""
    torch = pytest.importorskip("torch")
    from fathom.catalog.models import get_model
    from fathom.training.eager import eager_layer

    spec = get_model("tiny-llama").model_copy(update=_VARIANTS[variant])
    tokens = torch.randint(0, spec.vocab_size, (2, 16))

    def saved(model) -> tuple[float]:
        fixed = {t.untyped_storage().data_ptr() for t in [*model.parameters(), *model.buffers()]}
        seen: dict[int, int] = {}

        def pack(t):
            storage = t.untyped_storage()
            if storage.data_ptr() not in fixed:
                seen[storage.data_ptr()] = storage.nbytes()
            return t

        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            model(tokens, tokens)
        return (sum(seen.values()) / tokens.numel(),)

    cast = {"fp32": torch.float32, "bf16": torch.bfloat16}[dtype]
    (per_token,) = _per_layer(spec, saved, dtype=cast)
    assert eager_layer(spec).saved_bytes(1.0, _ACT_DTYPES[dtype]) == pytest.approx(per_token, rel=1e-6)


@pytest.mark.parametrize("variant", sorted(_VARIANTS))
def test_eager_decode_op_counts_match_the_reference_layer(variant: str) -> None:
    torch = pytest.importorskip("torch")
    from torch.utils._python_dispatch import TorchDispatchMode

    from fathom.catalog.models import get_model
    from fathom.profiling.torch_model import Decoder
    from fathom.training.eager import eager_decode_head_ops, eager_decode_ops

    class Count(TorchDispatchMode):
        n = 0

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            self.n += 1
            return func(*args, **(kwargs or {}))

    spec = get_model("tiny-llama").model_copy(update=_VARIANTS[variant])

    def decode_ops(layers: int, dtype) -> int:
        model = Decoder(spec.model_copy(update={"num_layers": layers}), 32).to(dtype).eval()
        model.allocate_cache(2, 32, dtype)
        first = model.next_tokens(torch.randint(0, spec.vocab_size, (2, 8)), 0)
        with Count() as count:
            model.next_tokens(first, 8)
        return count.n

    for dtype, sixteen_bit in ((torch.bfloat16, True), (torch.float32, False)):
        one, two = decode_ops(1, dtype), decode_ops(2, dtype)
        assert eager_decode_ops(spec, sixteen_bit) == two - one, dtype
        assert eager_decode_head_ops(spec, sixteen_bit) == one - (two - one), dtype  # once per step, not per layer


def _cpu_device(packs: bool, **eff) -> DeviceSpec:
    eff = {**TRUE_EFF, "gemm_memory": {"bf16": 0.2}, "gemm_packs_weights": packs, **eff}
    return DeviceSpec.model_validate({**NOMINAL, "efficiency": eff})


def test_a_cpu_gemm_costs_every_row_alike_under_its_weights_pass() -> None:
    """A CPU profile's GEMM (gemm_packs_weights): one to eight rows over streamed weights cost the weights' pass
    (bytes, plus gemm_row_ns per weight row), many rows the full rate per row; GPU tile waves would charge 32 rows
    the work of a padded tile at a lower rate instead."""
    cpu = _cpu_device(True, gemm_row_ns={"bf16": 50.0})
    n, k = 4096, 1024
    fixed = TRUE_EFF["kernel_launch_us"] * 1e-6
    weights_pass = n * (k * 2.0 / (10e9 * 0.2) + 50e-9)
    assert float(linear_s(cpu, "bf16", 1, n, k)) == pytest.approx(weights_pass + fixed)
    assert float(linear_s(cpu, "bf16", 8, n, k)) == pytest.approx(weights_pass + fixed)
    rows = 4096
    full_rate = 2e12 * 0.4 * k / (k + 64)
    assert float(linear_s(cpu, "bf16", rows, n, k)) == pytest.approx(2.0 * rows * n * k / full_rate + fixed)
    fast_pass = {"gemm_memory": {"bf16": 1.0}}  # weights in cache: the row work sets the time
    cached, cached_tiles = _cpu_device(True, **fast_pass), _cpu_device(False, **fast_pass)
    assert float(linear_s(cached_tiles, "bf16", 48, 1024, 1024)) > float(linear_s(cached, "bf16", 48, 1024, 1024))
    blended = _cpu_device(True, gemm_overlap={"bf16": 1.0})  # p = 1: the row work adds to the pass
    compute = 2.0 * 8 * n * k / full_rate
    assert float(linear_s(blended, "bf16", 8, n, k)) == pytest.approx(n * k * 2.0 / 2e9 + compute + fixed)


@settings(max_examples=60, deadline=None)
@given(
    m=st.integers(1, 4096),
    more=st.integers(1, 4096),
    n=st.sampled_from([256, 768, 4096, 16384]),
    k=st.sampled_from([256, 768, 4096]),
    overlap=st.sampled_from([None, 1.0, 1.5, 4.0]),
)
def test_a_cpu_gemm_never_gets_cheaper_with_rows_nor_dearer_per_row(m, more, n, k, overlap) -> None:
    cpu = _cpu_device(True, gemm_row_ns={"bf16": 40.0}, gemm_overlap={} if overlap is None else {"bf16": overlap})
    few, many = float(linear_s(cpu, "bf16", m, n, k)), float(linear_s(cpu, "bf16", m + more, n, k))
    assert many >= few
    assert many / (m + more) <= few / m * (1 + 1e-12)


def test_a_cpu_fit_sets_the_packing_model_and_recovers_the_stream_parameters() -> None:
    """Streamed skinny GEMMs of 1, 8 and 32 rows over rows of 256 to 1536, made by the CPU model with a 0.8 share,
    60 ns per weight row and overlap 1.4, fit back to those three."""
    truth = _cpu_device(True, gemm_memory={"bf16": 0.8}, gemm_row_ns={"bf16": 60.0}, gemm_overlap={"bf16": 1.4})
    meas = _synthetic_measurements(10.0, 0.0, np.random.default_rng(3))

    def timed(m: int, n: int, k: int) -> dict:
        return {"dtype": "bf16", "m": m, "n": n, "k": k, "seconds": float(linear_s(truth, "bf16", m, n, k))}

    meas["gemm"] = [r for r in meas["gemm"] if r["dtype"] == "fp32"] + [
        timed(m, n, k) for m, n, k in [(256, 512, 512), (1024, 1536, 512), (1024, 1536, 1536), (256, 1536, 1536)]
    ]
    meas["gemm_stream"] = [timed(m, n, k) for m in (1, 8, 32) for n, k in ((1536, 512), (512, 1536), (1536, 256))]
    eff = fit_profile(NOMINAL, meas, train_dtype="fp32", cpu=True).device["efficiency"]
    assert eff["gemm_packs_weights"] is True
    assert eff["gemm_memory"]["bf16"] == pytest.approx(0.8, rel=0.03)
    assert eff["gemm_row_ns"]["bf16"] == pytest.approx(60.0, rel=0.05)
    assert eff["gemm_overlap"]["bf16"] == pytest.approx(1.4, rel=0.05)
    assert eff["gemm"]["bf16"] == pytest.approx(0.4, rel=0.02)


# ---- the decode probe: an eager serving step in situ (fathom.profiling.bench_decode) ----------------------------
def _probe_step_s(dev: DeviceSpec, layers: int, batch: int, context: float) -> float:
    from fathom.inference.step_model import InferenceStepModel
    from fathom.profiling.bench_decode import probe_spec
    from fathom.profiling.check_predict import serve_plan

    cluster = resolve_cluster("cpu", 1).model_copy(update={"device": dev})
    step = InferenceStepModel(probe_spec(layers), cluster, serve_plan(batch, 64))
    return step.step_time_s([], [], np.full(batch, context))


# A CPU profile's device (ops inline: the scale multiplies its kernels) and an eager GPU's (fast kernels, a host
# issuing each op: the probe's step is bound by the host's floor, which the scale multiplies)
_PROBE_DEVICES = {
    "cpu": {**NOMINAL, "ops_run_inline": True,
            "efficiency": {**TRUE_EFF, "gemm_memory": {"bf16": 0.2}, "gemm_packs_weights": True}},
    "gpu": {**NOMINAL, "eager_pytorch": True, "peak_tflops": {"fp32": 60.0, "bf16": 900.0}, "mem_bw_GBps": 3000.0,
            "efficiency": {**TRUE_EFF, "host_op_inference_us": 9.0}},
}  # fmt: skip


@settings(max_examples=25, deadline=None)
@given(st.floats(0.5, 3.0), st.sampled_from(sorted(_PROBE_DEVICES)))
def test_the_decode_probe_fits_its_measured_over_predicted_step(scale: float, kind: str) -> None:
    """A probe step measured ``scale`` x the serving model's price for it gives serving_in_situ = ``scale``; the
    fitted device then prices that step, and any other iteration its scaled part binds, ``scale`` x the unscaled
    device."""
    from fathom.profiling.fit import fit_serving_in_situ

    dev = _PROBE_DEVICES[kind]
    plain = DeviceSpec.model_validate(dev)
    steps = [_probe_step_s(plain, 2, 4, 64.0 + i) for i in range(8)]
    row = {"dtype": "bf16", "layers": 2, "batch": 4, "input_len": 64, "steps": 8}
    fitted, miss_pct = fit_serving_in_situ(dev, [{**row, "seconds": scale * float(np.median(steps))}])
    assert fitted == pytest.approx(scale, rel=1e-6)
    assert miss_pct == pytest.approx(abs(1 / scale - 1) * 100, rel=1e-3, abs=1e-6)  # unscaled price vs measured
    scaled = DeviceSpec.model_validate(
        {**dev, "efficiency": {**dev["efficiency"], "serving_in_situ": {"bf16": fitted}}}
    )
    assert _probe_step_s(scaled, 3, 8, 200.0) == pytest.approx(scale * _probe_step_s(plain, 3, 8, 200.0), rel=1e-5)


def test_a_gpu_scale_leaves_a_device_bound_step_and_cuda_graphs_alone() -> None:
    """On a GPU the scale multiplies the host's issue floor only: a batch whose kernels outlast the host's issue,
    or a plan replayed as CUDA graphs (no floor), is priced as without it."""
    from fathom.inference.step_model import InferenceStepModel
    from fathom.profiling.check_predict import serve_plan

    dev = _PROBE_DEVICES["gpu"]
    plain = DeviceSpec.model_validate(dev)
    scaled = DeviceSpec.model_validate({**dev, "efficiency": {**dev["efficiency"], "serving_in_situ": {"bf16": 2.0}}})

    def step_s(device: DeviceSpec, batch: int, graphs: bool) -> float:
        cluster = resolve_cluster("cpu", 1).model_copy(update={"device": device})
        plan = serve_plan(batch, 64).model_copy(update={"cuda_graphs": graphs})
        step = InferenceStepModel(get_model("gpt3-1.3b"), cluster, plan)
        return step.step_time_s([16384], [0], np.full(batch, 512.0))

    assert step_s(scaled, 8, False) == pytest.approx(step_s(plain, 8, False))
    assert step_s(scaled, 8, True) == pytest.approx(step_s(plain, 8, True))
    assert _probe_step_s(scaled, 2, 4, 64.0) == pytest.approx(2 * _probe_step_s(plain, 2, 4, 64.0), rel=0.02)


def test_a_profile_without_the_probe_leaves_serving_unscaled() -> None:
    """serving_in_situ is measured or absent: a profile with no decode_step case (an old one, or one without bf16)
    gets none."""
    meas = _synthetic_measurements(10.0, 0.0, np.random.default_rng(5))
    assert "serving_in_situ" not in fit_profile(NOMINAL, meas, train_dtype="fp32", cpu=True).device["efficiency"]
    assert DeviceSpec.model_validate({**NOMINAL, "efficiency": {}}).efficiency.serving_in_situ == {}


# ---- speed normalisation (fathom.profiling.speed) ---------------------------------------------------------------
def test_a_case_timed_in_a_slow_spell_normalises_to_the_reference_speed() -> None:
    """A GEMM that takes 1 s when its reference runs at 100 GFLOP/s took 2 s in a spell at 50: merged, the raw
    median stays 2 s (its meaning unchanged) and the fit sees 1 s."""
    from fathom.profiling.speed import at_reference, merge_passes, profile_reference_speeds

    assert at_reference(2.0, 50.0, 100.0) == pytest.approx(1.0)
    passes = [
        [{"dtype": "fp32", "m": 8, "n": 8, "k": 8, "seconds": 2.0, "ref": "gemm_fp32", "ref_speed": 50.0}],
        [{"dtype": "fp32", "m": 8, "n": 8, "k": 8, "seconds": 2.0, "ref": "gemm_fp32", "ref_speed": 50.0}],
        [{"dtype": "fp32", "m": 8, "n": 8, "k": 8, "seconds": 1.0, "ref": "gemm_fp32", "ref_speed": 100.0}],
    ]
    assert profile_reference_speeds({"gemm": passes}) == {"gemm_fp32": 50.0}
    (row,) = merge_passes(passes, {"gemm_fp32": 100.0})
    assert row["seconds"] == 2.0 and row["ref_speed"] == 50.0 and row["normalised"] == {"seconds": 1.0}
    (plain,) = merge_passes([[{"op": "tiny_add", "seconds_per_op": 3.0}]], {"gemm_fp32": 100.0})
    assert plain == {"op": "tiny_add", "seconds_per_op": 3.0}  # no reference read: nothing normalised


@settings(max_examples=100, deadline=None)
@given(st.lists(st.floats(0.3, 3.0), min_size=4, max_size=4), st.floats(0.3, 3.0))
def test_fit_on_normalised_times_ignores_the_spells(factors: list[float], check_speed: float) -> None:
    """Whatever speed each GEMM case ran at, the fit on normalised times recovers the efficiency at the reference
    speed; a check whose reference runs ``check_speed`` x as fast predicts a compute-bound GEMM that much faster."""
    from fathom.profiling.speed import at_reference_speed, merge_passes, speed_adjusted_device

    truth = DeviceSpec.model_validate({**NOMINAL, "efficiency": TRUE_EFF})
    shapes = [(256, 512, 512), (1024, 1536, 512), (1024, 1536, 1536), (256, 1536, 1536)]
    rows = [
        {"dtype": "fp32", "m": m, "n": n, "k": k, "ref": "gemm_fp32", "ref_speed": 100.0 * f}
        | {"seconds": float(linear_s(truth, "fp32", m, n, k)) / f}
        for (m, n, k), f in zip(shapes, factors, strict=True)
    ]
    meas = {"gemm": merge_passes([rows], {"gemm_fp32": 100.0})}
    fit = fit_profile(NOMINAL, at_reference_speed(meas), train_dtype="fp32", cpu=True)
    assert fit.device["efficiency"]["gemm"]["fp32"] == pytest.approx(0.8, rel=1e-3)
    fast = DeviceSpec.model_validate(speed_adjusted_device(fit.device, {"gemm_fp32": check_speed}, "fp32"))
    slow, quick = (float(linear_s(d, "fp32", 1024, 1536, 1536)) for d in (DeviceSpec.model_validate(fit.device), fast))
    assert slow / quick == pytest.approx(check_speed, rel=1e-3)  # the launch cost moves with the host ratio


def test_speed_adjusted_device_scales_each_kernel_class_by_its_own_reference() -> None:
    from fathom.profiling.speed import speed_adjusted_device

    dev = {**NOMINAL, "efficiency": {**TRUE_EFF, "gemm_row_ns": {"bf16": 40.0}}}
    same = speed_adjusted_device(dev, {"gemm_fp32": 1.0, "gemm_bf16": 1.0, "memory": 1.0, "host": 1.0}, "fp32")
    assert same == dev
    ratios = {"gemm_fp32": 0.5, "gemm_bf16": 2.0, "memory": 0.8, "host": 1.25}
    adj = speed_adjusted_device(dev, ratios, "fp32")
    assert adj["peak_tflops"] == {"fp32": 0.1, "bf16": 4.0} and adj["mem_bw_GBps"] == pytest.approx(8.0)
    assert adj["efficiency"]["host_op_us"] == pytest.approx(2.4) and adj["efficiency"]["kernel_launch_us"] == 2.4
    assert adj["efficiency"]["gemm_row_ns"]["bf16"] == pytest.approx(50.0)  # the packing pass moves with memory
    # fp32 attention is priced on the bf16 peak: its share moves by the fp32 ratio over the bf16 one
    assert adj["efficiency"]["attention"]["flash2"] == pytest.approx(0.05 * 0.5 / 2.0)
    assert dev["peak_tflops"] == NOMINAL["peak_tflops"]  # the profile's device is not modified


def test_check_rows_keep_raw_errors_beside_speed_adjusted_ones() -> None:
    """A machine running at half the profile's speed: measured 2 s against a 1 s prediction is -50% raw and 0%
    once the measurement is normalised to the profile's speed (1 s); without a reference the adjusted keys are None."""
    from fathom.profiling.check import row
    from fathom.profiling.speed import speed_ratios

    r = row(1.0, 2.0, 1.0)
    assert r["error_pct"] == pytest.approx(-50.0) and r["speed_ratio"] == pytest.approx(0.5)
    assert r["error_pct_speed_adjusted"] == pytest.approx(0.0) and r["predicted_speed_adjusted_s"] == pytest.approx(2)
    assert row(1.0, 2.0)["speed_ratio"] is None and row(1.0, 2.0)["error_pct_speed_adjusted"] is None
    # Half the steps' time at 50, half at 100 (bimodal spells): the time-averaged speed is the harmonic mean.
    ratios = speed_ratios({"gemm_fp32": [50.0, 100.0], "host": []}, {"gemm_fp32": {"speed": 100.0}})
    assert set(ratios) == {"gemm_fp32"} and ratios["gemm_fp32"]["ratio"] == pytest.approx(2 / 3)


def test_each_sample_is_normalised_by_its_own_readings_and_class_parts() -> None:
    """A step of 3 s GEMM, 1 s host ops and 0.5 s of neither (the class parts come from the prediction itself),
    read with the GEMM reference at 48% of the profile's speed (harmonic mean of 40 and 60 against 100) and the
    host one at 100%, ran 4.5 / (3 / 0.48 + 1 + 0.5) as fast as when profiled."""
    from fathom.profiling.speed import class_times, effective_ratio, local_ratios

    def predict_at(ratios: dict[str, float]) -> dict:  # 3 s of GEMM, 1 s of host ops, 0.5 s of neither
        return {"step": 3.0 / ratios.get("gemm_fp32", 1.0) + 1.0 / ratios.get("host", 1.0) + 0.5, "per": [1.0, 2.0]}

    base, parts = class_times(predict_at, ["gemm_fp32", "host"])
    assert float(parts["gemm_fp32"]["step"]) == pytest.approx(3.0) and float(parts["host"]["step"]) == pytest.approx(1)
    assert float(parts[""]["step"]) == pytest.approx(0.5) and list(parts["gemm_fp32"]["per"]) == pytest.approx([0, 0])
    reference = {"gemm_fp32": {"speed": 100.0}, "host": {"speed": 0.2}}
    readings = {"gemm_fp32": [40.0, 60.0, 100.0], "host": [0.2, 0.2, 0.2]}
    local = local_ratios(readings, [0, 1], reference)
    assert local == pytest.approx({"gemm_fp32": 0.48, "host": 1.0})  # harmonic mean of 40 and 60 = 48
    step = {k: float(v["step"]) for k, v in parts.items()}
    assert effective_ratio(step, local) == pytest.approx(4.5 / (3.0 / 0.48 + 1.0 + 0.5))


def test_a_sample_timed_at_half_speed_normalises_to_half_its_time() -> None:
    """The direction of the adjustment: 2 s of pure GEMM work read at half the profile's GEMM speed took 1 s at it."""
    from fathom.profiling.check import SpeedAdjuster

    adj = SpeedAdjuster.__new__(SpeedAdjuster)
    adj.reference = {"gemm_fp32": {"speed": 100.0}}
    adj.readings = {"gemm_fp32": [50.0, 50.0]}
    adj.parts = {"gemm_fp32": {"step": 1.0, "per": [0.5, 1.0]}, "": {"step": 0.0, "per": [0.5, 0.0]}}
    assert adj.sample("step", 2.0, [0, 1]) == pytest.approx(1.0)
    assert adj.sample("per", 2.0, [0, 1], 0) == pytest.approx(2.0 * 1.0 / (0.5 / 0.5 + 0.5))  # half not sped up


@pytest.mark.parametrize(
    ("edit", "says"),
    [
        (lambda p: p["machine"].__setitem__("threads", "abc"), "profile field machine.threads"),
        (lambda p: p.__setitem__("clock", "bogus"), "profile field clock"),
        (lambda p: p.__setitem__("reference", [1]), "profile field reference"),
        (lambda p: next(iter(p["reference"].values())).__setitem__("speed", 0), "must be a finite number > 0"),
        (lambda p: p["measurements"]["gemm"][0].pop("dtype"), "measurements.gemm.0.dtype"),
        (lambda p: p["measurements"].__setitem__("gemm", "x"), "measurements.gemm"),
    ],
)
def test_an_edited_profile_section_is_refused_before_any_worker(tiny_profile, tmp_path, edit, says) -> None:
    import yaml

    from fathom.errors import FathomInputError
    from fathom.profiling.check import local_profile

    doc = yaml.safe_load(tiny_profile.read_text())
    edit(doc["profile"])
    path = tmp_path / "edited.yaml"
    path.write_text(yaml.safe_dump(doc))
    with pytest.raises(FathomInputError, match=says):
        local_profile(str(path))


def test_a_cpu_profile_refuses_offload_and_strict_booleans(tiny_profile, tmp_path, capsys) -> None:
    import yaml

    from fathom.catalog.hardware import get_device
    from fathom.cli.app import run
    from fathom.errors import FathomInputError

    argv = ["train", "--model", "tiny-llama", "--gpu", str(tiny_profile), "--num-gpus", "1", "--seq-len", "256",
            "--global-batch", "8", "--zero", "1", "--offload", "cpu"]  # fmt: skip
    assert run(argv) == 2
    assert "computes out of host memory already" in capsys.readouterr().err
    doc = yaml.safe_load(tiny_profile.read_text())
    doc["ops_run_inline"] = "no"
    path = tmp_path / "lax.yaml"
    path.write_text(yaml.safe_dump(doc))
    with pytest.raises(FathomInputError, match="field ops_run_inline: Input should be a valid boolean"):
        get_device(str(path))


def test_a_profile_without_collectives_says_whose_links_price_dp(tiny_profile) -> None:
    from fathom.catalog.hardware import get_device

    source = get_device(str(tiny_profile)).source
    assert "Collectives not measured: data-parallel traffic is priced on cpu-node's links" in source
