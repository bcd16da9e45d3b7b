"""Phase-aware accelerator power over a training step, and what a power cap costs in time.

The step-time breakdown says how long a GPU spends in each component; each component belongs to one phase
(compute-bound, memory-bound, communication, idle) and each phase draws a measured fraction of the TDP
(``data/power.yaml``, with sources). A power cap clips the phases that would draw more than the cap by lowering
their clock: the dynamic power above the idle floor scales as ``(f / f_max) ** dvfs_exponent`` and only
compute-bound phases take longer (their time scales as ``1 / (f / f_max)``). Works on arrays of plans.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources

import numpy as np
import yaml

from fathom.errors import FathomInputError
from fathom.specs.hardware import DeviceSpec

PHASES: tuple[str, ...] = ("compute", "memory", "communication", "idle")
_EXACT = {
    "gemm": "compute",
    "attention": "compute",
    "recompute": "compute",
    "memory_bound": "memory",
    "optimizer": "memory",
    "pipeline_bubble": "idle",
    "host_overhead": "idle",
}


def phase_of(component: str) -> str:
    """The power phase of a step-time component; components added later are classified by their name."""
    if component in _EXACT:
        return _EXACT[component]
    name = component.lower()
    if "comm" in name:
        return "communication"
    if any(k in name for k in ("bubble", "idle", "host", "wait", "stall")):
        return "idle"
    if any(k in name for k in ("memory", "optimizer", "offload", "copy")):
        return "memory"
    return "compute"


@functools.cache
def _power_data() -> dict:
    text = (resources.files("fathom") / "energy" / "data" / "power.yaml").read_text(encoding="utf-8")
    return yaml.safe_load(text)


@dataclass(frozen=True)
class PowerProfile:
    """Board power per phase (W) of one device, its TDP, and the DVFS exponent of its dynamic power."""

    tdp_w: float
    watts: dict[str, float]
    dvfs_exponent: float
    host_share_of_server: float

    @property
    def idle_w(self) -> float:
        return self.watts["idle"]

    def host_w(self, gpu_w):
        """Host (CPU, DRAM, NIC, fans) power per GPU when the GPUs draw ``gpu_w`` (a fixed share of a server)."""
        share = self.host_share_of_server
        return np.asarray(gpu_w, dtype=float) * share / (1.0 - share)


def power_profile(device: DeviceSpec) -> PowerProfile:
    data = _power_data()
    fractions = {**data["default"], **(data.get("devices") or {}).get(device.name, {})}
    return PowerProfile(
        tdp_w=float(device.tdp_w),
        watts={p: float(fractions[p]) * float(device.tdp_w) for p in PHASES},
        dvfs_exponent=float(data["dvfs_exponent"]),
        host_share_of_server=float(data["host_share_of_server"]),
    )


@dataclass(frozen=True)
class StepPower:
    """Power over one step (per plan): average board power, the capped step time and per-component time scale."""

    avg_power_w: np.ndarray
    step_time_s: np.ndarray
    slowdown: np.ndarray  # capped step time / uncapped step time (1 = the cap costs nothing)
    component_scale: dict[str, np.ndarray]  # multiply each breakdown component's time by this
    phase_time_s: dict[str, np.ndarray]
    phase_power_w: dict[str, np.ndarray]


def clock_ratio(phase_w, cap_w, idle_w: float, exponent: float) -> np.ndarray:
    """Clock (f / f_max) at which a phase drawing ``phase_w`` uncapped fits under ``cap_w``: 1 when it already fits.

    ``idle + (phase - idle) * r ** exponent = cap``  ->  ``r = ((cap - idle) / (phase - idle)) ** (1 / exponent)``.
    """
    phase_w = np.asarray(phase_w, dtype=float)
    dynamic = np.maximum(phase_w - idle_w, 1e-12)
    r = ((np.asarray(cap_w, dtype=float) - idle_w) / dynamic) ** (1.0 / exponent)
    return np.clip(r, 0.0, 1.0)


def check_power_cap(profile: PowerProfile, cap_w: float | None) -> None:
    if cap_w is None:
        return
    if not np.isfinite(cap_w) or cap_w <= profile.idle_w or cap_w > profile.tdp_w:
        raise FathomInputError(
            f"--power-cap: {cap_w:g} W is outside what the board's power limit can be set to (above its idle "
            f"{profile.idle_w:.0f} W, at most its {profile.tdp_w:.0f} W TDP); choose a cap between "
            f"{profile.idle_w:.0f} and {profile.tdp_w:.0f} W"
        )


def step_power(
    breakdown: Mapping[str, np.ndarray | float], profile: PowerProfile, power_cap_w: float | None = None
) -> StepPower:
    """Average board power over a step and the step's time under an optional power cap (arrays of plans)."""
    check_power_cap(profile, power_cap_w)
    cap = np.inf if power_cap_w is None else float(power_cap_w)
    times = {k: np.asarray(v, dtype=float) for k, v in breakdown.items()}
    ratio, drawn = {}, {}
    for phase in PHASES:
        uncapped = profile.watts[phase]
        if uncapped <= cap:
            ratio[phase], drawn[phase] = np.asarray(1.0), np.asarray(uncapped)
        else:
            ratio[phase] = clock_ratio(uncapped, cap, profile.idle_w, profile.dvfs_exponent)
            drawn[phase] = np.asarray(cap)
    # Only compute-bound phases stretch with a lower clock; the others keep their time at a lower power.
    scale = {k: 1.0 / ratio["compute"] if phase_of(k) == "compute" else np.asarray(1.0) for k in times}
    scaled = {k: t * scale[k] for k, t in times.items()}
    phase_time = {p: sum((t for k, t in scaled.items() if phase_of(k) == p), np.asarray(0.0)) for p in PHASES}
    total = sum(phase_time.values())
    uncapped_total = sum(times.values())
    energy = sum(phase_time[p] * drawn[p] for p in PHASES)
    safe = np.where(total > 0, total, 1.0)
    return StepPower(
        avg_power_w=np.where(total > 0, energy / safe, profile.idle_w),
        step_time_s=total,
        slowdown=np.where(uncapped_total > 0, total / np.where(uncapped_total > 0, uncapped_total, 1.0), 1.0),
        component_scale={k: np.broadcast_to(v, np.shape(total)).copy() for k, v in scale.items()},
        phase_time_s=phase_time,
        phase_power_w=drawn,
    )
