"""``fathom check train|serve``: time real PyTorch work and set it beside fathom's prediction.

The worker runs in fresh processes (one per data-parallel rank, rendezvous through a file) with the threads and
clock the profile was measured with (``profile.machine.threads``, ``profile.clock``), so prediction and
measurement describe the same device. Each comparison row has ``predicted_s``, ``measured_s`` and
``error_pct`` = (predicted - measured) / measured x 100, and, against a profile with reference kernels
(``fathom.profiling.speed``), ``measured_speed_adjusted_s`` (the measurement normalised to the profile's speed,
sample by sample), ``speed_ratio`` (= that / ``measured_s``: > 1, the check ran faster than profiled),
``predicted_speed_adjusted_s`` (= ``predicted_s`` / ``speed_ratio``) and ``error_pct_speed_adjusted``
(``predicted_s`` against ``measured_speed_adjusted_s``). Both checks also compare peak memory (``memory``: the
same shape for train and serve). Only a profile of this machine is accepted as the device (``local_profile``): of
its CPU (the worker runs on the CPU), or of its GPU (``profile.machine.accelerator`` is the name
``torch.cuda.get_device_name`` gives here; the worker runs on ``cuda:RANK``, one GPU per data-parallel rank, see
``worker_device``), and every input, the predicted peak memory included, is checked before a worker starts.

Peak memory is compared like with like. On the CPU the worker reads resident memory, which holds the runtime's
own pages too, so the prediction counts ``runtime_reserved`` where the profile measured it. On CUDA the worker
reads ``torch.cuda.max_memory_allocated`` (``measure`` "allocated"): live tensor bytes, the quantity fathom's
memory model predicts (weights, gradients, optimizer state, activations, KV cache, communication buffers). The
prediction's runtime reserve (the device's ``runtime_reserved_gib``, else a fixed 1 GiB for training, 1.5 GiB
for serving) stands for the CUDA context and library workspaces: no allocator count holds it
(``memory_reserved`` is the caching allocator's segments, tensors plus cached slack, and the context lives
outside it), and ``fathom profile`` does not measure it on a GPU, so comparing it would test an assumed
constant, or the allocator's slack against it. The CUDA comparison therefore leaves the runtime reserve out of
the compared prediction (it stays in ``predicted_breakdown_bytes`` and in the does-it-fit refusal), and reports
the allocator's reserved peak beside it (``measured_reserved_bytes``) for information.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import yaml

from fathom.catalog.hardware import _read_file, get_device
from fathom.catalog.models import get_model
from fathom.errors import FathomInputError
from fathom.inference.memory import RUNTIME_RESERVED_BYTES as SERVING_RUNTIME_BYTES
from fathom.profiling.check_predict import check_supported, predict_serve, predict_train, serve_memory
from fathom.profiling.machine import cpu_model
from fathom.profiling.profile_schema import check_profile_section
from fathom.profiling.speed import class_times, effective_ratio, local_ratios, speed_adjusted_device, speed_ratios
from fathom.specs.hardware import GIB

# For the memory run only: large allocations get their own mapping, returned to the kernel on free, so resident
# memory tracks live tensors. Timed runs keep glibc's defaults (freed blocks are reused, no page faults), as a
# user's training run does: fresh mappings would add a page fault per 4 KiB of every new tensor to the time.
MALLOC_EXACT_ENV = {"MALLOC_MMAP_THRESHOLD_": "65536", "MALLOC_TRIM_THRESHOLD_": "0"}


def row(predicted: float, measured: float, measured_adjusted: float | None = None) -> dict:
    """One comparison; ``measured_adjusted``: the measurement at the profile's speed (None: no reference)."""
    out = {"predicted_s": predicted, "measured_s": measured, "error_pct": (predicted / measured - 1.0) * 100.0}
    ratio = measured_adjusted / measured if measured_adjusted else None  # > 1: the check ran faster than profiled
    out["speed_ratio"] = ratio
    out["measured_speed_adjusted_s"] = measured_adjusted
    out["predicted_speed_adjusted_s"] = predicted / ratio if ratio else None
    out["error_pct_speed_adjusted"] = (predicted / measured_adjusted - 1.0) * 100.0 if measured_adjusted else None
    return out


CHECK_TRAIN_PRECISIONS = ("fp32", "bf16")  # what the reference training run can do (check_train)
WORKER_FAILED = "fathom-check-failed: "  # the worker's last stderr line on failure: its one-line message

