"""Carbon of a run: operational (energy x grid intensity of a region) and embodied (LLMCarbon's method).

Grid intensities are location-based annual averages (``data/grid_intensity.csv``, each row with its source);
embodied carbon per device is die area x carbon-per-area of its process node plus memory x the DRAM rate,
charged to a run as its share of a 5-year lifetime (Faiz et al., LLMCarbon, ICLR 2024).
"""

from __future__ import annotations

import csv
import functools
import io
from importlib import resources

import numpy as np
import yaml

from fathom.errors import FathomInputError, unknown_name_error
from fathom.specs.hardware import DeviceSpec

SECONDS_PER_YEAR = 365.0 * 86400.0


def _data(name: str) -> str:
    return (resources.files("fathom") / "energy" / "data" / name).read_text(encoding="utf-8")


@functools.cache
def grid_table() -> dict[str, dict[str, str]]:
    """Rows of the grid-intensity table keyed by region name."""
    return {row["region"]: row for row in csv.DictReader(io.StringIO(_data("grid_intensity.csv")))}


def grid_intensity(region: str | float) -> float:
    """gCO2e per kWh of a named region, or a number given directly (``--region 350``)."""
    try:
        value = float(region)
    except (TypeError, ValueError):
        table = grid_table()
        key = str(region).strip().lower()
        if key not in table:
            raise unknown_name_error("--region", str(region), table) from None
        return float(table[key]["gco2e_per_kwh"])
    if not np.isfinite(value) or value < 0:
        raise FathomInputError(f"--region: {region!r} is neither a region name nor a gCO2e/kWh figure >= 0")
    return value


def operational_co2e_t(energy_mwh, intensity_g_per_kwh):
    """Tonnes of CO2e: MWh x g/kWh = kg, / 1000 = t."""
    return np.asarray(energy_mwh, dtype=float) * np.asarray(intensity_g_per_kwh, dtype=float) / 1000.0


@functools.cache
def _embodied_data() -> dict:
    return yaml.safe_load(_data("embodied.yaml"))


def device_embodied_kg(device: DeviceSpec) -> float | None:
    """Manufacturing CO2e of one device (kg), or None when its die area is not on file."""
    data = _embodied_data()
    entry = data["devices"].get(device.name)
    if entry is None:
        return None
    die_cm2 = entry["die_mm2"] / 100.0
    memory_gb = device.memory_gib * 1.073741824
    return die_cm2 * data["cpa_kgco2_per_cm2"][entry["node"]] + memory_gb * data["dram_kgco2_per_gb"]


def embodied_co2e_t(device: DeviceSpec, num_gpus, time_s) -> float | None:
    """A run's share of its devices' manufacturing carbon: per-device kg x GPUs x time / lifetime, in tonnes."""
    per_device = device_embodied_kg(device)
    if per_device is None:
        return None
    lifetime_s = _embodied_data()["lifetime_years"] * SECONDS_PER_YEAR
    return float(per_device * np.asarray(num_gpus, dtype=float) * np.asarray(time_s, dtype=float) / lifetime_s / 1000.0)
