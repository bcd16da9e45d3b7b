"""What the profile ran on: CPU model, cores, ISA, memory, torch version, date; and a theoretical peak.

The theoretical CPU peak is cores x clock x FLOP/cycle of the widest vector (or matrix) unit the ISA flags show:
two 512-bit FMA ports (64 fp32 FLOP/cycle) with AVX-512, two 256-bit ports (32) with AVX2+FMA, and Intel AMX's
1,024 bf16 FLOP/cycle per core (Intel Architecture Instruction Set Extensions reference, AMX chapter). It only
anchors the efficiency fractions; when a measurement beats it (turbo clocks), the fit raises it (``fit``).
"""

from __future__ import annotations

import datetime as _dt
import os
import platform
import re
from dataclasses import asdict, dataclass
from pathlib import Path


@dataclass(frozen=True)
class Machine:
    cpu_model: str
    cores: int
    threads: int  # threads one rank (one fathom "device") uses
    clock_ghz: float
    isa: list[str]
    memory_gib: float
    torch_version: str
    accelerator: str  # "cpu" or the CUDA device name
    date: str

    def as_dict(self) -> dict:
        return asdict(self)


def _cpuinfo() -> str:
    try:
        return Path("/proc/cpuinfo").read_text()
    except OSError:
        return ""


def _field(text: str, name: str) -> str | None:
    match = re.search(rf"^{name}\s*:\s*(.+)$", text, re.MULTILINE)
    return match.group(1).strip() if match else None


def _memory_gib() -> float:
    try:
        text = Path("/proc/meminfo").read_text()
        return int(re.search(r"MemTotal:\s+(\d+)", text).group(1)) / 1024**2  # type: ignore[union-attr]
    except (OSError, AttributeError):
        return 16.0


def _clock_ghz(info: str) -> float:
    """Nominal clock: the model name's "@ x.yGHz", else BogoMIPS / 2 (x86 reports twice the TSC clock)."""
    model = _field(info, "model name") or ""
    match = re.search(r"@\s*([\d.]+)\s*GHz", model)
    if match:
        return float(match.group(1))
    bogo = _field(info, "bogomips")
    if bogo:
        return float(bogo) / 2000.0
    mhz = _field(info, "cpu MHz")
    return float(mhz) / 1000.0 if mhz else 2.0


def cpu_model() -> str:
    """This machine's CPU model as a profile records it (``profile.machine.cpu_model``); no PyTorch needed."""
    return _field(_cpuinfo(), "model name") or platform.processor() or "unknown"


def describe(threads: int | None = None) -> Machine:
    """The machine, with ``threads`` per rank (default: every core)."""
    import torch

    info = _cpuinfo()
    flags = set((_field(info, "flags") or "").split())
    isa = sorted(flags & {"avx2", "fma", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile", "avx512_fp16"})
    cores = os.cpu_count() or 1
    accel = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"
    return Machine(
        cpu_model=cpu_model(),
        cores=cores,
        threads=min(threads or cores, cores),
        clock_ghz=_clock_ghz(info),
        isa=isa,
        memory_gib=round(_memory_gib(), 2),
        torch_version=str(torch.__version__),
        accelerator=accel,
        date=_dt.datetime.now(_dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
    )


def theoretical_peak_tflops(machine: Machine) -> dict[str, float]:
    """Dense peak of ``machine.threads`` cores per precision, from the ISA flags (see module docstring)."""
    isa = set(machine.isa)
    fp32_per_cycle = 64.0 if "avx512f" in isa else (32.0 if {"avx2", "fma"} <= isa else 8.0)
    bf16_per_cycle = 1024.0 if "amx_bf16" in isa else (2 * fp32_per_cycle if "avx512_bf16" in isa else fp32_per_cycle)
    scale = machine.threads * machine.clock_ghz * 1e9 / 1e12
    return {"fp32": fp32_per_cycle * scale, "bf16": bf16_per_cycle * scale}