_PROFILE_FIRST = "run `fathom profile --out my-node.yaml` on this machine first and pass that file as --gpu"
_GPU_PROFILE_FIRST = (
    "run `fathom profile --base <catalog gpu> --out my-gpu.yaml` on this machine first and pass that file as --gpu"
)


def _profile_doc(gpu: str) -> dict | None:
    """The raw mapping of a device YAML, read as the catalog reads a --gpu file (its one-line YAML errors)."""
    path = Path(gpu)
    if path.suffix.lower() not in (".yaml", ".yml") or not path.is_file():
        return None
    return _read_file(path, "gpu")


def _cuda():
    """``torch.cuda``, imported only for a GPU profile (a CPU profile's checks need no CUDA query)."""
    import torch

    return torch.cuda


def local_profile(gpu: str) -> dict:
    """The ``profile:`` section of ``gpu``, refused unless it profiles this machine: the worker times real steps on
    this machine's CPU, or on its GPU for a GPU profile, so a prediction for any other device (a catalog GPU,
    another machine's profile) would be compared with the wrong hardware. The device itself is validated first,
    with the catalog's errors. A GPU profile needs CUDA here and GPU 0 of the profile's name."""
    get_device(gpu)
    doc = _profile_doc(gpu)
    prof = (doc or {}).get("profile")
    if not isinstance(prof, dict) or not isinstance(prof.get("machine"), dict):
        raise FathomInputError(
            f"--gpu: {gpu} is not a profile of this machine (check times real steps here, on its CPU or GPU); "
            + _PROFILE_FIRST
        )
    check_profile_section(prof, f"gpu file {gpu}")  # what the check reads, typed, before any worker starts
    machine = prof["machine"]
    accelerator = machine.get("accelerator", "cpu")
    if accelerator != "cpu":
        cuda = _cuda()
        if not cuda.is_available():
            raise FathomInputError(
                f"--gpu: {gpu} profiles {accelerator}: a GPU profile needs that GPU, and torch finds no CUDA device "
                "here; run the check on that GPU's node, or profile this CPU (fathom profile without --base) to check "
                "against it"
            )
        here = cuda.get_device_name(0)
        if here != accelerator:
            raise FathomInputError(
                f"--gpu: {gpu} was measured on {accelerator!r}, this machine's GPU is {here!r}; {_GPU_PROFILE_FIRST}"
            )
        return prof
    here = cpu_model()
    if machine.get("cpu_model") != here:
        raise FathomInputError(
            f"--gpu: {gpu} was measured on {machine.get('cpu_model')!r}, this machine is {here!r}; {_PROFILE_FIRST}"
        )
    return prof


def worker_device(gpu: str, dp: int = 1) -> str:
    """Where the worker runs for profile ``gpu`` (validated by ``local_profile``): "cpu" for a CPU profile, "cuda"
    for a GPU profile, whose ``dp`` ranks take one GPU each (``cuda:0`` .. ``cuda:dp-1``), each of the profile's
    model; the CPU's rank limit (threads x ranks against cores) is ``check_train``'s."""
    prof = local_profile(gpu)
    accelerator = prof["machine"].get("accelerator", "cpu")
    if accelerator == "cpu":
        return "cpu"
    cuda = _cuda()
    count = cuda.device_count()
    if dp > count:
        fewer = f"use --dp {count}" + (" or fewer" if count > 1 else "")
        raise FathomInputError(f"--dp: {dp} ranks need {dp} GPUs (one each), this machine has {count}; {fewer}")
    for i in range(1, dp):
        if cuda.get_device_name(i) != accelerator:
            raise FathomInputError(
                f"--dp: rank {i} would run on GPU {i}, a {cuda.get_device_name(i)!r}, not the profile's "
                f"{accelerator!r}; use --dp {i}"
            )
    return "cuda"


def _gib(x: float) -> str:
    return f"{x:,.1f}" if x >= 1 else f"{x:.2g}"


def _refuse_if_too_big(predicted_bytes: float, gpu: str, what: str) -> None:
    """A run whose predicted peak exceeds the device's memory is refused before any worker allocates it."""
    available = get_device(gpu).memory_gib
    if predicted_bytes > available * GIB:
        raise FathomInputError(
            f"check: {what} needs {_gib(predicted_bytes / GIB)} GiB (predicted peak), {gpu} has {_gib(available)} "
            "GiB (its memory_gib); make the run smaller"
        )


