"""``fathom profile``: run the microbenchmarks with a progress bar, fit, and write a device profile YAML.

The YAML is a full device (``DeviceSpec`` fields, fitted), a ``system:`` section (the fitted inter-process
fabric, ranks per node) and a ``profile:`` section recording the machine, the grid, the fit quality and the raw
measurements (so a profile can be refitted or audited). ``fathom.catalog.hardware`` loads it as any ``--gpu``.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import yaml

from fathom.catalog.hardware import get_device, list_gpus
from fathom.errors import FathomInputError, unknown_name_error
from fathom.profiling.bench_collectives import bench_collectives
from fathom.profiling.bench_decode import bench_decode_step
from fathom.profiling.bench_footprint import bench_runtime_memory
from fathom.profiling.bench_kernels import (
    bench_attention,
    bench_decode_attention,
    bench_gemm,
    bench_gemm_fp8,
    bench_gemm_stream,
    bench_gemm_sustained,
    fp8_gemm_cases,
    fp8_gemms_supported,
    gemm_cases,
    stream_cases,
)
from fathom.profiling.bench_memory import (
    bench_copy,
    bench_dropout,
    bench_elementwise,
    bench_first_touch,
    bench_loss,
    bench_optimizer,
    bench_overhead,
)
from fathom.profiling.fit import fit_profile
from fathom.profiling.grids import get_grid
from fathom.profiling.machine import Machine, describe, theoretical_peak_tflops
from fathom.profiling.speed import (
    SpeedReference,
    at_reference_speed,
    describe_reference,
    merge_passes,
    profile_reference_speeds,
    reference_names,
)
from fathom.profiling.timing import Timer, check_clock
from fathom.reports.output import check_writable, write_atomic

_CPU_TDP_W_PER_CORE = 3.75  # ASSUMPTION: the catalog cpu device's 720 W over its 192 cores (AMD EPYC 9654)


def require_torch(command: str = "profile"):
    """PyTorch, or a one-line error naming the ``command`` that needs it and the extra that installs it."""
    try:
        import torch
    except ImportError:
        raise FathomInputError(
            f"{command}: PyTorch is not installed; install the extra: pip install 'fathom[profile]'"
        ) from None
    return torch


def check_out_path(out: str | Path) -> Path:
    """``--out`` checked before a minute of benchmarks: a .yaml/.yml file name (``--gpu`` tells a file from a
    catalog name by that suffix) in an existing directory this process can create files in (tried with a
    temporary file, as the profile is written: a temporary file beside it, then renamed)."""
    text = str(out)
    if not text.strip():
        raise FathomInputError("--out: empty file name; give one such as my-node.yaml")
    path = Path(text)
    if text.endswith(("/", os.sep)) or path.is_dir():
        raise FathomInputError(f"--out: {text} is a directory; give a file name such as {path / 'my-node.yaml'}")
    if path.suffix.lower() not in (".yaml", ".yml"):
        raise FathomInputError(f"--out: {text} must end in .yaml or .yml (--gpu takes the profile by that suffix)")
    if not path.parent.is_dir():
        raise FathomInputError(f"--out: directory {path.parent} does not exist")
    return check_writable(path, "--out")


def check_base(base: str | None) -> None:
    """``--base`` checked before the benchmarks: a catalog gpu (close matches offered) or a device YAML."""
    if base is None:
        return
    if not base.lower().endswith((".yaml", ".yml")) and "/" not in base and base.strip().lower() not in list_gpus():
        raise unknown_name_error("--base", base, list_gpus())
    try:
        get_device(base)
    except FathomInputError as exc:
        raise FathomInputError(f"--base: {exc}") from None


def _nominal_device(machine: Machine, name: str, base: str | None) -> dict:
    """Peaks and sizes before fitting: a catalog device's datasheet, or the CPU's theoretical figures."""
    if base is not None and machine.accelerator == "cpu":
        raise FathomInputError(
            f"--base: {base} is a GPU's datasheet, and this machine has no CUDA GPU; a CPU profile takes its peaks "
            "from the CPU itself (drop --base)"
        )
    if base is not None:
        data = get_device(base).model_dump()
        data["name"] = name
        # what was measured is eager PyTorch on this GPU: its commands price eager layers (DeviceSpec.eager_pytorch)
        data["eager_pytorch"] = True
        return data
    if machine.accelerator != "cpu":
        raise FathomInputError(
            "--base: on a GPU give --base <catalog gpu> for the datasheet peaks (fathom catalog gpus)"
        )
    return {
        "name": name,
        "vendor": "cpu",
        "peak_tflops": theoretical_peak_tflops(machine),
        "memory_gib": round(machine.memory_gib * machine.threads / machine.cores, 2),
        "mem_bw_GBps": 10.0,  # replaced by the measured streamed rate
        "tdp_w": _CPU_TDP_W_PER_CORE * machine.threads,
        "num_compute_units": machine.threads,
        "host_link_GBps": 10.0,
        "ops_run_inline": True,
        "default_system": "cpu-node",
        "efficiency": {},
        "source": "",
    }


def _plan(grid, dtypes: list[str], ranks: list[int], cpu: bool, fp8: bool = False) -> dict[str, int]:
    """Progress steps per benchmark family."""
    n = grid.passes
    adamw = 2 * len(grid.optimizer_params)  # fp32 and bf16 steps
    memory = len(grid.copy_numel) + len(grid.elementwise_numel) * len(dtypes) + adamw + 1
    fp8_cases = fp8 * len(fp8_gemm_cases(grid))
    return {
        "GEMM": (n * (len(gemm_cases(grid)) + cpu * len(stream_cases(grid))) + (not cpu)) * len(dtypes) + n * fp8_cases,
        "attention": n * (len(grid.attention_seq) + cpu) * len(dtypes),
        # a CPU adds the loss, dropout and first-touch cases each pass, and the runtime footprint once
        "memory": n * (memory + 3 * cpu) + cpu,
        "decode step": 2 * n * ("bf16" in dtypes),  # at the start and the end of each pass
        "collectives": len(ranks),
    }


def mean_rows(passes: list[list[dict]], reference: dict[str, float] | None = None) -> list[dict]:
    """Passes over the same cases merged case by case: the median of each case's seconds over the passes, so one
    pass caught in a slow (or fast) spell of the host does not move the profile (``fathom.profiling.timing``);
    with ``reference`` speeds, also each case's median time at those speeds (``fathom.profiling.speed``)."""
    return merge_passes(passes, reference)


