"""Optimal checkpoint interval and goodput under exponentially distributed failures.

- Young 1974 ("A first order approximation to the optimum checkpoint interval", CACM 17(9)):
  ``tau = sqrt(2 C M)`` for checkpoint cost ``C`` and mean time between failures ``M``.
- Daly 2006 ("A higher order estimate of the optimum checkpoint interval for restart dumps", FGCS 22(3)):
  ``tau = sqrt(2 C M) [1 + sqrt(C / 2M) / 3 + (C / 2M) / 9] - C`` for ``C < 2M``, else ``tau = M``; and the
  expected wall-clock time of ``T_s`` of work with restart time ``R``:
  ``T_wall = M exp(R / M) (exp((tau + C) / M) - 1) T_s / tau``. Goodput is ``T_s / T_wall``.
All functions take NumPy arrays.
"""

from __future__ import annotations

import numpy as np


def young_interval(cost_s, mtbf_s) -> np.ndarray:
    return np.sqrt(2.0 * np.asarray(cost_s, dtype=float) * np.asarray(mtbf_s, dtype=float))


def daly_interval(cost_s, mtbf_s) -> np.ndarray:
    c, m = np.asarray(cost_s, dtype=float), np.asarray(mtbf_s, dtype=float)
    x = c / (2.0 * m)
    tau = np.sqrt(2.0 * c * m) * (1.0 + np.sqrt(x) / 3.0 + x / 9.0) - c
    return np.where(c < 2.0 * m, tau, m)


def goodput(interval_s, cost_s, restart_s, mtbf_s) -> np.ndarray:
    """Useful work / wall-clock time (Daly 2006, exponential failures): in (0, 1]."""
    tau, c = np.asarray(interval_s, dtype=float), np.asarray(cost_s, dtype=float)
    r, m = np.asarray(restart_s, dtype=float), np.asarray(mtbf_s, dtype=float)
    return tau / (m * np.exp(r / m) * np.expm1((tau + c) / m))