def speed_reference(gpu: str) -> dict:
    """The profile's reference speeds (``profile.reference``): empty for a catalog device or an older profile."""
    doc = _profile_doc(gpu)
    return dict(((doc or {}).get("profile") or {}).get("reference") or {})


def references_for(gpu: str, dtype: str) -> list[str]:
    """The profile's reference kernels a run in ``dtype`` reads: all but the other dtype's GEMM, which it never
    runs."""
    other = "gemm_bf16" if dtype == "fp32" else "gemm_fp32"
    return [k for k in speed_reference(gpu) if k != other]


class SpeedAdjuster:
    """Normalises each timed sample to the profile's speed: the sample x (the prediction at the speeds read just
    before and after it / the prediction at the profile's), with each kernel class's part of the prediction
    found by ``class_times`` on copies of the profile whose classes run faster (``speed_adjusted_device``)."""

    def __init__(self, gpu: str, meas: dict, predict, attention_dtype: str):
        self.reference = speed_reference(gpu)
        self.readings = meas.get("speed_readings") or {}
        self.marks = meas.get("speed_marks") or {}
        self.refs = speed_ratios(self.readings, self.reference)
        self.parts: dict = {}
        if not self.refs or not self.marks:
            return
        doc = _profile_doc(gpu) or {}
        # the device as loaded (a `base:` + overrides file merged with its catalog entry), not the raw mapping
        device = get_device(gpu).model_dump(mode="json")
        with tempfile.TemporaryDirectory(prefix="fathom-speed-") as tmp:
            path = Path(tmp) / Path(gpu).name

            def predict_at(ratios: dict[str, float]) -> dict:
                dev = speed_adjusted_device(device, ratios, attention_dtype)
                path.write_text(yaml.safe_dump({**dev, "system": doc.get("system") or {}}), encoding="utf-8")
                return predict(str(path))

            _, self.parts = class_times(predict_at, list(self.refs))

    def sample(self, key: str, seconds: float, span: list[int], index: int | None = None) -> float:
        """``seconds`` of sample ``key`` (element ``index`` of a list) at the profile's speeds."""
        parts = {c: float(v[key] if index is None else v[key][index]) for c, v in self.parts.items()}
        return seconds * effective_ratio(parts, local_ratios(self.readings, span, self.reference))

    def section(self, shares_of: list[str]) -> dict | None:
        if not self.parts:
            return None
        shares = {}
        for key in shares_of:
            total = sum(float(np.sum(v[key])) for v in self.parts.values())
            shares[key] = {c or "other": float(np.sum(v[key])) / total for c, v in self.parts.items()}
        return {
            "reference": self.refs,
            "time_shares": shares,
            "method": "reference kernels read between the timed steps (fathom.profiling.speed); each sample is "
            "scaled to the profile's speed by the speeds read just before and after it, weighted by each kernel "
            "class's share of the predicted time (time_shares); then the same median as the raw measurement",
        }


def profile_settings(gpu: str) -> tuple[int, str]:
    """(threads per rank, clock) recorded by ``fathom profile``; a catalog device gets every core, wall clock."""
    doc = _profile_doc(gpu)
    if doc is None:
        return os.cpu_count() or 1, "wall"
    prof = doc.get("profile") or {}
    return int((prof.get("machine") or {}).get("threads") or os.cpu_count() or 1), prof.get("clock", "wall")


def reference_gemm(gpu: str, dtype: str) -> dict | None:
    """The profile's largest GEMM case in ``dtype`` (shape and its profiled seconds), or None for a catalog device
    or a profile without one: the check re-times it beside the real work (``speed_probe``)."""
    measurements = (((_profile_doc(gpu) or {}).get("profile") or {}).get("measurements")) or {}
    rows = [r for r in measurements.get("gemm", []) if r["dtype"] == dtype]
    return max(rows, key=lambda r: r["m"] * r["n"] * r["k"]) if rows else None


def serving_footprint(gpu: str) -> float | None:
    """The profile's measured memory of a minimal serving process (``bench_footprint``): the runtime's own pages a
    serving run holds besides its tensors, as ``runtime_reserved_gib`` is for training. None: not measured."""
    rows = (((_profile_doc(gpu) or {}).get("profile") or {}).get("measurements") or {}).get("footprint") or []
    found = [float(r["bytes"]) for r in rows if r.get("op") == "serving_process" and r.get("bytes")]
    return float(np.median(found)) if found else None


