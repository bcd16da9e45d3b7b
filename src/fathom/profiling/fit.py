"""Calibration: the efficiency model's per-device parameters, fitted by least squares to a profile's timings.

Every benchmark case is priced with the cost model's own functions (``fathom.costmodel.kernels`` and
``.collectives``) under trial parameters; each family fixes the parameters it is sensitive to, in order:

1. ``kernel_launch_us`` = median time of one tiny eager op (on a GPU: of one tiny kernel replayed in a CUDA
   graph, the device's own fixed cost); ``host_op_us`` = host seconds per dispatched op of a minimal eager
   training layer (forward and backward, views and autograd included: the ops ``fathom.training.eager`` counts;
   on a GPU the layer is too narrow for its kernels to matter), else the tiny op's time; on a CPU
   ``gemm_call_us[dtype]`` = a minimal GEMM's time per call less the tiny op's (its fixed cost beyond a dispatched
   op, which ``fathom.costmodel.kernels.linear_s`` charges per GEMM instead of ``kernel_launch_us``);
2. ``mem_bw_GBps`` = the best streamed rate of the copy/add cases (the device's achievable peak, which a CPU
   has no datasheet figure for), then ``efficiency.memory`` minimises the squared log-ratio of predicted to
   measured time over the memory-bound op cases (activations, norms, residual adds), and
   ``efficiency.optimizer`` the same over the fp32 AdamW-step cases (a fused step streams at its own rate),
   ``efficiency.optimizer_16bit`` over the bf16 ones (pure bf16 training's step: a CPU converts each element), and
   ``efficiency.elementwise[dtype]`` over the 16-bit elementwise and norm cases (eager serving's activations:
   on a CPU each 16-bit element is converted to fp32 and back, a different rate from fp32 ops);
   on a CPU, ``runtime_reserved_gib`` = the measured memory of a minimal training process (``bench_footprint``);
3. ``efficiency.gemm[dtype]`` minimises the same over the GEMM cases of each dtype (with ``gemm_sustained`` = 1:
   these are the isolated rates); where the fit wants more than the theoretical peak (turbo clocks), the peak
   is raised to the fitted rate and the fraction set to 1. On a CPU, ``gemm_packs_weights`` is set (a CPU's GEMM
   has no GPU tile waves: every row costs the same, and a skinny one is set by its packing pass over the
   weights), and the rate is fitted jointly with that pass over the GEMM cases and the skinny, decode-like ones
   whose weights stream from memory: ``efficiency.gemm_memory[dtype]`` (the pass's share of the bandwidth:
   packing and conversion make it slower than a copy), ``gemm_row_ns[dtype]`` (its cost per weight row) and
   ``gemm_overlap[dtype]`` (how the row work and the pass blend); every case depends on all four;
   on a GPU ``gemm_sustained`` = the isolated over the sustained time of the largest GEMM run back to back for
   seconds (its clocks under load), at most 1 (the least of the dtypes);
4. ``efficiency.attention["flash2"]`` from the SDPA forward and backward cases of the training dtype; on a CPU
   ``efficiency.decode_attention[dtype]`` from decode SDPA cases (one query per sequence over a KV cache, grouped
   KV heads): the share of the dtype's peak its query-key work reaches, where that and not the KV read sets the time;
5. on a CPU, ``efficiency.loss_ns_per_element`` = the median time per logit of the fp32 softmax cross-entropy cases,
   forward and backward (its exps and logs, not its memory passes, set a CPU's time), and
   ``efficiency.dropout_rng_ns_per_element`` = the median time per element of training-mode dropout beyond its
   memory passes (the random numbers the cores draw), and ``efficiency.first_touch_ns_per_byte`` = what writing a
   freshly allocated 64 MiB buffer costs per byte beyond writing a reused one (the new mapping's page faults);
6. ``efficiency.serving_in_situ[dtype]``: the scale that makes the serving step model's price for a small
   synthetic decoder's eager decode step (``bench_decode``), with everything above, equal its measured step. On a
   CPU it scales an iteration's kernels (they run slower in a step's sequence than timed alone); on a GPU the
   host's issue floor, which bounds an eager decode step of a small batch (its ops cost more in a model's
   sequence than the tiny-op loop that ``host_op_inference_us`` times);
7. collectives: time = volume x (1/bandwidth) + steps x latency is linear in (1/bandwidth, latency), with the
   volume and step counts of the ring/tree model; a non-negative least-squares fit on relative errors gives the
   fabric's achieved bandwidth and per-step latency (``intra_node_efficiency`` = 1: the fit *is* achieved).

Log-ratio residuals weigh a 10% miss on a 10 us kernel like one on a 10 s GEMM. Devices from the catalog never
pass through here: they keep their literature-fitted defaults.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import brentq, least_squares, nnls

from fathom.costmodel.collectives import all_gather_s, all_reduce_s
from fathom.costmodel.kernels import (
    BYTES,
    attention_flops,
    attention_s,
    decode_attention_s,
    linear_s,
    memory_bound_s,
)
from fathom.specs.hardware import GIB, Cluster, DeviceEfficiency, DeviceSpec, SystemSpec

_STREAMS = ("copy", "add")  # the streamed-bandwidth cases that set mem_bw_GBps
_OPTIMIZERS = ("adamw",)  # optimizer-step cases: their own share of the bandwidth (efficiency.optimizer)
_COLLECTIVES = {"all_reduce": all_reduce_s, "all_gather": all_gather_s}


@dataclass(frozen=True)
class FitResult:
    device: dict  # DeviceSpec fields
    system: dict  # SystemSpec fields to apply over the device's default system
    quality: dict  # per family: cases and median |error| % of the fitted model


def _device(base: dict, **eff) -> DeviceSpec:
    data = dict(base)
    data["efficiency"] = DeviceEfficiency(**{**base.get("efficiency", {}), **eff}).model_dump()
    return DeviceSpec.model_validate(data)


def _fit_scalar(residuals, x0: float, upper: float) -> float:
    """One positive parameter minimising the sum of squared residuals (log-ratios)."""
    sol = least_squares(lambda x: residuals(float(x[0])), x0=[x0], bounds=([1e-6], [upper]))
    return float(sol.x[0])


def _median_abs_pct(pred: np.ndarray, meas: np.ndarray) -> float:
    return float(np.median(np.abs(pred / meas - 1.0)) * 100.0) if len(meas) else float("nan")


def _columns(rows: list[dict], *keys: str) -> list[np.ndarray]:
    return [np.array([r[k] for r in rows], dtype=float) for k in keys]


def _fp32(row: dict) -> bool:
    return row.get("dtype", "fp32") == "fp32"


def _issued(pred: np.ndarray, ops, issue_s: float) -> np.ndarray:
    """A case's predicted time, at least the host's time to issue its ``ops`` eager calls back to back (on a GPU,
    which waits for the host when its kernels are shorter; ``issue_s`` = 0 on a CPU, which runs ops inline)."""
    return np.maximum(pred, np.asarray(ops, dtype=float) * issue_s)


def fit_memory(base: dict, rows: list[dict], launch_us: float, issue_s: float = 0.0) -> tuple[float, float, float]:
    """(mem_bw_GBps, efficiency.memory, median |error| %): the peak from the streams, the share from the ops."""
    streams = [r for r in rows if r["op"] in _STREAMS]
    ops = [r for r in rows if r["op"] not in _STREAMS and r["op"] not in _OPTIMIZERS and _fp32(r)] or rows
    nbytes, kernels, secs = _columns(ops, "bytes", "kernels", "seconds")
    bw = max(r["bytes"] / r["seconds"] for r in streams) / 1e9 if streams else base["mem_bw_GBps"]
    dev0 = {**base, "mem_bw_GBps": bw}

    def predict(eff: float) -> np.ndarray:
        dev = _device(dev0, memory=min(eff, 1.0), kernel_launch_us=launch_us)
        return _issued(memory_bound_s(dev, nbytes, kernels), kernels, issue_s)

    eff = min(_fit_scalar(lambda e: np.log(predict(e) / secs), 0.5, 1.0), 1.0)
    return bw, eff, _median_abs_pct(predict(eff), secs)


def fit_optimizer(dev: dict, rows: list[dict], launch_us: float, issue_s: float = 0.0) -> tuple[float, float]:
    """(efficiency.optimizer, median |error| %): the share of the streamed bandwidth the optimizer step reaches,
    with the bytes per parameter the training model charges it (``OPTIMIZER_STEP_BYTES``)."""
    nbytes, kernels, secs = _columns(rows, "bytes", "kernels", "seconds")

    def predict(eff: float) -> np.ndarray:
        dev1 = _device(dev, memory=min(eff, 1.0), kernel_launch_us=launch_us)
        return _issued(memory_bound_s(dev1, nbytes, kernels), kernels, issue_s)

    eff = min(_fit_scalar(lambda e: np.log(predict(e) / secs), 0.5, 1.0), 1.0)
    return eff, _median_abs_pct(predict(eff), secs)


def _at_gemm_share(base: dict, dtype: str, share: float, **eff) -> DeviceSpec:
    """``base`` with ``dtype``'s GEMM rate at ``share`` of its nominal peak: up to 1 as ``efficiency.gemm``, above 1
    as a raised peak (turbo clocks the theoretical figure leaves out); ``eff`` sets further efficiency fields."""
    data = {**base, "peak_tflops": {**base["peak_tflops"], dtype: base["peak_tflops"][dtype] * max(share, 1.0)}}
    gemm = {**base.get("efficiency", {}).get("gemm", {}), dtype: min(share, 1.0)}
    return _device(data, gemm=gemm, gemm_sustained=1.0, **eff)


def fit_gemm(base: dict, rows: list[dict], dtype: str, issue_s: float = 0.0) -> tuple[float, float, float]:
    """(peak TFLOP/s, efficiency.gemm[dtype], median |error| %): the peak moves only if the fit exceeds it."""
    sel = [r for r in rows if r["dtype"] == dtype]
    m, n, k, secs = _columns(sel, "m", "n", "k", "seconds")

    def predict(share: float) -> np.ndarray:
        return _issued(linear_s(_at_gemm_share(base, dtype, share), dtype, m, n, k), 1.0, issue_s)

    share = _fit_scalar(lambda x: np.log(predict(x) / secs), 0.5, 50.0)
    return base["peak_tflops"][dtype] * max(share, 1.0), min(share, 1.0), _median_abs_pct(predict(share), secs)


def fit_cpu_gemm(base: dict, gemm_rows: list[dict], stream_rows: list[dict], dtype: str) -> tuple:
    """(peak TFLOP/s, efficiency.gemm[dtype], {efficiency field: value}, median |error| % of the GEMM cases and of
    the streamed ones) for a CPU's GEMM (``gemm_packs_weights``), fitted jointly over both case families: the
    rate (raising the peak where the fit passes it), the share of the streamed bandwidth the weights' packing pass
    reaches, its cost per weight row and the overlap exponent. Every case depends on all four (large GEMMs still
    pack; skinny ones still compute), so fitting them in turn can settle on a wrong pair."""
    cols = [
        _columns([r for r in rows if r["dtype"] == dtype], "m", "n", "k", "seconds")
        for rows in (gemm_rows, stream_rows)
    ]
    m, n, k, secs = (np.concatenate(pair) for pair in zip(*cols, strict=True))
    eff = base.get("efficiency", {})
    fields = ("gemm_memory", "gemm_row_ns", "gemm_overlap")

    def predict(x) -> np.ndarray:
        share, *stream = (float(v) for v in x)
        values = {f: {**eff.get(f, {}), dtype: v} for f, v in zip(fields, stream, strict=True)}
        return linear_s(_at_gemm_share(base, dtype, share, **values), dtype, m, n, k)

    # The pass starts at the plain streaming rate of the skinny cases (weight bytes over time).
    _, sn, sk, ss = cols[1]
    x0 = float(np.clip(np.median(sn * sk * BYTES[dtype] / ss) / (base["mem_bw_GBps"] * 1e9), 1e-3, 1.0))
    sol = least_squares(
        lambda x: np.log(predict(x) / secs),
        x0=[0.5, x0, 50.0, 2.0],
        bounds=([1e-3, 1e-4, 0.0, 1.0], [50.0, 1.0, 1e3, 16.0]),
    )
    fit, split = predict(sol.x), len(cols[0][0])
    share = float(sol.x[0])
    stream = {f: float(v) for f, v in zip(fields, sol.x[1:], strict=True)}
    peak = base["peak_tflops"][dtype] * max(share, 1.0)
    return (
        peak,
        min(share, 1.0),
        stream,
        _median_abs_pct(fit[:split], secs[:split]),
        _median_abs_pct(fit[split:], secs[split:]),
    )


def fit_attention(base: dict, rows: list[dict], dtype: str) -> tuple[float, float]:
    """(efficiency.attention["flash2"] as a share of the 16-bit peak, median |error| %) from SDPA cases."""
    sel = [r for r in rows if r["dtype"] == dtype]
    seq, heads, hd, fwd, bwd = _columns(sel, "seq", "heads", "head_dim", "fwd_s", "bwd_s")
    flops = attention_flops(1.0, seq, seq / 2.0, heads, hd, hd)  # causal: each query sees half the keys
    meas = np.concatenate([fwd, bwd])

    def predict(frac: float) -> np.ndarray:
        dev = _device(base, attention={"flash2": frac})
        return np.concatenate([attention_s(dev, "flash2", flops, seq), attention_s(dev, "flash2", flops, seq, True)])

    frac = _fit_scalar(lambda x: np.log(predict(x) / meas), 0.1, 1.0)
    return frac, _median_abs_pct(predict(frac), meas)


def fit_decode_attention(base: dict, rows: list[dict], dtype: str) -> tuple[float | None, float]:
    """(efficiency.decode_attention[dtype], median |error| %) from the decode SDPA cases: the share of the dtype's
    peak the query-key work reaches; None where the KV read sets the time at any share (nothing to learn)."""
    sel = [r for r in rows if r["dtype"] == dtype]
    cols = _columns(sel, "batch", "context", "heads", "kv_heads", "head_dim", "seconds")
    batch, ctx, heads, kv_heads, hd, secs = cols
    table = dict(base.get("efficiency", {}).get("decode_attention", {}))

    def predict(share: float) -> np.ndarray:
        dev = _device(base, decode_attention={**table, dtype: min(share, 1.0)})
        return decode_attention_s(dev, dtype, batch * ctx, heads, kv_heads, hd)

    share = min(_fit_scalar(lambda x: np.log(predict(x) / secs), 0.01, 1.0), 1.0)
    fit = predict(share)
    return (None if np.allclose(fit, predict(0.9 * share)) else share), _median_abs_pct(fit, secs)


def fit_serving_in_situ(dev: dict, rows: list[dict]) -> tuple[float, float] | None:
    """(scale, median |error| % of the unscaled price). The scale is the one at which the serving step model's
    median step for the probe's run (batch, contexts, eager, the device as fitted so far; ``bench_decode``) equals
    the measured median step: solved per row (the price never falls as the scale grows), the median over rows,
    within ``InSituScale``'s range. None where the price does not depend on the scale (a probe bound by what the
    scale does not multiply)."""
    from fathom.catalog.hardware import get_system
    from fathom.inference.step_model import InferenceStepModel
    from fathom.profiling.bench_decode import probe_spec
    from fathom.profiling.check_predict import serve_plan

    def median_step(r: dict, scale: float) -> float:
        eff = {**dev["efficiency"], "serving_in_situ": {r["dtype"]: scale}}
        device = DeviceSpec.model_validate({**dev, "efficiency": eff})
        system = get_system(device.default_system or "cpu-node").model_copy(update={"device": device.name})
        cluster = Cluster(device=device, system=system, num_gpus=1)
        step = InferenceStepModel(probe_spec(r["layers"]), cluster, serve_plan(r["batch"], r["input_len"]))
        contexts = r["input_len"] + np.arange(r["steps"], dtype=float)
        return float(np.median([step.step_time_s([], [], np.full(r["batch"], c)) for c in contexts]))

    low, high, scales, misses = 0.25, 4.0, [], []
    for r in rows:
        miss = lambda x, r=r: median_step(r, x) - r["seconds"]  # noqa: E731
        at_low, at_high = miss(low), miss(high)
        if np.isclose(at_low, at_high, rtol=1e-9, atol=0.0):
            return None
        scales.append(low if at_low >= 0 else high if at_high <= 0 else brentq(miss, low, high, xtol=1e-6))
        misses.append(abs(miss(1.0) / r["seconds"]) * 100)
    return float(np.median(scales)), float(np.median(misses))


def _system(bw_GBps: float, latency_us: float, ranks: int) -> SystemSpec:
    return SystemSpec(
        name="fit",
        device="fit",
        gpus_per_node=ranks,
        intra_node_bw_GBps=bw_GBps,
        intra_node_latency_us=latency_us,
        intra_node_efficiency=1.0,
        inter_node_bw_GBps=bw_GBps,
        source="fit",
    )


def fit_dropout_rng(rows: list[dict], streamed_GBps: float) -> float:
    """Nanoseconds per element dropout takes beyond its memory passes at the fitted streamed rate: the median over
    the cases, at least 0 (a GPU draws its random numbers inside a memory-bound kernel)."""
    excess = [(r["seconds"] - r["bytes"] / (streamed_GBps * 1e9)) / r["elements"] for r in rows]
    return float(max(np.median(excess), 0.0) * 1e9)


def fit_loss(rows: list[dict]) -> dict[str, float]:
    """Nanoseconds per logit of the softmax cross-entropy, forward and backward: the median over the cases."""
    return {k: float(np.median([r[f"{k}_s"] / r["logits"] for r in rows]) * 1e9) for k in ("fwd", "bwd")}


def _loss_spread_pct(rows: list[dict]) -> float:
    """How far the cases lie from the fitted per-logit cost (median |error| %, forward and backward together)."""
    fit = fit_loss(rows)
    pred = np.array([r["logits"] * fit[k] * 1e-9 for r in rows for k in ("fwd", "bwd")])
    meas = np.array([r[f"{k}_s"] for r in rows for k in ("fwd", "bwd")])
    return _median_abs_pct(pred, meas)


def fit_collectives(rows: list[dict]) -> tuple[float, float, float]:
    """(achieved GB/s per rank, latency us per step, median |error| %) of the alpha-beta collective model."""
    ops = [r["op"] for r in rows]
    ranks, nbytes, secs = _columns(rows, "ranks", "bytes", "seconds")
    world = int(ranks.max())
    unit_bw, unit_lat = _system(1.0, 1e-9, world), _system(1e12, 1.0, world)
    volume = np.array([_COLLECTIVES[o](unit_bw, b, n, 1) for o, b, n in zip(ops, nbytes, ranks, strict=True)]) * 1e9
    steps = np.array([_COLLECTIVES[o](unit_lat, b, n, 1) for o, b, n in zip(ops, nbytes, ranks, strict=True)]) * 1e6
    a = np.column_stack([volume, steps]) / secs[:, None]  # relative residuals
    (inv_bw, lat_s), _ = nnls(a, np.ones_like(secs))
    bw_GBps = 1.0 / max(inv_bw, 1e-15) / 1e9
    latency_us = max(lat_s * 1e6, 1e-3)
    pred = volume / (bw_GBps * 1e9) + steps * latency_us * 1e-6
    return bw_GBps, latency_us, _median_abs_pct(pred, secs)


def fit_profile(base: dict, measurements: dict, *, train_dtype: str, cpu: bool) -> FitResult:
    """Fit every family present in ``measurements``; ``base`` holds the device's nominal peaks and sizes."""
    quality: dict[str, dict] = {}
    dev = dict(base)
    eff = dict(base.get("efficiency", {}))
    overhead = measurements.get("overhead", [])
    tiny = [r for r in overhead if r["op"] == "tiny_add"]
    eager = [r for r in overhead if r["op"] == "eager_layer_op"]
    graph = [r for r in overhead if r["op"] == "tiny_add_graph"]
    tiny_s = float(np.median([r["seconds_per_op"] for r in tiny])) if tiny else None
    if tiny_s is not None:
        eff["kernel_launch_us"] = tiny_s * 1e6
        eff["host_op_us"] = tiny_s * 1e6 if cpu else eff.get("host_op_us", tiny_s * 1e6)
    if graph:  # a GPU: the kernel's own cost, without the host's issue (which host_op_us holds)
        eff["kernel_launch_us"] = float(np.median([r["seconds_per_op"] for r in graph]) * 1e6)
    if eager:
        eff["host_op_us"] = float(np.median([r["seconds_per_op"] for r in eager]) * 1e6)
    tiny_gemms = [r for r in overhead if r["op"] == "tiny_gemm"]
    gemm_calls = {
        dtype: float(np.median([r["seconds_per_op"] for r in tiny_gemms if r["dtype"] == dtype]))
        for dtype in sorted({r["dtype"] for r in tiny_gemms})
    }
    if cpu:  # beyond the dispatched op the eager models already charge (host_op_us, the tiny op's time on a CPU)
        for dtype, call in gemm_calls.items():
            eff["gemm_call_us"] = {**eff.get("gemm_call_us", {}), dtype: max(call - (tiny_s or 0.0), 0.0) * 1e6}
    if infer := [r for r in overhead if r["op"] == "eager_inference_op"]:
        eff["host_op_inference_us"] = float(np.median([r["seconds_per_op"] for r in infer]) * 1e6)
    launch = eff.get("kernel_launch_us", DeviceEfficiency().kernel_launch_us)
    # A GPU's eager op, run back to back, takes at least the host's time to issue it (the tiny op's rate).
    issue = 0.0 if cpu or tiny_s is None else tiny_s
    # ... and a GPU's GEMM calls back to back at least the host's time to issue one of that dtype (``tiny_gemm``)
    gemm_issue = {} if cpu else {dtype: max(issue, call) for dtype, call in gemm_calls.items()}
    dev["efficiency"] = eff
    if measurements.get("memory"):
        bw, mem_eff, err = fit_memory(dev, measurements["memory"], launch, issue)
        dev["mem_bw_GBps"], eff["memory"] = bw, mem_eff
        quality["memory"] = {"cases": len(measurements["memory"]), "median_abs_error_pct": err}
        steps = [r for r in measurements["memory"] if r["op"] in _OPTIMIZERS]
        for key, opt_rows in (("optimizer", [r for r in steps if _fp32(r)]),
                              ("optimizer_16bit", [r for r in steps if not _fp32(r)])):  # fmt: skip
            if opt_rows:
                eff[key], err = fit_optimizer({**dev, "efficiency": eff}, opt_rows, launch, issue)
                quality[key] = {"cases": len(opt_rows), "median_abs_error_pct": err}
        passes = [r for r in measurements["memory"] if r["op"] not in _OPTIMIZERS]
        for dtype in sorted({r["dtype"] for r in passes if not _fp32(r)}):
            sel = [r for r in passes if r.get("dtype") == dtype]
            share, err = fit_optimizer({**dev, "efficiency": eff}, sel, launch, issue)  # the same one-share fit
            eff["elementwise"] = {**eff.get("elementwise", {}), dtype: share}
            quality[f"elementwise_{dtype}"] = {"cases": len(sel), "median_abs_error_pct": err}
    footprint = [r["bytes"] for r in measurements.get("footprint", []) if r["op"] == "training_process"]
    if footprint and cpu:
        dev["runtime_reserved_gib"] = float(np.median(footprint)) / GIB
    gemm_rows = measurements.get("gemm", [])
    stream_rows = measurements.get("gemm_stream", []) if cpu else []
    if cpu and gemm_rows:
        eff["gemm_packs_weights"] = True  # a CPU library's GEMM: a packing pass, then the rows (kernels.linear_s)
    peaks, gemm = dict(dev["peak_tflops"]), dict(eff.get("gemm", {}))
    for dtype in sorted({r["dtype"] for r in gemm_rows}):
        current = {**dev, "peak_tflops": peaks, "efficiency": {**eff, "gemm": gemm}}
        if any(r["dtype"] == dtype for r in stream_rows):
            peak, frac, stream, err, stream_err = fit_cpu_gemm(current, gemm_rows, stream_rows, dtype)
            for field, value in stream.items():
                eff[field] = {**eff.get(field, {}), dtype: value}
            streamed = sum(r["dtype"] == dtype for r in stream_rows)
            quality[f"gemm_stream_{dtype}"] = {"cases": streamed, "median_abs_error_pct": stream_err}
        else:
            peak, frac, err = fit_gemm(current, gemm_rows, dtype, gemm_issue.get(dtype, issue))
        peaks[dtype], gemm[dtype] = peak, frac
        quality[f"gemm_{dtype}"] = {"cases": sum(r["dtype"] == dtype for r in gemm_rows), "median_abs_error_pct": err}
    dev["peak_tflops"] = peaks
    eff["gemm"] = gemm
    if gemm_rows and cpu:
        eff["gemm_sustained"] = 1.0  # no GPU-style boost-clock drop: the isolated rate is measured on all cores
    if held := measurements.get("gemm_sustained"):  # a GPU: the most throttled dtype's sustained / isolated rate
        eff["gemm_sustained"] = float(min(min(r["isolated_s"] / r["sustained_s"] for r in held), 1.0))
    if dropout := measurements.get("dropout"):
        streamed = dev["mem_bw_GBps"] * eff.get("memory", DeviceEfficiency().memory)
        eff["dropout_rng_ns_per_element"] = fit_dropout_rng(dropout, streamed)
    if touch := measurements.get("first_touch"):
        eff["first_touch_ns_per_byte"] = float(np.median([r["seconds"] / r["bytes"] for r in touch]) * 1e9)
    if loss := measurements.get("loss"):
        eff["loss_ns_per_element"] = fit_loss(loss)
        quality["loss"] = {"cases": len(loss), "median_abs_error_pct": _loss_spread_pct(loss)}
    attn = [r for r in measurements.get("attention", []) if r["dtype"] == train_dtype]
    if attn:
        frac, err = fit_attention({**dev, "efficiency": eff}, attn, train_dtype)
        eff["attention"] = {**eff.get("attention", {}), "flash2": frac}
        quality["attention"] = {"cases": 2 * len(attn), "median_abs_error_pct": err}
    for dtype in sorted({r["dtype"] for r in measurements.get("attention_decode", [])}):
        share, err = fit_decode_attention({**dev, "efficiency": eff}, measurements["attention_decode"], dtype)
        if share is not None:
            eff["decode_attention"] = {**eff.get("decode_attention", {}), dtype: share}
        quality[f"decode_attention_{dtype}"] = {
            "cases": sum(r["dtype"] == dtype for r in measurements["attention_decode"]),
            "median_abs_error_pct": err,
        }
    dev["efficiency"] = eff
    for dtype in sorted({r["dtype"] for r in measurements.get("decode_step", [])}):
        rows = [r for r in measurements["decode_step"] if r["dtype"] == dtype]
        fitted = fit_serving_in_situ(dev, rows)
        if fitted is None:
            continue
        scale, miss_pct = fitted
        eff["serving_in_situ"] = {**eff.get("serving_in_situ", {}), dtype: scale}
        quality[f"serving_in_situ_{dtype}"] = {  # its miss before the scale, as the other families' errors read
            "cases": len(rows),
            "median_abs_error_pct": miss_pct,
            "scale": scale,
        }
    system: dict = {}
    if measurements.get("collective"):
        bw, lat, err = fit_collectives(measurements["collective"])
        system = {"intra_node_bw_GBps": bw, "intra_node_latency_us": lat, "intra_node_efficiency": 1.0}
        quality["collective"] = {"cases": len(measurements["collective"]), "median_abs_error_pct": err}
    DeviceSpec.model_validate(dev)  # fail here, not when a command loads the file
    return FitResult(device=dev, system=system, quality=quality)
