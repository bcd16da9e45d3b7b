"""Reference kernels timed beside the real work: how fast the machine ran at that moment.

A shared host's core changes speed in spells of about a second (``fathom.profiling.timing``), so a profile and
a check taken in different spells disagree although the model is right. Both therefore time small fixed
reference kernels interleaved with their cases and steps, one per kind of work whose speed moves on its own
(measured on the 2-core development VM: the GEMMs and the memory stream move together, the per-op host cost
does not):

- ``gemm_<dtype>``: a fixed GEMM in that dtype (GFLOP/s): GEMM and attention cases of that dtype;
- ``memory``: fp32 copies within the L2 cache (GB/s), the core's load/store rate: memory-bound ops, the AdamW
  step and the skinny GEMMs that stream their weights (a copy through the shared L3 read what the case before
  left there, not the core's speed);
- ``host``: ``_HOST_OPS`` in-place adds on one element (million ops/s): the per-op overhead cases.

The profile records each case's raw seconds and the reference speed around it, takes the median reading of
each reference as the machine's speed (``profile.reference``) and fits on the times that speed would have
given: ``seconds x speed_then / reference_speed`` (``at_reference_speed``). A check reads the references
between its timed steps (before each training phase, every few decode steps) and normalises each timed sample
to the profile's speed: the sample x its effective ratio, where each kernel class's part of the predicted time
(``class_times``: the prediction again on the profile's device with that class a little faster,
``speed_adjusted_device``) runs at the ratio of its reference's readings just before and after the sample to the
profile's speed (``local_ratios``, ``effective_ratio``). The normalised samples go through the same median as
the raw ones.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable
from typing import TypeVar

from fathom.profiling.timing import Timer

T = TypeVar("T")

_GEMM = {"fp32": (256, 512, 512), "bf16": (256, 1024, 1024)}  # (m, n, k): about 1.5 ms on one core here
# 16 copies of 512 KiB, in the L2 cache once warm: the core's load/store rate, whatever the work before left in
# the shared L3 (a copy through L3 read 9-21 GB/s here depending on the preceding case, not on the core's speed).
_COPY_NUMEL, _COPIES = 2**17, 16
_HOST_OPS = 200
_TIME_KEYS = ("seconds", "seconds_per_op", "fwd_s", "bwd_s")


def reference_names(dtypes: list[str]) -> list[str]:
    return [f"gemm_{d}" for d in dtypes if d in _GEMM] + ["memory", "host"]


def describe_reference(name: str) -> dict:
    """The kernel behind ``name`` and the unit of its speed."""
    if name.startswith("gemm_"):
        m, n, k = _GEMM[name[5:]]
        return {"kernel": f"{name[5:]} {m}x{k} @ {k}x{n}", "unit": "GFLOP/s"}
    if name == "memory":
        return {"kernel": f"{_COPIES} fp32 copies of {_COPY_NUMEL} elements (L2-resident)", "unit": "GB/s"}
    return {"kernel": f"{_HOST_OPS} in-place adds on one element", "unit": "Mop/s"}


class SpeedReference:
    """Times the reference kernels on ``device`` with ``timer`` (median of three runs, a few ms each)."""

    def __init__(self, device: str, timer: Timer, names: list[str]):
        import torch

        self.timer = timer
        self.kernels: dict[str, tuple[Callable[[], object], float]] = {}
        for name in names:
            if name.startswith("gemm_"):
                m, n, k = _GEMM[name[5:]]
                dt = {"fp32": torch.float32, "bf16": torch.bfloat16}[name[5:]]
                a, b = torch.randn(m, k, device=device, dtype=dt), torch.randn(k, n, device=device, dtype=dt)
                self.kernels[name] = (lambda a=a, b=b: a @ b, 2.0 * m * n * k / 1e9)
            elif name == "memory":
                x, y = torch.randn(_COPY_NUMEL, device=device), torch.empty(_COPY_NUMEL, device=device)

                def copies(x=x, y=y):
                    for _ in range(_COPIES):
                        y.copy_(x)

                self.kernels[name] = (copies, 8.0 * _COPY_NUMEL * _COPIES / 1e9)
            elif name == "host":
                z = torch.zeros(1, device=device)

                def adds(z=z):
                    for _ in range(_HOST_OPS):
                        z.add_(1.0)

                self.kernels[name] = (adds, _HOST_OPS / 1e6)

    def speed(self, name: str) -> float:
        """Work units per second of the reference now (GFLOP/s, GB/s or Mop/s)."""
        fn, work = self.kernels[name]  # one warm-up run: its operands in cache whatever the case before did
        return work / self.timer.median(fn, 3, 1, 1.0)

    def around(self, name: str | None, measure: Callable[[], T]) -> tuple[T, dict]:
        """``measure()`` with the reference read before and after: (its value, {"ref", "ref_speed"})."""
        if name is None or name not in self.kernels:
            return measure(), {}
        before = self.speed(name)
        value = measure()
        return value, {"ref": name, "ref_speed": statistics.harmonic_mean([before, self.speed(name)])}

    def read_all(self, into: dict[str, list[float]]) -> int:
        """Read every reference into ``into`` (name -> readings); returns the index of this reading."""
        for name in self.kernels:
            into.setdefault(name, []).append(self.speed(name))
        return len(into[next(iter(self.kernels))]) - 1 if self.kernels else 0


def at_reference(seconds: float, speed_then: float, reference_speed: float) -> float:
    """Seconds a case would have taken with its reference at ``reference_speed`` (time scales as 1/speed)."""
    return seconds * speed_then / reference_speed


def profile_reference_speeds(passes: dict[str, list[list[dict]]]) -> dict[str, float]:
    """Each reference's median reading over every case of every pass: the speed the profile is fitted at."""
    readings: dict[str, list[float]] = {}
    for family in passes.values():
        for rows in family:
            for r in rows:
                if "ref" in r:
                    readings.setdefault(r["ref"], []).append(r["ref_speed"])
    return {k: statistics.median(v) for k, v in sorted(readings.items())}