def speed_probe(ref: dict | None, probe_s: float | None) -> dict | None:
    """How fast the machine ran during the check against during profiling: the reference GEMM's seconds then and
    now. A ``slowdown`` far from 1 means other work shared the cores differently (``fathom.profiling.timing``)."""
    if ref is None or not probe_s:
        return None
    return {
        "gemm": f"{ref['dtype']} {ref['m']}x{ref['k']} @ {ref['k']}x{ref['n']}",
        "profile_s": ref["seconds"],
        "check_s": probe_s,
        "slowdown": probe_s / ref["seconds"],
    }


def _failure_line(err: str, returncode: int) -> str:
    """The worker's one-line message (``WORKER_FAILED``); else, for a process that ended before it could say (a
    signal such as the kernel's out-of-memory killer), what happened, without an exception's class name."""
    lines = [line.strip() for line in err.splitlines() if line.strip()]
    for line in reversed(lines):
        if line.startswith(WORKER_FAILED):
            return line[len(WORKER_FAILED) :]
    if returncode < 0:
        hint = " (the kernel's out-of-memory killer sends SIGKILL)" if returncode == -9 else ""
        return f"the worker process was stopped by signal {-returncode}{hint}"
    if not lines:
        return f"the worker process exited with status {returncode} without output"
    name, sep, message = lines[-1].partition(": ")
    return message if sep and name.replace(".", "").replace("_", "").isalnum() else lines[-1]


def run_workers(args: dict, world: int, timeout_s: float, exact_memory: bool = False) -> dict:
    """Rank 0's result of ``world`` worker processes; ``exact_memory``: the allocator settings of the memory run.
    Their output goes to files (no pipe fills up); once one rank fails the others are stopped, since a
    data-parallel peer would otherwise wait for it in the next collective until gloo's (NCCL's) timeout."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    env.update(MALLOC_EXACT_ENV if exact_memory else {})
    with tempfile.TemporaryDirectory(prefix="fathom-check-") as tmp:
        procs: list[subprocess.Popen] = []
        try:
            for rank in range(world):
                payload = json.dumps({**args, "rank": rank, "world": world, "init_file": os.path.join(tmp, "init")})
                cmd = [sys.executable, "-m", "fathom.profiling.check_worker", payload]
                with (
                    open(os.path.join(tmp, f"out{rank}"), "w") as out,
                    open(os.path.join(tmp, f"err{rank}"), "w") as err,
                ):
                    procs.append(subprocess.Popen(cmd, stdout=out, stderr=err, env=env))
            deadline = time.monotonic() + timeout_s
            while any(p.poll() is None for p in procs) and not any(p.returncode for p in procs):
                if time.monotonic() > deadline:
                    raise FathomInputError(f"check: the PyTorch run took longer than {timeout_s:.0f} s; stopped it")
                time.sleep(0.05)
        finally:
            for p in procs:
                if p.poll() is None:
                    p.kill()
                    p.wait()
        outs = [Path(tmp, f"out{r}").read_text(errors="replace") for r in range(world)]
        errs = [Path(tmp, f"err{r}").read_text(errors="replace") for r in range(world)]
    failed = [r for r, p in enumerate(procs) if p.returncode]
    if failed:  # the first rank that failed by itself, not one stopped because of it
        first = next((r for r in failed if WORKER_FAILED in errs[r]), failed[0])
        raise FathomInputError(f"check: the PyTorch run failed: {_failure_line(errs[first], procs[first].returncode)}")
    return json.loads(outs[0].strip().splitlines()[-1])


def memory_block(
    predicted: float, measured: float | None, breakdown: dict, method: str, meas: dict | None = None
) -> dict:
    """The peak-memory comparison, the same shape for train and serve; ``meas``: the memory run's result, which
    says what was measured (``measure``: "resident" on the CPU, "allocated" on CUDA) and, on CUDA, the caching
    allocator's reserved peak (``measured_reserved_bytes``; None on the CPU)."""
    meas = meas or {}
    return {
        "predicted_bytes": predicted,
        "measured_bytes": measured,
        "error_pct": (predicted / measured - 1.0) * 100.0 if measured else None,
        "predicted_breakdown_bytes": breakdown,
        "measure": meas.get("peak_memory_measure", "resident"),
        "measured_reserved_bytes": meas.get("peak_memory_reserved_bytes"),
        "method": method,
    }