def run_profile(
    out: str | Path,
    *,
    grid_name: str = "quick",
    threads: int | None = None,
    base: str | None = None,
    name: str | None = None,
    collectives: bool = True,
    show_progress: bool = True,
    clock: str = "wall",
) -> dict:
    """Measure, fit, write ``out``; returns the YAML mapping written. Every argument is checked first, so a bad one
    costs no benchmark time and a failure leaves no file behind."""
    out = check_out_path(out)
    check_base(base)
    cores = os.cpu_count() or 1
    if threads is not None and threads > cores:
        raise FathomInputError(f"--threads {threads}: this machine has {cores} cores; give at most {cores}")
    grid = get_grid(grid_name)
    torch = require_torch()
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    machine = describe(threads)
    device = "cuda" if machine.accelerator != "cpu" else "cpu"
    grid = get_grid(grid_name, device)
    check_clock(clock, machine.threads, device)
    name = name or out.stem
    nominal = _nominal_device(machine, name, base)
    torch.set_num_threads(machine.threads)
    timer = Timer.make(device, clock)
    cpu = device == "cpu"
    bf16 = (not cpu) or torch.cpu._is_avx512_bf16_supported() or "amx_bf16" in machine.isa
    dtypes = ["fp32", "bf16"] if bf16 else ["fp32"]
    # Reference kernels read around every case: its speed at that moment (fathom.profiling.speed).
    timer = dataclasses.replace(timer, speed=SpeedReference(device, timer, reference_names(dtypes)))
    train_dtype = "fp32" if cpu else "bf16"
    ranks_per_node = max(machine.cores // machine.threads, 1) if cpu else torch.cuda.device_count()
    # CPU ranks share the cores (two at least, even on one core); GPU ranks need a GPU each (NCCL): none on one GPU.
    most = min(grid.max_ranks, max(ranks_per_node, 2) if cpu else ranks_per_node)
    ranks = list(range(2, most + 1)) if collectives else []
    # FP8 tensor cores with a datasheet FP8 peak to fit against: their GEMM rate too (efficiency.gemm["fp8"])
    fp8 = fp8_gemms_supported(device) and "fp8" in nominal["peak_tflops"]
    steps = _plan(grid, dtypes, ranks, cpu, fp8)
    meas: dict[str, list] = {}
    with Progress(
        TextColumn("{task.description:<12}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TimeElapsedColumn(),
        disable=not show_progress,
        transient=False,
    ) as bar:
        tasks = {k: bar.add_task(k, total=v) for k, v in steps.items()}
        tick = lambda k: lambda: bar.advance(tasks[k])  # noqa: E731
        probe = "bf16" in dtypes  # the decode probe in serving's dtype (fathom check serve)
        for _ in range(grid.passes):  # passes seconds apart: the average speed, not one spell's (profiling.timing)
            # The decode probe's step is a fraction of a second: timed at both ends of each pass, its six readings
            # span the profile as the other cases do, so one spell of the host moves one of them, not the scale.
            early = bench_decode_step(grid, "bf16", device, timer, tick("decode step")) if probe else []
            one = {
                "overhead": bench_overhead(grid, device, timer, tick("memory"), (*dtypes, *["fp8"] * fp8)),
                "memory": bench_copy(grid, device, timer, tick("memory"))
                + bench_elementwise(grid, device, timer, tick("memory"), dtypes)
                + bench_optimizer(grid, device, timer, tick("memory")),
                "gemm": bench_gemm(grid, dtypes, device, timer, tick("GEMM"))
                + (bench_gemm_fp8(grid, device, timer, tick("GEMM")) if fp8 else []),
            }
            if cpu:
                one["gemm_stream"] = bench_gemm_stream(grid, dtypes, device, timer, tick("GEMM"))
                one["loss"] = bench_loss(grid, device, timer, tick("memory"))
                one["dropout"] = bench_dropout(grid, device, timer, tick("memory"))
                one["first_touch"] = bench_first_touch(grid, device, timer, tick("memory"))
            one["attention"] = bench_attention(grid, dtypes, device, timer, tick("attention"))
            if cpu:
                one["attention_decode"] = bench_decode_attention(grid, dtypes, device, timer, tick("attention"))
            if probe:
                one["decode_step"] = early + bench_decode_step(grid, "bf16", device, timer, tick("decode step"))
            for k, rows in one.items():
                meas.setdefault(k, []).append(rows)
        reference = profile_reference_speeds(meas)
        # A shared CPU's spells move the references and the cases alike, so the fit takes each case at the
        # reference speed. A GPU's reference kernels are host-bound (a 0.5 GFLOP GEMM issues slower than it runs):
        # scaling a device-bound case by them divides a GPU kernel by the host's speed (an H100 profile's host
        # hiccup turned a 177 us bf16 GEMM into 34 us), so there the fit takes the raw medians; the references are
        # still recorded for the checks' speed ratios.
        meas = {k: mean_rows(passes, reference if cpu else None) for k, passes in meas.items()}
        if cpu:
            meas["footprint"] = bench_runtime_memory(machine.threads, clock, tick("memory"))
        else:  # a GPU's clocks under sustained load (a CPU's GEMMs are measured on all its cores already)
            meas["gemm_sustained"] = bench_gemm_sustained(grid, dtypes, device, timer, tick("GEMM"))
        if ranks:
            per_rank = max(machine.threads * ranks_per_node // max(ranks), 1) if cpu else 1
            meas["collective"] = bench_collectives(
                list(grid.collective_bytes), ranks, grid.repeats, per_rank, clock, tick("collectives")
            )
    result = fit_profile(nominal, at_reference_speed(meas), train_dtype=train_dtype, cpu=cpu)
    speeds = {k: {**describe_reference(k), "speed": v} for k, v in reference.items()}
    return write_profile(out, result, machine, grid_name, clock, meas, ranks_per_node, base, speeds)


def _round(x):
    if isinstance(x, float):
        return float(f"{x:.5g}")
    if isinstance(x, dict):
        return {k: _round(v) for k, v in x.items()}
    if isinstance(x, list):
        return [_round(v) for v in x]
    return x


def system_section(machine: Machine, ranks_per_node: int, fitted: dict) -> dict:
    """The profile's ``system:`` fields. A CPU's ranks share its cores: its ranks per node and host memory are
    this machine's. A GPU node with no fabric measured (one GPU: no collective to time) says nothing of the
    system, so the device's usual one (DGX-H100 for an H100) keeps its GPUs per node and links: planning eight
    of this GPU then prices NVLink, not eight one-GPU nodes on the network."""
    if machine.accelerator == "cpu":
        return {"gpus_per_node": ranks_per_node, **fitted, "host_memory_gib": round(machine.memory_gib, 2)}
    return {"gpus_per_node": ranks_per_node, **fitted} if fitted else {}


def write_profile(
    out: Path,
    result,
    machine: Machine,
    grid_name: str,
    clock: str,
    meas: dict,
    ranks_per_node: int,
    base: str | None,
    reference: dict | None = None,
) -> dict:
    dev = dict(result.device)
    what = f"{machine.cpu_model} ({machine.threads} of {machine.cores} cores)"
    if machine.accelerator != "cpu":
        what = f"{machine.accelerator} on {machine.cpu_model}"
    dev["source"] = (
        f"Measured by fathom profile ({grid_name} grid) on {what}, torch {machine.torch_version}, {machine.date}. "
        + (
            f"Peaks and sizes: catalog {base}."
            if base
            else "Peaks: theoretical from the ISA flags x cores x clock "
            "(raised where measured faster); memory_gib: this rank's share of RAM; tdp_w: ASSUMPTION 3.75 W/core."
        )
    )
    if not result.system:  # no collective timed (--no-collectives, or one GPU): say whose links DP is priced on
        dev["source"] += (
            f" Collectives not measured: data-parallel traffic is priced on {dev.get('default_system')}'s links "
            "(see `fathom systems`)."
        )
    dev["efficiency"] = {
        **dev["efficiency"],
        "source": "least-squares fit of fathom's kernel model to this "
        "profile's microbenchmarks (fathom.profiling.fit); quality under profile.fit_quality",
    }
    system = system_section(machine, ranks_per_node, result.system)
    doc = _round(dev)
    doc["system"] = _round(system)
    doc["profile"] = {
        "machine": machine.as_dict(),
        "grid": grid_name,
        "clock": clock,
        "fit_quality": _round(result.quality),
        # The speed of each reference kernel the fit normalised to (fathom.profiling.speed); checks compare with it.
        "reference": _round(reference or {}),
        "measurements": _round(meas),
    }
    header = "# Device profile written by `fathom profile`; use it as `--gpu " + str(out) + "`.\n"
    write_atomic(out, header + yaml.safe_dump(doc, sort_keys=False, width=110), option="--out")
    return doc