def merge_passes(passes: list[list[dict]], reference: dict[str, float] | None = None) -> list[dict]:
    """Passes over the same cases merged case by case. Time keys keep the median raw seconds over the passes;
    a case read against a reference also gets its median ``ref_speed`` and under ``normalised`` the median of
    its seconds at the profile's reference speed (``at_reference``), which the fit uses."""
    merged = []
    for rows in zip(*passes, strict=True):
        keys = [k for k in _TIME_KEYS if k in rows[0]]
        row = {k: v for k, v in rows[0].items() if k != "ref_speed"}
        row.update({k: statistics.median(r[k] for r in rows) for k in keys})
        ref = rows[0].get("ref")
        if ref and reference and ref in reference:
            row["ref_speed"] = statistics.median(r["ref_speed"] for r in rows)
            row["normalised"] = {
                k: statistics.median(at_reference(r[k], r["ref_speed"], reference[ref]) for r in rows) for k in keys
            }
        merged.append(row)
    return merged


def at_reference_speed(measurements: dict[str, list[dict]]) -> dict[str, list[dict]]:
    """The measurements with each normalised case's times replaced by their ``normalised`` values (for the fit)."""
    return {
        family: [{**r, **r["normalised"]} if "normalised" in r else r for r in rows]
        for family, rows in measurements.items()
    }


def speed_ratios(readings: dict[str, list[float]], reference: dict) -> dict[str, dict]:
    """Per reference: the profile's speed, the check's speed and their ratio (> 1: faster now). The check's speed
    is the harmonic mean of its readings, a time average (work takes time in proportion to 1 / speed): the
    spells make readings bimodal (about 2x apart here), where a median of a few flips between the modes."""
    out = {}
    for name, values in readings.items():
        ref = reference.get(name)
        if not values or not ref:
            continue
        now = statistics.harmonic_mean(values)
        out[name] = {
            **describe_reference(name),
            "profile": ref["speed"],
            "check": now,
            "ratio": now / ref["speed"],
            "readings": list(values),
        }
    return out