_CUDA_MEMORY_METHOD = (
    "peak allocated memory (torch.cuda.max_memory_allocated after reset_peak_memory_stats) of rank 0 over {what} "
    "(its own run) minus the allocated memory before the model was built: live tensors, which the prediction is "
    "compared with without runtime_reserved (the CUDA context and workspaces: an assumed constant that no "
    "allocator count holds; fathom.profiling.check explains); measured_reserved_bytes: the allocator's reserved peak"
)


# Untimed training steps before the timed ones: a real run's step time is its steady state, and the first steps are
# not in it. AdamW allocates its moments in its first step, and until the allocator has settled the next forward
# passes write their activations on fresh pages: on the 2-core CPU VM (AMD EPYC, 2026-11-23) medium-llama's forward
# took 2.06 s, 3.89 s and 2.80 s in steps 0-2, then 1.9-2.1 s from step 3 on (its elementwise ops 20x slower in
# step 1: page faults), so one warm-up step left the transient in the median of three (total -17%; +3..+8% with
# three warm-up steps, in two back-to-back pairs).
TRAIN_WARMUP_STEPS = 3


def check_train(
    model: str,
    gpu: str,
    micro_batch: int,
    seq_len: int,
    steps: int = 3,
    warmup: int = TRAIN_WARMUP_STEPS,
    dp: int = 1,
    timeout_s: float = 3600.0,
    precision: str = "fp32",
) -> dict:
    """Everything the user gave is checked (model, profile, ranks, memory) before the first worker starts.

    ``precision`` fp32, or bf16: pure bf16 training (the model, its gradients and AdamW's moments in bf16, no fp32
    master copy; the loss in fp32), the 16-bit recipe plain PyTorch runs without a mixed-precision optimizer."""
    if precision not in CHECK_TRAIN_PRECISIONS:
        raise FathomInputError(
            f"--precision: {precision!r} is not one of {', '.join(CHECK_TRAIN_PRECISIONS)} (fp16 training needs loss "
            "scaling, which the reference run does not do)"
        )
    spec = get_model(model)
    check_supported(spec)
    if seq_len > spec.max_seq_len:
        raise FathomInputError(f"--seq-len: {seq_len} exceeds {spec.name}'s max_seq_len {spec.max_seq_len}")
    device = worker_device(gpu, dp)
    threads, clock = profile_settings(gpu)
    cores = os.cpu_count() or 1
    if device == "cpu" and dp * threads > cores:  # oversubscribed ranks spin against each other
        raise FathomInputError(_oversubscribed(dp, threads, cores))
    pred = predict_train(spec, gpu, micro_batch, seq_len, dp, precision)
    cpu = device == "cpu"  # on CUDA the runtime reserve is not compared (module docstring)
    counted = [k for k in pred["memory"] if k != "runtime_reserved" or (cpu and pred["runtime_measured"])]
    mem_pred = sum(pred["memory"][k] for k in counted)
    needs = mem_pred if cpu else sum(pred["memory"].values())  # a GPU also holds its context
    _refuse_if_too_big(needs, gpu, f"training {spec.name} (micro-batch {micro_batch}, seq-len {seq_len}) per rank")
    args = {
        "job": "train",
        "device": device,
        "spec": spec.model_dump(),
        "micro_batch": micro_batch,
        "seq_len": seq_len,
        "steps": steps,
        "warmup": warmup,
        "threads": threads,
        "clock": clock,
        "dtype": precision,
    }
    ref = reference_gemm(gpu, precision)
    probe = {k: ref[k] for k in ("dtype", "m", "n", "k")} if ref else None
    refs = references_for(gpu, precision)
    meas = run_workers({**args, "memory": False, "probe": probe, "speed_refs": refs}, dp, timeout_s)
    adjuster = SpeedAdjuster(
        gpu, meas, lambda g: _train_samples(spec, g, micro_batch, seq_len, dp, precision), precision
    )
    # Peak memory from its own run (one warm-up step, one measured step) with the exact-allocation settings.
    mem_run = run_workers({**args, "steps": 1, "warmup": 1, "memory": True}, dp, timeout_s, exact_memory=True)
    mem_meas = mem_run["peak_memory_bytes"]
    totals = [sum(s) for s in zip(*meas["samples"].values(), strict=True)]
    adjusted: dict[str, float | None] = dict.fromkeys([*pred["phases"], "total"])
    if adjuster.parts:
        marks = adjuster.marks
        for k in pred["phases"]:
            adjusted[k] = statistics.median(
                adjuster.sample(k, t, span) for t, span in zip(meas["samples"][k], marks[k], strict=True)
            )
        step_spans = [[f[0], o[1]] for f, o in zip(marks["forward"], marks["optimizer"], strict=True)]
        adjusted["total"] = statistics.median(
            adjuster.sample("total", t, span) for t, span in zip(totals, step_spans, strict=True)
        )
    phases = {k: row(pred["phases"][k], meas["phases"][k], adjusted[k]) for k in pred["phases"]}
    return {
        "model": spec.name,
        "gpu": gpu,
        "micro_batch": micro_batch,
        "seq_len": seq_len,
        "dp": dp,
        "precision": precision,
        "device": device,
        "threads_per_rank": threads,
        "clock": clock,
        "steps": steps,
        "params": meas["params"],
        "phases": phases,
        "total": row(pred["total"], statistics.median(totals), adjusted["total"]),
        "dp_comm_predicted_s": {"exposed": pred["dp_comm_exposed"], "all_reduce": pred["dp_comm_total"]},
        "memory": memory_block(
            mem_pred,
            mem_meas,
            pred["memory"],
            "peak resident memory (VmHWM) of rank 0 over one training step (its own run, every large "
            "tensor in its own mapping) minus its resident memory before the model was built; the prediction "
            "counts runtime_reserved only where the profile measured it (the runtime's own pages on a CPU), "
            "not a catalog device's CUDA context"
            if cpu
            else _CUDA_MEMORY_METHOD.format(what="one training step"),
            mem_run,
        ),
        "speed_probe": speed_probe(ref, meas.get("probe_s")),
        "speed": adjuster.section([*pred["phases"], "total"]),
    }


