"""A heterogeneous serving fleet: how many replicas of each GPU type share one load (Melange, Griggs et al. 2024).

Melange's observation: the cheapest GPU per request depends on the request's size (small requests are cheapest on
small GPUs, long prompts need the compute of large ones), so mixing types beats any single type. As there, requests
are bucketed by size and a mixed-integer program picks integer replica counts ``n_k`` per deployment ``k`` and the
fraction ``x_bk`` of bucket ``b``'s load each one serves:

    minimise   sum_k price_k n_k
    subject to sum_k x_bk = 1                           for every bucket b
               sum_b rate_b x_bk / cap_bk <= n_k        for every deployment k
               n_k integer >= 0,  0 <= x_bk <= 1,  x_bk = 0 where cap_bk = 0 (k cannot meet the SLOs for b)

solved with HiGHS through ``scipy.optimize.milp``. Any single deployment carrying everything is a feasible point, so
the optimum is never costlier than the best single type under the same capacities.
"""

from __future__ import annotations

import ctypes
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
from scipy.optimize import Bounds, LinearConstraint, milp


@dataclass(frozen=True)
class MixSolution:
    replicas: np.ndarray  # per deployment, integer
    share: np.ndarray  # (buckets x deployments): fraction of each bucket's requests
    cost: float
    status: str

    @property
    def ok(self) -> bool:
        return self.status == "optimal"


def solve_mix(bucket_rates, capacity, unit_cost, max_replicas=None) -> MixSolution:
    """Cheapest integer mix. ``bucket_rates`` (B,): requests/s per bucket; ``capacity`` (K, B): requests/s one
    replica of deployment k sustains on bucket b (0: not at all); ``unit_cost`` (K,): per replica."""
    rates = np.asarray(bucket_rates, dtype=float)
    cap = np.asarray(capacity, dtype=float)
    price = np.asarray(unit_cost, dtype=float)
    k, b = cap.shape
    servable = cap > 0
    if not servable.any(axis=0).all():
        return MixSolution(np.zeros(k, dtype=int), np.zeros((b, k)), float("inf"), "infeasible")
    # Variables: n_0..n_{K-1}, then x laid out bucket-major (x[b, k] at K + b*K + k).
    c = np.concatenate([price, np.zeros(b * k)])
    eq = np.zeros((b, k + b * k))
    for j in range(b):
        eq[j, k + j * k : k + (j + 1) * k] = 1.0
    load = np.zeros((k, k + b * k))
    load[np.arange(k), np.arange(k)] = -1.0
    with np.errstate(divide="ignore"):
        per = np.where(servable, rates[None, :] / np.where(servable, cap, 1.0), 0.0)  # (K, B) replica-units
    for j in range(b):
        load[np.arange(k), k + j * k + np.arange(k)] = per[:, j]
    upper_n = np.full(k, np.inf) if max_replicas is None else np.asarray(max_replicas, dtype=float)
    upper_x = servable.T.astype(float).ravel()
    bounds = Bounds(np.zeros(k + b * k), np.concatenate([upper_n, upper_x]))
    integrality = np.concatenate([np.ones(k), np.zeros(b * k)])
    with _native_stdout_silenced():
        res = milp(
            c,
            constraints=[LinearConstraint(eq, 1.0, 1.0), LinearConstraint(load, -np.inf, 0.0)],
            integrality=integrality,
            bounds=bounds,
        )
    if res.x is None:
        return MixSolution(np.zeros(k, dtype=int), np.zeros((b, k)), float("inf"), "infeasible")
    n = np.round(res.x[:k]).astype(int)
    share = np.clip(res.x[k:].reshape(b, k), 0.0, 1.0)
    share /= share.sum(axis=1, keepdims=True)
    return MixSolution(n, share, float(price @ n), "optimal" if res.status == 0 else str(res.message))


def calibrated_capacity(analytic: np.ndarray, share: np.ndarray, rate: float, confirmed: int) -> np.ndarray:
    """Per-bucket capacities of one deployment, scaled so the fleet the simulator confirmed is exactly feasible.

    The simulator proved ``confirmed`` replicas carry ``rate`` and ``confirmed - 1`` do not, so one replica's real
    capacity on the whole load lies in [rate / confirmed, rate / (confirmed - 1)); the analytic whole-load
    capacity is clipped into that interval and the per-bucket figures are scaled to agree with it.
    """
    a = np.asarray(analytic, dtype=float)
    ok = a > 0
    if not ok.any():
        return np.zeros_like(a)
    # Just below rate / (confirmed - 1): at that capacity one replica fewer would pass, which the simulator refuted.
    low, high = rate / confirmed, (rate / (confirmed - 1) * (1 - 1e-6) if confirmed > 1 else np.inf)
    w = share[ok] / share[ok].sum()
    whole = 1.0 / float(np.sum(w / a[ok]))  # harmonic: replica-seconds per request add up across buckets
    target = float(np.clip(whole, low, high))
    return np.where(ok, a * target / whole, 0.0)


def assign_requests(bucket: np.ndarray, share: np.ndarray, seed: int) -> np.ndarray:
    """Deployment index per request: within each bucket, a seeded draw in proportion to the bucket's shares (the
    router splits the load as the program decided)."""
    rng = np.random.default_rng(seed)
    cum = np.cumsum(share, axis=1)[bucket]
    u = rng.random(bucket.size)
    return np.minimum((u[:, None] >= cum).sum(axis=1), share.shape[1] - 1)


@contextmanager
def _native_stdout_silenced() -> Iterator[None]:
    """HiGHS (scipy's ``milp``) prints some MIP solver lines with C's printf, past Python's ``sys.stdout`` and
    whatever ``disp`` says: file descriptor 1 goes to /dev/null for the solve, so ``--json`` stays JSON. Where
    stdout has no descriptor (captured by a test, a notebook) there is nothing to redirect."""
    try:
        fd = sys.stdout.fileno()
    except (AttributeError, OSError, ValueError):
        yield
        return
    sys.stdout.flush()
    saved = os.dup(fd)
    try:
        with open(os.devnull, "wb") as null:
            os.dup2(null.fileno(), fd)
            yield
    finally:
        try:
            ctypes.CDLL(None).fflush(None)  # C's buffered lines go to /dev/null, not out after the restore
        except (OSError, AttributeError):
            pass
        os.dup2(saved, fd)
        os.close(saved)