def speed_adjusted_device(device: dict, ratios: dict[str, float], attention_dtype: str) -> dict:
    """The device fields of a profile with each kernel class as fast as its reference ran during a check:
    GEMM peaks x the dtype's GEMM ratio, the memory bandwidth x the memory ratio (and a CPU GEMM's per-row packing
    time / it, as the profile normalised those cases by the memory reference), the per-op host and launch
    costs / the host ratio. Fused attention is priced on the bf16 peak (``fathom.costmodel.kernels``), so its
    share moves by ``attention_dtype``'s GEMM ratio over the bf16 one."""
    dev = {**device, "peak_tflops": dict(device["peak_tflops"]), "efficiency": dict(device.get("efficiency", {}))}
    eff = dev["efficiency"]
    for name, r in ratios.items():
        if name.startswith("gemm_") and name[5:] in dev["peak_tflops"]:
            dev["peak_tflops"][name[5:]] *= r
    if "memory" in ratios:
        dev["mem_bw_GBps"] *= ratios["memory"]
        if eff.get("gemm_row_ns"):  # the packing pass's per-row time moves with its bytes (a CPU's skinny GEMMs)
            eff["gemm_row_ns"] = {k: v / ratios["memory"] for k, v in eff["gemm_row_ns"].items()}
    if "host" in ratios:
        for key in ("host_op_us", "kernel_launch_us"):
            if key in eff:
                eff[key] /= ratios["host"]
        if eff.get("gemm_call_us"):
            eff["gemm_call_us"] = {k: v / ratios["host"] for k, v in eff["gemm_call_us"].items()}
    attn = ratios.get(f"gemm_{attention_dtype}", 1.0) / ratios.get("gemm_bf16", 1.0)
    if attn != 1.0 and eff.get("attention"):
        eff["attention"] = {k: v * attn for k, v in eff["attention"].items()}
    return dev


_STEP = 1.05  # the speed-up each kernel class is given to find its part of a prediction


def class_times(predict_at: Callable[[dict[str, float]], dict], names: list[str]) -> tuple[dict, dict]:
    """(the prediction, each reference class's part of it): with class ``c`` ``_STEP`` x faster the prediction
    drops by T_c (1 - 1/_STEP), so T_c = drop / (1 - 1/_STEP); what no reference moves (the collectives) is the
    part under "". ``predict_at(ratios)`` maps sample names to predicted seconds (floats or lists of floats).
    Linear in 1/speed, so exact where the cost model adds the classes' times and a first-order estimate across
    its maxima (a skinny GEMM's compute against its weight stream)."""
    import numpy as np

    base = {k: np.asarray(v, dtype=float) for k, v in predict_at({}).items()}
    parts: dict[str, dict] = {}
    for name in names:
        faster = predict_at({name: _STEP})
        parts[name] = {k: (base[k] - np.asarray(faster[k], dtype=float)) / (1.0 - 1.0 / _STEP) for k in base}
    parts[""] = {k: base[k] - sum(parts[n][k] for n in names) for k in base}
    return base, parts


def effective_ratio(parts: dict[str, float], ratios: dict[str, float]) -> float:
    """How much faster than at the profile's speeds work with these class parts ran, given each class's ratio."""
    total = sum(parts.values())
    return total / sum(t / ratios.get(name, 1.0) for name, t in parts.items())


def local_ratios(readings: dict[str, list[float]], span: list[int], reference: dict) -> dict[str, float]:
    """Each reference's ratio over one sample: the harmonic mean of the readings just before and after it."""
    return {
        name: statistics.harmonic_mean([values[span[0]], values[span[1]]]) / reference[name]["speed"]
        for name, values in readings.items()
        if name in reference
    }