def _oversubscribed(dp: int, threads: int, cores: int) -> str:
    """What a ``dp``-rank check needs that this machine lacks: fewer threads per rank, or fewer ranks."""
    if dp == 1:  # no --dp to blame: the profile itself asks for more threads than this machine has
        return (f"--gpu: the profile runs {threads} threads per rank (profile.machine.threads), this machine has "
                f"{cores} cores; re-profile here with --threads {cores} or fewer")  # fmt: skip
    need = f"--dp: {dp} ranks x {threads} thread{'s' if threads > 1 else ''} (the profile's) need {dp * threads} cores"
    fits = cores // threads  # ranks this profile allows
    advice = [f"use --dp {fits}" + (" or fewer" if fits > 1 else "")] if fits else []
    if dp <= cores:
        advice.append(f"re-profile with --threads {cores // dp} for {dp} ranks")
    elif threads > 1:
        advice.append(f"re-profile with --threads 1 for up to {cores} ranks")
    return f"{need}, this machine has {cores}; {' or '.join(advice)}"


def _train_samples(spec, gpu: str, micro_batch: int, seq_len: int, dp: int, precision: str) -> dict:
    pred = predict_train(spec, gpu, micro_batch, seq_len, dp, precision)
    return {**pred["phases"], "total": pred["total"]}


def _serve_samples(spec, gpu: str, batch: int, input_len: int, output_len: int) -> dict:
    pred = predict_serve(spec, gpu, batch, input_len, output_len)
    return {"prefill": pred["prefill_s"], "decode": pred["decode_step_s"]}


