"""Sweeps: many training or serving scenarios from one YAML spec, run by local processes or on Ray, one table row
per scenario, resumable."""

from fathom.sweep.run import run_sweep
from fathom.sweep.spec import Scenario, expand, load_sweep

__all__ = ["Scenario", "expand", "load_sweep", "run_sweep"]