def check_serve(
    model: str,
    gpu: str,
    batch: int,
    input_len: int,
    output_len: int,
    repeats: int = 3,
    warmup: int = 1,
    timeout_s: float = 3600.0,
) -> dict:
    """Everything the user gave is checked (model, profile, lengths, memory) before the first worker starts."""
    spec = get_model(model)
    check_supported(spec)
    if input_len + output_len > spec.max_seq_len:
        raise FathomInputError(
            f"--input-len + --output-len: {input_len + output_len} exceed {spec.name}'s max_seq_len {spec.max_seq_len}"
        )
    if output_len < 2:
        raise FathomInputError("--output-len: need at least 2 tokens (one from prefill, one decode step)")
    device = worker_device(gpu)
    cpu = device == "cpu"
    threads, clock = profile_settings(gpu)
    # On CUDA the runtime reserve is not compared (module docstring), but a GPU holds it: the refusal counts it.
    footprint = serving_footprint(gpu) if cpu else None
    mem_parts = {**serve_memory(spec, batch, input_len, output_len), "runtime_reserved": footprint}
    mem_pred = sum(v for v in mem_parts.values() if v is not None)
    needs = mem_pred if cpu else mem_pred + SERVING_RUNTIME_BYTES
    _refuse_if_too_big(needs, gpu, f"serving {spec.name} (batch {batch}, {input_len}+{output_len} tokens)")
    pred = predict_serve(spec, gpu, batch, input_len, output_len)
    args = {
        "job": "serve",
        "device": device,
        "spec": spec.model_dump(),
        "batch": batch,
        "input_len": input_len,
        "output_len": output_len,
        "repeats": repeats,
        "warmup": warmup,
        "threads": threads,
        "clock": clock,
        "dtype": "bf16",
    }
    ref = reference_gemm(gpu, "bf16")
    args["probe"] = {k: ref[k] for k in ("dtype", "m", "n", "k")} if ref else None
    args["speed_refs"] = references_for(gpu, "bf16")  # bf16 serving
    meas = run_workers(args, 1, timeout_s)
    adjuster = SpeedAdjuster(gpu, meas, lambda g: _serve_samples(spec, g, batch, input_len, output_len), "bf16")
    # Peak memory from its own run (one warm-up repeat, one measured) with the exact-allocation settings.
    mem_args = {**args, "repeats": 1, "warmup": 1, "memory": True, "probe": None, "speed_refs": []}
    mem_run = run_workers(mem_args, 1, timeout_s, exact_memory=True)
    mem_meas = mem_run["peak_memory_bytes"]
    dec_p, dec_m = sum(pred["decode_step_s"]), sum(meas["decode_step_s"])
    pre_a, dec_a = None, None
    if adjuster.parts:
        marks = adjuster.marks
        pre_a = statistics.median(
            adjuster.sample("prefill", t, span)
            for t, span in zip(meas["prefill_samples"], marks["prefill"], strict=True)
        )
        per_rep = [
            [adjuster.sample("decode", t, span, i) for i, (t, span) in enumerate(zip(steps, spans, strict=True))]
            for steps, spans in zip(meas["decode_samples"], marks["decode"], strict=True)
        ]
        dec_a = [statistics.median(col) for col in zip(*per_rep, strict=True)]
    return {
        "model": spec.name,
        "gpu": gpu,
        "batch": batch,
        "input_len": input_len,
        "output_len": output_len,
        "precision": "bf16",
        "device": device,
        "threads_per_rank": threads,
        "clock": clock,
        "phases": {
            "prefill": row(pred["prefill_s"], meas["prefill_s"], pre_a),
            "decode_step": row(
                dec_p / len(pred["decode_step_s"]),
                dec_m / len(meas["decode_step_s"]),
                dec_a and sum(dec_a) / len(dec_a),
            ),
            "decode_first_step": row(pred["decode_step_s"][0], meas["decode_step_s"][0], dec_a and dec_a[0]),
            "decode_last_step": row(pred["decode_step_s"][-1], meas["decode_step_s"][-1], dec_a and dec_a[-1]),
        },
        "total": row(pred["prefill_s"] + dec_p, meas["prefill_s"] + dec_m, dec_a and pre_a + sum(dec_a)),
        "memory": memory_block(
            mem_pred,
            mem_meas,
            mem_parts,
            "peak resident memory (VmHWM) of one prefill and its decode steps after a warm-up repeat (its own run, "
            "every large tensor in its own mapping) minus the resident memory before the model was built; the "
            "prediction is fathom's serving memory model (fathom.inference.memory) for this batch: bf16 weights, "
            "the KV cache of batch x (input + output) tokens and the prefill's activation peak, plus "
            "runtime_reserved where the profile measured a minimal serving process (null: not measured, not counted)"
            if cpu
            else _CUDA_MEMORY_METHOD.format(what="one prefill and its decode steps after a warm-up repeat")
            + "; the prediction is fathom's serving memory model: bf16 weights, the KV cache of batch x (input + "
            "output) tokens and the prefill's activation peak",
            mem_run,
        ),
        "speed_probe": speed_probe(ref, meas.get("probe_s")),
        "speed": adjuster.section(["prefill", "decode"]),
    }
